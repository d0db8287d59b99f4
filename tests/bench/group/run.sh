#!/usr/bin/env bash
# The consumer group benchmark (figures only; never passes or fails on time): builds the test
# worker and kncat, then runs tests/bench/group/bench.py (its own kinesalite and dynalite): takeover
# after kill -9, handoff after SIGTERM, fair share after a join at failover 3 s and 10 s, and the
# DynamoDB requests per lease in steady state at 100 shards and 4 workers.
# Usage: tests/bench/group/run.sh [BUILD_DIR] [bench.py options]
#   e.g. tests/bench/group/run.sh build                          (all of it, about 10 minutes)
#        tests/bench/group/run.sh build --failover 3000 --repeat 1 --only takeover,handoff,join
# Needs node and tests/servers/node_modules (tools/setup.sh installs them), python3 with boto3.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=$root/build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    build=$1
    shift
fi
ninja -C "$build" tests/integration/consumer/consumer_worker tools/kncat/kncat >/dev/null
exec python3 "$root/tests/bench/group/bench.py" --worker "$build/tests/integration/consumer/consumer_worker" \
    --kncat "$build/tools/kncat/kncat" "$@"
