#!/usr/bin/env python3
"""Shared-client benchmark driver: figures only, never pass/fail on time.

Starts its own kinesalite (in memory, loopback, free port), creates a 4-shard stream for the busy
producer and a 1-shard probe stream, and runs sharing_bench (see sharing_bench.c) for each
compression setting: the latency of probe records through a reader whose client also carries a
producer putting as fast as it can, beside the same reader while that producer is idle.

Usage: bench.py --bin BUILD/tests/bench/sharing/sharing_bench [--seconds S] [--codecs gzip,zstd,none]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from bench_util import create_stream, kinesis, start_kinesalite  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--codecs", default="gzip,zstd,none")
    args = ap.parse_args()
    print("load average before the run: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    ks, url = start_kinesalite()
    rows = []
    try:
        k = kinesis(url)
        for codec in [c for c in args.codecs.split(",") if c]:
            busy, probe = "share-busy-%s-%d" % (codec, os.getpid()), "share-probe-%s-%d" % (codec, os.getpid())
            create_stream(k, busy, 4)
            create_stream(k, probe, 1)
            p = subprocess.run([args.bin, url, busy, probe, "--seconds", str(args.seconds), "--codec", codec],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
            for ln in p.stdout.splitlines():
                if ln.startswith("{"):
                    rows.append(json.loads(ln))
            if p.returncode:
                print("sharing_bench exited %d: %s" % (p.returncode, p.stderr.strip()[-500:]))
    finally:
        ks.kill()
        ks.wait()
    print()
    print("%-6s %-6s %7s %8s %8s %8s | %9s %9s %9s %12s" % (
        "codec", "phase", "probes", "p50 ms", "p99 ms", "max ms", "lag p50", "lag p99", "lag max", "busy rec/s"))
    for r in rows:
        print("%-6s %-6s %7d %8.1f %8.1f %8.1f | %9.3f %9.3f %9.3f %12.0f" % (
            r["codec"], r["phase"], r["probes"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["lag_p50_ms"],
            r["lag_p99_ms"], r["lag_max_ms"], r["busy_records"] / args.seconds))
    print("probe latency: from the probe's put on its own client to the reader on the shared client handing it "
          "over (kinesalite on the same 2 cores, slowed by the busy load too; the reader polls every 20 ms). "
          "lag: how late a task posted every 5 ms runs on the shared client's I/O thread (ms).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
