#!/usr/bin/env bash
# Proves the repository stands on its own: clones the checkout's HEAD into an empty temporary folder
# (nothing beside it, no ../shared), builds it there with --werror and runs the unit suite. .ci/run
# calls it after tools/test.sh (which has installed what the build needs). Exits non-zero, naming
# the step, when the clone cannot build or a unit test fails.
#
# Usage: tools/clone_check.sh [MESON_TEST_ARGS...]   (default: --suite unit)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "clone_check: $*" >&2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kn-clone.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say "cloning $root (HEAD $(git -C "$root" rev-parse --short HEAD)) into $tmp/libkinesis"
git clone -q --no-local "$root" "$tmp/libkinesis"
cd "$tmp/libkinesis"
if [ -e ../shared ]; then
    say "the clone has a folder beside it; the check would prove nothing"
    exit 1
fi
[ $# -gt 0 ] || set -- --suite unit
meson setup build --werror >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; say "meson setup failed"; exit 1; }
ninja -C build >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log" >&2; say "the build failed"; exit 1; }
if ! meson test -C build --print-errorlogs "$@" >"$tmp/test.log" 2>&1; then
    cat "$tmp/test.log" >&2
    say "tests failed in the clone"
    exit 1
fi
grep -E '^(Ok|Fail|Timeout|Skipped):' "$tmp/test.log" >&2
say "a clone with nothing beside it builds and passes: $*"
