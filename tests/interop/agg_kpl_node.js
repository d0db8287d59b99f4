#!/usr/bin/env node
'use strict';
/*
 * Interop of our KPL aggregation (common/agg.c, through agg_tool) with the
 * npm package aws-kinesis-agg (pinned in tests/servers/package.json).
 *
 * Usage: node agg_kpl_node.js PATH/TO/agg_tool
 * Env:   KN_AGG_SEED     random seed (default 20261125); printed on every run
 *        KN_AGG_RECORDS  user records per direction (default 100000)
 *        KN_AGG_KEEP=1   keep the temporary directory
 *
 * A. We encode, aws-kinesis-agg decodes: a stream of user records (random
 *    partition keys, some non-ASCII and some 256 characters long, random
 *    explicit hash keys on about a fifth, payloads skewed small with a few up
 *    to 1 MiB, and edge-case groups at and one byte beyond the 51200-byte
 *    aggregation limit) goes through `agg_tool encode`; every Kinesis record
 *    comes back through deaggregateSync with MD5 verification, and must give
 *    the same keys and bytes in order. Also checked: aggregates stay within
 *    the limit and are greedy (the next record would not have fitted: the
 *    exact size computed by protobufjs, the peer's encoder), their outer keys
 *    ("a" and the first record's hash key), single records go raw with their
 *    own keys, and our aggregate bytes equal what protobufjs serializes for
 *    the same records.
 * B. aws-kinesis-agg encodes, we decode: a second stream aggregated by the
 *    peer's RecordAggregator (at our 51200-byte limit) and its aggregate()
 *    (at its own 1 MiB limit), records too large for it sent raw, plus
 *    hand-made aggregates (tags, an empty partition key, duplicate table
 *    entries, bad MD5, truncated, empty, index out of range) go through
 *    `agg_tool decode`, which must give every user record exactly, with its
 *    sub-sequence number, and pass everything else through unchanged.
 * C. Record-scope compression: JSON log lines, binary and tiny records and a
 *    few big ones encoded with `agg_tool encode --compress gzip|zstd` (and
 *    gzip with --compress-all) are read by aws-kinesis-agg (MD5 verified);
 *    each record tagged content-encoding must decompress to the original
 *    (gzip: Node's zlib; zstd: Node's zlib if it has zstd, else libzstd's
 *    ZSTD_decompress through `agg_tool unzstd`, not our codec code), untagged
 *    ones must be the original, JSON lines must mostly be compressed and
 *    random or tiny ones never (unless --compress-all); our full decoder
 *    (`agg_tool decode --decompress`) gives the originals back. An aggregate
 *    that Node makes by the documented format (zlib gzip + tag) is decoded by
 *    us; a corrupt gzip record and an unknown encoding come as received, with
 *    an error.
 *
 * Findings about aws-kinesis-agg 4.2.8 that the checks below pin down (the
 * test asserts the package's real behaviour, see PEER QUIRK comments):
 *  1. deaggregate reports, for a user record without an explicit hash key in
 *     an aggregate whose explicit_hash_key_table is not empty, the table's
 *     FIRST entry as its explicitPartitionKey (protobufjs gives absent proto2
 *     fields their default 0). Consumers routing on it get a wrong key.
 *  2. deaggregate only looks at the magic: a plain record whose data starts
 *     with F3 89 9A C2 (a KPL single record is sent raw) fails with an error
 *     (with computeChecksums) or decodes garbage, where the KCL passes it
 *     through. agg_tool therefore wraps such singles in an aggregate.
 *  3. Plain (non-aggregated) records come back without a subSequenceNumber,
 *     and Record tags are not passed on at all: a Node consumer cannot see
 *     content-encoding, so producers that feed such consumers should
 *     compress every record (--compress-all) or none.
 *  4. Its encoder builds the key tables as Object.keys() of a plain object,
 *     and JavaScript lists integer-like keys ("0".."4294967294") first, in
 *     numeric order: whenever an aggregate holds such a partition key or
 *     explicit hash key after another key, the table order no longer matches
 *     the indexes the records were given, and records go out with another
 *     record's key (every KPL deaggregator then reads the wrong key). Keys
 *     named "__proto__" or "hasOwnProperty" break it too. Direction B models
 *     this exactly (peerWireKeys) and checks that we read what is on the wire.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const L = require('./agg_lib');

const tool = process.argv[2];
if (!tool) {
    console.error('usage: agg_kpl_node.js PATH/TO/agg_tool');
    process.exit(2);
}
const seed = Number.parseInt(process.env.KN_AGG_SEED || '20261125', 10);
const nRecords = Number.parseInt(process.env.KN_AGG_RECORDS || '100000', 10);
const LIMIT = 51200;
const PEER_MAX = 1024 * 1024 - 20; /* aws-kinesis-agg's KINESIS_MAX_PAYLOAD_BYTES */
const peer = L.requirePeer();
const t0 = Date.now();

console.log(`agg_kpl_node: seed ${seed} (KN_AGG_SEED), ${nRecords} records per direction (KN_AGG_RECORDS), ` +
            `aws-kinesis-agg ${peer.version}, node ${process.version}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kn-agg-interop-'));
function cleanup() {
    if (process.env.KN_AGG_KEEP === '1') console.log('kept ' + tmp);
    else fs.rmSync(tmp, { recursive: true, force: true });
}

function fail(msg) {
    console.log('FAIL: ' + msg);
    console.log(`(reproduce with KN_AGG_SEED=${seed} KN_AGG_RECORDS=${nRecords})`);
    cleanup();
    process.exit(1);
}

function check(cond, msg) {
    if (!cond) fail(typeof msg === 'function' ? msg() : msg);
}

function runTool(args, expectOk = true) {
    const r = spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.error) fail(`cannot run ${tool}: ${r.error.message}`);
    if (expectOk && r.status !== 0)
        fail(`agg_tool ${args.join(' ')} exited with ${r.status === null ? 'signal ' + r.signal : r.status}:\n${r.stderr}`);
    /* Sanitizer reports fail the test even when the sanitizer was told to go on. */
    if (/runtime error:|Sanitizer|LeakSanitizer/.test(r.stderr || ''))
        fail(`agg_tool ${args.join(' ')}: sanitizer report:\n${r.stderr}`);
    if (r.stderr && expectOk) process.stdout.write('  ' + r.stderr.trim().split('\n').join('\n  ') + '\n');
    return r;
}

function phase(name) {
    console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${name}`);
}

