#!/usr/bin/env python3
"""Consumer benchmark driver: figures only, never pass/fail on time.

Starts its own kinesalite (in memory, 127.0.0.1, a free port), creates one stream of --shards
shards (default 4), fills it with N records (default 1,000,000) of 100 bytes with random 16-hex-digit
partition keys through our producer (tests/bench/producer/producer_bench: aggregated at 51200 bytes,
the producer's defaults), and then has each reader read the whole stream from the beginning, one
after the other, as a child process:
  reader     tests/bench/consumer/reader_bench: the stream reader alone (<kinesis/reader.h>), every
             record's data touched (a checksum), nothing printed: what kncat -C stands on;
  kncat      `kncat -C -b URL -t STREAM -o beginning -e` (default format '%s\\n'): deaggregates,
             prints every record's data and exits once every shard is caught up;
  kncat-json the same with -J: one JSON envelope per record;
  kncat-group two `kncat -G GROUP -o beginning -e` processes started together (a private dynalite
             holds the lease table): the lease-holding consumer, sharing the shards, each printing its
             records and exiting once its shards are caught up; CPU is the two processes' sum, the
             RSS column the larger of the two, records the sum of what they printed;
  js     tests/bench/consumer/peer_js.js: @aws-sdk/client-kinesis + aws-kinesis-agg
         (tests/bench/peers): ListShards, GetShardIterator TRIM_HORIZON, GetRecords until caught up,
         every record deaggregated (MD5 checked) and its data decoded, counted with its bytes.
Both readers ask for at most --limit Kinesis records per GetRecords (default 200: aggregates of
about 50 KB, so responses of about 10 MB, the real service's cap per call; kinesalite has no such
cap and would otherwise answer with everything a shard holds, over 30 MB at a time, which a
loaded machine serves so slowly that requests time out and are retried). --limit 0 sends no Limit.
CPU time (user+sys, children included) and peak RSS of each reader come from wait4(). Records read:
kncat runs with -v and its output goes to /dev/null (the default, --sink devnull); the count is the
"% N records printed" line kncat writes on stderr at exit. With --sink pipe its output goes into a
pipe that this driver counts instead, independently of kncat (each record is its 100 bytes of data
plus the newline of '%s\\n', so records = bytes / 101; the pipe and the reading cost kncat a little).
The JavaScript peer counts its own. A count that is not N is reported loudly (and the exit status
is 1), never hidden in the table.

Usage: bench.py --kncat BUILD/tools/kncat/kncat --loader BUILD/tests/bench/producer/producer_bench
                [--reader BUILD/tests/bench/consumer/reader_bench]
                [--records N | --quick] [--only reader,kncat,kncat-json,kncat-group,js] [--shards 4]
                [--sink devnull|pipe]
                [--limit 200] [--repeat K] [-X property=value]... (kncat -X options)
Needs node, tests/servers/node_modules (kinesalite) and tests/bench/peers/node_modules (tools/setup.sh
installs both), and python3 with boto3.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import create_stream, kinesis, start_dynalite, start_kinesalite, start_moto  # noqa: E402
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
RECORD_BYTES = 100
PRINTED = re.compile(r"^% (\d+) records printed")


def run_measured(cmd, env, sink):
    """Runs cmd with stdout to a counting pipe ("pipe"), /dev/null ("devnull") or captured ("capture").

    Returns a dict: rc, user, sys (s, children included), rss (KiB), wall (s), out_bytes (pipe),
    out (capture), err_tail."""
    t0 = time.monotonic()
    stdout = subprocess.DEVNULL if sink == "devnull" else subprocess.PIPE
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, env=env)
    counted, captured, err = [0], [], []

    def count():
        fd = proc.stdout.fileno()
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            counted[0] += len(b)

    threads = [threading.Thread(target=lambda: err.append(proc.stderr.read()))]
    if sink == "pipe":
        threads.append(threading.Thread(target=count))
    elif sink == "capture":
        threads.append(threading.Thread(target=lambda: captured.append(proc.stdout.read())))
    for t in threads:
        t.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    for t in threads:
        t.join()
    return {"rc": os.waitstatus_to_exitcode(status), "user": ru.ru_utime, "sys": ru.ru_stime,
            "rss": ru.ru_maxrss, "wall": wall, "out_bytes": counted[0],
            "out": (captured[0] if captured else b"").decode(errors="replace"),
            "err_tail": (err[0] or b"").decode(errors="replace").strip().splitlines()[-4:]}


def json_line(text):
    line = None
    for ln in text.splitlines():
        if ln.startswith("{"):
            try:
                line = json.loads(ln)
            except ValueError:
                pass
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kncat", required=True, help="the built kncat")
    ap.add_argument("--loader", required=True, help="the built producer_bench (fills the stream)")
    ap.add_argument("--records", type=int, default=1000000)
    ap.add_argument("--quick", action="store_true", help="20,000 records")
    ap.add_argument("--reader", help="the built reader_bench (the library alone)")
    ap.add_argument("--only", default="reader,kncat,kncat-json,kncat-group,js")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--server", choices=["kinesalite", "moto"], default="kinesalite",
                    help="the Kinesis server (moto for 1,000 shards: kinesalite takes a second per GetRecords there)")
    ap.add_argument("--sink", choices=["devnull", "pipe"], default="devnull",
                    help="kncat's stdout: /dev/null, counted by kncat -v (default), or a pipe this driver counts")
    ap.add_argument("--limit", type=int, default=200,
                    help="most Kinesis records per GetRecords for both readers (0: no Limit, the service's "
                         "default of 10,000)")
    ap.add_argument("--repeat", type=int, default=1, help="read the stream this many times with each reader")
    ap.add_argument("--idle", type=float, default=0,
                    help="the reader row goes on reading this many seconds after every shard is caught up and "
                         "prints what polling the caught-up shards costs (its table row stops at the end)")
    ap.add_argument("-X", action="append", default=[], metavar="PROP=VALUE", help="passed to kncat")
    ap.add_argument("--instructions", action="store_true",
                    help="also print the read path's instructions per record (tests/bench/instructions.py, valgrind)")
    args = ap.parse_args()
    n = 20000 if args.quick else args.records
    readers = [x.strip() for x in args.only.split(",") if x.strip()]
    for r in readers:
        if r not in ("reader", "kncat", "kncat-json", "kncat-group", "js"):
            sys.exit("bench: unknown reader " + r)
    if "reader" in readers and not args.reader:
        readers.remove("reader")
        print("(no --reader: the reader row is left out)")

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    print("Consumer benchmark, %s, %d cores (%s), %s; %d aggregated records of %d bytes, random keys, "
          "%d-shard stream on %s, GetRecords limit %s" % (
              datetime.date.today().isoformat(), os.cpu_count() or 0, cpu or platform.machine(), platform.system(),
              n, RECORD_BYTES, args.shards, args.server, args.limit or "none"))
    print("load average before the run: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    sys.stdout.flush()

    env = dict(os.environ, NODE_NO_WARNINGS="1", AWS_ACCESS_KEY_ID="AKIDBENCH",
               AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    if args.server == "moto":
        ks, url = start_moto()
    else:
        ks, url = start_kinesalite(shard_limit=max(100, args.shards * 2))
    ds, ddb_url = start_dynalite() if "kncat-group" in readers else (None, None)
    rows = []
    loud = []
    try:
        k = kinesis(url)
        name = "bench-consumer-%d" % os.getpid()
        create_stream(k, name, args.shards)
        t0 = time.monotonic()
        fill = run_measured([args.loader, url, name, str(n), "-X", "producer.rate.limit.percent=10000"], env,
                            "capture")
        line = json_line(fill["out"])
        ok = line["ok"] if line else 0
        print("fill: %d records put by producer_bench in %.1f s (exit %d)%s" %
              (ok, time.monotonic() - t0, fill["rc"], "" if line else "; " + " | ".join(fill["err_tail"])))
        if ok != n:
            sys.exit("bench: the stream holds %d of %d records; not measuring" % (ok, n))
        sys.stdout.flush()

        for rep in range(args.repeat):
            for reader in readers:
                if reader == "reader":
                    cmd = [args.reader, url, name]
                    if args.idle:
                        cmd += ["--idle", str(args.idle)]
                    if args.limit:
                        cmd += ["-X", "consumer.max.records=%d" % args.limit]
                    for x in args.X:
                        cmd += ["-X", x]
                    res = run_measured(cmd, env, "capture")
                    own = json_line(res["out"])
                    got = own["records"] if own else 0
                    got_bytes = own["bytes"] if own else 0
                    if own and args.idle:
                        # The row is the read to the end; the idle seconds after it are reported apart.
                        res["user"], res["sys"], res["wall"] = own["cpu_user_s"], own["cpu_sys_s"], own["wall_s"]
                    print("reader run %d exit %d: %s" % (rep + 1, res["rc"], json.dumps(own) if own else
                                                          "no result line; " + " | ".join(res["err_tail"])))
                elif reader in ("kncat", "kncat-json"):
                    cmd = [args.kncat, "-C", "-b", url, "-r", "us-east-1", "-t", name, "-o", "beginning", "-e",
                           "-v"]
                    if reader == "kncat-json":
                        cmd.append("-J")
                    if args.limit:
                        cmd += ["-X", "consumer.max.records=%d" % args.limit]
                    for x in args.X:
                        cmd += ["-X", x]
                    res = run_measured(cmd, env, args.sink)
                    if args.sink == "pipe" and reader == "kncat":
                        got = res["out_bytes"] // (RECORD_BYTES + 1)
                    else:
                        said = [m.group(1) for m in map(PRINTED.search, res["err_tail"]) if m]
                        got = int(said[-1]) if said else 0
                        if not said:
                            loud.append("kncat -v did not say how many records it printed")
                    got_bytes = got * RECORD_BYTES
                    if args.sink == "pipe" and reader == "kncat" and res["out_bytes"] % (RECORD_BYTES + 1):
                        loud.append("kncat printed %d bytes, not a multiple of %d" %
                                    (res["out_bytes"], RECORD_BYTES + 1))
                    own = None
                    print("%-6s run %d exit %d, %s%s" %
                          (reader, rep + 1, res["rc"], "%d output bytes" % res["out_bytes"] if args.sink == "pipe"
                           else "output to /dev/null",
                           ("; stderr: " + " | ".join(res["err_tail"])) if res["err_tail"] else ""))
                elif reader == "kncat-group":
                    group = "bench-group-%d-%d" % (os.getpid(), rep)
                    cmd = [args.kncat, "-G", group, "-b", url, "-r", "us-east-1", "-t", name, "-o", "beginning",
                           "-e", "-v", "-X", "dynamodb.endpoint=" + ddb_url]
                    if args.limit:
                        cmd += ["-X", "consumer.max.records=%d" % args.limit]
                    for x in args.X:
                        cmd += ["-X", x]
                    both = [None, None]
                    ts = [threading.Thread(target=lambda i=i: both.__setitem__(i, run_measured(cmd, env, "devnull")))
                          for i in range(2)]
                    for t in ts:
                        t.start()
                    for t in ts:
                        t.join()
                    got = 0
                    for r in both:
                        said = [m.group(1) for m in map(PRINTED.search, r["err_tail"]) if m]
                        got += int(said[-1]) if said else 0
                        if not said:
                            loud.append("kncat -G -v did not say how many records it printed: " +
                                        " | ".join(r["err_tail"]))
                    got_bytes = got * RECORD_BYTES
                    res = {"rc": max(r["rc"] for r in both), "user": sum(r["user"] for r in both),
                           "sys": sum(r["sys"] for r in both), "rss": max(r["rss"] for r in both),
                           "wall": max(r["wall"] for r in both), "out_bytes": 0}
                    own = None
                    print("kncat-group run %d: two members printed %s records (exit %d, %d); peak RSS %.1f and "
                          "%.1f MiB" % (rep + 1, " + ".join(
                              str(int(([m.group(1) for m in map(PRINTED.search, r["err_tail"]) if m] or ["0"])[-1]))
                              for r in both), both[0]["rc"], both[1]["rc"], both[0]["rss"] / 1024.0,
                              both[1]["rss"] / 1024.0))
                else:
                    res = run_measured(["node", os.path.join(HERE, "peer_js.js"), url, name, str(args.limit)],
                                       env, "capture")
                    own = json_line(res["out"])
                    got = own["records"] if own else 0
                    got_bytes = own["bytes"] if own else 0
                    print("js     run %d exit %d: %s" % (rep + 1, res["rc"], json.dumps(own) if own else
                                                          "no result line; " + " | ".join(res["err_tail"])))
                if res["rc"] != 0:
                    loud.append("%s exited with status %d" % (reader, res["rc"]))
                if got != n or got_bytes != n * RECORD_BYTES:
                    loud.append("%s read %d records (%d bytes), expected %d (%d bytes)" %
                                (reader, got, got_bytes, n, n * RECORD_BYTES))
                rows.append((reader, got, res, own))
                sys.stdout.flush()
    finally:
        ks.kill()
        ks.wait()
        if ds:
            ds.kill()
            ds.wait()

    print()
    print("%-11s %9s %9s %10s %14s %17s %12s" % ("reader", "records", "wall s", "records/s", "CPU us/record",
                                                  "(user + sys)", "peak RSS"))
    base = {}
    for reader, got, res, own in rows:
        cpu_us = (res["user"] + res["sys"]) * 1e6 / n
        print("%-11s %9d %9.2f %10.0f %14.2f %17s %8.1f MiB" % (
            reader, got, res["wall"], n / res["wall"] if res["wall"] else 0, cpu_us,
            "(%.2f + %.2f)" % (res["user"] * 1e6 / n, res["sys"] * 1e6 / n), res["rss"] / 1024.0))
        base.setdefault(reader, []).append(cpu_us)
    calls = ["%s %d (%.0f us CPU per call)" % (reader, own["get_records_calls"],
                                                (res["user"] + res["sys"]) * 1e6 / own["get_records_calls"])
             for reader, got, res, own in rows if own and own.get("get_records_calls")]
    if calls:
        print("GetRecords calls: " + ", ".join(calls))
    for reader, got, res, own in rows:
        if own and own.get("idle_s") and own.get("idle_get_records_calls"):
            c, cpu, secs = own["idle_get_records_calls"], own["idle_cpu_s"], own["idle_s"]
            print("idle, %d caught-up shards for %.0f s: %.0f GetRecords/s, %.0f us CPU per call, %.1f us CPU per "
                  "shard per second (%.2f%% of a core), %d records meanwhile" % (
                      args.shards, secs, c / secs, cpu * 1e6 / c, cpu * 1e6 / secs / args.shards,
                      cpu * 100 / secs, own["idle_records"]))
    if "kncat" in base and "js" in base:
        print("CPU per record, js / kncat: %.1fx" % (min(base["js"]) / min(base["kncat"])))
    if "kncat-group" in base and "js" in base:
        print("CPU per record, js / kncat-group: %.1fx" % (min(base["js"]) / min(base["kncat-group"])))
    for k in ("kncat", "kncat-json"):
        if k in base and "reader" in base:
            print("%s over the reader it runs on: %+.2f us CPU per record (best runs)" %
                  (k, min(base[k]) - min(base["reader"])))
    print("wall s and records/s: the whole reading process, start-up included, until it exits caught up; CPU: "
          "user+sys of the reading process and its children (wait4); peak RSS: its ru_maxrss.")
    if args.instructions and args.reader:
        # The figure that does not wobble, from the same build: instructions per record under callgrind.
        build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(args.reader)))))
        sys.stdout.flush()
        subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "instructions.py"), build,
                        "--only", "read"], check=False)
    if loud:
        print()
        for m in loud:
            print("!!! WRONG: " + m)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
