#!/usr/bin/env bash
# Quick start: the main job end to end on the local default servers.
# Installs what is missing (tools/setup.sh), builds build/, starts kinesalite and
# dynalite on free loopback ports (tests/servers/with-servers.sh) and runs
# kn-quickstart against them: create a stream, put records, read every shard
# back byte for byte, round-trip a lease item in DynamoDB, clean up.
# Extra arguments go to kn-quickstart (try --records 5000 --shards 4, or --help).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

tools/setup.sh
if [ ! -f build/meson-private/coredata.dat ]; then
    meson setup build --werror >/dev/null
fi
ninja -C build tools/kn-quickstart >/dev/null

# Local servers accept any credentials; these stay inside this command.
exec tests/servers/with-servers.sh bash -c '
    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_SESSION_TOKEN= \
    AWS_ENDPOINT_URL_KINESIS="$KN_TEST_KINESALITE_URL" AWS_ENDPOINT_URL_DYNAMODB="$KN_TEST_DYNALITE_URL" \
    AWS_REGION=us-east-1 exec build/tools/kn-quickstart "$@"' kn-quickstart "$@"