/* ------------------------------------------------------------ generation */

/*
 * A stream of n user records {pk, ehk, data, expect?}. Edge-case groups are
 * spread through it; each starts after a record bigger than the limit (which
 * always ends the previous container and then goes out alone), so the
 * group's first record starts a new container.
 */
function generateStream(rng, n, withGroups) {
    const pool = L.makePool(rng, 4 << 20);
    const pkPool = Array.from({ length: 64 }, () => L.randomPartitionKey(rng));
    const ehkPool = Array.from({ length: 16 }, () => L.randomHashKey(rng));
    const plain = (size) => ({
        pk: rng.chance(0.3) ? rng.pick(pkPool) : L.randomPartitionKey(rng),
        ehk: rng.chance(0.2) ? (rng.chance(0.25) ? rng.pick(ehkPool) : L.randomHashKey(rng)) : undefined,
        data: pool(size === undefined ? L.randomDataSize(rng) : size),
    });
    const hugeSizes = [1048576, 1048575, 1000000, 786432, 524288, 300001];
    let hugeLeft = hugeSizes.slice();
    const big = () => {
        if (hugeLeft.length && rng.chance(0.25)) return plain(hugeLeft.shift());
        return plain(rng.range(LIMIT + 1, LIMIT + 512));
    };
    /* The record r with data sized so that the aggregate of prefix + r is exactly target bytes. */
    const sized = (prefix, r, target) => {
        let d = Math.max(0, target - L.aggregateSize(peer.common, [...prefix, { ...r, data: Buffer.alloc(0) }]) - 3);
        for (let i = 0; i < 16; i++) {
            const s = L.aggregateSize(peer.common, [...prefix, { ...r, data: Buffer.alloc(d) }]);
            if (s === target) return { ...r, data: pool(d) };
            d = Math.max(0, d + target - s);
        }
        return null;
    };
    const withMagic = (n2) => Buffer.concat([L.MAGIC, pool(n2)]);
    const kinds = ['pairExact', 'pairOver', 'singleExact', 'singleOver', 'fillExact', 'magicSingle',
                   'nestedAggregate', 'magicInside', 'magicShort'];
    const group = (kind) => {
        const g = [big()];
        if (kind === 'pairExact' || kind === 'pairOver') {
            const a = plain(rng.range(0, 200));
            const b = sized([a], plain(0), kind === 'pairExact' ? LIMIT : LIMIT + 1);
            if (!b) return null;
            a.expect = kind === 'pairExact' ? { kind, count: 2, len: LIMIT } : { kind, count: 1, raw: true };
            g.push(a, b);
        } else if (kind === 'singleExact' || kind === 'singleOver') {
            const a = sized([], plain(0), kind === 'singleExact' ? LIMIT : LIMIT + 1);
            if (!a) return null;
            a.expect = { kind, count: 1, raw: true };
            g.push(a);
        } else if (kind === 'fillExact') {
            const k = rng.range(20, 300);
            const tiny = [];
            for (let i = 0; i < k; i++) {
                const t = plain(rng.range(0, 64));
                if (rng.chance(0.7)) t.pk = pkPool[i % 8];
                tiny.push(t);
            }
            const last = sized(tiny, plain(0), LIMIT);
            if (!last) return null;
            tiny[0].expect = { kind, count: k + 1, len: LIMIT };
            g.push(...tiny, last);
        } else if (kind === 'magicSingle' || kind === 'nestedAggregate' || kind === 'magicShort') {
            const m = plain(0);
            if (kind === 'magicSingle') m.data = withMagic(rng.range(1, 300));
            else if (kind === 'magicShort') m.data = withMagic(rng.pick([0, 15, 16, 17]));
            else m.data = L.aggregateBytes(peer.common, [plain(10), plain(20), plain(30)]);
            m.expect = { kind, count: 1, wrapped: true };
            g.push(m, big());
        } else if (kind === 'magicInside') {
            const m = plain(0);
            m.data = rng.chance(0.5) ? withMagic(rng.range(0, 300))
                                     : L.aggregateBytes(peer.common, [plain(10), plain(20)]);
            g.push(plain(rng.range(0, 100)), m, plain(rng.range(0, 100)));
        }
        return g;
    };
    const recs = [];
    const nGroups = withGroups ? Math.min(72, Math.floor(n / 500)) : 0;
    const every = nGroups ? Math.floor(n / (nGroups + 1)) : Infinity;
    let gi = 0;
    while (recs.length < n) {
        if (gi < nGroups && recs.length >= (gi + 1) * every) {
            const g = group(kinds[gi % kinds.length]);
            gi++;
            if (g && recs.length + g.length <= n) {
                recs.push(...g);
                continue;
            }
        }
        recs.push(plain());
    }
    /* The huge sizes not used by groups still appear, as plain records. */
    for (const s of hugeLeft) recs[rng.below(recs.length)] = plain(s);
    return recs;
}

/* --------------------------------------------- A: we encode, the peer decodes */

function effectiveHashKey(r) {
    return r.ehk !== undefined && r.ehk !== null ? r.ehk : L.hashKeyOf(r.pk);
}

