#!/usr/bin/env python3
"""kinesis-multilang end to end against kinesalite and dynalite, with real MultiLang processors.

Usage: test_multilang.py DAEMON KNCAT GROUP
DAEMON is the built kinesis-multilang, KNCAT kncat (it creates streams, puts records, reads the
lease table). Processors: node_processor.js (written with the npm package aws-kcl 2.3.2, pinned in
tests/servers), py_processor.py (speaks the protocol itself, as amazon_kclpy does) and scripted.py
(transcripts and misbehaviour). Groups, each its own meson test:
  node        every record reaches an aws-kcl processor exactly as put, checkpoints land in the
              lease table, SIGTERM ends each shard with shutdownRequested and exits 0; a restarted
              daemon resumes from the checkpoints; after a split shardEnded is handled and the
              children are processed
  node_v1     the older aws-kcl style (one shutdown(reason), as the package's own sample is
              written): the first part, then a split ends its shard with shutdown TERMINATE
  python      the same first part with the Python processor (sub-sequence numbers sent)
  transcript  the exact lines both ways for initialize, processRecords, every checkpoint outcome
              (refused in initialize, past the last record, not a number; accepted), lines that
              are not messages, shutdownRequested, shardEnded and leaseLost, against golden files
  crash       a processor that exits in processRecords fails only its shard: restarted from the
              checkpoint, nothing lost, the other shard's processor untouched
  hang        one that stops answering is stopped after timeoutInSeconds, the same way
  garbage     one that writes a wrong message is stopped, the same way
  two         two daemons on one stream share its shards, every record once
  props       the properties file: unknown keys named in a warning, required ones missing named,
              --help, --version
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

DAEMON = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""
KNCAT = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else ""
GROUP = sys.argv[3] if len(sys.argv) > 3 else ""
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
NODE_MODULES = os.path.join(ROOT, "tests", "servers", "node_modules")
GOLDEN = os.path.join(HERE, "golden")

failures = []
_tmp = tempfile.mkdtemp(prefix="kn-multilang-")


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def env(extra=None):
    e = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": _tmp,
        "AWS_ACCESS_KEY_ID": "AKIDMULTILANG",
        "AWS_SECRET_ACCESS_KEY": "multilang-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_KINESIS": os.environ["KN_TEST_KINESALITE_URL"],
        "AWS_ENDPOINT_URL_DYNAMODB": os.environ["KN_TEST_DYNALITE_URL"],
        "NODE_PATH": NODE_MODULES,
    }
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LD_LIBRARY_PATH"):
        if k in os.environ:
            e[k] = os.environ[k]
    e.update(extra or {})
    return e


def kncat(args, stdin=b""):
    p = subprocess.run([KNCAT] + args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(),
                       timeout=120)
    if p.returncode != 0:
        fail(f"kncat {' '.join(args)} exited {p.returncode}: {p.stderr.decode()[-1500:]}")
    return p.stdout


_n = [0]


def names(tag):
    _n[0] += 1
    return f"kml-{tag}-{os.getpid()}-{_n[0]}", f"kmlapp-{tag}-{os.getpid()}-{_n[0]}"


def create(stream, shards):
    kncat(["-A", "create", "-t", stream, "--shards", str(shards), "-q"])


def put(stream, first, count, extra=()):
    lines = "".join(f"k{i % 7}:d-{i}\n" for i in range(first, first + count))
    kncat(["-P", "-t", stream, "-K:", "-q"] + list(extra), lines.encode())


def leases(app):
    p = subprocess.run([KNCAT, "-L", "-G", app, "-J"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    if p.returncode != 0:
        return []
    return json.loads(p.stdout)["leases"]


def properties(stream, app, executable, extra=()):
    path = os.path.join(_tmp, f"{app}.properties")
    with open(path, "w") as f:
        f.write("# A KCL MultiLang properties file, as the KCL's samples write it\n"
                f"executableName = {executable}\n"
                f"streamName = {stream}\n"
                f"applicationName = {app}\n"
                "AWSCredentialsProvider = DefaultCredentialsProvider\n"
                "processingLanguage = nodejs/20\n"
                "initialPositionInStream = TRIM_HORIZON\n"
                "regionName = us-east-1\n"
                "failoverTimeMillis = 3000\n"
                "idleTimeBetweenReadsInMillis = 100\n")
        for line in extra:
            f.write(line + "\n")
    return path


class Daemon:
    def __init__(self, props, tag, extra_env=None, args=()):
        self.out = os.path.join(_tmp, f"{tag}.out")
        self.err_path = os.path.join(_tmp, f"{tag}.err")
        self.err = open(self.err_path, "wb")
        state = os.path.join(_tmp, f"{tag}.state")
        os.makedirs(state, exist_ok=True)
        e = env({"KN_ML_OUT": self.out, "KN_ML_STATE": state})
        e.update(extra_env or {})
        self.p = subprocess.Popen([DAEMON, "--properties-file", props] + list(args), stdout=subprocess.DEVNULL,
                                  stderr=self.err, env=e, cwd=HERE)

    def lines(self, kind=None):
        try:
            with open(self.out) as f:
                ls = [ln.rstrip("\n").split(" ") for ln in f]
        except OSError:
            return []
        return [ln for ln in ls if kind is None or ln[0] == kind]

    def records(self):
        return [ln for ln in self.lines("REC")]

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait(self, pred, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return True
            if self.p.poll() is not None:
                fail(f"the daemon exited ({self.p.returncode}) while waiting for {what}: {self.stderr()[-2000:]}")
                return False
            time.sleep(0.1)
        fail(f"timed out waiting for {what}; daemon stderr: {self.stderr()[-2000:]}")
        return False

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail("the daemon did not exit within 60 s of SIGTERM")
            self.p.kill()
            self.p.wait()
        self.err.close()
        check(self.p.returncode == 0, f"the daemon exited {self.p.returncode} after SIGTERM: {self.stderr()[-2000:]}")


def data_of(recs):
    """The record indexes (d-<i>) in REC lines; the data is the last field."""
    return [int(r[-1][2:]) for r in recs]


def exactly(recs, want, what):
    got = sorted(data_of(recs))
    check(got == sorted(want), f"{what}: {len(got)} records ({len(set(got))} distinct), expected {len(want)}")


def check_keys(recs):
    for r in recs:
        i = int(r[-1][2:])
        check(f"k{i % 7}" == r[-2], f"record d-{i} came with key {r[-2]}")


def check_sequence_numbers(stream, recs):
    """Each record came with the sequence and sub-sequence numbers the stream holds it under."""
    dump = kncat(["-C", "-t", stream, "-e", "-f", "%s %p %o %u\\n"]).decode().split("\n")
    where = {}
    for line in dump:
        if line:
            data, shard, seq, sub = line.split(" ")
            where[data] = (shard, seq, sub)
    for r in recs:
        check(where.get(r[-1]) == (r[1], r[2], r[3]),
              f"{r[-1]}: delivered as {r[1]} {r[2]}/{r[3]}, the stream has {where.get(r[-1])}")


# ----------------------------------------------------------------- groups

def run_processor(executable, tag):
    stream, app = names(tag)
    create(stream, 2)
    put(stream, 0, 60)
    props = properties(stream, app, executable)
    d = Daemon(props, tag + "1")
    d.wait(lambda: len(d.records()) >= 60, 60, "60 records")
    time.sleep(0.5)
    recs = d.records()
    exactly(recs, range(60), "first run")
    check_keys(recs)
    check_sequence_numbers(stream, recs)
    check(all(ln[-1] == "ok" for ln in d.lines("CK")), f"checkpoints refused: {d.lines('CK')[:3]}")
    ls = leases(app)
    check(len(ls) == 2 and all(l["checkpoint"].isdigit() for l in ls), f"checkpoints not in the table: {ls}")
    d.stop()
    check(len(d.lines("SHUTDOWN")) == 2, f"shutdownRequested not seen for both shards: {d.lines('SHUTDOWN')}")
    check(all(l["owner"] is None for l in leases(app)), "leases not released at SIGTERM")
    return stream, app, props


def g_node():
    stream, app, props = run_processor("node node_processor.js", "node")
    # Restarted: resumes from the checkpoints; a split meanwhile: shardEnded, then the children.
    put(stream, 60, 30)
    d = Daemon(props, "node2")
    d.wait(lambda: len(d.records()) >= 30, 60, "the 30 new records")
    kncat(["-A", "split", "-t", stream, "shardId-000000000000"])
    put(stream, 90, 40)
    d.wait(lambda: len(d.records()) >= 70 and d.lines("ENDED"), 60, "shardEnded and 40 more records")
    time.sleep(0.5)
    recs = d.records()
    exactly(recs, range(60, 130), "after the restart and the split")
    check_keys(recs)
    ended = d.lines("ENDED")
    check(len(ended) == 1 and ended[0][1] == "shardId-000000000000" and ended[0][2] == "ok",
          f"shardEnded: {ended}")
    # The parent's records before any child's, per key.
    pos = {}
    for n, r in enumerate(recs):
        pos.setdefault(r[1], []).append(n)
    children = [s for s in pos if s not in ("shardId-000000000000", "shardId-000000000001")]
    check(children, f"no child shard processed: {sorted(pos)}")
    if "shardId-000000000000" in pos:
        for c in children:
            check(max(pos["shardId-000000000000"]) < min(pos[c]), f"{c} processed before its parent ended")
    ls = {l["shard"]: l for l in leases(app)}
    check(ls.get("shardId-000000000000", {}).get("checkpoint", "SHARD_END") == "SHARD_END",
          f"the parent's lease: {ls.get('shardId-000000000000')}")
    d.stop()


def g_python():
    run_processor("python3 py_processor.py", "python")


def g_node_v1():
    """The older aws-kcl processor style (a single shutdown with a reason), as the package's sample."""
    stream, app, props = run_processor("node node_processor_v1.js", "nodev1")
    d = Daemon(props, "nodev1b")
    d.wait(lambda: d.lines("INIT"), 30, "the processors to start again")
    kncat(["-A", "split", "-t", stream, "shardId-000000000001"])
    d.wait(lambda: d.lines("ENDED"), 60, "shutdown(TERMINATE) after the split")
    ended = d.lines("ENDED")
    check(ended[0][1] == "shardId-000000000001" and ended[0][2] == "ok", f"shutdown(TERMINATE): {ended}")
    d.stop()


