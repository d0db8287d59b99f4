#!/usr/bin/env bash
# Quick start: the main job end to end with kncat on local servers, from a fresh Debian 12 machine.
# Installs what is missing (tools/setup.sh), builds build/ (kncat and kn-quickstart), starts
# kinesalite and dynalite on free loopback ports (tests/servers/with-servers.sh) and runs
# tools/quickstart/demo.sh against them: create a stream with kncat -A, produce sample records with
# kncat -P, consume them back with kncat -C -e and check the round trip is exact, list the shards
# with kncat -L, round-trip a lease item in DynamoDB (kn-quickstart), delete the stream.
# Prints each command as it runs it; exits non-zero if any step fails or the round trip is not exact.
# Arguments go to demo.sh: --records N (default 200), --shards N (default 2), --keep, --help.
# KN_QUICKSTART_BUILD_DIR names another build directory than build/ (relative to the repository).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=${KN_QUICKSTART_BUILD_DIR:-build}

tools/setup.sh
if [ ! -f "$build/meson-private/coredata.dat" ]; then
    meson setup "$build" --werror >/dev/null
fi
echo "quickstart: building kncat and kn-quickstart in $build/ ..."
log=$(mktemp "${TMPDIR:-/tmp}/kn-quickstart-build.XXXXXX")
if ! ninja -C "$build" tools/kncat/kncat tools/kn-quickstart >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "quickstart: the build failed" >&2
    exit 1
fi
rm -f "$log"

case $build in /*) ;; *) build=$root/$build ;; esac
exec tests/servers/with-servers.sh tools/quickstart/demo.sh "$build" "$@"