function peerDeaggregate(k, seq) {
    const ev = { partitionKey: k.pk, sequenceNumber: String(seq), data: k.data.toString('base64') };
    if (k.ehk !== null) ev.explicitPartitionKey = k.ehk;
    let error = null;
    let users = null;
    peer.agg.deaggregateSync(ev, true, (err, urs) => {
        if (err && !error) error = err;
        if (urs) users = urs;
    });
    return { error, users };
}

function where(i, r) {
    return `user record ${i} (partition key ${L.describe(r.pk)}, explicit hash key ${r.ehk === undefined ? 'none' : r.ehk}, ` +
           `data ${L.describe(r.data)}${r.expect ? ', edge case ' + r.expect.kind : ''})`;
}

function directionA(rng) {
    phase('A: generating user records');
    const recs = generateStream(rng, nRecords, true);
    const inPath = path.join(tmp, 'a-user.bin');
    const outPath = path.join(tmp, 'a-kinesis.bin');
    fs.writeFileSync(inPath, L.writeRecords(recs));
    const bytesIn = recs.reduce((s, r) => s + r.data.length, 0);
    phase(`A: agg_tool encode (${recs.length} records, ${bytesIn} data bytes)`);
    runTool(['encode', '--max-bytes', String(LIMIT), inPath, outPath]);
    const kin = L.readRecords(fs.readFileSync(outPath));
    phase(`A: aws-kinesis-agg deaggregateSync (computeChecksums=true) on ${kin.length} Kinesis records`);

    let ui = 0;
    let nAgg = 0, nRaw = 0, nWrapped = 0, nIdentical = 0, nQuirk = 0, nEdge = 0;
    for (let ki = 0; ki < kin.length; ki++) {
        const k = kin[ki];
        check(ui < recs.length, () => `Kinesis record ${ki}: more output than the ${recs.length} user records`);
        const { error, users } = peerDeaggregate(k, ki);
        const first = recs[ui];
        check(!error, () => `Kinesis record ${ki} (first ${where(ui, first)}): aws-kinesis-agg failed: ${error}`);
        const isAgg = k.data.length >= 4 && k.data.subarray(0, 4).equals(L.MAGIC);
        const n = users.length;
        check(n >= 1 && ui + n <= recs.length,
              () => `Kinesis record ${ki}: aws-kinesis-agg gave ${n} user records at user record ${ui} of ${recs.length}`);
        const group = recs.slice(ui, ui + n);
        if (isAgg) {
            nAgg++;
            check(k.pk === 'a', () => `Kinesis record ${ki}: aggregate's partition key ${L.describe(k.pk)}, expected "a"`);
            check(k.ehk === effectiveHashKey(first),
                  () => `Kinesis record ${ki}: aggregate's explicit hash key ${k.ehk}, expected the first record's ` +
                        `hash key ${effectiveHashKey(first)} (${where(ui, first)})`);
            if (n === 1) {
                /* The only reason for a one-record aggregate: data that starts with the magic. */
                check(first.data.length >= 4 && first.data.subarray(0, 4).equals(L.MAGIC),
                      () => `Kinesis record ${ki}: a one-record aggregate for ${where(ui, first)}, which does not start with the magic`);
                nWrapped++;
            } else {
                check(k.data.length <= LIMIT,
                      () => `Kinesis record ${ki}: aggregate of ${n} records is ${k.data.length} bytes, over the limit ${LIMIT}`);
            }
            const pb = peer.common.AggregatedRecord.decode(k.data.subarray(4, k.data.length - 16));
            const expectBytes = L.aggregateBytes(peer.common, group);
            if (expectBytes.equals(k.data)) nIdentical++;
            else {
                const off = L.firstDiff(expectBytes, k.data);
                fail(`Kinesis record ${ki} (first ${where(ui, first)}): our aggregate of ${n} records differs from ` +
                     `protobufjs' serialization of the same records at byte ${off}: ours ${k.data.length} bytes, ` +
                     `protobufjs ${expectBytes.length} bytes`);
            }
            for (let j = 0; j < n; j++) {
                const u = users[j], e = group[j], i = ui + j;
                check(u.partitionKey === e.pk,
                      () => `${where(i, e)}: aws-kinesis-agg read partition key ${L.describe(u.partitionKey)}`);
                const data = Buffer.from(u.data, 'base64');
                check(data.equals(e.data),
                      () => `${where(i, e)}: aws-kinesis-agg read data ${L.describe(data)}, first difference at byte ${L.firstDiff(data, e.data)}`);
                check(u.subSequenceNumber === j && u.sequenceNumber === String(ki),
                      () => `${where(i, e)}: sequence ${u.sequenceNumber}/${u.subSequenceNumber}, expected ${ki}/${j}`);
                const hasIdx = Object.prototype.hasOwnProperty.call(pb.records[j], 'explicit_hash_key_index');
                if (e.ehk !== undefined) {
                    check(hasIdx && u.explicitPartitionKey === e.ehk,
                          () => `${where(i, e)}: aws-kinesis-agg read explicit hash key ${u.explicitPartitionKey}`);
                } else {
                    check(!hasIdx, () => `${where(i, e)}: the aggregate gives it an explicit hash key index`);
                    /* PEER QUIRK 1: absent index reads as 0. */
                    const quirk = pb.explicit_hash_key_table.length ? pb.explicit_hash_key_table[0] : undefined;
                    check(u.explicitPartitionKey === quirk,
                          () => `${where(i, e)}: aws-kinesis-agg read explicit hash key ${u.explicitPartitionKey}, ` +
                                `its known behaviour is ${quirk}`);
                    if (quirk !== undefined) nQuirk++;
                }
            }
        } else {
            nRaw++;
            const u = users[0];
            check(n === 1, () => `Kinesis record ${ki}: plain record read as ${n} records`);
            check(!(first.data.length >= 4 && first.data.subarray(0, 4).equals(L.MAGIC)),
                  () => `Kinesis record ${ki}: ${where(ui, first)} starts with the magic but was sent raw`);
            check(k.pk === first.pk && u.partitionKey === first.pk,
                  () => `Kinesis record ${ki}: single ${where(ui, first)} sent with partition key ${L.describe(k.pk)}, read as ${L.describe(u.partitionKey)}`);
            check(k.ehk === (first.ehk === undefined ? null : first.ehk) &&
                  u.explicitPartitionKey === (first.ehk === undefined ? undefined : first.ehk),
                  () => `Kinesis record ${ki}: single ${where(ui, first)} sent with explicit hash key ${k.ehk}`);
            check(k.data.equals(first.data) && Buffer.from(u.data, 'base64').equals(first.data),
                  () => `Kinesis record ${ki}: single ${where(ui, first)} sent as ${L.describe(k.data)}`);
            /* PEER QUIRK 3: no subSequenceNumber on plain records. */
            check(u.subSequenceNumber === undefined, () => `Kinesis record ${ki}: plain record has subSequenceNumber ${u.subSequenceNumber}`);
        }
        /* Greedy: the next user record would not have fitted (size or, for wrapped singles, the magic rule). */
        if (ui + n < recs.length && !(n === 1 && isAgg)) {
            const next = recs[ui + n];
            const withNext = L.aggregateSize(peer.common, [...group, next]);
            check(withNext > LIMIT,
                  () => `Kinesis record ${ki}: ${where(ui + n, next)} would have fitted (${withNext} <= ${LIMIT} bytes) ` +
                        `into the container of ${n} records before it`);
        }
        if (first.expect) {
            const x = first.expect;
            nEdge++;
            check(n === x.count && (!x.len || k.data.length === x.len) && (!x.raw || !isAgg) && (!x.wrapped || isAgg),
                  () => `Kinesis record ${ki}: edge case ${x.kind} expected ${JSON.stringify(x)}, got ${n} records, ` +
                        `${k.data.length} bytes, ${isAgg ? 'aggregated' : 'raw'}`);
        }
        for (let j = 1; j < n; j++)
            check(!group[j].expect, () => `${where(ui + j, group[j])}: should start a new Kinesis record, is in record ${ki} at ${j}`);
        ui += n;
    }
    check(ui === recs.length, () => `only ${ui} of ${recs.length} user records came back`);
    console.log(`A: OK: ${recs.length} user records -> ${kin.length} Kinesis records (${nAgg} aggregates, ` +
                `${nWrapped} of them magic-prefixed singles; ${nRaw} raw singles); ${nEdge} edge cases as expected; ` +
                `${nIdentical} aggregates byte-identical to protobufjs; ${nQuirk} records without an explicit hash key ` +
                `read by aws-kinesis-agg with the table's first one (quirk 1)`);
    return recs;
}

