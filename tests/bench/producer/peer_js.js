#!/usr/bin/env node
'use strict'
/*
 * Producer benchmark, JavaScript peer: what a KPL-less Node producer does with
 * the AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis) and aws-kinesis-agg
 * (pinned in tests/bench/peers):
 *   - ListShards once, predict each record's shard from the MD5 of its key;
 *   - aggregate per shard with RecordAggregator up to the KPL's 51200 bytes,
 *     each aggregate sent with the first user record's hash key as its
 *     ExplicitHashKey (so it lands on the predicted shard);
 *   - PutRecords of up to 500 records / 5 MiB, at most 24 requests in flight
 *     (the KPL's MaxConnections), failed entries resent.
 * Records: 100-byte windows into a random pool, keys of 16 random hex digits,
 * as in producer_bench.c. Prints one JSON line like producer_bench.
 *
 * Usage: node peer_js.js ENDPOINT STREAM COUNT
 */
const path = require('path')
const MAX_INFLIGHT = 24
const crypto = require('crypto')
const peers = path.join(__dirname, '..', 'peers', 'node_modules')
const { KinesisClient, ListShardsCommand, PutRecordsCommand } = require(path.join(peers, '@aws-sdk', 'client-kinesis'))
const agg = require(path.join(peers, 'aws-kinesis-agg'))
const { NodeHttpHandler } = require(path.join(peers, '@smithy', 'node-http-handler'))
const http = require('http')

const [endpoint, stream, countArg] = process.argv.slice(2)
const COUNT = Number(countArg)
const AGG_LIMIT = 51200
const MAX_RECORDS = 500
const MAX_BYTES = 5 * 1024 * 1024

const client = new KinesisClient({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' },
  maxAttempts: 10,
  // HTTP/1.1 with keep-alive: the Kinesis client defaults to HTTP/2, which kinesalite does not speak.
  requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: true, maxSockets: MAX_INFLIGHT }) })
})

let ok = 0
let failed = 0
let firstError = ''
let inflight = 0
let waiters = []

function hashOf (key) {
  return BigInt('0x' + crypto.createHash('md5').update(key).digest('hex'))
}

async function send (entries) {
  // entries: [{ PartitionKey, ExplicitHashKey, Data, n }] where n is the user records inside
  while (entries.length) {
    let res
    try {
      res = await client.send(new PutRecordsCommand({ StreamName: stream, Records: entries.map(e => e.rec) }))
    } catch (err) {
      if (!firstError) firstError = String(err)
      await new Promise(resolve => setTimeout(resolve, 100))
      continue
    }
    const retry = []
    res.Records.forEach((r, i) => {
      if (r.ErrorCode) retry.push(entries[i])
      else ok += entries[i].n
    })
    if (retry.length && !firstError) firstError = res.Records.find(r => r.ErrorCode).ErrorCode
    entries = retry
  }
}

async function dispatch (entries) {
  while (inflight >= MAX_INFLIGHT) await new Promise(resolve => waiters.push(resolve))
  inflight++
  send(entries).catch(e => { failed += entries.reduce((s, x) => s + x.n, 0); firstError = firstError || String(e) })
    .finally(() => {
      inflight--
      const w = waiters
      waiters = []
      w.forEach(f => f())
    })
}

async function main () {
  const t0 = process.hrtime.bigint()
  const shards = []
  let next
  do {
    const r = await client.send(new ListShardsCommand(next ? { NextToken: next } : { StreamName: stream }))
    for (const s of r.Shards) {
      if (s.SequenceNumberRange.EndingSequenceNumber) continue
      shards.push({ start: BigInt(s.HashKeyRange.StartingHashKey), end: BigInt(s.HashKeyRange.EndingHashKey),
                    ra: new agg.RecordAggregator(), size: 0, firstHash: null, n: 0 })
    }
    next = r.NextToken
  } while (next)

  const pool = crypto.randomBytes(65536)
  let batch = []
  let batchBytes = 0
  const flushBatch = async () => {
    if (!batch.length) return
    const b = batch
    batch = []
    batchBytes = 0
    await dispatch(b)
  }
  const finishAggregate = async (s) => {
    const built = s.ra.build()
    const rec = { PartitionKey: built.partitionKey, ExplicitHashKey: s.firstHash.toString(), Data: built.data }
    const bytes = built.data.length + built.partitionKey.length
    if (batch.length + 1 > MAX_RECORDS || batchBytes + bytes > MAX_BYTES) await flushBatch()
    batch.push({ rec, n: s.n })
    batchBytes += bytes
    s.n = 0
    s.firstHash = null
  }

  for (let i = 0; i < COUNT; i++) {
    const a = (Math.random() * 0x100000000) >>> 0
    const b = (Math.random() * 0x100000000) >>> 0
    const key = a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0')
    const off = b % (pool.length - 100)
    const user = { partitionKey: key, data: pool.subarray(off, off + 100) }
    const h = hashOf(key)
    let s = shards[0]
    for (const x of shards) if (h >= x.start && h <= x.end) { s = x; break }
    const size = s.ra.calculateUserRecordSize(user)
    if (s.ra.length() > 0 && 20 + s.ra.totalBytes + size > AGG_LIMIT) await finishAggregate(s)
    s.ra.addUserRecord(user)
    if (s.firstHash === null) s.firstHash = h
    s.n++
  }
  for (const s of shards) if (s.ra.length() > 0) await finishAggregate(s)
  await flushBatch()
  while (inflight > 0) await new Promise(resolve => waiters.push(resolve))
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const ru = process.resourceUsage()
  console.log(JSON.stringify({
    impl: 'aws-sdk-js-v3+aws-kinesis-agg',
    records: COUNT,
    ok,
    failed,
    wall_s: Number(wall.toFixed(3)),
    cpu_user_s: ru.userCPUTime / 1e6,
    cpu_sys_s: ru.systemCPUTime / 1e6,
    maxrss_kib: ru.maxRSS,
    first_error: firstError
  }))
  process.exitCode = ok === COUNT ? 0 : 1
}

main().catch(e => { console.error(e); process.exit(2) })