def normalize(path):
    """The transcript with what changes from run to run replaced: sequence numbers in order of
    appearance, arrival times, MillisBehindLatest, shard ids of children."""
    seqs = {}
    out = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            side, _, text = line.partition(" ")
            try:
                m = json.loads(text)
            except ValueError:
                out.append(line)
                continue

            def fix(o):
                if isinstance(o, dict):
                    r = {}
                    for k, v in o.items():
                        if k == "sequenceNumber" and isinstance(v, str) and v.isdigit():
                            r[k] = seqs.setdefault(v, "SEQ%d" % (len(seqs) + 1))
                        elif k == "approximateArrivalTimestamp":
                            r[k] = "TS" if v is not None else None
                        elif k == "millisBehindLatest":
                            r[k] = "MBL" if v is not None else None
                        else:
                            r[k] = fix(v)
                    return r
                if isinstance(o, list):
                    return [fix(x) for x in o]
                return o
            out.append(side + " " + json.dumps(fix(m), sort_keys=True, separators=(",", ":")))
    return out


def compare_golden(path, golden):
    got = normalize(path)
    gpath = os.path.join(GOLDEN, golden)
    if os.environ.get("KN_ML_WRITE_GOLDEN"):
        with open(gpath, "w") as f:
            f.write("\n".join(got) + "\n")
        print(f"wrote {gpath}")
        return
    with open(gpath) as f:
        want = [ln.rstrip("\n") for ln in f]
    if got != want:
        import difflib
        fail(f"transcript differs from {golden}:\n" + "\n".join(difflib.unified_diff(want, got, "golden", "run",
                                                                                    lineterm="")))


