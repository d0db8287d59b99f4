#!/usr/bin/env bash
# Installs what libkinesis needs to build and test on Debian 12, and nothing that is already there:
#   - Debian packages (compiler, meson, ninja, the libraries, cmocka, clang and its sanitizer and
#     fuzzer runtime, python3, openssl; nodejs/npm only when `node`/`npm` are missing; python3-boto3
#     and awscli only when python3 cannot import boto3 / the `aws` command is missing);
#   - the pinned npm test servers in tests/servers (npm ci, only when the lockfile changed);
#   - the pinned npm benchmark peers in tests/bench/peers (the same way);
#   - checks for moto_server (preinstalled on our machines; pip install 'moto[server]' elsewhere).
# Safe to run again: a second run only checks and takes about a second.
# Runs as root (CI) or through sudo when available.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "setup: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root to run: $*"
        say "run this script as root, or install sudo"
        return 1
    fi
}

# ------------------------------------------------------------------ Debian packages
pkgs=(build-essential gcc meson ninja-build pkg-config libcurl4-openssl-dev libssl-dev
      libjson-c-dev libuv1-dev zlib1g-dev libzstd-dev libcmocka-dev clang libclang-rt-14-dev
      openssl ca-certificates python3-protobuf zstd gzip)
missing=()
for p in "${pkgs[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
    fi
done
# A python3 or node from elsewhere (pyenv, NodeSource) is fine: only install Debian's when the
# command is missing (Debian's npm package conflicts with NodeSource's nodejs, which bundles npm).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The interop tests and benchmarks drive boto3 and the AWS CLI (v1 or v2) as peers.
python3 -c 'import boto3' >/dev/null 2>&1 || missing+=(python3-boto3)
command -v aws >/dev/null 2>&1 || missing+=(awscli)

if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# meson >= 1.0 is what meson.build asks for; Debian 12 has 1.0.1.
if ! meson --version >/dev/null 2>&1; then
    say "meson does not run after installing it"
    exit 1
fi

# ------------------------------------------------------------------ npm test servers
# kinesalite and dynalite, pinned in tests/servers/package.json + package-lock.json.
# --ignore-scripts: leveldown's install script only compiles when no prebuilt binary fits; the
# in-memory servers never load it, and --path (LevelDB on disk) uses the prebuilt linux binary.
servers=$root/tests/servers
stamp=$servers/node_modules/.kn-setup-stamp
want=$(cat "$servers/package.json" "$servers/package-lock.json" | sha256sum | cut -d' ' -f1)
want="$want node-$(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
   [ ! -d "$servers/node_modules/kinesalite" ] || [ ! -d "$servers/node_modules/dynalite" ]; then
    say "installing the npm test servers (npm ci in tests/servers)"
    (cd "$servers" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    (cd "$servers" && node -e 'require("kinesalite"); require("dynalite")')
    echo "$want" >"$stamp"
fi

# ------------------------------------------------------------------ npm benchmark peers
# The AWS SDK for JavaScript v3 and aws-kinesis-agg for the producer benchmark, pinned in
# tests/bench/peers/package.json + package-lock.json (same stamp logic as above).
peers=$root/tests/bench/peers
stamp=$peers/node_modules/.kn-setup-stamp
want=$(cat "$peers/package.json" "$peers/package-lock.json" | sha256sum | cut -d' ' -f1)
want="$want node-$(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
   [ ! -d "$peers/node_modules/@aws-sdk/client-kinesis" ] || [ ! -d "$peers/node_modules/aws-kinesis-agg" ]; then
    say "installing the npm benchmark peers (npm ci in tests/bench/peers)"
    (cd "$peers" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    (cd "$peers" && node -e 'require("@aws-sdk/client-kinesis"); require("aws-kinesis-agg"); require("@smithy/node-http-handler")')
    echo "$want" >"$stamp"
fi

# ------------------------------------------------------------------ moto
if command -v moto_server >/dev/null 2>&1 || python3 -c 'import moto.server' >/dev/null 2>&1; then
    :
else
    say "moto_server is NOT installed (the tests that use moto need it)."
    say "trying: python3 -m pip install 'moto[server]' (needs the Python package index)"
    if timeout 300 python3 -m pip install --quiet 'moto[server]' >&2 ||
       timeout 300 python3 -m pip install --quiet --user --break-system-packages 'moto[server]' >&2; then
        say "moto installed"
    else
        say "WARNING: could not install moto: the tests that need moto_server will fail" \
            "(with-servers.sh leaves KN_TEST_MOTO_URL unset)"
    fi
fi
