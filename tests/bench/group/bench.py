#!/usr/bin/env python3
"""Consumer group benchmark: how fast leases move, and what the lease table costs. Figures only.

Starts its own kinesalite and dynalite (in memory, loopback, free ports) and runs worker processes
(tests/integration/consumer/consumer_worker: one kn_consumer_t each, writing its events with the
host's monotonic clock), for each failover time asked (--failover, default 3000 and 10000 ms):
  takeover  two workers on a 4-shard stream, two shards each; kill -9 of one: the time from the
            kill until the other has begun a tenure on each of the dead worker's shards (the last);
  handoff   the same after SIGTERM: from the signal until the other has begun on each (the dead
            worker checkpoints and releases first), and from each release to its take;
  join      one worker with all 4 shards; a second starts: from its START until both hold two;
and, once (--ddb-shards, default 100, with --ddb-workers, default 4): the DynamoDB requests per second
per lease in steady state (every lease held, no moves for a while), from the workers' own request
counters over --ddb-seconds (default 30), split into renewals and scans.
Each measurement is repeated --repeat times (default 3); min / median / max are printed. The kill
comes at a random moment between two renewals: a lease expires for the others failover after they saw
its last renewal, so a takeover can come sooner than failover after the kill (never sooner than
failover after the dead worker's last write, which is what keeps two workers off one shard).
For comparison the KCL 2.x figures are computed from its published defaults (no JVM runs here):
takeover = failover + up to one taker interval of 2 x (failover + 25 ms); the KCL 2.x has no release
at shutdown (a SIGTERM'd worker's leases wait for expiry like a crash), and it balances by stealing one
lease per taker run. Its steady cost is one renewal per lease every failover / 3 - 25 ms plus a scan
per worker per taker run.

Usage: bench.py --worker BUILD/tests/integration/consumer/consumer_worker --kncat BUILD/tools/kncat/kncat
                [--failover 3000,10000] [--repeat 3] [--ddb-shards 100] [--ddb-workers 4] [--ddb-seconds 30]
                [--only takeover,handoff,join,ddb]
"""
import argparse
import datetime
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import create_stream, kinesis, start_dynalite, start_kinesalite  # noqa: E402


def mono_ms():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1000)


