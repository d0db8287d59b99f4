#!/usr/bin/env python3
"""Instructions per record, a figure that does not wobble on a noisy machine.

Runs the put path (producer_bench) and the read path (reader_bench) under valgrind's callgrind,
each twice, with SMALL and LARGE records (100 bytes, random keys, a 4-shard kinesalite stream of
its own), and prints the marginal count: (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL), every thread of
the process included, start-up and shutdown cancelled out. Two runs of the same build agree to a
fraction of a percent, so a change of a few percent in the library shows here when CPU seconds on a
2-core machine cannot show it. Figures only: never passes or fails.

Usage: tests/bench/instructions.py BUILD_DIR [--small 5000] [--large 25000] [--only put,read]
(BUILD_DIR: a release build is what the other figures use; valgrind runs it about 50x slower.)
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_util import create_stream, kinesis, start_kinesalite  # noqa: E402

ENV = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-secret",
           AWS_EC2_METADATA_DISABLED="true")


def callgrind(cmd):
    """Total instructions (Ir) of cmd under callgrind, every thread."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + cmd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        if p.returncode != 0:
            sys.exit("instructions: %s exited %d: %s" % (cmd[0], p.returncode, p.stderr.decode()[-600:]))
        m = re.search(rb"Collected : (\d+)", p.stderr)
        if not m:
            sys.exit("instructions: no callgrind total in: %s" % p.stderr.decode()[-600:])
        return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--small", type=int, default=5000)
    ap.add_argument("--large", type=int, default=25000)
    ap.add_argument("--only", default="put,read")
    a = ap.parse_args()
    producer = os.path.join(a.build, "tests", "bench", "producer", "producer_bench")
    reader = os.path.join(a.build, "tests", "bench", "consumer", "reader_bench")
    paths = [x for x in a.only.split(",") if x]
    ks, url = start_kinesalite()
    try:
        k = kinesis(url)
        put = {}
        streams = {}
        for n in (a.small, a.large):
            name = "instr-%d-%d" % (n, os.getpid())
            create_stream(k, name, 4)
            streams[n] = name
            cmd = [producer, url, name, str(n), "-X", "producer.rate.limit.percent=10000"]
            if "put" in paths:
                put[n] = callgrind(cmd)
            elif "read" in paths:
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        if "put" in paths:
            per = (put[a.large] - put[a.small]) / (a.large - a.small)
            print("put path:  %.0f instructions per record (Ir %d for %d records, %d for %d; producer_bench, "
                  "default properties)" % (per, put[a.large], a.large, put[a.small], a.small))
        if "read" in paths:
            rd = {n: callgrind([reader, url, streams[n]]) for n in (a.small, a.large)}
            per = (rd[a.large] - rd[a.small]) / (a.large - a.small)
            print("read path: %.0f instructions per record (Ir %d for %d records, %d for %d; reader_bench, "
                  "aggregated records)" % (per, rd[a.large], a.large, rd[a.small], a.small))
    finally:
        ks.kill()
        ks.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