def g_transcript():
    # initialize, processRecords with every checkpoint outcome, shutdownRequested.
    stream, app = names("tx")
    create(stream, 1)
    put(stream, 0, 3)
    props = properties(stream, app, "python3 scripted.py")
    d = Daemon(props, "tx1", {"KN_ML_MODE": "transcript"})
    d.wait(lambda: len(d.records()) >= 3, 30, "3 records")
    time.sleep(0.5)
    d.stop()
    compare_golden(d.out + ".shardId-000000000000", "basic.txt")
    # shardEnded after a split.
    stream, app = names("txend")
    create(stream, 1)
    put(stream, 0, 2)
    props = properties(stream, app, "python3 scripted.py")
    d = Daemon(props, "tx2", {"KN_ML_MODE": "transcript"})
    d.wait(lambda: len(d.records()) >= 2, 30, "2 records")
    kncat(["-A", "split", "-t", stream, "shardId-000000000000"])
    d.wait(lambda: d.lines("ENDED"), 30, "shardEnded")
    time.sleep(0.5)
    d.stop()
    compare_golden(d.out + ".shardId-000000000000", "shard_end.txt")
    # leaseLost: DynamoDB unreachable past the lease (a proxy that resets every request).
    stream, app = names("txlost")
    create(stream, 1)
    put(stream, 0, 1)
    proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "faults", "fault_proxy.py"),
                              os.environ["KN_TEST_DYNALITE_URL"], "--fault-target", "all"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(proxy.stdout.readline().split()[1])
    props = properties(stream, app, "python3 scripted.py", [f"dynamoDBEndpoint = http://127.0.0.1:{port}"])
    d = Daemon(props, "tx3", {"KN_ML_MODE": "transcript", "AWS_ENDPOINT_URL_DYNAMODB": ""})
    d.wait(lambda: len(d.records()) >= 1, 30, "1 record")
    time.sleep(0.5)
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/__proxy/config",
                                                  data=b'{"reset_fraction":1}', method="POST")).read()
    d.wait(lambda: d.lines("LOST"), 15, "leaseLost")
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/__proxy/config",
                                                  data=b'{"reset_fraction":0}', method="POST")).read()
    time.sleep(0.5)
    d.stop()
    proxy.terminate()
    proxy.wait()
    # The processor after leaseLost is ended; a new tenure may begin: compare up to its end.
    path = d.out + ".shardId-000000000000.first"
    with open(d.out + ".shardId-000000000000") as f, open(path, "w") as g:
        for line in f:
            g.write(line)
            if '"responseFor":"leaseLost"' in line:
                break
    compare_golden(path, "lease_lost.txt")
    # The checkpoint errors DynamoDB causes: throttled (ThrottlingException), failing
    # (KinesisClientLibDependencyException); then it works again.
    stream, app = names("txerr")
    create(stream, 1)
    proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "faults", "fault_proxy.py"),
                              os.environ["KN_TEST_DYNALITE_URL"], "--fault-target", "UpdateItem"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(proxy.stdout.readline().split()[1])
    props = properties(stream, app, "python3 scripted.py", [f"dynamoDBEndpoint = http://127.0.0.1:{port}"])
    d = Daemon(props, "tx4", {"KN_ML_MODE": "transcript", "AWS_ENDPOINT_URL_DYNAMODB": ""},
               args=["-X", "aws.retry.max.attempts=2", "-X", "aws.retry.base.ms=20"])
    d.wait(lambda: d.lines("INIT"), 30, "the processor")
    transcript = d.out + ".shardId-000000000000"

    def replies(word):
        try:
            with open(transcript) as f:
                return f.read().count(word)
        except OSError:
            return 0

    def proxy_set(body):
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/__proxy/config",
                                                      data=body, method="POST")).read()

    proxy_set(b'{"throttle_fraction":1}')
    put(stream, 0, 1)
    d.wait(lambda: replies("ThrottlingException") >= 1, 20, "a ThrottlingException reply")
    proxy_set(b'{"throttle_fraction":0,"error_fraction":1}')
    put(stream, 1, 1)
    d.wait(lambda: replies("KinesisClientLibDependencyException") >= 1, 20, "a dependency exception reply")
    proxy_set(b'{"error_fraction":0}')
    put(stream, 2, 1)
    d.wait(lambda: len(d.records()) >= 3 and replies('"error":null') >= 1, 20, "the third record checkpointed")
    time.sleep(0.5)
    d.stop()
    proxy.terminate()
    proxy.wait()
    compare_golden(transcript, "checkpoint_errors.txt")