class Worker:
    def __init__(self, args, env, stream, app, wid, failover, extra=()):
        self.wid = wid
        self.lines = []
        self.lock = threading.Lock()
        cmd = [args.worker, stream, app, wid, "consumer.failover.ms=%d" % failover] + list(extra)
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.p.stdout:
            parts = raw.decode("utf-8", "replace").split()
            if parts and parts[1] != "REC":
                with self.lock:
                    self.lines.append(parts)

    def events(self, kind):
        with self.lock:
            return [ln for ln in self.lines if ln[1] == kind]

    def held(self):
        now = set()
        with self.lock:
            for ln in self.lines:
                if ln[1] == "INIT":
                    now.add(ln[2])
                elif ln[1] == "CLOSE":
                    now.discard(ln[2])
        return now

    def wait(self, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return True
            time.sleep(0.02)
        return False

    def stop(self, sig=signal.SIGTERM):
        t = mono_ms()
        self.p.send_signal(sig)
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(timeout=5)
        return t


_n = [0]


def fresh(k, shards, tag):
    _n[0] += 1
    stream = "bgrp-%s-%d-%d" % (tag, os.getpid(), _n[0])
    create_stream(k, stream, shards)
    return stream, "bgrpapp-%s-%d-%d" % (tag, os.getpid(), _n[0])


def two_balanced(args, env, k, failover, tag):
    stream, app = fresh(k, 4, tag)
    a = Worker(args, env, stream, app, "a", failover)
    a.wait(lambda: len(a.held()) == 4, 30)
    b = Worker(args, env, stream, app, "b", failover)
    if not b.wait(lambda: len(a.held()) == 2 and len(b.held()) == 2, 60):
        sys.exit("bench: the two workers did not balance (%s / %s)" % (sorted(a.held()), sorted(b.held())))
    time.sleep(1)
    return a, b


def takeover(args, env, k, failover):
    a, b = two_balanced(args, env, k, failover, "kill")
    time.sleep(random.uniform(0, failover / 3000.0))  # anywhere between two renewals
    gone = a.held()
    t = a.stop(signal.SIGKILL)
    ok = b.wait(lambda: gone <= b.held(), failover / 1000 * 3 + 10)
    inits = [int(ln[0]) for ln in b.events("INIT") if ln[2] in gone and int(ln[0]) > t]
    b.stop()
    return (max(inits) - t) if ok and inits else None


def handoff(args, env, k, failover):
    a, b = two_balanced(args, env, k, failover, "term")
    gone = a.held()
    t = a.stop(signal.SIGTERM)
    ok = b.wait(lambda: gone <= b.held(), 30)
    inits = {ln[2]: int(ln[0]) for ln in b.events("INIT") if ln[2] in gone and int(ln[0]) > t}
    closes = {ln[2]: int(ln[0]) for ln in a.events("CLOSE") if ln[2] in gone}
    b.stop()
    if not ok or len(inits) != len(gone):
        return None, None
    return max(inits.values()) - t, max(inits[s] - closes[s] for s in gone if s in closes)


def join(args, env, k, failover):
    stream, app = fresh(k, 4, "join")
    a = Worker(args, env, stream, app, "a", failover)
    a.wait(lambda: len(a.held()) == 4, 30)
    time.sleep(1)
    b = Worker(args, env, stream, app, "b", failover)
    ok = b.wait(lambda: len(a.held()) == 2 and len(b.held()) == 2, 60)
    start = [int(ln[0]) for ln in b.events("START")]
    inits = sorted(int(ln[0]) for ln in b.events("INIT"))
    a.stop()
    b.stop()
    return (inits[1] - start[0]) if ok and start and len(inits) >= 2 else None


def ddb_cost(args, env, k, failover):
    stream, app = fresh(k, args.ddb_shards, "ddb")
    ws = [Worker(args, env, stream, app, "w%d" % i, failover) for i in range(args.ddb_workers)]
    share = args.ddb_shards // args.ddb_workers
    if not ws[0].wait(lambda: all(len(w.held()) == share for w in ws), 180):
        print("  (not balanced within 180 s: %s)" % [len(w.held()) for w in ws])
    time.sleep(max(5, failover / 1000))
    def stats():
        out = []
        for w in ws:
            s = w.events("STATS")
            out.append([int(x) for x in s[-1][2:]] if s else None)
        return out
    t0, s0 = time.monotonic(), stats()
    time.sleep(args.ddb_seconds)
    t1, s1 = time.monotonic(), stats()
    held = sum(x[0] for x in s1 if x)
    d = lambda i: sum(b[i] - a[i] for a, b in zip(s0, s1) if a and b)
    secs = t1 - t0
    moves = d(4) + d(5)
    for w in ws:
        w.stop()
    return {"held": held, "secs": secs, "requests": d(1) / secs, "renewals": d(2) / secs,
            "scans": d(3) / secs, "moves": moves}


def summary(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "failed"
    return "%6d %6d %6d" % (min(vals), statistics.median(vals), max(vals))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--kncat", required=False)
    ap.add_argument("--failover", default="3000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ddb-shards", type=int, default=100)
    ap.add_argument("--ddb-workers", type=int, default=4)
    ap.add_argument("--ddb-seconds", type=int, default=30)
    ap.add_argument("--only", default="takeover,handoff,join,ddb")
    args = ap.parse_args()
    only = set(args.only.split(","))
    print("Consumer group benchmark, %s, %d cores; kinesalite + dynalite on loopback; lease scans every "
          "500 ms (at most failover / 5)" % (datetime.date.today().isoformat(), os.cpu_count() or 0))
    ks, kurl = start_kinesalite(shard_limit=10000)
    ds, durl = start_dynalite()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-secret",
               AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", AWS_ENDPOINT_URL_KINESIS=kurl,
               AWS_ENDPOINT_URL_DYNAMODB=durl)
    k = kinesis(kurl)
    try:
        print()
        print("%-44s %8s %6s %6s %6s   %s" % ("ms (min median max over %d runs)" % args.repeat, "failover",
                                              "min", "median", "max", "KCL 2.x (computed)"))
        for f in [int(x) for x in args.failover.split(",") if x]:
            kcl_take = "%d..%d" % (f, f + 2 * (f + 25))
            if "takeover" in only:
                r = [takeover(args, env, k, f) for _ in range(args.repeat)]
                print("%-44s %8d %s   %s" % ("takeover after kill -9 (last shard resumed)", f, summary(r),
                                             kcl_take))
            if "handoff" in only:
                r = [handoff(args, env, k, f) for _ in range(args.repeat)]
                print("%-44s %8d %s   %s" % ("handoff after SIGTERM (signal to last take)", f,
                                             summary([x[0] for x in r]), kcl_take + " (no release)"))
                print("%-44s %8d %s" % ("  of which release to take (per shard, max)", f,
                                        summary([x[1] for x in r])))
            if "join" in only:
                r = [join(args, env, k, f) for _ in range(args.repeat)]
                print("%-44s %8d %s   %s" % ("fair share after a join (start to 2 + 2)", f, summary(r),
                                             "%d..%d (one steal per taker run)" % (2 * (f + 25), 4 * (f + 25))))
            sys.stdout.flush()
        if "ddb" in only:
            f = 10000
            r = ddb_cost(args, env, k, f)
            n = max(r["held"], 1)
            kcl = (1000.0 / (f / 3 - 25)) + args.ddb_workers / (2 * (f + 25) / 1000.0) / n
            print()
            print("DynamoDB requests in steady state, %d shards, %d workers, failover %d ms, over %.0f s "
                  "(%d leases held, %d moves meanwhile):" % (args.ddb_shards, args.ddb_workers, f, r["secs"],
                                                            r["held"], r["moves"]))
            print("  all %.1f/s = %.3f per lease per second (renewals %.1f/s, scans %.1f/s, other %.1f/s)" % (
                r["requests"], r["requests"] / n, r["renewals"], r["scans"],
                r["requests"] - r["renewals"] - r["scans"]))
            print("  KCL 2.x (computed): %.3f per lease per second (a renewal per lease every %.0f ms, a scan "
                  "per worker every %.1f s)" % (kcl, f / 3 - 25, 2 * (f + 25) / 1000.0))
    finally:
        ks.kill()
        ds.kill()
        ks.wait()
        ds.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
