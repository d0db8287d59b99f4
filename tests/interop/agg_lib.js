'use strict';
/*
 * Shared helpers of the aggregation interop test and benchmark: a seeded
 * random generator, realistic user records, the agg_tool file format, the
 * exact aggregate size computed by protobufjs (aws-kinesis-agg's own schema),
 * and the MD5 hash key of a partition key.
 *
 * agg_tool file format (see tests/interop/agg_tool.c): integers are u32 BE,
 *   str := len | bytes;  ostr := len | bytes, or 0xFFFFFFFF for absent;
 *   rec := str pk | ostr ehk | str data
 *   decoded := rec | u32 sub_sequence | u32 flags | u32 n_tags | tags (str key | ostr value)
 */
const crypto = require('crypto');
const path = require('path');

const ABSENT = 0xffffffff;
const MAGIC = Buffer.from('f3899ac2', 'hex');

/* aws-kinesis-agg from the pinned tests/servers/node_modules (tools/setup.sh installs it). */
function requirePeer() {
    const base = path.join(__dirname, '..', 'servers', 'node_modules');
    try {
        return {
            agg: require(path.join(base, 'aws-kinesis-agg')),
            common: require(path.join(base, 'aws-kinesis-agg', 'lib', 'common')),
            version: require(path.join(base, 'aws-kinesis-agg', 'package.json')).version,
        };
    } catch (e) {
        console.error('cannot load aws-kinesis-agg from ' + base + ': ' + e.message +
                      '\nrun tools/setup.sh (npm ci in tests/servers) first');
        process.exit(1);
    }
}

/* sfc32 seeded through splitmix32: fast, 32-bit, deterministic across Node versions. */
function makeRng(seed) {
    let s = (seed >>> 0) || 1;
    const mix = () => {
        s = (s + 0x9e3779b9) >>> 0;
        let z = s;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        return (z ^ (z >>> 16)) >>> 0;
    };
    let a = mix(), b = mix(), c = mix(), d = mix();
    const u32 = () => {
        const t = (((a + b) >>> 0) + d) >>> 0;
        d = (d + 1) >>> 0;
        a = b ^ (b >>> 9);
        b = (c + (c << 3)) >>> 0;
        c = ((c << 21) | (c >>> 11)) >>> 0;
        c = (c + t) >>> 0;
        return t;
    };
    for (let i = 0; i < 12; i++) u32();
    const r = {
        u32,
        float: () => u32() / 4294967296,
        below: (n) => Math.floor((u32() / 4294967296) * n),
        range: (lo, hi) => lo + Math.floor((u32() / 4294967296) * (hi - lo + 1)),
        chance: (p) => u32() / 4294967296 < p,
        pick: (arr) => arr[Math.floor((u32() / 4294967296) * arr.length)],
        bytes: (n) => {
            const out = Buffer.allocUnsafe(n);
            let i = 0;
            for (; i + 4 <= n; i += 4) out.writeUInt32LE(u32(), i);
            for (; i < n; i++) out[i] = u32() & 0xff;
            return out;
        },
        big128: () => (BigInt(u32()) << 96n) | (BigInt(u32()) << 64n) | (BigInt(u32()) << 32n) | BigInt(u32()),
    };
    return r;
}

const MAX_HASH_KEY = (1n << 128n) - 1n;
const UNICODE_CHARS = ['é', 'ß', 'Ж', '日', '本', '€', '😀', 'ñ', '中', '\u00a0'];

