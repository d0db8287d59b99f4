#!/usr/bin/env python3
"""kncat end to end, run as a user would run it, against kinesalite (and moto).

Usage: test_kncat.py KNCAT GROUP
GROUP is one of the names in GROUPS below; meson runs each as its own test.
The servers come from KN_TEST_KINESALITE_URL / KN_TEST_MOTO_URL
(tests/servers/with-servers.sh). Every check compares kncat's output with what
was put, or with an independent computation (MD5 hash keys in Python), never
with kncat itself alone.
"""
import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

KNCAT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""
GROUP = sys.argv[2] if len(sys.argv) > 2 else ""
MAX_HASH = 2**128 - 1

failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def server(var):
    url = os.environ.get(var)
    if not url:
        print(f"{var} is not set: run through tests/servers/with-servers.sh (tools/test.sh does)")
        sys.exit(1)
    return url


KINESALITE = None
_home = tempfile.mkdtemp(prefix="kncat-test-home-")


def base_env(endpoint=None):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": _home,
        "AWS_ACCESS_KEY_ID": "AKIDKNCAT",
        "AWS_SECRET_ACCESS_KEY": "Sk3tKnCatSecretValue",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LD_LIBRARY_PATH"):
        if k in os.environ:
            env[k] = os.environ[k]
    if endpoint:
        env["AWS_ENDPOINT_URL_KINESIS"] = endpoint
    return env


def run(args, stdin=b"", env=None, timeout=120, endpoint=None):
    """Runs kncat; returns (exit code, stdout bytes, stderr text)."""
    if env is None:
        env = base_env(endpoint or KINESALITE)
    try:
        p = subprocess.run([KNCAT] + args, input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"kncat {' '.join(args)} did not finish within {timeout}s")
        return -1, b"", ""
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def ok(args, stdin=b"", **kw):
    rc, out, err = run(args, stdin, **kw)
    if rc != 0:
        fail(f"kncat {' '.join(args)} exited {rc}; stderr:\n{err}")
    return out


_n = [0]
_created = []  # (name, endpoint) to delete at the end, so a shared server does not fill up


def new_stream(shards=1, endpoint=None, what=None):
    _n[0] += 1
    name = f"kc-{what or GROUP}-{os.getpid()}-{_n[0]}"
    ok(["-A", "create", "-t", name, "--shards", str(shards), "-q"], endpoint=endpoint)
    _created.append((name, endpoint))
    return name


def dump_json(stream, extra=(), endpoint=None):
    out = ok(["-C", "-t", stream, "-e", "-J"] + list(extra), endpoint=endpoint)
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def shards_json(stream, endpoint=None):
    return json.loads(ok(["-L", "-t", stream, "-J"], endpoint=endpoint))


def md5_hash(key):
    return int.from_bytes(hashlib.md5(key.encode()).digest(), "big")


def payload_bytes(env):
    if env["payload_encoding"] == "base64":
        return base64.b64decode(env["payload"])
    return env["payload"].encode("utf-8")


# ----------------------------------------------------------------- groups

def g_roundtrip():
    s = new_stream(2)
    keys = [f"user-{i % 7}" for i in range(60)]
    lines = [f"{k}:line {i} with spaces, unicode é€ and a colon: here" for i, k in enumerate(keys)]
    inp = ("\n".join(lines) + "\n").encode()
    ok(["-P", "-t", s, "-K:"], inp)
    out = ok(["-C", "-t", s, "-e", "-f", "%k:%s\\n"]).decode()
    got = out.splitlines()
    check(sorted(got) == sorted(lines), "-C -f '%k:%s\\n' does not give back exactly the input "
          f"({len(got)} lines for {len(lines)})")
    # Per key, records come back in the order they were put.
    for k in set(keys):
        want = [ln for ln in lines if ln.startswith(k + ":")]
        have = [ln for ln in got if ln.startswith(k + ":")]
        check(want == have, f"records of key {k} out of order")

    # kcat's habit: without -f, -K and -D shape the output too.
    out = ok(["-C", "-t", s, "-e", "-K:"]).decode().splitlines()
    check(sorted(out) == sorted(lines), "-C -K: does not print key:data lines")
    out = ok(["-C", "-t", s, "-e", "-D", "\\x00"]).split(b"\x00")
    check(out[-1] == b"" and sorted(x.decode() for x in out[:-1]) == sorted(ln.split(":", 1)[1] for ln in lines),
          "-C -D '\\x00' does not end each record with a NUL byte")

    # -c stops after n records.
    out = ok(["-C", "-t", s, "-c", "5", "-f", "%s\\n"])
    check(len(out.decode().splitlines()) == 5, "-c 5 did not print exactly 5 records")

    # A custom delimiter, a fixed key; no key gives a random key per record.
    s2 = new_stream(2)
    ok(["-P", "-t", s2, "-D", "|", "-k", "fixed"], b"a|b|c")
    ok(["-P", "-t", s2, "-D", "\\x00"], b"r1\x00r2\x00r3\x00r4\x00")
    recs = dump_json(s2)
    fixed = [r for r in recs if r["key"] == "fixed"]
    check(sorted(r["payload"] for r in fixed) == ["a", "b", "c"], "-D '|' -k fixed")
    check(len({r["shard"] for r in fixed}) == 1, "a fixed key landed in several shards")
    rnd = [r for r in recs if r["key"] != "fixed"]
    check(sorted(r["payload"] for r in rnd) == ["r1", "r2", "r3", "r4"], "-D '\\x00'")
    check(len({r["key"] for r in rnd}) == 4, "records without a key did not get distinct random keys")

    # Each file argument is one record, newlines included.
    d = tempfile.mkdtemp()
    try:
        files = []
        for i, body in enumerate([b"file one\nsecond line\n", bytes(range(256)) * 4]):
            path = os.path.join(d, f"f{i}")
            with open(path, "wb") as f:
                f.write(body)
            files.append((path, body))
        s3 = new_stream(1)
        ok(["-P", "-t", s3, "-k", "files"] + [p for p, _ in files])
        recs = dump_json(s3)
        check(sorted(payload_bytes(r) for r in recs) == sorted(b for _, b in files),
              "file arguments were not put one record per file, byte for byte")
    finally:
        shutil.rmtree(d)

    # Mode guess: stdin not a terminal means produce.
    s4 = new_stream(1)
    ok(["-t", s4, "-k", "guess"], b"guessed\n")
    check([r["payload"] for r in dump_json(s4)] == ["guessed"], "no mode with piped stdin did not produce")

    # -u and the default print the same records.
    out_u = ok(["-C", "-t", s, "-e", "-u", "-f", "%k:%s\\n"]).decode().splitlines()
    check(sorted(out_u) == sorted(lines), "-u changed the output")