def misbehaving(mode, reason):
    stream, app = names(mode)
    create(stream, 2)
    put(stream, 0, 40)
    extra = ["timeoutInSeconds = 2"] if mode == "hang" else []
    props = properties(stream, app, "python3 scripted.py", extra)
    d = Daemon(props, mode, {"KN_ML_MODE": mode, "KN_ML_BAD_SHARD": "shardId-000000000000"},
               args=["-X", "consumer.processor.retry.ms=200"])
    d.wait(lambda: len({int(r[-1][2:]) for r in d.records()}) >= 40, 60, "every record despite the bad child")
    time.sleep(0.5)
    inits = {}
    for ln in d.lines("INIT"):
        inits.setdefault(ln[1], set()).add(ln[2])
    check(len(inits.get("shardId-000000000000", ())) == 2,
          f"the bad shard's processor should have run twice: {inits}")
    check(len(inits.get("shardId-000000000001", ())) == 1,
          f"the other shard's processor should not have been touched: {inits}")
    got = {int(r[-1][2:]) for r in d.records()}
    check(got == set(range(40)), f"records lost: {sorted(set(range(40)) - got)[:5]}")
    err = d.stderr()
    check(reason in err, f"the daemon's log does not say why ({reason!r}): {err[-1500:]}")
    check("shardId-000000000000: scripted child for shardId-000000000000 starting" in err,
          f"the child's stderr is not in the log with its shard: {err[-1500:]}")
    d.stop()


def g_crash():
    misbehaving("crash", "the processor closed its stdout; it exited with status 3")


def g_hang():
    misbehaving("hang", "no answer to processRecords within 2000 ms")