/* A partition key of 1..256 code points (Kinesis' limit); some non-ASCII, some long. */
function randomPartitionKey(rng) {
    /* Decimal keys (user or device ids) are common in practice. */
    if (rng.chance(0.05)) return String(rng.below(1000000));
    const kind = rng.float();
    let len;
    if (kind < 0.01) len = 256;
    else if (kind < 0.05) len = rng.range(41, 256);
    else len = rng.range(1, 40);
    const unicode = rng.chance(0.1);
    if (unicode) len = Math.min(len, 60);
    if (!unicode) {
        const codes = new Array(len);
        for (let i = 0; i < len; i++) codes[i] = 0x21 + (rng.u32() % 94);
        return String.fromCharCode.apply(null, codes);
    }
    let s = '';
    for (let i = 0; i < len; i++) {
        if (rng.chance(0.4)) s += rng.pick(UNICODE_CHARS);
        else s += String.fromCharCode(rng.range(0x21, 0x7e));
    }
    return s;
}

/* True for the strings JavaScript orders first in Object.keys(): canonical decimals 0..2^32-2. */
function isArrayIndex(s) {
    return typeof s === 'string' && /^(0|[1-9][0-9]{0,9})$/.test(s) && Number(s) < 4294967295;
}

function randomHashKey(rng) {
    const k = rng.float();
    if (k < 0.02) return '0';
    if (k < 0.04) return MAX_HASH_KEY.toString();
    if (k < 0.1) return String(rng.u32());
    return (rng.big128() & MAX_HASH_KEY).toString();
}

/* MD5 of the partition key's UTF-8 bytes as a big-endian 128-bit decimal. */
function hashKeyOf(pk) {
    return BigInt('0x' + crypto.createHash('md5').update(Buffer.from(pk, 'utf8')).digest('hex')).toString();
}

/*
 * A source of record payloads: slices of a random pool (fresh bytes for
 * every record would dominate the generation time).
 */
function makePool(rng, size) {
    const pool = rng.bytes(size);
    return (n) => {
        if (n === 0) return Buffer.alloc(0);
        const off = rng.below(pool.length - n + 1);
        return pool.subarray(off, off + n);
    };
}

/* Payload sizes skewed small: 97% 0..1 KiB (2% empty), 2.7% up to 4 KiB, 0.3% up to 64 KiB. */
function randomDataSize(rng) {
    const k = rng.float();
    if (k < 0.02) return 0;
    if (k < 0.95) {
        const u = rng.float();
        return 1 + Math.floor(1023 * u * u);
    }
    if (k < 0.997) return rng.range(1025, 4096);
    return rng.range(4097, 65536);
}

/* ---------------------------------------------------------------- file format */

function strLen(x) { return 4 + x.length; }

function toBuf(s) { return typeof s === 'string' ? Buffer.from(s, 'utf8') : s; }

/* records: [{pk: string|Buffer, ehk: string|undefined, data: Buffer}] */
function writeRecords(records) {
    const parts = new Array(records.length);
    let total = 0;
    for (let i = 0; i < records.length; i++) {
        const r = records[i];
        const pk = toBuf(r.pk);
        const ehk = r.ehk === undefined || r.ehk === null ? null : toBuf(r.ehk);
        parts[i] = [pk, ehk, r.data];
        total += strLen(pk) + (ehk ? strLen(ehk) : 4) + strLen(r.data);
    }
    const out = Buffer.allocUnsafe(total);
    let off = 0;
    const put = (b) => {
        out.writeUInt32BE(b.length, off);
        off += 4;
        b.copy(out, off);
        off += b.length;
    };
    for (const [pk, ehk, data] of parts) {
        put(pk);
        if (ehk) put(ehk);
        else { out.writeUInt32BE(ABSENT, off); off += 4; }
        put(data);
    }
    return out;
}

function makeReader(buf) {
    let off = 0;
    const need = (n) => {
        if (buf.length - off < n) throw new Error('truncated agg_tool output at byte ' + off);
    };
    const u32 = () => { need(4); const v = buf.readUInt32BE(off); off += 4; return v; };
    const bytes = () => { const n = u32(); need(n); const b = buf.subarray(off, off + n); off += n; return b; };
    const obytes = () => {
        const n = u32();
        if (n === ABSENT) return null;
        need(n);
        const b = buf.subarray(off, off + n);
        off += n;
        return b;
    };
    return { u32, bytes, obytes, done: () => off >= buf.length };
}

