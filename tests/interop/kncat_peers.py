#!/usr/bin/env python3
"""kncat against other Kinesis implementations, both directions, on kinesalite.

Usage: kncat_peers.py PATH/TO/kncat CASE
  CASE reads   records written by boto3 (put_record, put_records, explicit hash keys) and by the AWS
               CLI (put-record with a fileb:// binary blob, put-records with JSON) are read back
               exactly by `kncat -C -e`: with -J (keys, bytes, payload_encoding utf8 / base64, stream,
               shard, seq as a string) and with -f '%k\\t%x\\t%S\\n' (hex of the bytes); records of one
               partition key come in the order they were put. Among them: binary data, a record of
               256 KiB, non-ASCII and 256-character keys, and plain records whose data starts with the
               KPL magic or our compression magic but is not an aggregate or frame (they must come
               back unchanged, as the KCL does).
  CASE writes  records written by `kncat -P` (aggregation on, the default) from `-K` lines, `-k`
               lines and `-J` envelopes carrying binary data are read back exactly by the AWS SDK for
               JavaScript v3 with the npm aws-kinesis-agg deaggregator (tests/interop/kinesis_read_js.js,
               MD5 checked), which must have seen real aggregates; with aggregation off
               (`-X producer.aggregation.enabled=false`) boto3's get_records sees every record as its own
               Kinesis record with the same key and bytes.
Env: KN_TEST_KINESALITE_URL (tests/servers/with-servers.sh sets it); KN_INTEROP_SEED (default
     20261126, printed). Each run creates its own uniquely named streams and deletes them.
Needs python3 with boto3, the aws command (v1 or v2) and node with tests/bench/peers/node_modules
(tools/setup.sh installs what is missing).
"""
import base64
import collections
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KPL_MAGIC = b"\xf3\x89\x9a\xc2"
KNZ_MAGIC = b"\xf4KNZ"
TIMEOUT_S = 180

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def fatal(msg):
    print("FATAL: " + msg, flush=True)
    sys.exit(1)


class Ctx:
    def __init__(self, kncat, url, rnd):
        import boto3
        self.kncat_bin = kncat
        self.url = url
        self.rnd = rnd
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDINTEROP", AWS_SECRET_ACCESS_KEY="interop-secret",
                        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                        NODE_NO_WARNINGS="1")
        for v in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"):
            self.env.pop(v, None)
        self.k = boto3.client("kinesis", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="AKIDINTEROP", aws_secret_access_key="interop-secret")
        self.streams = []

    def stream(self, tag, shards):
        name = "kn-interop-%s-%d-%06d" % (tag, os.getpid(), self.rnd.randrange(10**6))
        self.k.create_stream(StreamName=name, ShardCount=shards)
        self.streams.append(name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = self.k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            if s == "ACTIVE":
                return name
            time.sleep(0.2)
        fatal("stream %s did not become ACTIVE within 60 s" % name)

    def cleanup(self):
        for s in self.streams:
            try:
                self.k.delete_stream(StreamName=s)
            except Exception as e:  # a leftover stream on a throwaway server is harmless
                print("note: could not delete %s: %s" % (s, e))

    def kncat(self, args, stdin=b""):
        cmd = [self.kncat_bin, "-b", self.url, "-r", "us-east-1"] + args
        print("+ kncat " + shlex.join(args), flush=True)
        try:
            p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                               timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            fatal("kncat %s did not finish within %d s" % (" ".join(args), TIMEOUT_S))
        err = p.stderr.decode(errors="replace").strip()
        if err:
            print("  stderr: " + err[-2000:].replace("\n", "\n  stderr: "), flush=True)
        return p.returncode, p.stdout

    def aws(self, args):
        cmd = ["aws", "--endpoint-url", self.url, "--region", "us-east-1", "--output", "json"] + args
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env, timeout=TIMEOUT_S)
        if p.returncode != 0:
            fatal("aws %s failed (%d): %s" % (" ".join(args[:3]), p.returncode, p.stderr.decode(errors="replace")))
        return json.loads(p.stdout or b"{}")