/* Checks that a Kinesis record file is refused / handled as the contract says, outside the big stream. */
function contractChecks(rng) {
    phase('A: contract checks (empty partition key, raw magic-prefixed single)');
    /* An empty partition key is refused by both. */
    const p = path.join(tmp, 'c-empty.bin');
    fs.writeFileSync(p, L.writeRecords([{ pk: 'x', data: Buffer.from('1') }, { pk: '', data: Buffer.from('2') }]));
    const r = runTool(['encode', p, path.join(tmp, 'c-empty.out')], false);
    check(r.status === 1 && /record 1/.test(r.stderr),
          () => `agg_tool encode of an empty partition key: exit ${r.status}, stderr ${JSON.stringify(r.stderr)}`);
    let peerErr = null;
    try { new peer.agg.RecordAggregator().addUserRecord({ partitionKey: '', data: Buffer.from('2') }); } catch (e) { peerErr = e; }
    check(peerErr, 'aws-kinesis-agg accepted an empty partition key');

    /* PEER QUIRK 2: a raw single that starts with the magic fails in aws-kinesis-agg, not in our decoder. */
    const m = Buffer.concat([L.MAGIC, rng.bytes(40)]);
    const recs = [{ pk: 'big', data: rng.bytes(LIMIT + 10) }, { pk: 'm', data: m }, { pk: 'big2', data: rng.bytes(LIMIT + 10) }];
    fs.writeFileSync(p, L.writeRecords(recs));
    runTool(['encode', '--no-protect-magic', p, path.join(tmp, 'c-magic.out')]);
    const kin = L.readRecords(fs.readFileSync(path.join(tmp, 'c-magic.out')));
    check(kin.length === 3 && kin[1].data.equals(m), 'with --no-protect-magic the magic-prefixed single is sent raw');
    const { error } = peerDeaggregate(kin[1], 1);
    check(error, 'aws-kinesis-agg read a raw magic-prefixed record without an error (quirk 2 gone?)');
    runTool(['decode', path.join(tmp, 'c-magic.out'), path.join(tmp, 'c-magic.dec')]);
    const dec = L.readDecoded(fs.readFileSync(path.join(tmp, 'c-magic.dec')));
    check(dec.length === 3 && dec[1].data.equals(m) && !dec[1].aggregated && dec[1].pk === 'm',
          'our decoder passes a raw magic-prefixed record through unchanged');
    console.log(`contract: OK: empty partition keys refused by both; a raw magic-prefixed single fails in ` +
                `aws-kinesis-agg ("${error.message}") and passes through ours`);
}

/* --------------------------------------------- B: the peer encodes, we decode */

/*
 * PEER QUIRK 4: the keys aws-kinesis-agg really writes for a group of records
 * (its tables are Object.keys() of objects mapping key -> index).
 */
