#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, coverage-instrumented libraries) and fuzzes
# each for a bounded time, starting from its seed corpus (tests/fuzz/seeds/TARGET, the committed
# regressions/TARGET and any seeds seedgen writes) copied into a temporary directory, so a
# run never writes into the source tree. Prints one line per target (ok / CRASH) and exits
# non-zero when a target crashed, leaked, timed out, failed an invariant or could not be built.
# Crash inputs are kept in a directory whose path is printed (also as base64 in the output,
# so a CI log is enough to reproduce); replay one with `BUILD_DIR/tests/fuzz/TARGET FILE`.
#
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET [TARGET...]]     (default 25 s, every target)
# The decoders of data from other producers (fuzz_agg_decode, fuzz_record_decode,
# fuzz_decompress) get twice SECONDS_PER_TARGET: they are the deepest parsers.
# Environment:
#   KN_FUZZ_BUILD_DIR   build directory (default build-fuzz in the source root)
#   KN_FUZZ_JOBS        targets fuzzed at the same time (default: the number of cores)
#   KN_FUZZ_CRASH_DIR   where crash inputs go (default: a new directory under $TMPDIR or /tmp)
#   KN_FUZZ_RESULTS     also write one JSON line per target here (meson testlog format; for
#                       tools/test.sh)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-25}
shift $(($# > 0 ? 1 : 0))
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET [TARGET...]]" >&2; exit 2 ;; esac

bdir=${KN_FUZZ_BUILD_DIR:-$root/build-fuzz}
case $bdir in /*) ;; *) bdir=$root/$bdir ;; esac
jobs=${KN_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
results=${KN_FUZZ_RESULTS:-}
say() { echo "fuzz: $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kn-fuzz.XXXXXX") || exit 1
crashes=${KN_FUZZ_CRASH_DIR:-}
if [ -z "$crashes" ]; then
    crashes=$(mktemp -d "${TMPDIR:-/tmp}/kn-fuzz-crashes.XXXXXX") || exit 1
    made_crash_dir=1
else
    mkdir -p "$crashes" || exit 1
    made_crash_dir=0
fi
crashes=$(cd "$crashes" && pwd)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$work"
    # Keep the crash directory only when it holds something.
    [ "$made_crash_dir" = 1 ] && rmdir "$crashes" 2>/dev/null
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

targets=("$@")
[ -n "$results" ] && : >"$results"

record() { # record NAME OK|FAIL RC DURATION
    [ -n "$results" ] || return 0
    printf '{"name": "libkinesis:fuzz / %s", "result": "%s", "returncode": %d, "duration": %s}\n' \
        "$1" "$2" "$3" "$4" >>"$results"
}

# ------------------------------------------------------------------ configure and build
build_ok=1
if [ ! -f "$bdir/build.ninja" ]; then
    rm -rf "$bdir"
    say "configuring $bdir (clang, libFuzzer, ASan + UBSan)"
    if ! CC=clang meson setup "$bdir" "$root" -Dfuzz=true -Dtests=true \
        -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link \
        >"$work/configure.log" 2>&1; then
        cat "$work/configure.log" >&2
        say "meson setup failed (clang and libclang-rt-14-dev are needed: tools/setup.sh)"
        build_ok=0
    fi
fi
# Targets: those named, else every fuzz_* executable tests/fuzz/meson.build defines (a target
# that fails to build still counts); without a configured build, every tests/fuzz/fuzz_*.c.
have_seedgen=0
# Regenerate first when a meson.build changed, so the list is current.
[ "$build_ok" = 1 ] && ninja -C "$bdir" build.ninja >"$work/regen.log" 2>&1
if [ "$build_ok" = 1 ] && meson introspect "$bdir" --targets >"$work/targets.json" 2>/dev/null; then
    python3 - "$work/targets.json" >"$work/targets.txt" <<'EOF'
import json, os, sys
for t in json.load(open(sys.argv[1])):
    if t["type"] == "executable" and (t["name"].startswith("fuzz_") or t["name"] == "seedgen") and \
       os.path.normpath(t.get("defined_in", "")).endswith(os.path.join("tests", "fuzz", "meson.build")):
        print(t["name"])
EOF
    grep -qx seedgen "$work/targets.txt" && have_seedgen=1
    if [ ${#targets[@]} -eq 0 ]; then
        mapfile -t targets < <(grep -v -x seedgen "$work/targets.txt")
        for f in "$here"/fuzz_*.c; do
            t=$(basename "$f" .c)
            grep -qx "$t" "$work/targets.txt" ||
                say "$t is not in the build yet (its libraries are missing from common/meson.build)"
        done
    fi
elif [ ${#targets[@]} -eq 0 ]; then
    for f in "$here"/fuzz_*.c; do
        targets+=("$(basename "$f" .c)")
    done
fi
if [ "$build_ok" = 1 ]; then
    say "building the fuzz targets in $bdir"
    build_targets=()
    for t in "${targets[@]}"; do
        [ -f "$here/$t.c" ] && build_targets+=("tests/fuzz/$t")
    done
    [ "$have_seedgen" = 1 ] && build_targets+=(tests/fuzz/seedgen)
    if ! ninja -C "$bdir" -k 0 "${build_targets[@]}" >"$work/build.log" 2>&1; then
        awk '/^FAILED: /{p=1} /^\[[0-9]+\/[0-9]+\] /{p=0} p' "$work/build.log" | head -n 200 >&2
        say "the build failed; the targets that were built still run"
    fi
    # A target whose link is still to do failed to build: an old executable must not stand in.
    ninja -C "$bdir" -n "${build_targets[@]}" 2>/dev/null |
        sed -n 's|^\[[0-9]*/[0-9]*\] Linking target tests/fuzz/||p' >"$work/stale.txt"