def aws_cli_major(env):
    try:
        out = subprocess.run(["aws", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                             timeout=60).stdout.decode()
    except FileNotFoundError:
        fatal("the aws command is missing (tools/setup.sh installs the Debian package awscli)")
    print("aws --version: " + out.strip())
    if not out.startswith("aws-cli/"):
        fatal("cannot tell the AWS CLI version from: " + out)
    return int(out.split("/")[1].split(".")[0])


def rand_key(rnd):
    kind = rnd.randrange(6)
    if kind == 0:
        return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.") for _ in range(256))
    if kind == 1:
        return "ключ-%d-€-日本" % rnd.randrange(50)
    if kind == 2:
        return "user-%d" % rnd.randrange(20)  # repeated keys: order per key is checked
    return "k%08x" % rnd.getrandbits(32)


def rand_data(rnd, binary):
    n = rnd.choice([1, 2, 10, 100, 100, 100, 700, 1500, 5000])
    if binary:
        d = bytes(rnd.getrandbits(8) for _ in range(n))
        # A plain record that happens to start with the KPL magic is passed on wrapped by our producer;
        # keep random data off that path so that "not aggregated" stays true with aggregation off.
        return b"\x00" + d[1:] if d[:1] in (b"\xf3", b"\xf4") else d
    return "".join(rnd.choice("abc xyz 0123 é ü 中 \"{}\\/") for _ in range(n)).encode()


def by_key_order(records):
    d = collections.defaultdict(list)
    for k, v in records:
        d[k].append(v)
    return d


def compare(got, want, what, ordered):
    """got, want: lists of (key str, data bytes)."""
    gc, wc = collections.Counter(got), collections.Counter(want)
    missing, extra = wc - gc, gc - wc
    ok = check(not missing and not extra and len(got) == len(want),
               "%s: %d records read, %d written; %d missing, %d unexpected%s" %
               (what, len(got), len(want), sum(missing.values()), sum(extra.values()),
                "" if not (missing or extra) else "; first missing %r, first unexpected %r" %
                (next(iter(missing), None), next(iter(extra), None))))
    if ok:
        print("ok: %s: %d records, keys and bytes exact" % (what, len(got)), flush=True)
    if ok and ordered:
        g, w = by_key_order(got), by_key_order(want)
        bad = [k for k in w if g[k] != w[k]]
        if check(not bad, "%s: %d keys whose records came out of put order, e.g. %r" % (what, len(bad),
                                                                                    bad[:1])):
            print("ok: %s: per-key order kept over %d keys" % (what, len(w)), flush=True)


# --------------------------------------------------------------------------------------------- reads
def case_reads(c):
    rnd = c.rnd
    major = aws_cli_major(c.env)
    name = c.stream("reads", 3)
    shard_ids = {s["ShardId"] for s in c.k.list_shards(StreamName=name)["Shards"]}
    want = []

    # boto3 put_records: mixed text and binary, in batches of up to 100.
    batch = []
    for i in range(400):
        key, data = rand_key(rnd), rand_data(rnd, binary=(i % 2 == 0))
        batch.append({"PartitionKey": key, "Data": data})
        want.append((key, data))
        if len(batch) == 100:
            r = c.k.put_records(StreamName=name, Records=batch)
            if r["FailedRecordCount"]:
                fatal("boto3 put_records failed: %r" % [x for x in r["Records"] if "ErrorCode" in x][:1])
            batch = []
    # boto3 put_record: explicit hash keys, edge-case data.
    specials = [
        ("explicit-0", b"to the first shard", "0"),
        ("explicit-max", b"to the last shard", str(2**128 - 1)),
        ("kpl-magic-plain", KPL_MAGIC + bytes(rnd.getrandbits(8) for _ in range(60)), None),
        ("kpl-magic-short", KPL_MAGIC + b"\x00" * 5, None),
        ("knz-magic-plain", KNZ_MAGIC + bytes(rnd.getrandbits(8) for _ in range(40)), None),
        ("big", bytes(rnd.getrandbits(8) for _ in range(256 * 1024)), None),
        ("newlines", b"line one\nline two\r\n\x00tail\n", None),
        ("utf8", "grüße, 世界 — \u2028 \U0001F600".encode(), None),
    ]
    for key, data, ehk in specials:
        kw = {"ExplicitHashKey": ehk} if ehk else {}
        c.k.put_record(StreamName=name, PartitionKey=key, Data=data, **kw)
        want.append((key, data))

    # AWS CLI: put-record with a raw binary blob from a file, put-records with JSON (text data).
    # CLI v2 reads blobs in JSON and on the command line as base64 unless told otherwise; v1 takes
    # them raw. fileb:// is raw in both.
    fmt = ["--cli-binary-format", "raw-in-base64-out"] if major >= 2 else []
    with tempfile.TemporaryDirectory() as td:
        for i in range(3):
            data = bytes(rnd.getrandbits(8) for _ in range(300 + i)) + b"\x00\xff\n"
            path = os.path.join(td, "blob%d" % i)
            with open(path, "wb") as f:
                f.write(data)
            key = "cli-blob-%d" % (i % 2)
            c.aws(["kinesis", "put-record", "--stream-name", name, "--partition-key", key,
                   "--data", "fileb://" + path] + fmt)
            want.append((key, data))
    recs = [{"PartitionKey": "cli-json-%d" % (i % 3), "Data": "cli text %d: é ✓ {\"j\": %d}" % (i, i)}
            for i in range(12)]
    r = c.aws(["kinesis", "put-records", "--stream-name", name, "--records", json.dumps(recs)] + fmt)
    if r.get("FailedRecordCount"):
        fatal("aws kinesis put-records failed: %r" % r)
    want += [(x["PartitionKey"], x["Data"].encode()) for x in recs]
    print("written: %d records by boto3 and the AWS CLI (v%d) to %s (3 shards)" % (len(want), major, name),
          flush=True)

    # kncat -C -e -J
    rc, out = c.kncat(["-C", "-t", name, "-o", "beginning", "-e", "-J"])
    check(rc == 0, "kncat -C -e -J exited %d" % rc)
    got, encodings, bad_lines = [], {}, 0
    # split on \n only: str.splitlines() would also split inside a payload holding U+2028 or \x1c
    for ln in out.decode().split("\n")[:-1]:
        try:
            o = json.loads(ln)
        except ValueError:
            bad_lines += 1
            continue
        enc = o.get("payload_encoding")
        data = base64.b64decode(o["payload"]) if enc == "base64" else o["payload"].encode()
        got.append((o["key"], data))
        encodings[(o["key"], data)] = enc
        if not (o.get("stream") == name and o.get("shard") in shard_ids and isinstance(o.get("seq"), str)
                and o["seq"].isdigit() and enc in ("utf8", "base64")):
            bad_lines += 1
    check(bad_lines == 0, "kncat -J: %d lines are not envelopes with stream, shard, seq (a string of "
                          "digits) and payload_encoding utf8|base64" % bad_lines)
    compare(got, want, "boto3/CLI -> kncat -C -J", ordered=True)
    utf8_key = ("utf8", specials[7][1])
    bin_key = ("kpl-magic-plain", specials[2][1])
    check(encodings.get(utf8_key) == "utf8", "kncat -J: valid UTF-8 data should be payload_encoding utf8, got %r"
          % encodings.get(utf8_key))
    check(encodings.get(bin_key) == "base64", "kncat -J: binary data should be payload_encoding base64, got %r"
          % encodings.get(bin_key))

    # kncat -C -e -f: hex of the bytes and their length (keys here have no tab or newline).
    rc, out = c.kncat(["-C", "-t", name, "-o", "beginning", "-e", "-f", "%k\\t%x\\t%S\\n"])
    check(rc == 0, "kncat -C -e -f exited %d" % rc)
    got2, bad = [], 0
    for ln in out.decode().split("\n")[:-1]:
        parts = ln.split("\t")
        if len(parts) != 3:
            bad += 1
            continue
        data = bytes.fromhex(parts[1])
        bad += int(str(len(data)) != parts[2])
        got2.append((parts[0], data))
    check(bad == 0, "kncat -f '%%k\\t%%x\\t%%S\\n': %d malformed lines or lengths that differ from the data" % bad)
    compare(got2, want, "boto3/CLI -> kncat -C -f %x", ordered=True)


# -------------------------------------------------------------------------------------------- writes
def js_read(c, name):
    cmd = ["node", os.path.join(HERE, "kinesis_read_js.js"), c.url, name]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=c.env, timeout=TIMEOUT_S)
    lines = p.stdout.decode().split("\n")[:-1]
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith('{"summary"') else None
    if p.returncode != 0 or not summary:
        check(False, "kinesis_read_js.js exited %d: %s %s" % (p.returncode, summary,
                                                             p.stderr.decode(errors="replace")[-1500:]))
        return [], summary or {}, 0
    recs = [json.loads(x) for x in lines[:-1]]
    aggregated = sum(1 for r in recs if r["aggregated"])
    return [(r["key"], base64.b64decode(r["data_b64"])) for r in recs], summary, aggregated


