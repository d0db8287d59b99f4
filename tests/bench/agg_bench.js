#!/usr/bin/env node
'use strict';
/*
 * KPL aggregation micro-benchmark: our C code (agg_bench) beside the npm
 * aws-kinesis-agg (pinned in tests/servers/package.json) doing the same job in
 * the same run, one after the other (never at the same time).
 *
 * Usage: node agg_bench.js PATH/TO/agg_bench [--records N] [--min-ms MS]
 *
 * Job per payload size (100 B and 1 KiB): N user records with random 8..36
 * character partition keys, no explicit hash key, random bytes.
 *   encode: aggregate all at the KPL's 51200-byte limit (size check, add,
 *           build each full aggregate with its MD5). The peer's
 *           RecordAggregator is used as a producer would at that limit:
 *           calculateUserRecordSize, build() when the next record does not
 *           fit, addUserRecord.
 *   decode: split every aggregate with MD5 verification. The peer's
 *           deaggregateSync(record, computeChecksums=true) takes the data as
 *           base64 (as Lambda delivers it); the base64 strings are made
 *           before the clock starts.
 * Figures: wall ns per user record of the best pass (the one least disturbed
 * by other processes on a shared machine; the median in brackets) over passes
 * repeated for at least --min-ms (default 1500) each; CPU ns (user+sys of
 * the whole process, so Node's GC and JIT threads count) per user record
 * over all passes; peak RSS of each process. Then the C side's compression ratios on JSON log
 * lines. Prints figures; never fails on time (exit 1 only if a side breaks).
 */
const os = require('os');
const { spawnSync } = require('child_process');
const path = require('path');
const L = require(path.join(__dirname, '..', 'interop', 'agg_lib.js'));

const args = process.argv.slice(2);
const cBench = args.shift();
if (!cBench) {
    console.error('usage: agg_bench.js PATH/TO/agg_bench [--records N] [--min-ms MS]');
    process.exit(2);
}
let nRecords = 100000, minMs = 1500;
for (let i = 0; i < args.length; i++) {
    if (args[i] === '--records') nRecords = Number.parseInt(args[++i], 10);
    else if (args[i] === '--min-ms') minMs = Number.parseFloat(args[++i]);
    else { console.error('unknown argument ' + args[i]); process.exit(2); }
}
const SIZES = [100, 1024];
const LIMIT = 51200;
const peer = L.requirePeer();

/* ---------------------------------------------------------------- C side */

const c = spawnSync(cBench, ['--records', String(nRecords), '--min-ms', String(minMs), '--sizes', SIZES.join(',')],
                    { encoding: 'utf8', maxBuffer: 1 << 20 });
if (c.status !== 0) {
    console.error(`agg_bench failed (${c.status === null ? c.signal : c.status}): ${c.error || ''}${c.stderr}`);
    process.exit(1);
}
const cRes = JSON.parse(c.stdout);

/* ------------------------------------------------------------- peer side */

/* [best, median, CPU] ns per record: wall time of the best and the median pass, process CPU over all passes. */
function measure(n, fn) {
    const samples = [];
    const cpu0 = process.cpuUsage();
    const start = process.hrtime.bigint();
    while (samples.length < 3 || Number(process.hrtime.bigint() - start) / 1e6 < minMs) {
        const t = process.hrtime.bigint();
        fn();
        samples.push(Number(process.hrtime.bigint() - t) / n);
    }
    const cpu = process.cpuUsage(cpu0);
    const cpuNs = ((cpu.user + cpu.system) * 1000) / (n * samples.length);
    samples.sort((a, b) => a - b);
    return [samples[0], samples[samples.length >> 1], cpuNs];
}

function genRecords(rng, n, size) {
    const alnum = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
    const data = rng.bytes(n * size);
    const recs = new Array(n);
    for (let i = 0; i < n; i++) {
        const len = rng.range(8, 36);
        let pk = '';
        for (let j = 0; j < len; j++) pk += alnum[rng.below(62)];
        recs[i] = { partitionKey: pk, data: data.subarray(i * size, (i + 1) * size) };
    }
    return recs;
}

function encodePass(recs) {
    const ra = new peer.agg.RecordAggregator();
    const out = [];
    for (let i = 0; i < recs.length; i++) {
        const r = recs[i];
        const size = ra.calculateUserRecordSize(r);
        if (ra.length() > 0 && 20 + ra.totalBytes + size > LIMIT) out.push(ra.build());
        ra.addUserRecord(r);
    }
    out.push(ra.build());
    return out;
}

