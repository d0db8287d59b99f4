#!/usr/bin/env bash
# The producer benchmark (figures only; never passes or fails on time): builds producer_bench and
# runs tests/bench/producer/bench.py, which starts its own kinesalite and puts the same records with
# our producer, kncat -P, the AWS SDK for JavaScript v3 + aws-kinesis-agg, and boto3.
# Usage: tests/bench/producer/run.sh [BUILD_DIR] [bench.py options]
#   e.g. tests/bench/producer/run.sh build                  (1,000,000 records)
#        tests/bench/producer/run.sh build --quick          (100,000 records)
#        tests/bench/producer/run.sh build --records 300000 --only libkinesis,js
# BUILD_DIR defaults to build/ (configure it first: meson setup build). Needs node,
# tests/servers/node_modules and tests/bench/peers/node_modules (tools/setup.sh installs them).
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
ninja -C "$build" tests/bench/producer/producer_bench tools/kncat/kncat >/dev/null
exec python3 "$root/tests/bench/producer/bench.py" --bin "$build/tests/bench/producer/producer_bench" \
    --kncat "$build/tools/kncat/kncat" "$@"
