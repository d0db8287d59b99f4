#!/usr/bin/env bash
# The quick start's main job, run by tools/quickstart.sh inside tests/servers/with-servers.sh (which
# exports KN_TEST_KINESALITE_URL and KN_TEST_DYNALITE_URL). Each step prints the kncat command it
# runs, as a user would type it, and what came of it:
#   1. kncat -A create / -A wait     a stream of --shards shards (default 2), until ACTIVE
#   2. kncat -P -K '<TAB>'           --records sample records (default 200), key<TAB>data lines
#   3. kncat -C -e                   every record read back; the round trip must be exact (keys and
#                                    bytes, compared as sorted lines), and a few shown as JSON (-J)
#   4. kncat -L -t                   the stream's shards
#   5. kn-quickstart                 the library core directly, including a lease-like item written,
#                                    read and conditionally refused in DynamoDB (dynalite)
#   6. kncat -A delete               (unless --keep)
# Exits non-zero at the first step that fails, saying which.
# Usage: demo.sh BUILD_DIR [--records N] [--shards N] [--keep]
set -euo pipefail

build=$1
shift
records=200 shards=2 keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --records) records=$2; shift 2 ;;
        --shards) shards=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "quickstart: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
case $records$shards in *[!0-9]*) echo "quickstart: --records and --shards take numbers" >&2; exit 2 ;; esac
if [ "$records" -lt 1 ] || [ "$shards" -lt 1 ]; then
    echo "quickstart: --records and --shards must be >= 1" >&2
    exit 2
fi

if [ -z "${KN_TEST_KINESALITE_URL:-}" ] || [ -z "${KN_TEST_DYNALITE_URL:-}" ]; then
    echo "quickstart: run this through tests/servers/with-servers.sh (tools/quickstart.sh does)" >&2
    exit 2
fi
# The local servers accept any credentials; these stay inside this script.
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL
export AWS_ENDPOINT_URL_KINESIS=$KN_TEST_KINESALITE_URL AWS_ENDPOINT_URL_DYNAMODB=$KN_TEST_DYNALITE_URL
PATH=$build/tools/kncat:$PATH

stream=quickstart-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/kn-quickstart.XXXXXX")
created=0
finish() {
    local status=$?
    if [ "$created" = 1 ] && [ "$keep" = 0 ]; then
        kncat -q -t "$stream" -A delete >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    if [ "$status" = 0 ]; then
        echo "quickstart OK"
    else
        echo "quickstart FAILED (exit status $status)" >&2
    fi
}
trap finish EXIT

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "quickstart: $*" >&2; exit 1; }

echo "kinesis  $AWS_ENDPOINT_URL_KINESIS (kinesalite)"
echo "dynamodb $AWS_ENDPOINT_URL_DYNAMODB (dynalite)"

step "1. create a stream of $shards shards and wait until it is ACTIVE"
run kncat -t "$stream" -A create --shards "$shards" || fail "kncat -A create failed"
created=1
run kncat -t "$stream" -A wait || fail "kncat -A wait failed"

step "2. produce $records records (one per line: key<TAB>data)"
tab=$'\t'
for ((i = 0; i < records; i++)); do
    printf 'user-%d\trecord %d of the quick start: héllo, wörld ✓ {"n": %d}\n' $((i % 10)) "$i" "$i"
done >"$work/sent"
head -n 3 "$work/sent" | sed 's/^/  /'
printf '%s\n' "\$ kncat -t $stream -P -K \$'\\t' < sample"
kncat -t "$stream" -P -K "$tab" <"$work/sent" || fail "kncat -P failed (not every record was acknowledged)"
echo "  $records records acknowledged"

step "3. consume them back from the beginning and compare"
printf '%s\n' "\$ kncat -t $stream -C -e -f '%k\t%s\n'"
kncat -t "$stream" -C -e -f '%k\t%s\n' >"$work/received" || fail "kncat -C failed"
got=$(wc -l <"$work/received")
LC_ALL=C sort "$work/sent" >"$work/sent.sorted"
LC_ALL=C sort "$work/received" >"$work/received.sorted"
if ! cmp -s "$work/sent.sorted" "$work/received.sorted"; then
    echo "  sent $records records, read $got; the differences (< sent, > read):" >&2
    diff "$work/sent.sorted" "$work/received.sorted" | head -n 20 >&2 || true
    fail "the round trip is not exact"
fi
echo "  $got of $records records read back exactly (keys and bytes)"
run kncat -t "$stream" -C -e -c 2 -J || fail "kncat -C -J failed"

step "4. list the stream's shards"
run kncat -t "$stream" -L || fail "kncat -L failed"

step "5. the library core directly (kn-quickstart): a stream round trip and a lease item in DynamoDB"
if ! run "$build/tools/kn-quickstart" --records 50 --shards 1 | sed 's/^/  /'; then
    fail "kn-quickstart failed"
fi

if [ "$keep" = 1 ]; then
    step "6. kept the stream $stream (--keep)"
else
    step "6. delete the stream"
    run kncat -t "$stream" -A delete || fail "kncat -A delete failed"
    created=0
fi
