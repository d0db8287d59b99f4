#!/usr/bin/env python3
"""Several consumer worker processes on one stream (kinesalite + dynalite).

Usage: test_workers.py WORKER KNCAT GROUP
WORKER is tests/integration/consumer/worker (one kn_consumer_t per process,
writing what happens to it with the host's monotonic clock), KNCAT the kncat
executable (it puts the records and reads the lease table, -L -G -J).
Each GROUP is one meson test:
  balance   three workers, fed while they run: every record processed, each
            shard by one worker at a time, an even share; a worker restarted
            resumes from the checkpoints (nothing before them again, no gap)
  kill9     kill -9 of a worker: its shards resumed within failover + 2 s
  sigterm   SIGTERM of a worker: its shards taken over in under 1 s, nothing
            processed twice
  join      a worker joining gets its fair share within two failover periods,
            nothing processed twice
  sigstop   a worker stopped past its lease: the others take over; resumed, it
            reports the leases lost and none of its late checkpoints lands;
            the table's checkpoints only ever move forward
  example   tools/examples/consumer_example as its comment says to run it (EXAMPLE,
            the fourth argument): every record printed, checkpointed, SIGINT exits 0
The failover time is 3 s here (consumer.failover.ms), the KCL's 10 s in the
benchmark (tests/bench/group).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

WORKER = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""
KNCAT = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else ""
GROUP = sys.argv[3] if len(sys.argv) > 3 else ""
EXAMPLE = os.path.abspath(sys.argv[4]) if len(sys.argv) > 4 else ""
FAILOVER_MS = 3000

failures = []
_tmp = tempfile.mkdtemp(prefix="kn-workers-")


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def mono_ms():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)


def env():
    e = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": _tmp,
        "AWS_ACCESS_KEY_ID": "AKIDWORKERS",
        "AWS_SECRET_ACCESS_KEY": "workers-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_KINESIS": os.environ["KN_TEST_KINESALITE_URL"],
        "AWS_ENDPOINT_URL_DYNAMODB": os.environ["KN_TEST_DYNALITE_URL"],
    }
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LD_LIBRARY_PATH"):
        if k in os.environ:
            e[k] = os.environ[k]
    return e


def kncat(args, stdin=b"", timeout=120):
    p = subprocess.run([KNCAT] + args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env(), timeout=timeout)
    if p.returncode != 0:
        fail(f"kncat {' '.join(args)} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    return p.stdout


_n = [0]


def names(tag):
    _n[0] += 1
    return f"kw-{tag}-{os.getpid()}-{_n[0]}", f"kwapp-{tag}-{os.getpid()}-{_n[0]}"


def create(stream, shards):
    kncat(["-A", "create", "-t", stream, "--shards", str(shards), "-q"])


def put(stream, first, count):
    lines = "".join(f"k{i % 13}:d-{i}\n" for i in range(first, first + count))
    kncat(["-P", "-t", stream, "-K:", "-q"], lines.encode())


def leases(app):
    """The group's leases; none while no worker has made the table yet."""
    p = subprocess.run([KNCAT, "-L", "-G", app, "-J"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env(), timeout=60)
    if p.returncode == 3:
        return []
    if p.returncode != 0:
        fail(f"kncat -L -G {app} -J exited {p.returncode}: {p.stderr.decode()[-2000:]}")
        return []
    try:
        return json.loads(p.stdout)["leases"]
    except (ValueError, KeyError):
        fail(f"kncat -L -G {app} -J printed {p.stdout[:200]!r}")
        return []


class Worker:
    """One worker process; its lines are read as they come."""

    def __init__(self, stream, app, wid, extra=()):
        self.wid = wid
        self.lines = []
        self.lock = threading.Lock()
        self.err = open(os.path.join(_tmp, f"{wid}.log"), "wb")
        args = [WORKER, stream, app, wid, f"consumer.failover.ms={FAILOVER_MS}",
                "consumer.lease.scan.ms=200"] + list(extra)
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, env=env())
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.p.stdout:
            parts = raw.decode("utf-8", "replace").rstrip("\n").split(" ")
            with self.lock:
                self.lines.append(parts)

    def events(self, kind=None):
        with self.lock:
            return [ln for ln in self.lines if kind is None or ln[1] == kind]

    def wait(self, pred, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return True
            time.sleep(0.05)
        fail(f"{self.wid}: timed out waiting for {what}")
        return False

    def held(self):
        """Shards whose tenure began and has not closed."""
        now = set()
        for ln in self.events():
            if ln[1] == "INIT":
                now.add(ln[2])
            elif ln[1] == "CLOSE":
                now.discard(ln[2])
        return now

    def stop(self, sig=signal.SIGTERM, timeout=30):
        t = mono_ms()
        self.p.send_signal(sig)
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail(f"{self.wid} did not exit within {timeout}s of signal {sig}")
            self.p.kill()
            self.p.wait()
        self.t.join(timeout=5)
        self.err.close()
        if sig in (signal.SIGTERM, signal.SIGINT):
            check(self.p.returncode == 0, f"{self.wid} exited {self.p.returncode} after SIGTERM: "
                  f"{self.log_tail()}")
        return t

    def log_tail(self):
        try:
            with open(os.path.join(_tmp, f"{self.wid}.log"), "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""


def records(workers):
    """(worker, ms, shard, seq, sub, idx) for every REC line."""
    out = []
    for w in workers:
        for ln in w.events("REC"):
            out.append((w.wid, int(ln[0]), ln[2], ln[3], int(ln[4]), int(ln[5][2:])))
    return out


def check_all_processed(workers, n, exactly_once):
    seen = {}
    for r in records(workers):
        seen[r[5]] = seen.get(r[5], 0) + 1
    missing = [i for i in range(n) if i not in seen]
    check(not missing, f"{len(missing)} records never processed (first {missing[:5]})")
    if exactly_once:
        twice = [i for i, c in seen.items() if c > 1]
        check(not twice, f"{len(twice)} records processed more than once (first {twice[:5]})")


def tenures(workers, ends=None):
    """Per shard: [(start ms, end ms, worker)] from INIT to CLOSE (or to ends[worker])."""
    per = {}
    for w in workers:
        open_ = {}
        for ln in w.events():
            if ln[1] == "INIT":
                open_[ln[2]] = int(ln[0])
            elif ln[1] == "CLOSE" and ln[2] in open_:
                per.setdefault(ln[2], []).append((open_.pop(ln[2]), int(ln[0]), w.wid))
        for shard, start in open_.items():
            end = (ends or {}).get(w.wid, mono_ms())
            per.setdefault(shard, []).append((start, end, w.wid))
    return per


def check_no_overlap(workers, ends=None):
    for shard, spans in tenures(workers, ends).items():
        spans.sort()
        for a, b in zip(spans, spans[1:]):
            check(a[1] <= b[0], f"{shard}: tenures overlap: {a[2]} until {a[1]}, {b[2]} from {b[0]}")


def check_resume_after_checkpoint(w):
    """Every record of a tenure comes after the checkpoint it started from."""
    start = {}
    for ln in w.events():
        if ln[1] == "INIT":
            start[ln[2]] = (ln[3], int(ln[4]))
        elif ln[1] == "REC":
            ck, sub = start.get(ln[2], ("TRIM_HORIZON", 0))
            if ck.isdigit():
                seq, s = int(ln[3]), int(ln[4])
                check((seq, s) > (int(ck), sub),
                      f"{w.wid}: {ln[2]} record {ln[3]}/{ln[4]} at or before its start {ck}/{sub}")


def counts(app):
    out = {}
    for l in leases(app):
        if l["owner"] and l["checkpoint"] != "SHARD_END":
            out[l["owner"]] = out.get(l["owner"], 0) + 1
    return out


# ----------------------------------------------------------------- groups

def g_balance():
    stream, app = names("balance")
    create(stream, 6)
    put(stream, 0, 300)
    ws = [Worker(stream, app, f"w{i}") for i in range(3)]
    ok = ws[0].wait(lambda: sorted(counts(app).values()) == [2, 2, 2], 20, "an even share (2, 2, 2)")
    for i in range(5):  # fed while they run
        put(stream, 300 + i * 200, 200)
    n = 1300
    ws[0].wait(lambda: len({r[5] for r in records(ws)}) >= n, 60, f"all {n} records")
    check_all_processed(ws, n, exactly_once=True)
    check_no_overlap(ws)
    if ok:
        check(all(len(w.held()) == 2 for w in ws), f"held: {[sorted(w.held()) for w in ws]}")
    # A worker restarted (new process, same id) resumes from the checkpoints.
    ws[2].stop()
    put(stream, n, 200)
    again = Worker(stream, app, "w2")
    ws2 = [ws[0], ws[1], again]
    n2 = n + 200
    again.wait(lambda: len({r[5] for r in records(ws + [again])}) >= n2, 60, f"all {n2} records")
    again.wait(lambda: sorted(counts(app).values()) == [2, 2, 2], 20, "an even share again")
    check_all_processed(ws + [again], n2, exactly_once=True)
    for w in ws + [again]:
        check_resume_after_checkpoint(w)
    check_no_overlap(ws + [again])
    for w in ws2:
        w.stop()


def g_kill9():
    stream, app = names("kill9")
    create(stream, 4)
    a, b = Worker(stream, app, "a"), Worker(stream, app, "b")
    a.wait(lambda: sorted(counts(app).values()) == [2, 2], 20, "2 and 2")
    put(stream, 0, 400)
    a.wait(lambda: len({r[5] for r in records([a, b])}) >= 400, 60, "the first 400 records")
    taken = a.held()
    t_kill = a.stop(signal.SIGKILL)
    put(stream, 400, 200)
    b.wait(lambda: taken <= b.held(), (FAILOVER_MS + 10000) / 1000, f"b to take {sorted(taken)}")
    for shard in sorted(taken):
        inits = [int(ln[0]) for ln in b.events("INIT") if ln[2] == shard and int(ln[0]) > t_kill]
        if check(inits, f"b never took {shard}"):
            took = inits[0] - t_kill
            print(f"kill -9: {shard} resumed by b {took} ms after the kill "
                  f"(failover {FAILOVER_MS} ms)", flush=True)
            check(took <= FAILOVER_MS + 2000, f"{shard} resumed {took} ms after kill -9 "
                  f"(more than failover {FAILOVER_MS} + 2000 ms)")
    b.wait(lambda: len({r[5] for r in records([a, b])}) >= 600, 60, "all 600 records")
    check_all_processed([a, b], 600, exactly_once=False)  # at least once after a crash
    check_no_overlap([a, b], ends={"a": t_kill})
    b.stop()


def g_sigterm():
    stream, app = names("sigterm")
    create(stream, 4)
    a, b = Worker(stream, app, "a"), Worker(stream, app, "b")
    a.wait(lambda: sorted(counts(app).values()) == [2, 2], 20, "2 and 2")
    put(stream, 0, 400)
    a.wait(lambda: len({r[5] for r in records([a, b])}) >= 400, 60, "the first 400 records")
    taken = a.held()
    feeder = threading.Thread(target=lambda: [put(stream, 400 + i * 50, 50) for i in range(4)])
    feeder.start()
    a.stop(signal.SIGTERM)
    feeder.join()
    b.wait(lambda: taken <= b.held(), 10, f"b to take {sorted(taken)}")
    for shard in sorted(taken):
        closes = [int(ln[0]) for ln in a.events("CLOSE") if ln[2] == shard]
        inits = [int(ln[0]) for ln in b.events("INIT") if ln[2] == shard]
        if check(closes and inits, f"{shard}: no handover seen"):
            gap = inits[-1] - closes[-1]
            print(f"SIGTERM: {shard} taken over by b {gap} ms after a let it go", flush=True)
            check(gap < 1000, f"{shard} taken over {gap} ms after a released it (1 s allowed)")
    b.wait(lambda: len({r[5] for r in records([a, b])}) >= 600, 60, "all 600 records")
    check_all_processed([a, b], 600, exactly_once=True)
    check_no_overlap([a, b])
    b.stop()


def g_join():
    stream, app = names("join")
    create(stream, 4)
    a = Worker(stream, app, "a")
    a.wait(lambda: counts(app).get("a") == 4, 20, "a to hold all 4")
    feeding = [True]

    def feed():
        i = 0
        while feeding[0]:
            put(stream, i * 40, 40)
            i += 1
        return i

    done = []
    th = threading.Thread(target=lambda: done.append(feed()))
    th.start()
    time.sleep(1)
    t0 = mono_ms()
    b = Worker(stream, app, "b")
    fair = b.wait(lambda: sorted(counts(app).values()) == [2, 2], 2 * FAILOVER_MS / 1000 + 5,
                  "a fair share (2 and 2)")
    if fair:
        took = mono_ms() - t0
        print(f"join: fair share {took} ms after the second worker started "
              f"(failover {FAILOVER_MS} ms)", flush=True)
        check(took <= 2 * FAILOVER_MS, f"fair share after {took} ms (two failover periods allowed)")
    time.sleep(1)
    feeding[0] = False
    th.join()
    n = done[0] * 40
    b.wait(lambda: len({r[5] for r in records([a, b])}) >= n, 60, f"all {n} records")
    check_all_processed([a, b], n, exactly_once=True)
    check_no_overlap([a, b])
    a.stop()
    b.stop()


def g_sigstop():
    stream, app = names("sigstop")
    create(stream, 2)
    # a is slow: each batch is written, then a pause before its checkpoint.
    a = Worker(stream, app, "a", ["pause.ms=700", "consumer.max.leases=2"])
    a.wait(lambda: counts(app).get("a") == 2, 20, "a to hold both shards")
    b = Worker(stream, app, "b")
    history = {}
    watching = [True]

    def watch():
        while watching[0]:
            for l in leases(app):
                ck = l["checkpoint"]
                if ck.isdigit():
                    v = (int(ck), l["subseq"])
                    prev = history.get(l["shard"])
                    check(prev is None or v >= prev,
                          f"{l['shard']}: checkpoint moved back from {prev} to {v}")
                    history[l["shard"]] = v
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    feeding = [True]
    fed = [0]

    def feed():
        while feeding[0]:
            put(stream, fed[0], 20)
            fed[0] += 20
            time.sleep(0.1)

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(2)
    mine = a.held()
    a.p.send_signal(signal.SIGSTOP)
    t_stop = mono_ms()
    b.wait(lambda: mine <= b.held(), (FAILOVER_MS + 8000) / 1000, "b to take a's shards")
    time.sleep(0.5)
    t_cont = mono_ms()
    a.p.send_signal(signal.SIGCONT)
    a.wait(lambda: len(a.events("LOST")) >= len(mine), 10, "a to report its leases lost")
    time.sleep(1)
    feeding[0] = False
    feeder.join()
    n = fed[0]
    b.wait(lambda: len({r[5] for r in records([a, b])}) >= n, 60, f"all {n} records")
    watching[0] = False
    watcher.join()
    # Checkpoints after SIGCONT by the tenures that began before SIGSTOP (a may take a
    # shard again later, in a tenure of its own, and checkpoint that one).
    stale, began = [], {}
    for ln in a.events():
        if ln[1] == "INIT":
            began[ln[2]] = int(ln[0])
        elif ln[1] == "CK" and int(ln[0]) >= t_cont and began.get(ln[2], 0) < t_stop:
            stale.append(ln)
    late = [ln for ln in stale if ln[5] == "KN_ERR_OK"]
    check(not late, f"a's checkpoints after SIGCONT landed: {late[:3]}")
    refused = [ln for ln in stale if ln[5] == "KN_ERR_LEASE_LOST"]
    print(f"sigstop: a stopped at {t_stop}, resumed at {t_cont}; {len(refused)} late checkpoints "
          f"refused with KN_ERR_LEASE_LOST, {len(a.events('LOST'))} leases reported lost",
          flush=True)
    check(refused, "a made no checkpoint after SIGCONT (the test did not catch it in its pause)")
    check_all_processed([a, b], n, exactly_once=False)
    check(a.p.poll() is None, "a exited after being resumed")
    a.stop()
    b.stop()


def g_example():
    stream, app = names("example")
    create(stream, 2)
    put(stream, 0, 100)
    e = env()
    p = subprocess.Popen([EXAMPLE, "-X", "consumer.initial.position=TRIM_HORIZON", app, stream],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    deadline = time.time() + 30
    seen = set()
    while time.time() < deadline and len(seen) < 100:
        line = p.stdout.readline().decode()
        if not line:
            break
        seen.add(line.rstrip("\n").split(": ", 1)[-1])
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    check(p.returncode == 0, f"consumer_example exited {p.returncode}: {err.decode()[-1500:]}")
    check(seen == {f"d-{i}" for i in range(100)}, f"consumer_example printed {len(seen)} of 100")
    check("shutdown: KN_ERR_OK" in err.decode(), f"no clean shutdown: {err.decode()[-800:]}")
    check(all(l["checkpoint"].isdigit() and l["owner"] is None for l in leases(app)),
          f"not checkpointed and released: {leases(app)}")


GROUPS = {"balance": g_balance, "kill9": g_kill9, "sigterm": g_sigterm, "join": g_join,
          "sigstop": g_sigstop, "example": g_example}


def main():
    if not WORKER or not KNCAT or GROUP not in GROUPS:
        print(f"usage: test_workers.py WORKER KNCAT {{{','.join(GROUPS)}}}")
        return 2
    for var in ("KN_TEST_KINESALITE_URL", "KN_TEST_DYNALITE_URL"):
        if not os.environ.get(var):
            print(f"{var} is not set: run through tests/servers/with-servers.sh (tools/test.sh does)")
            return 1
    GROUPS[GROUP]()
    # A sanitizer's report in any worker's log is a failure, whatever its exit.
    for name in sorted(os.listdir(_tmp)):
        if name.endswith(".log"):
            with open(os.path.join(_tmp, name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            for marker in ("runtime error:", "AddressSanitizer", "LeakSanitizer"):
                if marker in text:
                    fail(f"{name}: {marker} ... {text[text.index(marker) - 200:][:1500]}")
    if failures:
        print(f"{len(failures)} check(s) failed in group {GROUP}; worker logs in {_tmp}")
        return 1
    print(f"group {GROUP}: all checks passed")
    shutil.rmtree(_tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