def case_writes(c):
    rnd = c.rnd
    name = c.stream("writes", 3)
    want = []

    # -K: key<TAB>data lines (text; no tab or newline inside).
    lines = []
    for i in range(1500):
        key = rand_key(rnd) if i % 3 else "user-%d" % (i % 7)
        data = "line %d %s" % (i, rand_data(rnd, binary=False).decode().replace("\n", " ").replace("\t", " "))
        lines.append("%s\t%s\n" % (key, data))
        want.append((key, data.encode()))
    rc, out = c.kncat(["-P", "-t", name, "-K", "\t"], "".join(lines).encode())
    check(rc == 0, "kncat -P -K exited %d" % rc)

    # -k: a fixed key for every line.
    body = "".join("fixed %d é\n" % i for i in range(300))
    rc, out = c.kncat(["-P", "-t", name, "-k", "fixed-key"], body.encode())
    check(rc == 0, "kncat -P -k exited %d" % rc)
    want += [("fixed-key", ("fixed %d é" % i).encode()) for i in range(300)]

    # -J: envelopes with binary payloads (what -C -J prints).
    env_lines = []
    for i in range(500):
        key, data = rand_key(rnd), rand_data(rnd, binary=True)
        env_lines.append(json.dumps({"key": key, "payload": base64.b64encode(data).decode(),
                                     "payload_encoding": "base64"}) + "\n")
        want.append((key, data))
    rc, out = c.kncat(["-P", "-t", name, "-J"], "".join(env_lines).encode())
    check(rc == 0, "kncat -P -J exited %d" % rc)
    print("written: %d records by kncat -P (aggregated) to %s (3 shards)" % (len(want), name), flush=True)

    got, summary, aggregated = js_read(c, name)
    compare(got, want, "kncat -P -> JS SDK v3 + aws-kinesis-agg", ordered=False)
    check(summary.get("kinesis_records", 0) < len(want) and aggregated > len(want) // 2,
          "kncat -P should aggregate: %s Kinesis records for %d user records, %d of them read from aggregates"
          % (summary.get("kinesis_records"), len(want), aggregated))
    print("JS reader: %s Kinesis records carried %d user records (%d from aggregates)" %
          (summary.get("kinesis_records"), len(got), aggregated), flush=True)

    # Aggregation off: boto3 get_records sees each record as it was put.
    name2 = c.stream("writes-noagg", 2)
    want2, env_lines = [], []
    for i in range(400):
        key, data = rand_key(rnd), rand_data(rnd, binary=(i % 2 == 0))
        env_lines.append(json.dumps({"key": key, "payload": base64.b64encode(data).decode(),
                                     "payload_encoding": "base64"}) + "\n")
        want2.append((key, data))
    rc, out = c.kncat(["-P", "-t", name2, "-J", "-X", "producer.aggregation.enabled=false"],
                      "".join(env_lines).encode())
    check(rc == 0, "kncat -P -J -X producer.aggregation.enabled=false exited %d" % rc)
    got2 = []
    for s in c.k.list_shards(StreamName=name2)["Shards"]:
        it = c.k.get_shard_iterator(StreamName=name2, ShardId=s["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = c.k.get_records(ShardIterator=it)
            got2 += [(x["PartitionKey"], x["Data"]) for x in r["Records"]]
            it = r.get("NextShardIterator")
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
    magic = sum(1 for _, d in got2 if d[:4] in (KPL_MAGIC, KNZ_MAGIC))
    check(magic == 0, "aggregation off: %d Kinesis records still carry the KPL or compression magic" % magic)
    compare(got2, want2, "kncat -P -X producer.aggregation.enabled=false -> boto3 get_records", ordered=False)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("reads", "writes"):
        fatal("usage: kncat_peers.py PATH/TO/kncat reads|writes")
    url = os.environ.get("KN_TEST_KINESALITE_URL")
    if not url:
        fatal("KN_TEST_KINESALITE_URL is not set: run under tests/servers/with-servers.sh")
    try:
        import boto3  # noqa: F401
    except ImportError:
        fatal("python3 has no boto3 (tools/setup.sh installs the Debian package python3-boto3)")
    seed = int(os.environ.get("KN_INTEROP_SEED", "20261126"))
    print("seed %d (KN_INTEROP_SEED), kinesalite %s" % (seed, url), flush=True)
    c = Ctx(sys.argv[1], url, random.Random(seed))
    try:
        {"reads": case_reads, "writes": case_writes}[sys.argv[2]](c)
    finally:
        c.cleanup()
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