def g_replay():
    a = new_stream(2)
    b = new_stream(3)
    rnd = random.Random(1234)
    text = [f"k{i}:text {i} é ✓" for i in range(30)]
    ok(["-P", "-t", a, "-K:"], ("\n".join(text) + "\n").encode())
    # Binary payloads (not UTF-8) and special characters arrive through -J envelopes.
    binaries = []
    envs = []
    for i in range(20):
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))) + b"\xff\xfe"
        binaries.append((f"bin-{i}", data))
        envs.append(json.dumps({"key": f"bin-{i}", "payload": base64.b64encode(data).decode(),
                                "payload_encoding": "base64"}))
    envs.append(json.dumps({"key": "quote\"tab\t", "payload": "line\nbreak \u0001 \"q\"",
                            "payload_encoding": "utf8"}))
    # Every ASCII character, and multi-byte ones, at every offset of a 16-byte block (the writer
    # scans 16 bytes at a time): what -C -J prints must parse back to exactly these strings.
    every = "".join(chr(c) for c in range(128)) + "é✓𝄞"
    texts = [("x" * off) + every + ("y" * off) for off in range(17)]
    for i, t in enumerate(texts):
        envs.append(json.dumps({"key": f"ascii-{i}", "payload": t, "payload_encoding": "utf8"}))
    ok(["-P", "-t", a, "-J"], ("\n".join(envs) + "\n").encode())

    dump_a = dump_json(a)
    check(len(dump_a) == len(text) + len(envs), f"dump of {a} has {len(dump_a)} records")
    for r in dump_a:
        check(set(r) == {"stream", "shard", "seq", "subseq", "ts", "key", "payload", "payload_encoding"},
              f"envelope fields: {sorted(r)}")
        check(isinstance(r["seq"], str) and r["seq"].isdigit(), "seq is not a decimal string")
        check(r["stream"] == a, "envelope stream")
    by_key = {r["key"]: r for r in dump_a}
    for k, data in binaries:
        r = by_key.get(k)
        if check(r is not None, f"binary record {k} missing"):
            check(r["payload_encoding"] == "base64", f"{k}: binary data not marked base64")
            check(payload_bytes(r) == data, f"{k}: binary payload changed")
    check(by_key.get("k0", {}).get("payload_encoding") == "utf8", "text not marked utf8")
    for i, t in enumerate(texts):
        r = by_key.get(f"ascii-{i}")
        if check(r is not None, f"record ascii-{i} missing"):
            check(r["payload_encoding"] == "utf8" and r["payload"] == t, f"ascii-{i}: text changed")

    # Replay the dump into b and dump again: same keys and payloads.
    lines = "\n".join(json.dumps(r) for r in dump_a) + "\n"
    ok(["-P", "-t", b, "-J"], lines.encode())
    dump_b = dump_json(b)

    def content(d):
        return sorted((r["key"], r["payload"], r["payload_encoding"]) for r in d)
    check(content(dump_a) == content(dump_b), "replayed dump differs in keys or payloads")

    # A bad envelope is a failed record: exit 1, named on stderr.
    rc, _, err = run(["-P", "-t", b, "-J"], b'{"key":"x","payload":"ok"}\nnot json\n')
    check(rc == 1, f"bad envelope: exit {rc}")
    check("bad JSON envelope" in err and "record 2" in err, f"bad envelope message: {err}")
    rc, _, err = run(["-P", "-t", b, "-J"], b'{"key":"x","payload":"!!","payload_encoding":"base64"}\n')
    check(rc == 1 and "base64" in err, f"bad base64 payload: exit {rc}, {err}")


def g_end():
    # -e on an empty, idle stream ends promptly.
    s = new_stream(2)
    t0 = time.monotonic()
    out = ok(["-C", "-t", s, "-e"], timeout=60)
    check(out == b"", "records printed from an empty stream")
    check(time.monotonic() - t0 < 45, "-e on an idle stream took too long")

    # After a split and a merge: parents closed, every record exactly once.
    lines1 = [f"a{i}:before split {i}" for i in range(40)]
    ok(["-P", "-t", s, "-K:"], ("\n".join(lines1) + "\n").encode())
    ok(["-A", "split", "-t", s, "shardId-000000000000", "-q"])
    lines2 = [f"b{i}:after split {i}" for i in range(40)]
    ok(["-P", "-t", s, "-K:"], ("\n".join(lines2) + "\n").encode())
    info = shards_json(s)
    open_ids = sorted(sh["id"] for sh in info["shards"] if sh["open"])
    check(open_ids == ["shardId-000000000001", "shardId-000000000002", "shardId-000000000003"],
          f"open shards after split: {open_ids}")
    ok(["-A", "merge", "-t", s, "shardId-000000000002", "shardId-000000000003", "-q"])
    lines3 = [f"c{i}:after merge {i}" for i in range(40)]
    ok(["-P", "-t", s, "-K:"], ("\n".join(lines3) + "\n").encode())
    out = ok(["-C", "-t", s, "-e", "-f", "%k:%s\\n"], timeout=120).decode().splitlines()
    want = lines1 + lines2 + lines3
    check(sorted(out) == sorted(want), f"after split and merge: {len(out)} lines for {len(want)}")
    # -p of a closed parent: its records, then its children's and the merged shard's, once each.
    out = ok(["-C", "-t", s, "-e", "-p", "shardId-000000000000", "-f", "%p %s\\n"]).decode().splitlines()
    check(len(out) == len(set(out)) and out, "-p of a closed parent: duplicates or nothing")
    check({ln.split()[0] for ln in out} <= {"shardId-000000000000", "shardId-000000000002",
                                             "shardId-000000000003", "shardId-000000000004"},
          "-p of a closed parent read shards outside its lineage")
    # -c with -e: whichever comes first.
    out = ok(["-C", "-t", s, "-e", "-c", "7"]).decode().splitlines()
    check(len(out) == 7, f"-e -c 7 printed {len(out)}")
    # -o end -e: nothing old, ends.
    out = ok(["-C", "-t", s, "-o", "end", "-e"], timeout=60)
    check(out == b"", "-o end printed old records")
    # -o s@<past> prints everything; e@<past> nothing.
    out = ok(["-C", "-t", s, "-o", "s@-1d", "-e", "-f", "%s\\n"]).decode().splitlines()
    check(len(out) == len(want), f"-o s@-1d printed {len(out)} of {len(want)}")
    hour_ago = int(time.time() * 1000) - 3600_000
    for ts in (str(hour_ago), "2001-01-01T00:00:00.250+02:00", "2001-01-01 00:00:00"):
        out = ok(["-C", "-t", s, "-o", f"s@{ts}", "-e", "-f", "%s\\n"]).decode().splitlines()
        check(len(out) == len(want), f"-o s@{ts} printed {len(out)} of {len(want)}")
    out = ok(["-C", "-t", s, "-o", "s@2001-01-01T00:00:00Z", "-o", "e@2001-01-02T00:00:00Z", "-e"],
             timeout=60)
    check(out == b"", "-o e@<past> printed records")
    # -o <sequence number> -p shard: from that record on.
    recs = dump_json(s, ["-p", "shardId-000000000001"])
    if check(len({r["seq"] for r in recs}) >= 2, "shard 1 has fewer than 2 Kinesis records"):
        last = max((r["seq"] for r in recs), key=int)
        out = dump_json(s, ["-p", "shardId-000000000001", "-o", last])
        check({r["seq"] for r in out} == {last} and
              len(out) == len([r for r in recs if r["seq"] == last]),
              "-o <seq> did not start at that sequence number")


def g_compress():
    for codec in ("gzip", "zstd"):
        s = new_stream(2, what=f"z{codec}")
        lines = [f"k{i % 5}:{codec} record {i} " + "x" * (i % 50) for i in range(200)]
        ok(["-P", "-t", s, "-K:", "-z", codec], ("\n".join(lines) + "\n").encode())
        out = ok(["-C", "-t", s, "-e", "-f", "%k:%s\\n"]).decode().splitlines()
        check(sorted(out) == sorted(lines), f"-z {codec} round trip")
        raw = dump_json(s, ["--raw"])
        check(0 < len(raw) < len(lines), f"--raw with {codec}: {len(raw)} stored records")
        check(all(r["payload_encoding"] == "base64" for r in raw),
              f"--raw with {codec}: stored aggregates should be binary")
    # Aggregation off: one stored record per line.
    s = new_stream(1, what="noagg")
    ok(["-P", "-t", s, "-X", "producer.aggregation.enabled=false"], b"1\n2\n3\n")
    raw = dump_json(s, ["--raw"])
    check(sorted(r["payload"] for r in raw) == ["1", "2", "3"], "aggregation off: stored records")


