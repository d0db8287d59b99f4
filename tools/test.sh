#!/usr/bin/env bash
# The one test command: installs what is missing (tools/setup.sh), builds build/ (plain) and
# build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer), both with -Werror, runs the whole
# suite of each against fresh local servers (tests/servers/with-servers.sh), builds build-release/
# (--buildtype=release, -Werror: the optimiser's warnings, such as -Wformat-truncation, appear only
# there; it counts as the one test "release_build"), then fuzzes every libFuzzer target for a
# bounded time (tests/fuzz/run.sh, build-fuzz/), and ends with the line
#   N passed, N failed
# totalled over all of them (each fuzz target counts as one test). A skipped or timed-out test
# counts as failed, and so does a test that could not be built, and a failed build counts once
# more; a fuzz target fails on any crash, leak, sanitizer report or broken invariant. Exits
# non-zero when anything failed or when no test ran.
#
# Usage: tools/test.sh [MESON_TEST_ARGS...]     e.g. tools/test.sh --suite unit
# Environment:
#   KN_TEST_VARIANTS   what to test: plain, asan, release, fuzz (default "plain asan release
#                      fuzz"; "plain asan" when MESON_TEST_ARGS are given)
#   KN_TEST_JOBS       parallel tests and fuzz targets (default: the number of cores)
#   KN_TEST_FUZZ_SECONDS  fuzzing time per target (default 25)
#   KN_TEST_SKIP_SETUP=1  do not run tools/setup.sh
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

if [ $# -eq 0 ]; then
    variants=${KN_TEST_VARIANTS:-plain asan release fuzz}
else
    variants=${KN_TEST_VARIANTS:-plain asan}
fi
fuzz_seconds=${KN_TEST_FUZZ_SECONDS:-25}
jobs=${KN_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}
report=$(mktemp -d "${TMPDIR:-/tmp}/kn-test.XXXXXX") || exit 1
trap 'rm -rf "$report"' EXIT
# Failures that are not a test's result (configure or build failure, servers not starting) go
# here, one per line: "variant<TAB>what<TAB>why".
problems=$report/problems.tsv
: >"$problems"

say() { echo "test.sh: $*" >&2; }
problem() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$problems"; }

dir_of() {
    case $1 in
    plain) echo build ;; asan) echo build-asan ;; release) echo build-release ;; fuzz) echo build-fuzz ;;
    esac
}
setup_args_of() {
    case $1 in
    plain) echo "--werror" ;;
    asan) echo "--werror -Db_sanitize=address,undefined -Db_lundef=false" ;;
    release) echo "--werror --buildtype=release" ;;
    esac
}