/* -> [{pk: string, ehk: string|null, data: Buffer}] */
function readRecords(buf) {
    const rd = makeReader(buf);
    const out = [];
    while (!rd.done()) {
        const pk = rd.bytes().toString('utf8');
        const ehk = rd.obytes();
        const data = rd.bytes();
        out.push({ pk, ehk: ehk === null ? null : ehk.toString('utf8'), data });
    }
    return out;
}

/* -> [{pk, ehk, data, subseq, aggregated, tags: [{key, value|null}]}] */
function readDecoded(buf) {
    const rd = makeReader(buf);
    const out = [];
    while (!rd.done()) {
        const pk = rd.bytes().toString('utf8');
        const ehk = rd.obytes();
        const data = rd.bytes();
        const subseq = rd.u32();
        const flags = rd.u32();
        const n = rd.u32();
        const tags = [];
        for (let i = 0; i < n; i++) {
            const key = rd.bytes().toString('utf8');
            const v = rd.obytes();
            tags.push({ key, value: v === null ? null : v.toString('utf8') });
        }
        out.push({ pk, ehk: ehk === null ? null : ehk.toString('utf8'), data, subseq,
                   aggregated: (flags & 1) !== 0, flags, tags });
    }
    return out;
}

/* ------------------------------------------------------------- exact sizes */

/*
 * The exact size of the aggregate of records (magic + protobuf + MD5), with
 * key tables de-duplicated in order of first appearance, as protobufjs (the
 * peer's encoder) serializes it.
 */
function aggregateSize(common, records) {
    return 20 + aggregateProtobuf(common, records).length;
}

function aggregateProtobuf(common, records) {
    const pkIdx = new Map();
    const ehkIdx = new Map();
    const recs = records.map((r) => {
        const pk = typeof r.pk === 'string' ? r.pk : r.pk.toString('utf8');
        if (!pkIdx.has(pk)) pkIdx.set(pk, pkIdx.size);
        const o = { partition_key_index: pkIdx.get(pk), data: r.data };
        if (r.ehk !== undefined && r.ehk !== null) {
            if (!ehkIdx.has(r.ehk)) ehkIdx.set(r.ehk, ehkIdx.size);
            o.explicit_hash_key_index = ehkIdx.get(r.ehk);
        }
        if (r.tags && r.tags.length) o.tags = r.tags.map((t) => (t.value === null || t.value === undefined ? { key: t.key } : t));
        return o;
    });
    return common.AggregatedRecord.encode({
        partition_key_table: [...pkIdx.keys()],
        explicit_hash_key_table: [...ehkIdx.keys()],
        records: recs,
    }).finish();
}

/* The complete aggregate bytes (magic + protobuf + MD5) of records, by protobufjs. */
function aggregateBytes(common, records) {
    const pb = aggregateProtobuf(common, records);
    return Buffer.concat([MAGIC, pb, crypto.createHash('md5').update(pb).digest()]);
}

/* Short human-readable description of a byte string for mismatch reports. */
function describe(b) {
    if (b === null || b === undefined) return String(b);
    if (typeof b === 'string') return JSON.stringify(b.length > 80 ? b.slice(0, 80) + '...' : b) + ` (${b.length} chars)`;
    const head = b.subarray(0, 24).toString('hex');
    return `${b.length} bytes [${head}${b.length > 24 ? '...' : ''}]`;
}

function firstDiff(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
    return a.length === b.length ? -1 : n;
}

module.exports = {
    ABSENT, MAGIC, MAX_HASH_KEY, requirePeer, makeRng, randomPartitionKey, randomHashKey, hashKeyOf, isArrayIndex,
    makePool, randomDataSize, writeRecords, readRecords, readDecoded, aggregateSize, aggregateProtobuf,
    aggregateBytes, describe, firstDiff,
};