function decodePass(events) {
    let count = 0;
    for (const ev of events) {
        peer.agg.deaggregateSync(ev, true, (err, users) => {
            if (err) throw err;
            count += users.length;
        });
    }
    return count;
}

const cpu0 = process.cpuUsage();
const rng = L.makeRng(1);
const nodeRes = [];
for (const size of SIZES) {
    const recs = genRecords(rng, nRecords, size);
    let aggs = null;
    const enc = measure(nRecords, () => { aggs = encodePass(recs); });
    const events = aggs.map((a) => ({ partitionKey: a.partitionKey, data: a.data.toString('base64') }));
    const dec = measure(nRecords, () => {
        if (decodePass(events) !== nRecords) throw new Error('aws-kinesis-agg lost records');
    });
    nodeRes.push({ size, encode_ns: enc[0], decode_ns: dec[0], encode_median_ns: enc[1], decode_median_ns: dec[1],
                   encode_cpu_ns: enc[2], decode_cpu_ns: dec[2], aggregates: aggs.length,
                   aggregate_bytes: aggs.reduce((s, a) => s + a.data.length, 0) });
}
const cpu = process.cpuUsage(cpu0);
const nodeCpuMs = (cpu.user + cpu.system) / 1000;
const nodeRss = process.resourceUsage().maxRSS;

/* ---------------------------------------------------------------- report */

const pad = (s, n) => String(s).padStart(n);
const cpuModel = (os.cpus()[0] || {}).model || '?';
console.log(`KPL aggregation micro-benchmark, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores ` +
            `(${cpuModel.trim()}), node ${process.version}, aws-kinesis-agg ${peer.version}`);
console.log(`${nRecords} user records per pass, random 8..36-char partition keys, limit ${LIMIT} bytes, ` +
            `passes of >= ${minMs} ms`);
console.log('');
console.log(`${''.padEnd(14)}${pad('wall ns per record: best (median)', 42)}${pad('CPU ns per record', 27)}`);
console.log(`${'size'.padEnd(6)}${'op'.padEnd(8)}${pad('libkinesis (C)', 20)}${pad('aws-kinesis-agg', 22)}` +
            `${pad('C', 9)}${pad('peer', 9)}${pad('peer/C', 9)}${pad('aggregates C/peer', 19)}`);
for (const size of SIZES) {
    const cr = cRes.results.find((r) => r.size === size);
    const nr = nodeRes.find((r) => r.size === size);
    for (const op of ['encode', 'decode']) {
        const a = cr[op + '_ns'], b = nr[op + '_ns'];
        const fig = (x, m) => `${x.toFixed(0)} ns (${m.toFixed(0)})`;
        console.log(`${String(size).padEnd(6)}${op.padEnd(8)}${pad(fig(a, cr[op + '_median_ns']), 20)}` +
                    `${pad(fig(b, nr[op + '_median_ns']), 22)}` +
                    `${pad(cr[op + '_cpu_ns'].toFixed(0), 9)}${pad(nr[op + '_cpu_ns'].toFixed(0), 9)}` +
                    `${pad((nr[op + '_cpu_ns'] / cr[op + '_cpu_ns']).toFixed(1) + 'x', 9)}` +
                    `${pad(op === 'encode' ? `${cr.aggregates}/${nr.aggregates}` : '', 19)}`);
    }
}
console.log('');
console.log(`process totals (record generation and all passes): libkinesis CPU ${cRes.cpu_ms.toFixed(0)} ms, ` +
            `peak RSS ${(cRes.peak_rss_kib / 1024).toFixed(1)} MiB; aws-kinesis-agg CPU ${nodeCpuMs.toFixed(0)} ms, ` +
            `peak RSS ${(nodeRss / 1024).toFixed(1)} MiB`);
if (cRes.compression) {
    const q = cRes.compression;
    const k = q.kinesis_bytes;
    const ratio = (x) => (k.none / x).toFixed(2) + 'x';
    console.log('');
    console.log(`compression of ${q.log_lines} JSON log lines (${(q.raw_data_bytes / q.log_lines).toFixed(0)} bytes ` +
                `each on average), Kinesis bytes sent (data + partition keys), aggregated at ${LIMIT}:`);
    console.log(`  none              ${pad(k.none, 10)}`);
    for (const [name, key] of [['record gzip', 'record_gzip'], ['record zstd', 'record_zstd'],
                               ['aggregate gzip', 'aggregate_gzip'], ['aggregate zstd', 'aggregate_zstd']])
        console.log(`  ${name.padEnd(16)}  ${pad(k[key], 10)}  ${pad(ratio(k[key]), 7)} smaller`);
}
