#!/usr/bin/env python3
"""Producer benchmark driver: figures only, never pass/fail on time.

Starts its own kinesalite (in memory, 127.0.0.1, a free port), and for each producer creates a
4-shard stream and runs the producer as a child process that puts COUNT records of 100 bytes with
random partition keys as fast as it can:
  libkinesis   tests/bench/producer/producer_bench.c on <kinesis/producer.h> (the shared library),
               with producer.rate.limit.percent=10000 (kinesalite does not throttle; the default
               150 % of a real shard's 1 MiB/s would make it wait for a limit that is not there)
  metrics      the same as libkinesis with every metric gathered for CloudWatch (metrics.level
               detailed, granularity shard, the defaults; the endpoint refuses connections): the
               difference between the two rows is what gathering the metrics costs
  js           tests/bench/producer/peer_js.js: @aws-sdk/client-kinesis + aws-kinesis-agg
               (tests/bench/peers), aggregated per predicted shard, PutRecords of 500
  kncat        `kncat -P -K :` reading the same records as "key:data" lines from a file (written by
               producer_bench --lines before the clock starts), with the same properties as libkinesis:
               the difference between the two rows is what the command line itself costs (reading and
               splitting lines, handling results)
  boto3        tests/bench/producer/peer_boto3.py: put_records of 500, no aggregation
CPU time and peak RSS of each child come from wait4() (the whole process: start-up included); each
child also prints its own figures as a JSON line (shown as it finishes).

Usage: bench.py --bin BUILD/tests/bench/producer/producer_bench [--kncat BUILD/tools/kncat/kncat]
                [--records N | --quick] [--only libkinesis,metrics,kncat,js,boto3] [--shards 4] [--server moto]
Needs node, tests/servers/node_modules (kinesalite) and tests/bench/peers/node_modules
(tools/setup.sh installs both), and python3 with boto3.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import create_stream, kinesis, start_kinesalite, start_moto  # noqa: E402
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def run_measured(cmd, env=None, stdin_path=None):
    """Runs cmd (stdin from stdin_path); returns (its JSON line or None, exit status, user s, sys s, maxrss KiB,
    wall s, stderr tail)."""
    t0 = time.monotonic()
    fin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if stdin_path:
        fin.close()
    # Read the pipes in threads so that a chatty child never blocks; wait4 gives the child's rusage.
    import threading
    out, err = [], []
    ts = [threading.Thread(target=lambda: out.append(proc.stdout.read())),
          threading.Thread(target=lambda: err.append(proc.stderr.read()))]
    for t in ts:
        t.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    for t in ts:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = None
    for ln in (out[0] or b"").decode(errors="replace").splitlines():
        if ln.startswith("{"):
            try:
                line = json.loads(ln)
            except ValueError:
                pass
    tail = (err[0] or b"").decode(errors="replace").strip().splitlines()[-3:]
    return line, proc.returncode, ru.ru_utime, ru.ru_stime, ru.ru_maxrss, wall, tail


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the built producer_bench")
    ap.add_argument("--records", type=int, default=1000000)
    ap.add_argument("--quick", action="store_true", help="100,000 records")
    ap.add_argument("--kncat", help="the built kncat (for the kncat row)")
    ap.add_argument("--only", default="libkinesis,metrics,kncat,js,boto3")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--server", choices=["kinesalite", "moto"], default="kinesalite",
                    help="the Kinesis server (moto for 1,000 shards: kinesalite's PutRecords takes seconds there)")
    ap.add_argument("--threads", help="e.g. 1,2,4,8: only the libkinesis row, once per number of putting threads")
    ap.add_argument("--instructions", action="store_true",
                    help="also print the put path's instructions per record (tests/bench/instructions.py, valgrind)")
    args = ap.parse_args()
    n = 100000 if args.quick else args.records
    impls = [x.strip() for x in args.only.split(",") if x.strip()]
    if args.threads:
        impls = ["T%d" % int(t) for t in args.threads.split(",")]
    if "kncat" in impls and not args.kncat:
        impls.remove("kncat")
        print("(no --kncat: the kncat row is left out)")
    lines = None
    if "kncat" in impls:
        import tempfile
        fd, lines = tempfile.mkstemp(prefix="kn-bench-lines-")
        with os.fdopen(fd, "wb") as f:
            subprocess.run([args.bin, "--lines", str(n)], stdout=f, check=True)

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    print("Producer benchmark, %s, %d cores (%s), %s; %d records of 100 bytes, random keys, %d-shard stream on "
          "%s" % (datetime.date.today().isoformat(), os.cpu_count() or 0, cpu or platform.machine(),
                  platform.system(), n, args.shards, args.server))
    print("load average before the run: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    sys.stdout.flush()

    if args.server == "moto":
        ks, url = start_moto()
    else:
        ks, url = start_kinesalite(shard_limit=max(100, args.shards * 2))
    rows = []
    try:
        k = kinesis(url)
        for impl in impls:
            name = "bench-%s-%d" % (impl, os.getpid())
            create_stream(k, name, args.shards)
            stdin = None
            if impl == "libkinesis":
                cmd = [args.bin, url, name, str(n), "-X", "producer.rate.limit.percent=10000"]
            elif impl.startswith("T"):
                cmd = [args.bin, url, name, str(n), "-T", impl[1:], "-X", "producer.rate.limit.percent=10000"]
            elif impl == "metrics":
                # The same, gathering every metric (level detailed, granularity shard) for CloudWatch;
                # the endpoint refuses connections, so the cost measured is the gathering's.
                cmd = [args.bin, url, name, str(n), "-X", "producer.rate.limit.percent=10000",
                       "-X", "metrics.cloudwatch=true", "-X", "cloudwatch.endpoint=http://127.0.0.1:9"]
            elif impl == "kncat":
                cmd = [args.kncat, "-P", "-b", url, "-r", "us-east-1", "-t", name, "-K", ":", "-v",
                       "-X", "producer.rate.limit.percent=10000"]
                stdin = lines
            elif impl == "js":
                cmd = ["node", os.path.join(HERE, "peer_js.js"), url, name, str(n)]
            elif impl == "boto3":
                cmd = [sys.executable, os.path.join(HERE, "peer_boto3.py"), url, name, str(n)]
            else:
                sys.exit("bench: unknown producer " + impl)
            env = dict(os.environ, NODE_NO_WARNINGS="1",  # the SDK's notice about future node versions
                       AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-secret",
                       AWS_EC2_METADATA_DISABLED="true")
            line, rc, user, system, rss, wall, tail = run_measured(cmd, env, stdin)
            if impl == "kncat":
                # kncat -v says "% N of M records acknowledged, F failed" at the end.
                said = [t for t in tail if "records acknowledged" in t]
                acked = int(said[-1].split()[1]) if said else 0
                line = {"impl": "kncat", "records": n, "ok": acked, "wall_s": wall}
            ok = line["ok"] if line else 0
            rows.append((impl, n, ok, wall, user, system, rss, line, rc, tail))
            print("%-11s exit %d: %s" % (impl, rc, json.dumps(line) if line else "no result line; " + " | ".join(tail)))
            sys.stdout.flush()
            # Streams are not deleted: kinesalite takes a minute to drop a million records, and it
            # is stopped at the end anyway.
    finally:
        ks.kill()
        ks.wait()
        if lines:
            os.unlink(lines)

    print()
    print("%-12s %9s %9s %9s %10s %14s %12s" % ("producer", "records", "put ok", "wall s", "records/s",
                                                "CPU us/record", "peak RSS"))
    base = None
    for impl, total, ok, wall, user, system, rss, line, rc, tail in rows:
        cpu_us = (user + system) * 1e6 / total
        pwall = line["wall_s"] if line else wall
        print("%-12s %9d %9d %9.2f %10.0f %14.2f %8.1f MiB" % (impl, total, ok, wall, total / pwall if pwall else 0,
                                                              cpu_us, rss / 1024.0))
        if impl == "libkinesis":
            base = cpu_us
    if base:
        for impl, total, ok, wall, user, system, rss, line, rc, tail in rows:
            if impl == "kncat":
                print("kncat -P over the library it runs on: %+.2f us CPU per record" %
                      ((user + system) * 1e6 / total - base))
            elif impl == "metrics":
                print("metrics on (detailed, shard) over metrics off: %+.2f us CPU per record" %
                      ((user + system) * 1e6 / total - base))
            elif impl != "libkinesis":
                print("CPU per record, %s / libkinesis: %.1fx" % (impl, (user + system) * 1e6 / total / base))
    print("wall s: the whole process; records/s: from the producer's own first-put-to-last-result time; CPU: "
          "user+sys of the whole producing process (wait4), start-up included; peak RSS: its ru_maxrss.")
    if args.instructions:
        # The figure that does not wobble, from the same build: instructions per record under callgrind.
        build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(args.bin)))))
        sys.stdout.flush()
        subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "instructions.py"), build,
                        "--only", "put"], check=False)
    return 0 if all(r[8] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