def g_report():
    s = new_stream(2)
    keys = [f"rk{i}" for i in range(25)]
    inp = "".join(f"{k}:v{i}\n" for i, k in enumerate(keys)).encode()
    out = ok(["-P", "-t", s, "-K:", "--report"], inp).decode().splitlines()
    check(len(out) == len(keys), f"--report printed {len(out)} lines for {len(keys)} records")
    shards = shards_json(s)["shards"]

    def owner(key):
        h = md5_hash(key)
        for sh in shards:
            if sh["open"] and int(sh["hash_start"]) <= h <= int(sh["hash_end"]):
                return sh["id"]
    dump = {r["key"]: r for r in dump_json(s)}
    for line in out:
        parts = line.split("\t")
        if not check(len(parts) == 3, f"report line {line!r}"):
            continue
        k, shard, seq = parts
        check(shard == owner(k), f"report: {k} in {shard}, expected {owner(k)}")
        check(dump.get(k, {}).get("seq") == seq, f"report: {k} sequence number differs from the stream")
    # With -J the input is envelopes and the report is JSON.
    envs = "".join(json.dumps({"key": k, "payload": f"v{i}"}) + "\n" for i, k in enumerate(keys))
    out = ok(["-P", "-t", s, "--report", "-J"], envs.encode()).decode().splitlines()
    objs = [json.loads(x) for x in out]
    check(len(objs) == len(keys) and all(o["status"] == "ok" for o in objs), "--report -J statuses")
    check(sorted(o["record"] for o in objs) == list(range(1, len(keys) + 1)), "--report -J record numbers")
    check(all(o["shard"] == owner(o["key"]) for o in objs), "--report -J shards")

    # A record over the size limit fails: exit 1, the error code on stderr and in the report.
    big = b"big:" + b"x" * (1024 * 1024 + 10) + b"\nsmall:ok\n"
    rc, out, err = run(["-P", "-t", s, "-K:", "--report"], big)
    check(rc == 1, f"oversized record: exit {rc}")
    check("KN_ERR_TOO_LARGE" in err and "record 1" in err, f"oversized record message: {err}")
    lines = out.decode().splitlines()
    check(any(ln.startswith("big\tERROR\tKN_ERR_TOO_LARGE") for ln in lines), f"report of the failure: {lines}")
    check(any(ln.startswith("small\tshardId-") for ln in lines), "the good record was not reported")
    # An invalid explicit hash key is a usage error before anything is sent.
    rc, _, err = run(["-P", "-t", s, "--hash-key", "340282366920938463463374607431768211456"], b"x\n")
    check(rc == 2 and "--hash-key" in err, f"bad --hash-key: exit {rc}, {err}")
    # A valid explicit hash key routes every record to the shard owning it.
    out = ok(["-P", "-t", s, "--hash-key", str(MAX_HASH), "--report"], b"h1\nh2\n").decode().splitlines()
    check(all(ln.split("\t")[1] == "shardId-000000000001" for ln in out), f"--hash-key report: {out}")


def g_list():
    s = new_stream(3)
    names = ok(["-L"]).decode().splitlines()
    check(s in names, f"-L does not list {s}")
    check(s in json.loads(ok(["-L", "-J"]))["streams"], "-L -J does not list the stream")
    info = shards_json(s)
    check(info["stream"] == s and info["status"] == "ACTIVE" and info["open_shards"] == 3
          and info["on_demand"] is False and info["retention_hours"] == 24, f"-L -t -J summary: {info}")
    sh = sorted(info["shards"], key=lambda x: int(x["hash_start"]))
    check(len(sh) == 3, "three shards")
    check(int(sh[0]["hash_start"]) == 0 and int(sh[-1]["hash_end"]) == MAX_HASH, "ranges cover the key space")
    for a, b in zip(sh, sh[1:]):
        check(int(a["hash_end"]) + 1 == int(b["hash_start"]), "ranges are contiguous")
    for x in sh:
        check(x["open"] and x["end_seq"] is None and x["parent"] is None and x["start_seq"].isdigit(),
              f"shard fields: {x}")
    text = ok(["-L", "-t", s]).decode()
    check(f"stream {s}: ACTIVE, 3 open shards" in text, f"-L -t text: {text}")
    for x in sh:
        check(f"{x['id']}  open    hash {x['hash_start']}..{x['hash_end']}" in text, f"-L -t line for {x['id']}")
    # -Q agrees with MD5 and the ranges, for many keys.
    for i in range(12):
        key = f"query-key-{i}"
        shard, h = ok(["-Q", "-t", s, "-k", key]).decode().strip().split("\t")
        check(int(h) == md5_hash(key), f"-Q hash key of {key}")
        owner = [x["id"] for x in sh if int(x["hash_start"]) <= md5_hash(key) <= int(x["hash_end"])]
        check([shard] == owner, f"-Q {key}: {shard}, ranges say {owner}")
    q = json.loads(ok(["-Q", "-t", s, "-k", "abc", "-J"]))
    check(q["key"] == "abc" and int(q["hash_key"]) == md5_hash("abc") and q["stream"] == s, f"-Q -J: {q}")
    q = ok(["-Q", "-t", s, "--hash-key", "0"]).decode().split("\t")[0]
    check(q == sh[0]["id"], "-Q --hash-key 0")