function peerWireKeys(keys) {
    const o = {};
    let n = 0;
    const idx = keys.map((k) => {
        if (k === undefined || k === null || k === '') return undefined;
        if (!Object.prototype.hasOwnProperty.call(o, k)) o[k] = n++;
        return o[k];
    });
    const table = Object.keys(o);
    return idx.map((i) => (i === undefined ? null : table[i]));
}

function peerOuter(enc) {
    return { pk: enc.partitionKey, ehk: enc.ExplicitHashKey === undefined ? null : enc.ExplicitHashKey, data: enc.data };
}

function aggregateAsync(records) {
    return new Promise((resolve, reject) => {
        const out = [];
        let err = null;
        peer.agg.aggregate(records, (enc, cb) => { out.push(enc); cb(); },
                           () => (err ? reject(err) : resolve(out)),
                           (e) => { err = err || e; });
    });
}

async function directionB(rng) {
    phase('B: generating user records and aggregating them with aws-kinesis-agg');
    const recs = generateStream(rng, nRecords, false);
    const kin = [];   /* Kinesis records, in order */
    const expect = []; /* per Kinesis record: the decoded records we must produce */
    const asUser = (r) => ({ partitionKey: r.pk, explicitHashKey: r.ehk, data: r.data });
    let nMangled = 0;
    const pushAgg = (enc, group) => {
        const k = peerOuter(enc);
        check(k.pk === group[0].pk, () => `aws-kinesis-agg's aggregate has partition key ${k.pk}, expected the first record's`);
        kin.push(k);
        const pks = peerWireKeys(group.map((r) => r.pk));
        const ehks = peerWireKeys(group.map((r) => r.ehk));
        expect.push(group.map((r, j) => {
            if (pks[j] !== r.pk || ehks[j] !== (r.ehk === undefined ? null : r.ehk)) nMangled++;
            return { pk: pks[j], ehk: ehks[j], data: r.data, subseq: j, aggregated: true, tags: [] };
        }));
    };
    const pushRaw = (k) => {
        kin.push(k);
        expect.push([{ pk: k.pk, ehk: k.ehk, data: k.data, subseq: 0, aggregated: false, tags: [] }]);
    };

    /*
     * First half: RecordAggregator at our limit (the peer's own limit is fixed
     * at 1 MiB), without integer-like keys, so that these records must come
     * back with exactly their own keys (quirk 4 never applies).
     */
    const half = recs.length >> 1;
    for (let i = 0; i < half; i++) {
        const r = recs[i];
        if (L.isArrayIndex(r.pk)) r.pk = 'k' + r.pk;
        if (L.isArrayIndex(r.ehk)) r.ehk = (BigInt(r.ehk) + (1n << 32n)).toString();
    }
    const ra = new peer.agg.RecordAggregator();
    let cur = [];
    const flushRa = () => { if (cur.length) { pushAgg(ra.build(), cur); cur = []; } };
    for (let i = 0; i < half; i++) {
        const r = recs[i];
        const size = ra.calculateUserRecordSize(asUser(r));
        if (20 + size > LIMIT) {
            flushRa();
            if (size > PEER_MAX) pushRaw({ pk: r.pk, ehk: r.ehk === undefined ? null : r.ehk, data: r.data });
            else { ra.addUserRecord(asUser(r)); cur = [r]; flushRa(); }
            continue;
        }
        if (20 + ra.totalBytes + size > LIMIT) flushRa();
        ra.addUserRecord(asUser(r));
        cur.push(r);
    }
    flushRa();
    check(nMangled === 0, `${nMangled} records without integer-like keys were predicted to get another record's key`);
    /* Second half: aggregate(), in runs between records too large for it (those go raw). */
    let run = [];
    const flushRun = async () => {
        if (!run.length) return;
        const encs = await aggregateAsync(run.map(asUser));
        let off = 0;
        for (const enc of encs) {
            const pb = peer.common.AggregatedRecord.decode(enc.data.subarray(4, enc.data.length - 16));
            pushAgg(enc, run.slice(off, off + pb.records.length));
            off += pb.records.length;
        }
        check(off === run.length, `aws-kinesis-agg's aggregate() returned ${off} of ${run.length} records`);
        run = [];
    };
    for (let i = half; i < recs.length; i++) {
        const r = recs[i];
        if (new peer.agg.RecordAggregator().calculateUserRecordSize(asUser(r)) > PEER_MAX) {
            await flushRun();
            pushRaw({ pk: r.pk, ehk: r.ehk === undefined ? null : r.ehk, data: r.data });
        } else run.push(r);
    }
    await flushRun();
    const nStream = kin.length;

    /* Hand-made Kinesis records. */
    const C = peer.common;
    const md5 = (b) => require('crypto').createHash('md5').update(b).digest();
    const wrap = (pb) => Buffer.concat([L.MAGIC, pb, md5(pb)]);
    const enc = (o) => C.AggregatedRecord.encode(o).finish();
    const handmade = (name, k, records) => {
        kin.push(k);
        expect.push(records || [{ pk: k.pk, ehk: k.ehk, data: k.data, subseq: 0, aggregated: false, tags: [] }]);
        expect[expect.length - 1].name = name;
    };
    const d = (s) => Buffer.from(s);
    handmade('tags', { pk: 'o', ehk: null, data: wrap(enc({ partition_key_table: ['p'], records: [
        { partition_key_index: 0, data: d('one'), tags: [{ key: 'k' }, { key: 'content-encoding', value: 'gzip' }] },
        { partition_key_index: 0, data: d('two'), tags: [{ key: '', value: '' }] }] })) },
             [{ pk: 'p', ehk: null, data: d('one'), subseq: 0, aggregated: true, tags: [{ key: 'k', value: null }, { key: 'content-encoding', value: 'gzip' }] },
              { pk: 'p', ehk: null, data: d('two'), subseq: 1, aggregated: true, tags: [{ key: '', value: '' }] }]);
    handmade('empty partition key in the table', { pk: 'o', ehk: null, data: wrap(enc({ partition_key_table: ['', 'q'],
        records: [{ partition_key_index: 0, data: d('x') }, { partition_key_index: 1, data: d('') }] })) },
             [{ pk: '', ehk: null, data: d('x'), subseq: 0, aggregated: true, tags: [] },
              { pk: 'q', ehk: null, data: d(''), subseq: 1, aggregated: true, tags: [] }]);
    handmade('duplicate table entries, explicit hash keys on some', { pk: 'o', ehk: '5', data: wrap(enc({
        partition_key_table: ['k', 'k'], explicit_hash_key_table: ['5', '0', '5'],
        records: [{ partition_key_index: 1, explicit_hash_key_index: 2, data: d('a') },
                  { partition_key_index: 0, data: d('b') },
                  { partition_key_index: 1, explicit_hash_key_index: 1, data: d('c') }] })) },
             [{ pk: 'k', ehk: '5', data: d('a'), subseq: 0, aggregated: true, tags: [] },
              { pk: 'k', ehk: null, data: d('b'), subseq: 1, aggregated: true, tags: [] },
              { pk: 'k', ehk: '0', data: d('c'), subseq: 2, aggregated: true, tags: [] }]);
    const good = wrap(enc({ partition_key_table: ['z'], records: [{ partition_key_index: 0, data: d('zz') },
                                                                  { partition_key_index: 0, data: d('yy') }] }));
    const badMd5 = Buffer.from(good);
    badMd5[badMd5.length - 1] ^= 1;
    handmade('bad MD5 (passes through)', { pk: 'bad', ehk: null, data: badMd5 });
    handmade('truncated (passes through)', { pk: 'trunc', ehk: '7', data: good.subarray(0, good.length - 1) });
    handmade('empty aggregate, 16 bytes after the magic (passes through)', { pk: 'e', ehk: null, data: wrap(Buffer.alloc(0)) });
    handmade('index out of the table (passes through)', { pk: 'oob', ehk: null, data: wrap(enc({ partition_key_table: ['z'],
        records: [{ partition_key_index: 1, data: d('zz') }] })) });
    handmade('plain record with an explicit hash key', { pk: 'plain', ehk: '123', data: d('{"a":1}') });
    handmade('plain empty record', { pk: 'plain', ehk: null, data: Buffer.alloc(0) });
    handmade('plain magic only', { pk: 'm', ehk: null, data: Buffer.from(L.MAGIC) });
    /* PEER QUIRK 4 on its own: integer-like keys move to the front of the tables. */
    const demo = new peer.agg.RecordAggregator();
    const maxKey = L.MAX_HASH_KEY.toString();
    for (const [pk, ehk] of [['user-b', undefined], ['42', maxKey], ['user-a', undefined], ['7', '12']])
        demo.addUserRecord({ partitionKey: pk, explicitHashKey: ehk, data: d(pk) });
    handmade('aws-kinesis-agg with integer-like keys', peerOuter(demo.build()),
             [['7', null, 'user-b'], ['42', '12', '42'], ['user-b', null, 'user-a'], ['user-a', maxKey, '7']].map(([pk, ehk, data], j) => ({ pk, ehk, data: d(data), subseq: j, aggregated: true, tags: [] })));

    const inPath = path.join(tmp, 'b-kinesis.bin');
    const outPath = path.join(tmp, 'b-user.bin');
    fs.writeFileSync(inPath, L.writeRecords(kin));
    phase(`B: agg_tool decode (${kin.length} Kinesis records: ${nStream} from the stream, ${kin.length - nStream} hand-made)`);
    runTool(['decode', inPath, outPath]);
    const got = L.readDecoded(fs.readFileSync(outPath));
    let gi = 0, nUser = 0;
    for (let ki = 0; ki < kin.length; ki++) {
        const exp = expect[ki];
        const label = exp.name ? `hand-made Kinesis record "${exp.name}"` : `Kinesis record ${ki}`;
        for (let j = 0; j < exp.length; j++, gi++) {
            const e = exp[j], g = got[gi];
            const at = `${label}, user record ${j} (partition key ${L.describe(e.pk)}, data ${L.describe(e.data)})`;
            check(g, () => `${at}: missing from agg_tool decode's output (${got.length} records)`);
            check(g.pk === e.pk, () => `${at}: we read partition key ${L.describe(g.pk)}`);
            check(g.ehk === e.ehk, () => `${at}: we read explicit hash key ${g.ehk}, expected ${e.ehk}`);
            check(g.data.equals(e.data), () => `${at}: we read data ${L.describe(g.data)}, first difference at byte ${L.firstDiff(g.data, e.data)}`);
            check(g.subseq === e.subseq && g.aggregated === e.aggregated,
                  () => `${at}: we read sub-sequence ${g.subseq} aggregated=${g.aggregated}, expected ${e.subseq} aggregated=${e.aggregated}`);
            check(JSON.stringify(g.tags) === JSON.stringify(e.tags),
                  () => `${at}: we read tags ${JSON.stringify(g.tags)}, expected ${JSON.stringify(e.tags)}`);
            if (!exp.name) nUser++;
        }
    }
    check(gi === got.length, () => `agg_tool decode gave ${got.length} user records, expected ${gi}`);
    check(nUser === recs.length, () => `the stream's ${recs.length} user records became ${nUser}`);
    console.log(`B: OK: ${recs.length} user records aggregated by aws-kinesis-agg into ${nStream} Kinesis records ` +
                `decoded exactly (the first half with their own keys; ${nMangled} of the second half written by aws-kinesis-agg with another record's key, quirk 4, ` +
                `and read by us as written); ${kin.length - nStream} hand-made records as expected`);
}