def g_garbage():
    misbehaving("garbage", 'protocol error: a status for "initialize" while processRecords was asked')


def g_two():
    stream, app = names("two")
    create(stream, 4)
    props = properties(stream, app, "node node_processor.js", ["maxLeasesToStealAtOneTime = 1"])
    a = Daemon(props, "twoa", args=["-X", "consumer.worker.id=daemon-a"])
    b = Daemon(props, "twob", args=["-X", "consumer.worker.id=daemon-b"])

    def shared():
        owners = [l["owner"] for l in leases(app)]
        return len(owners) == 4 and sorted(owners.count(o) for o in set(owners)) == [2, 2]

    a.wait(shared, 30, "the two daemons to hold two shards each")
    put(stream, 0, 200)
    a.wait(lambda: len(a.records()) + len(b.records()) >= 200, 60, "200 records")
    time.sleep(1)
    exactly(a.records() + b.records(), range(200), "two daemons together")
    check(a.records() and b.records(), "one daemon processed nothing")
    a.stop()
    b.stop()


def g_props():
    stream, app = names("props")
    create(stream, 1)
    props = properties(stream, app, "python3 py_processor.py", ["someUnknownKey = 1", "metricsMaxQueueSize = 100", "metricsLevel = NONE"])
    d = Daemon(props, "props", args=["-X", "consumer.idle.time.ms=100"])
    d.wait(lambda: "running" in d.stderr(), 30, "the daemon to start")
    d.stop()
    err = d.stderr()
    check("someUnknownKey" in err and "ignored" in err, f"unknown key not named: {err[-1000:]}")
    check("metricsMaxQueueSize" in err and "not supported" in err and "metricsLevel" not in err,
          f"unsupported KCL key not named: {err[-1000:]}")
    check("processingLanguage" not in err, "processingLanguage (understood) warned about")
    bad = os.path.join(_tmp, "bad.properties")
    with open(bad, "w") as f:
        f.write(f"streamName = {stream}\napplicationName = {app}\n")
    p = subprocess.run([DAEMON, "--properties-file", bad], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    check(p.returncode == 2 and b"executableName is required" in p.stderr, f"no executableName: {p.returncode} {p.stderr}")
    p = subprocess.run([DAEMON], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    check(p.returncode == 2 and b"--properties-file" in p.stderr, f"no file: {p.returncode} {p.stderr}")
    p = subprocess.run([DAEMON, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    check(p.returncode == 0 and b"Usage: kinesis-multilang" in p.stdout, "--help")
    p = subprocess.run([DAEMON, "-V"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    check(p.returncode == 0 and b"libkinesis" in p.stdout, "-V")
    with open(bad, "w") as f:
        f.write(f"executableName = /nonexistent/processor\nstreamName = {stream}\napplicationName = {app}\n"
                "initialPositionInStream = TRIM_HORIZON\n")
    put(stream, 0, 1)
    d = Daemon(bad, "nonexistent")
    d.wait(lambda: "cannot run \"/nonexistent/processor\"" in d.stderr(), 30, "the bad executable named")
    d.stop()


GROUPS = {"node": g_node, "node_v1": g_node_v1, "python": g_python, "transcript": g_transcript, "crash": g_crash, "hang": g_hang,
          "garbage": g_garbage, "two": g_two, "props": g_props}


def main():
    if not DAEMON or not KNCAT or GROUP not in GROUPS:
        print(f"usage: test_multilang.py DAEMON KNCAT {{{','.join(GROUPS)}}}")
        return 2
    for var in ("KN_TEST_KINESALITE_URL", "KN_TEST_DYNALITE_URL"):
        if not os.environ.get(var):
            print(f"{var} is not set: run through tests/servers/with-servers.sh (tools/test.sh does)")
            return 1
    if not os.path.isdir(os.path.join(NODE_MODULES, "aws-kcl")):
        print(f"{NODE_MODULES}/aws-kcl is missing: run tools/setup.sh (npm ci in tests/servers)")
        return 1
    GROUPS[GROUP]()
    for name in sorted(os.listdir(_tmp)):
        if name.endswith(".err"):
            with open(os.path.join(_tmp, name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            for marker in ("runtime error:", "AddressSanitizer", "LeakSanitizer"):
                if marker in text:
                    fail(f"{name}: {marker}: {text[text.index(marker) - 200:][:1500]}")
    if failures:
        print(f"{len(failures)} check(s) failed in group {GROUP}; files in {_tmp}")
        return 1
    print(f"group {GROUP}: all checks passed")
    shutil.rmtree(_tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