# Prints the summary from the test logs and $problems; ends with "N passed, N failed".
summarize() {
    python3 - "$problems" "$@" <<'EOF'
import json, os, sys

problems_path, runs = sys.argv[1], sys.argv[2:]
passed = 0
failures = []
per_variant = []
for run in runs:
    variant, log = run.split("=", 1)
    p = f = 0
    if os.path.exists(log):
        with open(log, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    t = json.loads(line)
                except ValueError:
                    continue
                if t.get("result") == "OK":
                    p += 1
                else:
                    f += 1
                    rc = t.get("returncode")
                    how = "signal %d" % -rc if isinstance(rc, int) and rc < 0 else "exit %s" % rc
                    name = t.get("name", "?").split(":", 1)[-1]  # drop the "libkinesis:" prefix
                    failures.append((variant, name, "%s (%s, %.1fs)" % (t.get("result"), how,
                                                                      t.get("duration") or 0)))
    per_variant.append((variant, p, f))
    passed += p
with open(problems_path, encoding="utf-8") as fh:
    for line in fh:
        parts = line.rstrip("\n").split("\t", 2)
        if len(parts) == 3:
            failures.append(tuple(parts))
            per_variant.append((parts[0], 0, 1))
failed = len(failures)
print()
print("=" * 72)
totals = {}
for v, p, f in per_variant:
    a, b = totals.get(v, (0, 0))
    totals[v] = (a + p, b + f)
for v, (p, f) in totals.items():
    print("%-6s %d passed, %d failed" % (v + ":", p, f))
if failures:
    print("Failures:")
    for v, name, why in failures:
        print("  [%s] %s: %s" % (v, name, why))
print("%d passed, %d failed" % (passed, failed))
sys.exit(0 if failed == 0 and passed > 0 else 1)
EOF
}

# ---------------------------------------------------------------- set-up
if [ "${KN_TEST_SKIP_SETUP:-0}" != 1 ]; then
    if ! tools/setup.sh; then
        problem setup tools/setup.sh "failed (see above)"
        summarize
        exit 1
    fi
fi

# ---------------------------------------------------------------- configure and build
# build_variant VARIANT: configures and builds; writes the tests that can run to
# $report/VARIANT.run (one name a line) and those that could not be built to $report/VARIANT.nobuild.
build_variant() {
    local v=$1 dir
    dir=$(dir_of "$v")
    local how=()
    if [ -f "$dir/meson-private/coredata.dat" ]; then
        how=(--reconfigure)
    else
        rm -rf "$dir"
    fi
    # shellcheck disable=SC2046
    if ! meson setup "${how[@]}" "$dir" $(setup_args_of "$v") >"$report/$v.configure.log" 2>&1; then
        cat "$report/$v.configure.log" >&2
        problem "$v" "meson setup $dir" "failed (output above)"
        return 1
    fi
    say "building $dir"
    if ! ninja -C "$dir" -k 0 >"$report/$v.build.log" 2>&1; then
        # Show every failed step with its compiler output.
        awk '/^FAILED: /{p=1} /^\[[0-9]+\/[0-9]+\] /{p=0} p' "$report/$v.build.log" | head -n 400 >&2
        say "the build of $dir failed; the tests that could be built still run"
        touch "$report/$v.buildfailed"
    fi
    # Which tests have an up-to-date executable: a dry run lists the links still to do.
    ninja -C "$dir" -n 2>/dev/null | sed -n 's/^\[[0-9]*\/[0-9]*\] Linking target //p' >"$report/$v.stale"
    meson introspect "$dir" --tests >"$report/$v.tests.json" 2>/dev/null || echo '[]' >"$report/$v.tests.json"
    python3 - "$dir" "$report/$v.tests.json" "$report/$v.stale" "$report/$v.run" "$report/$v.nobuild" <<'EOF'
import json, os, sys
bdir, tests_json, stale_path, run_path, nobuild_path = sys.argv[1:]
bdir = os.path.realpath(bdir)
stale = {os.path.realpath(os.path.join(bdir, l.strip())) for l in open(stale_path) if l.strip()}
run, nobuild = [], []
for t in json.load(open(tests_json)):
    paths = [os.path.realpath(c) for c in t["cmd"] if isinstance(c, str) and c.startswith(bdir + os.sep)]
    missing = [c for c in paths if c in stale or not os.path.exists(c)]
    suite = t["suite"][0].split(":", 1)[-1] if t["suite"] else ""
    if missing:
        nobuild.append("%s / %s" % (suite, t["name"]))
    else:
        run.append(t["name"])
open(run_path, "w").write("".join(n + "\n" for n in run))
open(nobuild_path, "w").write("".join(n + "\n" for n in nobuild))
EOF
    local n
    # The release variant runs no test: its one result is whether everything built.
    [ "$v" = release ] && : >"$report/$v.nobuild"
    while IFS= read -r n; do
        problem "$v" "$n" "not built"
    done <"$report/$v.nobuild"
    if [ -f "$report/$v.buildfailed" ]; then
        problem "$v" "ninja -C $dir" "build failed (output above)"
    fi
    return 0
}

# ---------------------------------------------------------------- run
# run_variant VARIANT [MESON_TEST_ARGS...]
run_variant() {
    local v=$1 dir status
    shift
    dir=$(dir_of "$v")
    rm -f "$dir/meson-logs/testlog.json"
    local names=()
    mapfile -t names <"$report/$v.run"
    if [ ${#names[@]} -eq 0 ]; then
        say "no test to run in $dir"
        return 0
    fi
    # Name the tests only when some could not be built (meson test refuses to start otherwise).
    local select=()
    [ -s "$report/$v.nobuild" ] && select=("${names[@]}")
    local env=()
    local margs=(--no-rebuild --print-errorlogs --num-processes "$jobs")
    if [ "$v" = asan ]; then
        env=(ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:print_summary=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:print_summary=1)
        margs+=(--timeout-multiplier 2)
    fi
    say "running the tests of $dir"
    tests/servers/with-servers.sh env "${env[@]}" meson test -C "$dir" "${margs[@]}" "$@" "${select[@]}"
    status=$?
    if [ ! -f "$dir/meson-logs/testlog.json" ]; then
        problem "$v" "meson test -C $dir" "ran no test (exit status $status; see above)"
    fi
    return 0
}

# run_fuzz: every libFuzzer target for $fuzz_seconds s (tests/fuzz/run.sh builds build-fuzz/ with
# clang); one result line per target in $report/fuzz.jsonl, in the format of meson's test log.
run_fuzz() {
    say "fuzzing each target for ${fuzz_seconds}s in build-fuzz"
    KN_FUZZ_RESULTS="$report/fuzz.jsonl" KN_FUZZ_JOBS="$jobs" KN_FUZZ_BUILD_DIR=build-fuzz \
        tests/fuzz/run.sh "$fuzz_seconds"
    if [ ! -s "$report/fuzz.jsonl" ]; then
        problem fuzz "tests/fuzz/run.sh" "ran no fuzz target (see above)"
    fi
    return 0
}

# run_release: the release build (already built by build_variant) as one result line in
# $report/release.jsonl: OK when everything compiled and linked warning-free under -Werror.
run_release() {
    local result=OK
    [ -f "$report/release.buildfailed" ] && result=FAIL
    printf '{"name": "release_build", "result": "%s", "returncode": %d, "duration": 0}\n' \
        "$result" "$([ $result = OK ] && echo 0 || echo 1)" >"$report/release.jsonl"
    # The build failure is this result; do not count it a second time as a problem.
    sed -i '/^release\tninja -C build-release\t/d' "$problems"
}

runs=()
for v in $variants; do
    dir=$(dir_of "$v")
    if [ -z "$dir" ]; then
        problem "$v" "KN_TEST_VARIANTS" "unknown variant (plain, asan, release or fuzz)"
        continue
    fi
    if [ "$v" = release ]; then
        if build_variant "$v"; then
            run_release
            runs+=("release=$report/release.jsonl")
        fi
        continue
    fi
    if [ "$v" = fuzz ]; then
        run_fuzz
        runs+=("fuzz=$report/fuzz.jsonl")
        continue
    fi
    if build_variant "$v"; then
        run_variant "$v" "$@"
        runs+=("$v=$dir/meson-logs/testlog.json")
    fi
done

summarize "${runs[@]}"
