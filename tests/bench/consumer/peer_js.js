#!/usr/bin/env node
'use strict'
/*
 * Consumer benchmark, JavaScript peer: what a KCL-less Node reader does with
 * the AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis) and aws-kinesis-agg
 * (pinned in tests/bench/peers), the same job as `kncat -C -o beginning -e`:
 *   - ListShards (all pages);
 *   - per shard, concurrently: GetShardIterator TRIM_HORIZON, then GetRecords
 *     (with LIMIT, or the service's default) in a loop until the shard is caught up
 *     (an empty read with MillisBehindLatest 0) or closed and read to its end;
 *   - every Kinesis record deaggregated with deaggregateSync, MD5 checked (as
 *     the KCL does), each user record's data decoded from base64 to bytes,
 *     counted with its length.
 * Prints one JSON line like the other benchmark programs:
 *   {"impl":...,"records":N,"bytes":N,"kinesis_records":N,"get_records_calls":N,
 *    "wall_s":S,"cpu_user_s":S,"cpu_sys_s":S,"maxrss_kib":N,"first_error":"..."}
 *
 * Usage: node peer_js.js ENDPOINT STREAM [LIMIT]
 *   LIMIT: most Kinesis records per GetRecords (the Limit parameter); 0 or absent: none
 */
const path = require('path')
const http = require('http')
const peers = path.join(__dirname, '..', 'peers', 'node_modules')
const {
  KinesisClient, ListShardsCommand, GetShardIteratorCommand, GetRecordsCommand
} = require(path.join(peers, '@aws-sdk', 'client-kinesis'))
const agg = require(path.join(peers, 'aws-kinesis-agg'))
const { NodeHttpHandler } = require(path.join(peers, '@smithy', 'node-http-handler'))

const [endpoint, stream, limitArg] = process.argv.slice(2)
const LIMIT = Number(limitArg || 0)
if (!endpoint || !stream) {
  console.error('usage: node peer_js.js ENDPOINT STREAM [LIMIT]')
  process.exit(2)
}

const client = new KinesisClient({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' },
  maxAttempts: 10,
  // HTTP/1.1 with keep-alive: the Kinesis client defaults to HTTP/2, which kinesalite does not speak.
  requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: true, maxSockets: 16 }) })
})

let records = 0
let bytes = 0
let kinesisRecords = 0
let calls = 0
let errors = 0
let firstError = ''

function deaggregate (rec) {
  return new Promise(resolve => {
    agg.deaggregateSync(rec, true, (err, users) => {
      if (err) {
        errors++
        if (!firstError) firstError = 'deaggregate: ' + String(err)
        resolve([])
      } else {
        resolve(users || [])
      }
    })
  })
}

async function readShard (shardId) {
  const it = await client.send(new GetShardIteratorCommand({
    StreamName: stream, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON'
  }))
  let iterator = it.ShardIterator
  while (iterator) {
    const r = await client.send(new GetRecordsCommand(LIMIT ? { ShardIterator: iterator, Limit: LIMIT }
      : { ShardIterator: iterator }))
    calls++
    for (const rec of r.Records) {
      kinesisRecords++
      for (const u of await deaggregate(rec)) {
        records++
        bytes += Buffer.from(u.Data, 'base64').length
      }
    }
    iterator = r.NextShardIterator
    if (r.Records.length === 0 && r.MillisBehindLatest === 0) break // caught up
  }
}

async function main () {
  const t0 = process.hrtime.bigint()
  const shards = []
  let next
  do {
    const r = await client.send(new ListShardsCommand(next ? { NextToken: next } : { StreamName: stream }))
    for (const s of r.Shards) shards.push(s.ShardId)
    next = r.NextToken
  } while (next)
  await Promise.all(shards.map(readShard))
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const ru = process.resourceUsage()
  console.log(JSON.stringify({
    impl: 'aws-sdk-js-v3+aws-kinesis-agg',
    records,
    bytes,
    kinesis_records: kinesisRecords,
    get_records_calls: calls,
    wall_s: Number(wall.toFixed(3)),
    cpu_user_s: ru.userCPUTime / 1e6,
    cpu_sys_s: ru.systemCPUTime / 1e6,
    maxrss_kib: ru.maxRSS,
    first_error: firstError
  }))
  process.exitCode = errors ? 1 : 0
}

main().catch(e => { console.error(e); process.exit(2) })