fi
is_built() { [ -x "$bdir/tests/fuzz/$1" ] && ! grep -qx "$1" "$work/stale.txt" 2>/dev/null; }

# ------------------------------------------------------------------ fuzz
# fuzz_one TARGET: runs in the background; writes $work/TARGET.status "rc seconds".
fuzz_one() {
    local t=$1 exe="$bdir/tests/fuzz/$1" dir="$work/$1" start end rc
    mkdir -p "$dir/corpus"
    local d
    for d in "$here/seeds/$t" "$here/regressions/$t"; do
        [ -d "$d" ] && cp -R "$d/." "$dir/corpus/"
    done
    if [ "$have_seedgen" = 1 ] && is_built seedgen; then
        "$bdir/tests/fuzz/seedgen" "$t" "$dir/corpus" >"$dir/seedgen.log" 2>&1 ||
            { echo "seedgen failed:" && cat "$dir/seedgen.log"; } >"$dir/log"
    fi
    local t_secs=$secs
    case $t in fuzz_agg_decode | fuzz_record_decode | fuzz_decompress) t_secs=$((secs * 2)) ;; esac
    local args=(-max_total_time="$t_secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
                -artifact_prefix="$crashes/$t-")
    if [ -f "$here/dicts/$t.dict" ]; then
        args+=(-dict="$here/dicts/$t.dict")
    elif [ "$t" = fuzz_properties ]; then
        # Every property and alias name in the table, so the fuzzer reaches each value parser.
        { printf '"%s"\n' = : '\\' '\\u00e9' '\\n' true false; \
          grep -ohE '"[A-Za-z][A-Za-z0-9._-]*"' "$root"/common/base/conf.h | sort -u; } >"$dir/props.dict"
        args+=(-dict="$dir/props.dict")
    fi
    start=$(date +%s)
    (
        cd "$dir" || exit 1
        # halt_on_error: a UBSan report is a crash, with the input kept.
        export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:print_summary=1
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:print_summary=1
        exec timeout -k 10 $((t_secs * 2 + 120)) "$exe" "${args[@]}" corpus
    ) >>"$dir/log" 2>&1
    rc=$?
    end=$(date +%s)
    echo "$rc $((end - start))" >"$work/$t.status"
}

# The long-running targets start first, so the parallel slots end together.
order=()
for t in "${targets[@]}"; do
    case $t in fuzz_agg_decode | fuzz_record_decode | fuzz_decompress) order=("$t" "${order[@]}") ;;
    *) order+=("$t") ;;
    esac
done
running=0
for t in "${order[@]}"; do
    if ! is_built "$t"; then
        echo "254 0" >"$work/$t.status"
        continue
    fi
    while [ "$running" -ge "$jobs" ]; do
        wait -n
        running=$((running - 1))
    done
    fuzz_one "$t" &
    pids+=($!)
    running=$((running + 1))
done
wait
pids=()

# ------------------------------------------------------------------ report
failed=0
echo
for t in "${targets[@]}"; do
    read -r rc took <"$work/$t.status" 2>/dev/null || { rc=255; took=0; }
    log="$work/$t/log"
    if [ "$rc" = 254 ]; then
        printf '%-24s NOT BUILT (see the build output above)\n' "$t"
        record "$t" FAIL 254 0
        failed=$((failed + 1))
        continue
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -n 1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" 2>/dev/null | tail -n 1)
    if [ "$rc" = 0 ]; then
        printf '%-24s ok     %3ss %10s runs  %s\n' "$t" "$took" "${runs:-?}" "$cov"
        record "$t" OK 0 "$took"
        continue
    fi
    failed=$((failed + 1))
    record "$t" FAIL "$rc" "$took"
    printf '%-24s CRASH  %3ss (exit %s)\n' "$t" "$took" "$rc"
    echo "----- $t: the end of its output -----"
    grep -v -E '^(#[0-9]+|INFO:|	NEW_FUNC)' "$log" | tail -n 60
    for a in "$crashes/$t-"*; do
        [ -f "$a" ] || continue
        echo "input kept: $a ($(wc -c <"$a") bytes)"
        [ "$(wc -c <"$a")" -le 65536 ] && echo "  base64: $(base64 -w0 "$a")"
    done
    echo "reproduce: $bdir/tests/fuzz/$t FILE"
    echo "-----"
done
if [ "$failed" -gt 0 ]; then
    say "$failed of ${#targets[@]} targets failed"
    [ -n "$(ls -A "$crashes" 2>/dev/null)" ] && say "crash inputs are in $crashes"
    exit 1
fi
if [ ${#targets[@]} -eq 0 ]; then
    say "no fuzz target to run"
    exit 1
fi
say "all ${#targets[@]} targets ran without a crash"
exit 0