/* ------------------------------------- C: record-scope compression (gzip, zstd) */

/* JSON log lines like a service's structured logs, some binary, some empty, a few big ones. */
function generateCompressible(rng, n) {
    const levels = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'];
    const services = ['checkout', 'payments', 'inventory', 'search', 'auth'];
    const msgs = ['request completed', 'cache miss, loading from store', 'upstream responded slowly',
                  'validation failed for field "quantity"', 'retrying after throttling'];
    const hex = (k) => { let s = ''; for (let i = 0; i < k; i++) s += (rng.u32() >>> 0).toString(16).padStart(8, '0'); return s; };
    const line = (i) => JSON.stringify({
        ts: new Date(Date.UTC(2026, 10, 25, 22, 0, 0) + i * 7).toISOString(), level: rng.pick(levels),
        service: rng.pick(services), host: `ip-10-0-${rng.below(8)}-${rng.below(250)}.ec2.internal`,
        trace_id: hex(4), path: `/api/v1/orders/${rng.below(100000)}`, status: rng.chance(0.9) ? 200 : 500,
        latency_ms: rng.range(1, 900), msg: rng.pick(msgs) + (rng.chance(0.2) ? ' ' + 'x'.repeat(rng.range(0, 800)) : ''),
    });
    const pool = L.makePool(rng, 1 << 20);
    const recs = [];
    for (let i = 0; i < n; i++) {
        const pk = rng.chance(0.5) ? 'device-' + rng.below(50) : L.randomPartitionKey(rng);
        const ehk = rng.chance(0.1) ? L.randomHashKey(rng) : undefined;
        const k = rng.float();
        let data, kind;
        if (k < 0.85) { data = Buffer.from(line(i)); kind = 'json'; }
        else if (k < 0.95) { data = pool(rng.range(64, 2048)); kind = 'binary'; }
        else if (k < 0.97) { data = Buffer.alloc(rng.below(3)); kind = 'tiny'; }
        else if (k < 0.9985) { data = Buffer.from(line(i) + '\n' + line(i + 1)); kind = 'json'; }
        else { data = Buffer.from(Array.from({ length: rng.range(200, 600) }, (_, j) => line(i + j)).join('\n')); kind = 'big'; }
        recs.push({ pk, ehk, data, kind });
    }
    return recs;
}

