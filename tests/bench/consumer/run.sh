#!/usr/bin/env bash
# The consumer benchmark (figures only; never passes or fails on time): builds kncat and
# producer_bench, then runs tests/bench/consumer/bench.py, which starts its own kinesalite, fills a
# 4-shard stream with aggregated records through our producer, and reads it all back with
# `kncat -C -o beginning -e` and with the AWS SDK for JavaScript v3 + aws-kinesis-agg.
# Usage: tests/bench/consumer/run.sh [BUILD_DIR] [bench.py options]
#   e.g. tests/bench/consumer/run.sh build                    (1,000,000 records, about a minute)
#        tests/bench/consumer/run.sh build --quick            (20,000 records, a few seconds)
#        tests/bench/consumer/run.sh build --records 200000 --only kncat --repeat 3
#        tests/bench/consumer/run.sh build --sink devnull     (kncat's output to /dev/null, uncounted)
# BUILD_DIR defaults to build/ (configure it first: meson setup build). Needs node,
# tests/servers/node_modules and tests/bench/peers/node_modules (tools/setup.sh installs them),
# and python3 with boto3.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=$root/build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    build=$1
    shift
fi
if [ ! -d "$root/tests/bench/peers/node_modules/@aws-sdk/client-kinesis" ]; then
    echo "run.sh: tests/bench/peers/node_modules is missing: run tools/setup.sh first" >&2
    exit 1
fi
ninja -C "$build" tools/kncat/kncat tests/bench/producer/producer_bench \
    tests/bench/consumer/reader_bench >/dev/null
exec python3 "$root/tests/bench/consumer/bench.py" --kncat "$build/tools/kncat/kncat" \
    --loader "$build/tests/bench/producer/producer_bench" \
    --reader "$build/tests/bench/consumer/reader_bench" "$@"
