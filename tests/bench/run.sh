#!/usr/bin/env bash
# Builds and runs the benchmarks (figures only; they never pass or fail on time).
# Usage: tests/bench/run.sh [BUILD_DIR] [agg_bench.js options, e.g. --records 50000 --min-ms 500]
#   BUILD_DIR defaults to build/ (configure it first: meson setup build).
# Needs node and tests/servers/node_modules (tools/setup.sh installs both).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
[ $# -gt 0 ] && shift
ninja -C "$build" tests/bench/agg_bench >/dev/null
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
node "$root/tests/bench/agg_bench.js" "$build/tests/bench/agg_bench" "$@"