def g_admin():
    _n[0] += 1
    s = f"kc-admin-{os.getpid()}-{_n[0]}"
    rc, _, err = run(["-A", "create", "-t", s, "--shards", "2"])
    check(rc == 0 and "created stream" in err and "ACTIVE" in err, f"-A create: {rc} {err}")
    ok(["-A", "wait", "-t", s])
    ok(["-A", "split", "-t", s, "shardId-000000000001", "200000000000000000000000000000000000000", "-q"])
    info = shards_json(s)
    by = {x["id"]: x for x in info["shards"]}
    check(by["shardId-000000000001"]["open"] is False, "split parent still open")
    check(by.get("shardId-000000000003", {}).get("hash_start") == "200000000000000000000000000000000000000",
          f"split point: {by.get('shardId-000000000003')}")
    check(by.get("shardId-000000000002", {}).get("parent") == "shardId-000000000001", "split child parent")
    ok(["-A", "merge", "-t", s, "shardId-000000000000", "shardId-000000000002", "-q"])
    info = shards_json(s)
    by = {x["id"]: x for x in info["shards"]}
    m = by.get("shardId-000000000004", {})
    check(m.get("parent") == "shardId-000000000000" and m.get("adjacent_parent") == "shardId-000000000002",
          f"merged shard: {m}")
    check(info["open_shards"] == 2, f"open shards after merge: {info['open_shards']}")
    # Errors from the service: merging shards that are not adjacent, splitting a closed shard.
    rc, _, err = run(["-A", "merge", "-t", s, "shardId-000000000004", "shardId-000000000000"])
    check(rc != 0 and "ERROR" in err, f"merge of a closed shard: {rc} {err}")
    rc, _, err = run(["-A", "split", "-t", s, "shardId-000000000000"])
    check(rc == 1 and "closed" in err, f"split of a closed shard: {rc} {err}")
    rc, _, err = run(["-A", "split", "-t", s, "shardId-000000000099"])
    check(rc == 3 and "shardId-000000000099" in err, f"split of an unknown shard: {rc} {err}")
    ok(["-A", "delete", "-t", s, "-q"])
    deadline = time.time() + 60
    while time.time() < deadline and s in ok(["-L"]).decode().splitlines():
        time.sleep(0.3)
    check(s not in ok(["-L"]).decode().splitlines(), "-A delete: the stream is still listed")
    rc, _, err = run(["-A", "wait", "-t", s])
    check(rc == 3 and s in err, f"-A wait on a deleted stream: {rc} {err}")

    # moto: on-demand and scale (kinesalite has neither).
    moto = server("KN_TEST_MOTO_URL")
    s = f"kc-admin-od-{os.getpid()}"
    ok(["-A", "create", "-t", s, "--on-demand", "-q"], endpoint=moto)
    check(shards_json(s, endpoint=moto)["on_demand"] is True, "--on-demand stream not on-demand")
    ok(["-A", "delete", "-t", s, "-q"], endpoint=moto)
    s = f"kc-admin-scale-{os.getpid()}"
    ok(["-A", "create", "-t", s, "-q"], endpoint=moto)
    ok(["-A", "scale", "-t", s, "2", "-q"], endpoint=moto)
    info = shards_json(s, endpoint=moto)
    check(info["open_shards"] == 2 and sum(x["open"] for x in info["shards"]) == 2, f"scale 2 on moto: {info}")
    ok(["-A", "delete", "-t", s, "-q"], endpoint=moto)
    # Produce and consume work against moto too (short sequence numbers, another implementation).
    # (Not on the scaled stream: moto keeps routing puts to the closed parent after UpdateShardCount.)
    s = f"kc-admin-rt-{os.getpid()}"
    ok(["-A", "create", "-t", s, "--shards", "2", "-q"], endpoint=moto)
    ok(["-P", "-t", s, "-K:"], b"m1:one\nm2:two\n", endpoint=moto)
    out = ok(["-C", "-t", s, "-e", "-f", "%k:%s\\n"], endpoint=moto).decode().splitlines()
    check(sorted(out) == ["m1:one", "m2:two"], f"moto round trip: {out}")
    ok(["-A", "delete", "-t", s, "-q"], endpoint=moto)
    # Usage errors.
    for args, needle in ((["-A", "bogus", "-t", s], "unknown admin command"),
                         (["-A", "scale", "-t", s], "usage: kncat -A scale"),
                         (["-A", "scale", "-t", s, "x"], "not a shard count"),
                         (["-A", "merge", "-t", s, "a"], "usage: kncat -A merge"),
                         (["-A", "create"], "needs a stream"),
                         (["-A", "create", "-t", s, "--shards", "2", "--on-demand"], "exclude")):
        rc, _, err = run(args)
        check(rc == 2 and needle in err, f"kncat {' '.join(args)}: exit {rc}, {err}")


def g_errors():
    s = new_stream(1)
    missing = f"kc-missing-{os.getpid()}"
    for args in (["-C", "-t", missing, "-e"], ["-P", "-t", missing], ["-L", "-t", missing],
                 ["-Q", "-t", missing, "-k", "a"], ["-A", "delete", "-t", missing]):
        rc, _, err = run(args, b"x\n")
        check(rc == 3 and missing in err and err.startswith("% ERROR"),
              f"unknown stream with {args[0]}: exit {rc}, {err}")
    cases = [
        (["-C", "-t", s, "-o", "yesterday"], 2, "bad -o"),
        (["-C", "-t", s, "-o", "s@2024-13-45"], 2, "bad time in -o"),
        (["-C", "-t", s, "-f", "%s %z\\n"], 2, "unknown format token \"%z\""),
        (["-C", "-t", s, "-f", "\\q"], 2, "bad escape"),
        (["-C", "-t", s, "-o", "123"], 2, "needs exactly one shard"),
        (["-C", "-t", s, "-p", "shardId-000000000042", "-e"], 3, "shardId-000000000042"),
        (["-X", "no.such.property=1", "-L"], 2, "no.such.property"),
        (["-X", "no.such.property=1", "-L"], 2, "kncat -X list"),
        (["-X", "http.max.connections=0", "-L"], 2, "http.max.connections"),
        (["-X", "novalue", "-L"], 2, "property=value"),
        (["-F", "/nonexistent/kncat.properties", "-L"], 2, "/nonexistent/kncat.properties"),
        (["-G", "group1", "-t", s, "--raw"], 2, "--raw is not for -G"),
        (["-G", "group1", "-t", s, "-o", "e@-1m"], 2, "-o e@<time> is not for -G"),
        (["--bogus"], 2, "unknown option --bogus"),
        (["-W"], 2, "unknown option -W"),
        (["-t"], 2, "needs an argument"),
        (["-P", "-C", "-t", s], 2, "only one mode"),
        (["-P"], 2, "needs a stream"),
        (["-C", "-t", s, "-c", "0"], 2, "-c"),
        (["-P", "-t", s, "-z", "lz4"], 2, "unknown codec \"lz4\""),
        (["-Q", "-t", s], 2, "partition key"),
        (["-L", "extra"], 2, "unexpected argument"),
    ]
    for args, code, needle in cases:
        rc, _, err = run(args, b"")
        check(rc == code and needle in err and "% ERROR" in err,
              f"kncat {' '.join(args)}: exit {rc} (want {code}), stderr {err!r} (want {needle!r})")
    # Missing credentials: the library's message lists the chain steps.
    env = base_env(KINESALITE)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(k)
    rc, _, err = run(["-L"], env=env)
    check(rc == 4 and "environment" in err and "IMDS" in err and "profile" in err,
          f"no credentials: exit {rc}, {err}")
    # Unreachable endpoint: quick, exit 5, names the endpoint.
    t0 = time.monotonic()
    rc, _, err = run(["-b", "http://127.0.0.1:1", "-L"])
    check(rc == 5 and "127.0.0.1:1" in err, f"unreachable endpoint: exit {rc}, {err}")
    check(time.monotonic() - t0 < 60, "unreachable endpoint took too long")
    # A bad -b URL is a configuration error.
    rc, _, err = run(["-b", "ftp://x", "-L"])
    check(rc == 2 and "kinesis.endpoint" in err, f"bad -b: exit {rc}, {err}")
    # -b wins over AWS_ENDPOINT_URL_KINESIS; AWS_ENDPOINT_URL alone works too.
    env = base_env("http://127.0.0.1:1")
    rc, _, _ = run(["-b", KINESALITE, "-L"], env=env)
    check(rc == 0, f"-b did not override AWS_ENDPOINT_URL_KINESIS: exit {rc}")
    env = base_env(None)
    env["AWS_ENDPOINT_URL"] = KINESALITE
    rc, out, _ = run(["-L"], env=env)
    check(rc == 0 and s in out.decode().splitlines(), "AWS_ENDPOINT_URL alone")


