#!/usr/bin/env bash
# The shared-client benchmark (figures only): builds sharing_bench and runs tests/bench/sharing/bench.py.
# Usage: tests/bench/sharing/run.sh [BUILD_DIR] [--seconds S] [--codecs gzip,zstd,none]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=$root/build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    build=$1
    shift
fi
ninja -C "$build" tests/bench/sharing/sharing_bench >/dev/null
exec python3 "$root/tests/bench/sharing/bench.py" --bin "$build/tests/bench/sharing/sharing_bench" "$@"