function zstdDecompressAll(bufs) {
    const zlib = require('zlib');
    if (typeof zlib.zstdDecompressSync === 'function') return bufs.map((b) => zlib.zstdDecompressSync(b));
    /* Node without zstd: libzstd's own one-shot decoder through agg_tool unzstd. */
    const inPath = path.join(tmp, 'c-frames.bin'), outPath = path.join(tmp, 'c-unframed.bin');
    fs.writeFileSync(inPath, L.writeRecords(bufs.map((b) => ({ pk: 'z', data: b }))));
    runTool(['unzstd', inPath, outPath]);
    return L.readRecords(fs.readFileSync(outPath)).map((r) => r.data);
}

function compressionRecordScope(rng) {
    const zlib = require('zlib');
    const n = Math.max(1000, Math.floor(nRecords / 10));
    phase(`C: record-scope compression, ${n} records (JSON log lines, binary, tiny, big)`);
    const recs = generateCompressible(rng, n);
    const inPath = path.join(tmp, 'c-user.bin');
    fs.writeFileSync(inPath, L.writeRecords(recs));
    for (const [codec, all] of [['gzip', false], ['zstd', false], ['gzip', true]]) {
        phase(`C: ${codec}${all ? ' all' : ''}: encode`);
        const outPath = path.join(tmp, `c-${codec}.bin`);
        const args = ['encode', '--compress', codec, '--max-bytes', String(LIMIT)];
        if (all) args.push('--compress-all');
        runTool([...args, inPath, outPath]);
        const kin = L.readRecords(fs.readFileSync(outPath));
        /* aws-kinesis-agg reads every aggregate (MD5 verified) and gives the stored bytes of each record. */
        const stored = [];  /* {i, data (as aws-kinesis-agg gives it), tag} */
        let ui = 0;
        for (let ki = 0; ki < kin.length; ki++) {
            const k = kin[ki];
            check(k.data.subarray(0, 4).equals(L.MAGIC), () => `${codec}: Kinesis record ${ki} is not an aggregate (record scope always aggregates)`);
            const { error, users } = peerDeaggregate(k, ki);
            check(!error, () => `${codec}: Kinesis record ${ki}: aws-kinesis-agg failed: ${error}`);
            const pb = peer.common.AggregatedRecord.decode(k.data.subarray(4, k.data.length - 16));
            for (let j = 0; j < users.length; j++, ui++) {
                const e = recs[ui], u = users[j];
                check(e && u.partitionKey === e.pk, () => `${codec}: ${where(ui, e)}: aws-kinesis-agg read partition key ${L.describe(u.partitionKey)}`);
                const tags = pb.records[j].tags;
                check(tags.length === 0 || (tags.length === 1 && tags[0].key === 'content-encoding' && tags[0].value === codec),
                      () => `${codec}: ${where(ui, e)}: tags ${JSON.stringify(tags)}`);
                stored.push({ i: ui, data: Buffer.from(u.data, 'base64'), tagged: tags.length === 1 });
            }
        }
        check(ui === recs.length, () => `${codec}: aws-kinesis-agg read ${ui} of ${recs.length} records`);
        phase(`C: ${codec}${all ? ' all' : ''}: decompress with the reference`);
        /* Tagged data is a standard frame of the original bytes; untagged data is the original. */
        const tagged = stored.filter((x) => x.tagged);
        const plain = stored.filter((x) => !x.tagged);
        const originals = codec === 'gzip' ? tagged.map((x) => zlib.gunzipSync(x.data)) : zstdDecompressAll(tagged.map((x) => x.data));
        tagged.forEach((x, t) => check(originals[t].equals(recs[x.i].data),
            () => `${codec}: ${where(x.i, recs[x.i])}: its ${codec} frame decompresses to ${L.describe(originals[t])}`));
        plain.forEach((x) => check(x.data.equals(recs[x.i].data), () => `${codec}: ${where(x.i, recs[x.i])}: untagged data differs`));
        const byKind = (kind) => stored.filter((x) => recs[x.i].kind === kind);
        const jsonTagged = byKind('json').filter((x) => x.tagged).length, jsonAll = byKind('json').length;
        if (all) check(plain.length === 0, `${codec} --compress-all: ${plain.length} records left uncompressed`);
        else {
            check(jsonTagged > jsonAll * 0.9, `${codec}: only ${jsonTagged} of ${jsonAll} JSON log lines compressed`);
            check(byKind('binary').every((x) => !x.tagged) && byKind('tiny').every((x) => !x.tagged),
                  `${codec}: random or tiny records were compressed although that made them bigger`);
        }
        phase(`C: ${codec}${all ? ' all' : ''}: our decoder`);
        /* Our full consumer decoder gives the originals back. */
        const decPath = path.join(tmp, `c-${codec}.dec`);
        runTool(['decode', '--decompress', outPath, decPath]);
        const dec = L.readDecoded(fs.readFileSync(decPath));
        check(dec.length === recs.length, () => `${codec}: agg_tool decode --decompress gave ${dec.length} records`);
        const codecId = codec === 'gzip' ? 1 : 2;
        dec.forEach((g, i) => {
            const e = recs[i];
            check(g.pk === e.pk && g.ehk === (e.ehk === undefined ? null : e.ehk) && g.data.equals(e.data) && g.aggregated &&
                  !(g.flags & 4) && ((g.flags & 2) !== 0) === stored[i].tagged && (!stored[i].tagged || (g.flags >> 8) === codecId),
                  () => `${codec}: ${where(i, e)}: decoded back as ${L.describe(g.data)}, flags ${g.flags}`);
        });
        const bytesIn = recs.reduce((a, r) => a + r.data.length, 0);
        const bytesOut = kin.reduce((a, k) => a + k.data.length, 0);
        console.log(`C: OK: ${codec}${all ? ' (--compress-all)' : ''}: ${kin.length} aggregates read by aws-kinesis-agg; ` +
                    `${tagged.length} tagged records decompress to the originals (${codec === 'gzip' ? 'Node zlib' : 'libzstd ZSTD_decompress'}), ` +
                    `${plain.length} untagged as they were; ${jsonTagged}/${jsonAll} JSON lines compressed; ` +
                    `${bytesIn} -> ${bytesOut} bytes`);
    }

    /* A Node producer following our documented format (zlib gzip + tag) is read by us. */
    const C = peer.common;
    const lines = recs.filter((r) => r.kind === 'json').slice(0, 200);
    const tagsFor = (j) => (j % 3 === 0 ? [] : [{ key: 'content-encoding', value: 'gzip' }]);
    const pbRecs = lines.map((r, j) => ({ partition_key_index: j % 7, data: tagsFor(j).length ? zlib.gzipSync(r.data) : r.data, tags: tagsFor(j) }));
    pbRecs.push({ partition_key_index: 0, data: Buffer.from('not gzip'), tags: [{ key: 'content-encoding', value: 'gzip' }] });
    pbRecs.push({ partition_key_index: 1, data: Buffer.from('brotli?'), tags: [{ key: 'content-encoding', value: 'br' }] });
    const pb = C.AggregatedRecord.encode({ partition_key_table: Array.from({ length: 7 }, (_, j) => 'node-' + j), records: pbRecs }).finish();
    const agg = Buffer.concat([L.MAGIC, pb, require('crypto').createHash('md5').update(pb).digest()]);
    const kPath = path.join(tmp, 'c-node.bin'), dPath = path.join(tmp, 'c-node.dec');
    fs.writeFileSync(kPath, L.writeRecords([{ pk: 'a', data: agg }]));
    runTool(['decode', '--decompress', kPath, dPath]);
    const dec = L.readDecoded(fs.readFileSync(dPath));
    check(dec.length === pbRecs.length, `Node-made gzip aggregate: ${dec.length} of ${pbRecs.length} records`);
    lines.forEach((r, j) => check(dec[j].data.equals(r.data) && dec[j].pk === 'node-' + (j % 7) && !(dec[j].flags & 4) &&
                                  ((dec[j].flags & 2) !== 0) === (j % 3 !== 0),
                                  () => `Node-made gzip aggregate, record ${j}: read ${L.describe(dec[j].data)} flags ${dec[j].flags}`));
    const bad = dec[lines.length], br = dec[lines.length + 1];
    check((bad.flags & 4) && bad.data.equals(Buffer.from('not gzip')), `a gzip-tagged record that is not gzip: flags ${bad.flags}, data ${L.describe(bad.data)}`);
    check((br.flags & 4) && br.data.equals(Buffer.from('brotli?')), `an unknown content-encoding: flags ${br.flags}, data ${L.describe(br.data)}`);
    console.log(`C: OK: a Node-made aggregate of ${lines.length} records (gzip-tagged by zlib on two thirds) decoded by us; ` +
                'a corrupt gzip record and an unknown encoding delivered as received with an error');
}

(async () => {
    try {
        const rng = L.makeRng(seed);
        directionA(rng);
        contractChecks(rng);
        await directionB(rng);
        compressionRecordScope(rng);
    } catch (e) {
        fail('unexpected exception: ' + (e && e.stack ? e.stack : e));
    }
    cleanup();
    phase('agg_kpl_node: all checks passed');
})();