def g_misc():
    rc, out, _ = run(["-X", "list"])
    text = out.decode()
    check(rc == 0 and "producer.aggregation.enabled" in text and "kinesis.endpoint" in text
          and "AggregationMaxSize" in text, "-X list")
    rc, out, _ = run(["-h"])
    text = out.decode()
    check(rc == 0 and "Exit status" in text and "-P" in text and "--report" in text and
          "%k key" in text, "-h")
    for code in range(6):
        check(f"\n  {code}  " in text, f"-h does not document exit code {code}")
    rc, out, _ = run(["-V"])
    check(rc == 0 and out.decode().startswith("kncat "), "-V")
    man = shutil.which("man")
    page = os.path.join(os.environ.get("KN_SOURCE_ROOT", "."), "tools", "kncat", "kncat.1")
    if man:
        p = subprocess.run([man, "-l", page], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100"), timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode == 0 and "EXIT STATUS" in out and "kcat" in out, f"man -l kncat.1: {p.returncode}")
    else:
        with open(page) as f:
            check(".SH EXIT STATUS" in f.read(), "kncat.1 has no EXIT STATUS section")
    # Format tokens, all of them.
    s = new_stream(1)
    ok(["-P", "-t", s, "-k", "kk"], b"hi\n")
    out = ok(["-C", "-t", s, "-e", "-f", "%t|%p|%o|%u|%T|%F|%k|%K|%s|%S|%b|%x|%%\\t\\x41\\n"]).decode()
    f = out.rstrip("\n").split("|")
    check(len(f) == 13, f"-f all tokens: {out!r}")
    if len(f) == 13:
        check(f[0] == s and f[1] == "shardId-000000000000" and f[2].isdigit() and f[3] == "0", f"%t %p %o %u: {f}")
        check(f[4].isdigit() and abs(int(f[4]) / 1000 - time.time()) < 600, "%T")
        check(f[5].endswith("Z") and "T" in f[5], "%F")
        check(f[6:13] == ["kk", "2", "hi", "2", "aGk=", "6869", "%\tA"], f"tokens: {f[6:]}")
    # -q silences the create message; -v prints more.
    rc, _, err = run(["-C", "-t", s, "-e", "-v"])
    check(rc == 0 and "records printed" in err, f"-v: {err}")
    rc, _, err = run(["-C", "-t", s, "-e", "-q"])
    check(rc == 0 and err == "", f"-q printed {err!r}")
    # -v with stderr on a terminal: a progress line (records, bytes, rate) during a long -P.
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([KNCAT, "-P", "-t", s, "-v", "-k", "prog"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=slave, env=base_env(KINESALITE))
    os.close(slave)
    for _ in range(3):
        p.stdin.write(b"progress\n" * 50)
        p.stdin.flush()
        time.sleep(1.3)
    p.stdin.close()
    p.wait(timeout=120)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    tty = b"".join(chunks).decode("utf-8", "replace")
    check(p.returncode == 0 and "records/s" in tty and "MB" in tty and "150 of 150" in tty,
          f"-v progress on a terminal: {tty!r}")
    # Following: -C without -e prints records put while it runs, flushed to a pipe without -u
    # (at least after each batch), and SIGINT ends it cleanly with status 0. It starts at "now"
    # (s@) rather than "end" so a slow start on a loaded machine cannot miss the records.
    import select
    import signal
    now_ms = int(time.time() * 1000)
    tail = subprocess.Popen([KNCAT, "-C", "-t", s, "-o", f"s@{now_ms}", "-f", "%k:%s\\n"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env(KINESALITE))
    time.sleep(1.0)  # usually reading (and idle) by now
    ok(["-P", "-t", s, "-K:"], b"live1:one\nlive2:two\n")
    got = b""
    deadline = time.monotonic() + 60
    while got.count(b"\n") < 2 and time.monotonic() < deadline and tail.poll() is None:
        r, _, _ = select.select([tail.stdout], [], [], 1.0)
        if r:
            got += os.read(tail.stdout.fileno(), 65536)
    check(sorted(got.decode().splitlines()) == ["live1:one", "live2:two"],
          f"-C -o end did not print the records put later while running: {got!r}")
    tail.send_signal(signal.SIGINT)
    try:
        rc = tail.wait(timeout=30)
        check(rc == 0, f"-C after SIGINT exited {rc}: {tail.stderr.read().decode()}")
    except subprocess.TimeoutExpired:
        tail.kill()
        fail("-C did not stop within 30 s of SIGINT")
    tail.stdout.close()
    tail.stderr.close()
    # A properties file.
    with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as pf:
        pf.write(f"kinesis.endpoint = {KINESALITE}\nAggregationEnabled = false\n")
    try:
        env = base_env("http://127.0.0.1:1")
        rc, out, err = run(["-F", pf.name, "-L"], env=env)
        check(rc == 0 and s in out.decode().splitlines(), f"-F file: exit {rc} {err}")
    finally:
        os.unlink(pf.name)
    # Debug contexts go to stderr, prefixed, with no secrets.
    rc, _, err = run(["-L", "-d", "all"])
    check(rc == 0 and "% DEBUG [" in err and "Sk3tKnCatSecretValue" not in err, f"-d all: {err}")


def g_empty():
    """Empty records: every envelope, file and key<delim> line is put; empty lines only with -Z."""
    a = new_stream(2)
    envs = [{"key": "e-b64", "payload": "", "payload_encoding": "base64"},
            {"key": "e-utf8", "payload": "", "payload_encoding": "utf8"},
            {"key": "full", "payload": "data", "payload_encoding": "utf8"}]
    rc, _, err = run(["-P", "-t", a, "-J"], ("\n".join(json.dumps(e) for e in envs) + "\n").encode())
    check(rc == 0, f"-P -J with empty payloads: exit {rc}: {err}")
    dump = dump_json(a)
    got = sorted((r["key"], payload_bytes(r)) for r in dump)
    check(got == [("e-b64", b""), ("e-utf8", b""), ("full", b"data")], f"dump of empty envelopes: {got}")

    # The dump replays into another stream record for record, empty ones included.
    b = new_stream(1)
    ok(["-P", "-t", b, "-J"], ("\n".join(json.dumps(r) for r in dump) + "\n").encode())
    got_b = sorted((r["key"], payload_bytes(r)) for r in dump_json(b))
    check(got_b == got, f"replayed dump: {got_b}")

    # Line mode: empty lines are skipped and counted at the default verbosity; -Z sends them.
    c = new_stream(1)
    rc, _, err = run(["-P", "-t", c, "-k", "line"], b"x\n\ny\n\n\n")
    check(rc == 0, f"-P with empty lines: exit {rc}")
    check("3 empty lines skipped" in err and "-Z" in err, f"no summary of skipped empty lines: {err!r}")
    check(sorted(payload_bytes(r) for r in dump_json(c)) == [b"x", b"y"], "empty lines were sent")
    d = new_stream(1)
    rc, _, err = run(["-P", "-t", d, "-k", "line", "-Z"], b"x\n\ny\n\n")
    check(rc == 0 and "skipped" not in err, f"-Z: exit {rc}, {err!r}")
    check([payload_bytes(r) for r in dump_json(d)] == [b"x", b"", b"y", b""],
          "-Z did not send the empty lines as empty records in order")
    rc, _, err = run(["-P", "-t", d, "-k", "line", "-q"], b"\n\n")
    check(rc == 0 and err == "", f"-q hides the summary: exit {rc}, {err!r}")

    # -K: "key<delim>" is a record with a key and no data; an empty file argument is a record.
    e = new_stream(1)
    ok(["-P", "-t", e, "-K", ":"], b"k1:\nk2:two\n")
    empty_file = os.path.join(_home, "empty.bin")
    open(empty_file, "wb").close()
    rc, _, err = run(["-P", "-t", e, "-k", "file", empty_file])
    check(rc == 0, f"empty file argument: exit {rc}, {err}")
    got_e = sorted((r["key"], payload_bytes(r)) for r in dump_json(e))
    check(got_e == [("file", b""), ("k1", b""), ("k2", b"two")], f"-K and file records: {got_e}")

    _, out, _ = run(["-h"])
    check(b"-Z" in out and b"empty lines" in out, "--help does not say what happens to empty lines")


def group_env():
    e = base_env(KINESALITE)
    e["AWS_ENDPOINT_URL_DYNAMODB"] = server("KN_TEST_DYNALITE_URL")
    return e


def start_member(group, stream, extra=(), fmt="%p %o %u %s\\n"):
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    p = subprocess.Popen([KNCAT, "-G", group, "-t", stream, "-o", "beginning", "-f", fmt,
                          "-X", "consumer.failover.ms=3000", "-X", "consumer.lease.scan.ms=200"]
                         + list(extra), stdout=out, stderr=err, env=group_env())
    return p, out, err


def member_output(p, out, err, sig=None, timeout=60):
    if sig is not None:
        p.send_signal(sig)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        fail(f"kncat -G did not exit within {timeout}s")
    out.seek(0)
    err.seek(0)
    return p.returncode, out.read().decode(), err.read().decode("utf-8", "replace")


def group_leases(group):
    rc, out, err = run(["-L", "-G", group, "-J"], env=group_env())
    if rc == 3:
        return []  # no member has made the table yet
    if not check(rc == 0, f"kncat -L -G {group} -J exited {rc}: {err}"):
        return []
    return json.loads(out)["leases"]


def g_group():
    import signal
    s = new_stream(4)
    group = f"kcg-{os.getpid()}"
    lines = "".join(f"u{i % 11}:r{i}\n" for i in range(400))
    # Two members share the shards; SIGINT checkpoints and releases; together every record once.
    a = start_member(group, s)
    b = start_member(group, s)
    deadline = time.time() + 30
    while time.time() < deadline:
        owners = [l["owner"] for l in group_leases(group)]
        if len(owners) == 4 and sorted(owners.count(o) for o in set(owners) if o) == [2, 2]:
            break
        time.sleep(0.3)
    check(len(set(o for o in owners if o)) == 2, f"the two members do not share the shards: {owners}")
    ok(["-P", "-t", s, "-K:", "-q"], lines.encode())
    time.sleep(3)
    outs = []
    for m in (a, b):
        rc, out, err = member_output(*m, sig=signal.SIGINT)
        check(rc == 0, f"kncat -G exited {rc} after SIGINT: {err}")
        outs.append(out.splitlines())
    got = [ln.split(" ")[3] for ln in outs[0] + outs[1]]
    check(sorted(got) == sorted(f"r{i}" for i in range(400)),
          f"the members printed {len(got)} records ({len(set(got))} distinct) for 400 put")
    check(all(outs), "one member printed nothing")
    leases = group_leases(group)
    check(len(leases) == 4 and all(l["owner"] is None for l in leases),
          f"leases not released after SIGINT: {leases}")
    check(all(l["checkpoint"].isdigit() for l in leases), f"not every shard checkpointed: {leases}")
    check(all(l["lag_ms"] is None for l in leases), "lag without -t")
    rc, out, err = run(["-L", "-G", group, "-t", s, "-J"], env=group_env())
    check(rc == 0 and all(l["lag_ms"] == 0 for l in json.loads(out)["leases"]),
          f"-L -G -t: lag at the tip should be 0: {out[:300]}")
    rc, out, err = run(["-L", "-G", group], env=group_env())
    out = out.decode()
    check(rc == 0 and "4 leases" in out and "shardId-000000000000" in out, f"-L -G text: {out}")
    # -c: exactly that many, checkpointed at the last one printed; -e prints the rest and exits.
    more = "".join(f"u{i % 11}:r{i}\n" for i in range(400, 500))
    ok(["-P", "-t", s, "-K:", "-q"], more.encode())
    rc, out, err = member_output(*start_member(group, s, ["-c", "30"]))
    check(rc == 0 and len(out.splitlines()) == 30, f"-c 30 printed {len(out.splitlines())} ({rc}): {err}")
    first = [ln.split(" ")[3] for ln in out.splitlines()]
    rc, out, err = member_output(*start_member(group, s, ["-e"]))
    rest = [ln.split(" ")[3] for ln in out.splitlines()]
    check(rc == 0, f"-G -e exited {rc}: {err}")
    check(sorted(first + rest) == sorted(f"r{i}" for i in range(400, 500)),
          f"-c 30 then -e: {len(first)} + {len(rest)} records, {len(set(first + rest))} distinct, for 100")
    # A KCL .properties file with -F: its names work (maxLeasesForWorker caps this member at one).
    props = os.path.join(_home, "kcl.properties")
    with open(props, "w") as f:
        f.write("# as the KCL's samples write it\napplicationName = ignored-when-G-is-given\n"
                "failoverTimeMillis = 3000\nmaxLeasesForWorker = 1\ninitialPositionInStream = TRIM_HORIZON\n"
                "AWSCredentialsProvider = DefaultAWSCredentialsProviderChain\nregionName = us-east-1\n")
    g2 = group + "-props"
    rc, out, err = run(["-G", g2, "-t", s, "-F", props, "-e", "-v", "-f", "%p %s\\n"], env=group_env())
    shards = {ln.split(" ")[0] for ln in out.decode().splitlines()}
    check(rc == 0 and len(shards) == 1 and err.count("processing from TRIM_HORIZON") == 1,
          f"-F kcl.properties (maxLeasesForWorker = 1): exit {rc}, shards printed {shards}, stderr {err[-600:]}")
    # Bad input.
    for args, code, what in [(["-G", group], 2, "needs a stream"),
                             (["-G", group, "-t", s, "-p", "shardId-000000000000"], 2, "-p is not for -G"),
                             (["-G", group, "-t", s, "-o", "123456"], 2, "not for -G"),
                             (["-G", group, "-t", "no-such-stream-kc", "-e"], 3, "no-such-stream-kc"),
                             (["-L", "-G", "no-such-group-kc"], 3, "no lease table")]:
        rc, out, err = run(args, env=group_env())
        check(rc == code and what in err, f"kncat {' '.join(args)}: exit {rc}, stderr {err!r}")


def stats_lines(err):
    """The --stats JSON lines of a stderr text."""
    out = []
    for line in err.splitlines():
        line = line.strip("\r").replace("\x1b[K", "")
        if line.startswith('{"type":"metrics"'):
            out.append(json.loads(line))
    return out


def stats_totals(lines):
    """(name, dims as a sorted tuple) -> [sum, min, max, count, unit] over every window."""
    tot = {}
    for ln in lines:
        for m in ln["metrics"]:
            k = (m["name"], tuple(sorted(m["dimensions"].items())))
            t = tot.setdefault(k, [0.0, m["min"], m["max"], 0, m["unit"]])
            t[0] += m["sum"]
            t[1] = min(t[1], m["min"])
            t[2] = max(t[2], m["max"])
            t[3] += m["count"]
    return tot


def g_stats():
    """--stats during -P and -C; the CloudWatch publisher against moto, read back with boto3;
    a failing or hanging CloudWatch does not hold up kncat or lose a record."""
    import boto3
    import datetime
    moto = server("KN_TEST_MOTO_URL")
    stream = new_stream(shards=2)
    lines = b"".join(b"k%d:%s\n" % (i % 9, b"x" * (i % 50)) for i in range(3000))
    # -P --stats: windows while it runs (0.2 s) and the last one at the end.
    slow = b"".join(b"k%d:v%d\n" % (i % 9, i) for i in range(40))
    p = subprocess.Popen([KNCAT, "-P", "-t", stream, "-K", ":", "--stats=200"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env(KINESALITE))
    for i in range(0, len(slow), 100):
        p.stdin.write(slow[i:i + 100])
        p.stdin.flush()
        time.sleep(0.15)
    out, err = p.communicate(timeout=60)
    err = err.decode()
    check(p.returncode == 0, f"-P --stats exited {p.returncode}: {err}")
    st = stats_lines(err)
    check(len(st) >= 2, f"-P --stats=200 over ~0.5 s printed {len(st)} windows: {err[:400]}")
    tot = stats_totals(st)
    put = tot.get(("UserRecordsPut", ()), [0])[0]
    check(put == 40, f"UserRecordsPut over the windows: {put}, want 40")
    check(all(m["namespace"] == "KinesisProducerLibrary" for ln in st for m in ln["metrics"]),
          "the producer's namespace")
    # --stats with a bad interval, and outside -P/-C/-G
    rc, _, err = run(["-P", "-t", stream, "--stats=5"])
    check(rc == 2 and "--stats" in err and "100" in err, f"--stats=5: {rc} {err}")
    rc, _, err = run(["-L", "--stats"])
    check(rc == 2 and "-P, -C and -G" in err, f"-L --stats: {rc} {err}")

    # CloudWatch: what moto stored equals what --stats printed, name by name and dimension by dimension.
    ns = f"kn-test-{os.getpid()}"
    cw_args = ["-X", "metrics.cloudwatch=true", "-X", f"cloudwatch.endpoint={moto}", "-X",
               f"metrics.namespace={ns}", "-X", "metrics.granularity=stream"]
    rc, _, err = run(["-P", "-t", stream, "-K", ":", "--stats=600000"] + cw_args, stdin=lines)
    check(rc == 0, f"-P with CloudWatch exited {rc}: {err}")
    tot = stats_totals(stats_lines(err))
    check(tot.get(("UserRecordsPut", ()), [0])[0] == 3000, f"UserRecordsPut: {tot.get(('UserRecordsPut', ()))}")
    cw = boto3.client("cloudwatch", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="AKIDKNCAT", aws_secret_access_key="Sk3tKnCatSecretValue")
    listed = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m.get("Dimensions", []))))
              for m in cw.list_metrics(Namespace=ns)["Metrics"]}
    check(listed == set(tot), f"CloudWatch holds {sorted(listed)}, --stats printed {sorted(tot)}")
    now = datetime.datetime.now(datetime.timezone.utc)
    for (name, dims), (sm, mn, mx, cnt, unit) in sorted(tot.items()):
        dp = cw.get_metric_statistics(Namespace=ns, MetricName=name,
                                      Dimensions=[{"Name": k, "Value": v} for k, v in dims],
                                      StartTime=now - datetime.timedelta(hours=1),
                                      EndTime=now + datetime.timedelta(hours=1), Period=3600,
                                      Statistics=["Sum", "Minimum", "Maximum", "SampleCount"],
                                      Unit=unit)["Datapoints"]
        got = (sum(d["Sum"] for d in dp), min((d["Minimum"] for d in dp), default=None),
               max((d["Maximum"] for d in dp), default=None), sum(d["SampleCount"] for d in dp))
        if not dims:
            # moto answers a query without dimensions with every series of the name (AWS, with the
            # series that has none): compare with all of them added up.
            same = [v for (n2, _), v in tot.items() if n2 == name]
            sm, mn, mx, cnt = (sum(v[0] for v in same), min(v[1] for v in same), max(v[2] for v in same),
                               sum(v[3] for v in same))
        check(got == (sm, mn, mx, cnt), f"{name}{dict(dims)} {unit}: CloudWatch has {got}, want {(sm, mn, mx, cnt)}")

    # A CloudWatch that fails every call (500 through the fault proxy), then one that never answers:
    # every record is put, kncat ends at once, and says what happened to its metrics.
    for what, opts, expect in (("failing", ["--error-fraction", "1"], "PutMetricData failed"),
                               ("hanging", ["--slow-fraction", "1", "--slow-ms", "60000"], "still in flight")):
        proxy = subprocess.Popen([sys.executable, os.path.join(os.environ.get("KN_SOURCE_ROOT", "."), "tests",
                                  "faults", "fault_proxy.py"), moto, "--fault-target", "all"] + opts,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        port = int(proxy.stdout.readline().split()[1])
        s2 = new_stream(shards=1)
        t0 = time.monotonic()
        rc, _, err = run(["-P", "-t", s2, "-K", ":", "-v", "-X", "metrics.cloudwatch=true",
                          "-X", f"cloudwatch.endpoint=http://127.0.0.1:{port}", "-X", "metrics.interval.ms=300",
                          "-X", "metrics.cloudwatch.shutdown.ms=1000", "-X", "aws.retry.max.attempts=2",
                          "-X", "aws.retry.base.ms=20", "-X", "http.request.timeout.ms=30000"], stdin=lines,
                         timeout=60)
        took = time.monotonic() - t0
        proxy.terminate()
        proxy.wait()
        check(rc == 0, f"{what} CloudWatch: kncat -P exited {rc}: {err[-600:]}")
        check(expect in err, f"{what} CloudWatch: no '{expect}' warning in: {err[-600:]}")
        # 1 s of waiting for the last upload at most, plus the run itself
        check(took < 15, f"{what} CloudWatch: kncat -P took {took:.1f} s")
        print(f"{what} CloudWatch: kncat -P of 3000 records took {took:.1f} s")
        got = dump_json(s2)
        check(len(got) == 3000, f"{what} CloudWatch: {len(got)} records in the stream, want 3000")


def g_stats_consumers():
    """--stats in -C and -G: the records delivered and processed, MillisBehindLatest of a reader that
    starts behind (moto reports it), the lease metrics of a group member, handoffs both ways."""
    import signal
    moto = server("KN_TEST_MOTO_URL")
    stream = new_stream(shards=2, endpoint=moto)
    plain = ["-X", "aggregation.enabled=false"]  # 200 Kinesis records, so that 50 an answer means 4+ answers
    ok(["-P", "-t", stream, "-K", ":"] + plain,
       stdin=b"".join(b"a%d:first-%d\n" % (i % 5, i) for i in range(100)), endpoint=moto)
    time.sleep(1.5)
    ok(["-P", "-t", stream, "-K", ":"] + plain,
       stdin=b"".join(b"a%d:second-%d\n" % (i % 5, i) for i in range(100)), endpoint=moto)
    # -C, 50 records an answer: the first answers are 1.5 s behind the last record.
    rc, out, err = run(["-C", "-t", stream, "-e", "-f", "%s\n", "-X", "consumer.max.records=50",
                        "--stats=600000"], endpoint=moto)
    check(rc == 0 and len(out.splitlines()) == 200, f"-C --stats: {rc}, {len(out.splitlines())} records: {err}")
    tot = stats_totals(stats_lines(err))
    check(tot.get(("RecordsProcessed", ()), [0])[0] == 200, f"-C RecordsProcessed: {tot.get(('RecordsProcessed', ()))}")
    data_bytes = sum(len(l) for l in out.splitlines())
    check(tot.get(("DataBytesProcessed", ()), [0])[0] == data_bytes,
          f"-C DataBytesProcessed {tot.get(('DataBytesProcessed', ()))}, want {data_bytes}")
    mbl = tot.get(("MillisBehindLatest", ()), [0, 0, 0])[2]
    check(1000 <= mbl < 60000, f"-C MillisBehindLatest max {mbl}, want about 1500")
    per_shard = sum(v[0] for (n, d), v in tot.items() if n == "RecordsProcessed" and len(d) == 2)
    check(per_shard == 200, f"-C RecordsProcessed over the shards: {per_shard}")

    # -G on the same stream (leases in dynalite): the KCL's ProcessTask and lease metrics.
    group = f"kcs-{os.getpid()}"
    env = base_env(moto)
    env["AWS_ENDPOINT_URL_DYNAMODB"] = server("KN_TEST_DYNALITE_URL")
    rc, out, err = run(["-G", group, "-t", stream, "-e", "-o", "beginning", "-f", "%s\n", "-X",
                        "consumer.max.records=50", "-X", "consumer.worker.id=w1", "--stats=600000"], env=env,
                       timeout=120)
    check(rc == 0 and len(out.splitlines()) == 200, f"-G --stats: {rc}, {len(out.splitlines())} records: {err}")
    st = stats_lines(err)
    check(all(m["namespace"] == group for ln in st for m in ln["metrics"]), "-G: the namespace is the group")
    tot = stats_totals(st)
    op = (("Operation", "ProcessTask"),)
    check(tot.get(("RecordsProcessed", op), [0])[0] == 200, f"-G RecordsProcessed: {tot.get(('RecordsProcessed', op))}")
    check(tot.get(("DataBytesProcessed", op), [0])[0] == data_bytes, f"-G DataBytesProcessed: {tot.get(('DataBytesProcessed', op))}")
    mbl = tot.get(("MillisBehindLatest", op), [0, 0, 0])[2]
    check(1000 <= mbl < 60000, f"-G MillisBehindLatest max {mbl}, want about 1500")
    check(tot.get(("RecordProcessor.processRecords.Time", op), [0, 0, 0, 0])[3] >= 4,
          f"-G processRecords.Time: {tot.get(('RecordProcessor.processRecords.Time', op))}")
    wk = lambda o: (("Operation", o), ("WorkerIdentifier", "w1"))
    check(tot.get(("TakenLeases", wk("TakeLeases")), [0])[0] == 2, f"-G TakenLeases: {tot.get(('TakenLeases', wk('TakeLeases')))}")
    check(tot.get(("CurrentLeases", wk("RenewAllLeases")), [0, 0, 0])[2] == 2, "-G CurrentLeases max")
    check(tot.get(("LeasesReleased", wk("LeaseCoordinator")), [0])[0] == 2, "-G LeasesReleased")
    check(tot.get(("TotalLeases", wk("TakeLeases")), [0, 0, 0])[2] == 2, "-G TotalLeases max")
    check(tot.get(("NumWorkers", wk("TakeLeases")), [0, 0, 0])[2] == 1, "-G NumWorkers max")
    check(tot.get(("Checkpoints", wk("LeaseCoordinator")), [0])[0] >= 2, "-G Checkpoints")
    check(tot.get(("LostLeases", wk("RenewAllLeases")), [0])[0] == 0, "-G LostLeases")

    # A second member joins a 4-shard group: the first hands two leases over, the second receives them.
    s4 = new_stream(4)
    g2 = f"kch-{os.getpid()}"
    a = start_member(g2, s4, ["-X", "consumer.worker.id=wa", "--stats=500"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len([l for l in group_leases(g2) if l["owner"] == "wa"]) < 4:
        time.sleep(0.2)
    b = start_member(g2, s4, ["-X", "consumer.worker.id=wb", "--stats=500"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ls = group_leases(g2)
        owners = [l["owner"] for l in ls]
        if owners.count("wa") == 2 and owners.count("wb") == 2 and all(not l["handing_over"] for l in ls):
            break
        time.sleep(0.2)
    time.sleep(1)  # the new owner's claim follows the hand-over
    check(owners.count("wa") == 2 and owners.count("wb") == 2, f"the join did not split the leases: {owners}")
    _, _, errb = member_output(*b, sig=signal.SIGINT)
    _, _, erra = member_output(*a, sig=signal.SIGINT)
    ta, tb = stats_totals(stats_lines(erra)), stats_totals(stats_lines(errb))
    co = lambda w: (("Operation", "LeaseCoordinator"), ("WorkerIdentifier", w))
    check(ta.get(("LeasesHandedOver", co("wa")), [0])[0] == 2, f"wa LeasesHandedOver: {ta.get(('LeasesHandedOver', co('wa')))}")
    check(tb.get(("LeasesHandedToUs", co("wb")), [0])[0] == 2, f"wb LeasesHandedToUs: {tb.get(('LeasesHandedToUs', co('wb')))}")
    check(tb.get(("NumWorkers", (("Operation", "TakeLeases"), ("WorkerIdentifier", "wb"))), [0, 0, 0])[2] == 2,
          "wb NumWorkers max")
    ho = tb.get(("HandoffTime", co("wb")), [0, 0, 0, 0])
    check(ho[3] == 2 and 0 <= ho[1] <= ho[2] < 30000, f"wb HandoffTime (sum, min, max, count): {ho[:4]}")

    # An aggregate on shard 0 holding a sub-record whose explicit hash key belongs to shard 1 (as after
    # a reshard, or from a broken producer): SubRecordsOutOfRange in -C and -G.
    import boto3
    s2 = new_stream(2)
    k = boto3.client("kinesis", endpoint_url=KINESALITE, region_name="us-east-1",
                     aws_access_key_id="AKIDKNCAT", aws_secret_access_key="Sk3tKnCatSecretValue")
    k.put_record(StreamName=s2, Data=kpl_aggregate([("a", str(2**127 + 5), b"outside"), ("b", "1", b"inside")]),
                 PartitionKey="pk", ExplicitHashKey="0")
    rc, out, err = run(["-C", "-t", s2, "-e", "-f", "%s\n", "--stats=600000"])
    check(rc == 0 and sorted(out.split()) == [b"inside", b"outside"], f"-C of the aggregate: {rc} {out} {err}")
    sub = (("ShardId", "shardId-000000000000"), ("StreamName", s2))
    check(stats_totals(stats_lines(err)).get(("SubRecordsOutOfRange", sub), [0])[0] == 1,
          f"-C SubRecordsOutOfRange: {stats_totals(stats_lines(err)).get(('SubRecordsOutOfRange', sub))}")
    rc, out, err = run(["-G", f"kco-{os.getpid()}", "-t", s2, "-e", "-o", "beginning", "-f", "%s\n",
                        "--stats=600000"], env=group_env(), timeout=120)
    sub = (("Operation", "ProcessTask"), ("ShardId", "shardId-000000000000"))
    check(rc == 0 and stats_totals(stats_lines(err)).get(("SubRecordsOutOfRange", sub), [0])[0] == 1,
          f"-G SubRecordsOutOfRange: {rc} {stats_totals(stats_lines(err)).get(('SubRecordsOutOfRange', sub))} {err[-300:]}")


def kpl_aggregate(records):
    """A KPL aggregated record of (partition key, explicit hash key or None, data) triples, built by
    hand from the format's protobuf definition (magic, AggregatedRecord, MD5 of it)."""
    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out

    def field(tag, payload):
        return varint(tag) + varint(len(payload)) + payload

    keys, ehks, body = [], [], b""
    for pk, ehk, data in records:
        if pk not in keys:
            keys.append(pk)
        rec = varint(0x08) + varint(keys.index(pk))
        if ehk is not None:
            if ehk not in ehks:
                ehks.append(ehk)
            rec += varint(0x10) + varint(ehks.index(ehk))
        rec += field(0x1A, data)
        body += field(0x1A, rec)
    msg = b"".join(field(0x0A, k.encode()) for k in keys) + b"".join(field(0x12, e.encode()) for e in ehks) + body
    return b"\xf3\x89\x9a\xc2" + msg + hashlib.md5(msg).digest()


GROUPS = {
    "roundtrip": g_roundtrip,
    "group": g_group,
    "replay": g_replay,
    "end": g_end,
    "compress": g_compress,
    "report": g_report,
    "list": g_list,
    "admin": g_admin,
    "errors": g_errors,
    "misc": g_misc,
    "empty": g_empty,
    "stats": g_stats,
    "stats_consumers": g_stats_consumers,
}


def main():
    global KINESALITE
    if not KNCAT or GROUP not in GROUPS:
        print(f"usage: test_kncat.py KNCAT {{{','.join(GROUPS)}}}")
        return 2
    KINESALITE = server("KN_TEST_KINESALITE_URL")
    try:
        GROUPS[GROUP]()
    finally:
        for name, endpoint in _created:
            run(["-A", "delete", "-t", name, "-q"], endpoint=endpoint)
        shutil.rmtree(_home, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed in group {GROUP}")
        return 1
    print(f"group {GROUP}: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
