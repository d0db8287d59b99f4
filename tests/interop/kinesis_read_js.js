#!/usr/bin/env node
'use strict'
/*
 * Reads a whole stream the way a Node consumer without the KCL does, with the
 * AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis) and the npm
 * aws-kinesis-agg deaggregator (both pinned in tests/bench/peers), and prints
 * what it read, for tests/interop/kncat_peers.py:
 *   - ListShards, then per shard GetShardIterator TRIM_HORIZON and GetRecords
 *     until the shard is caught up (an empty read with MillisBehindLatest 0)
 *     or closed and read to its end;
 *   - every Kinesis record through deaggregateSync with MD5 checking on;
 *   - one JSON line per user record, in shard order:
 *       {"shard","seq","subseq","key","data_b64","aggregated"}
 *     (aggregated: the Kinesis record was a KPL aggregate), then a last line
 *       {"summary":true,"records":N,"kinesis_records":N,"errors":[...]}.
 * Exits 1 when a record could not be deaggregated (the error is in the summary).
 *
 * Usage: node kinesis_read_js.js ENDPOINT STREAM
 * Credentials are dummies: the local servers accept any.
 */
const path = require('path')
const http = require('http')
const peers = path.join(__dirname, '..', 'bench', 'peers', 'node_modules')
const {
  KinesisClient, ListShardsCommand, GetShardIteratorCommand, GetRecordsCommand
} = require(path.join(peers, '@aws-sdk', 'client-kinesis'))
const agg = require(path.join(peers, 'aws-kinesis-agg'))
const { NodeHttpHandler } = require(path.join(peers, '@smithy', 'node-http-handler'))

const MAGIC = Buffer.from('f3899ac2', 'hex')
const [endpoint, stream] = process.argv.slice(2)
if (!endpoint || !stream) {
  console.error('usage: node kinesis_read_js.js ENDPOINT STREAM')
  process.exit(2)
}

const client = new KinesisClient({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'AKIDINTEROP', secretAccessKey: 'interop-secret' },
  maxAttempts: 10,
  // HTTP/1.1: the Kinesis client defaults to HTTP/2, which kinesalite does not speak.
  requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: true }) })
})

const errors = []
let kinesisRecords = 0

async function readShard (shardId) {
  const out = []
  const it = await client.send(new GetShardIteratorCommand({
    StreamName: stream, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON'
  }))
  let iterator = it.ShardIterator
  while (iterator) {
    const r = await client.send(new GetRecordsCommand({ ShardIterator: iterator }))
    for (const rec of r.Records) {
      kinesisRecords++
      const aggregated = Buffer.from(rec.Data).subarray(0, 4).equals(MAGIC)
      agg.deaggregateSync(rec, true, (err, users) => {
        if (err) {
          errors.push(`${shardId} ${rec.SequenceNumber}: ${err}`)
          return
        }
        for (const u of users) {
          // aws-kinesis-agg hands aggregated sub-records' data as base64, plain records' as given.
          const data = typeof u.Data === 'string' ? Buffer.from(u.Data, 'base64') : Buffer.from(u.Data)
          out.push(JSON.stringify({
            shard: shardId,
            seq: rec.SequenceNumber,
            subseq: aggregated ? u.SubSequenceNumber : null,
            key: u.PartitionKey,
            data_b64: data.toString('base64'),
            aggregated
          }))
        }
      })
    }
    iterator = r.NextShardIterator
    if (r.Records.length === 0 && r.MillisBehindLatest === 0) break
  }
  return out
}

async function main () {
  const shards = []
  let next
  do {
    const r = await client.send(new ListShardsCommand(next ? { NextToken: next } : { StreamName: stream }))
    for (const s of r.Shards) shards.push(s.ShardId)
    next = r.NextToken
  } while (next)
  const perShard = await Promise.all(shards.map(readShard))
  let n = 0
  for (const lines of perShard) {
    for (const l of lines) process.stdout.write(l + '\n')
    n += lines.length
  }
  process.stdout.write(JSON.stringify({ summary: true, records: n, kinesis_records: kinesisRecords, errors }) + '\n')
  process.exitCode = errors.length ? 1 : 0
}

main().catch(e => { console.error(e); process.exit(2) })
