#!/usr/bin/env bash
# Runs a command with the local test servers up:
#   kinesalite (Kinesis, --shardLimit 1000), dynalite (DynamoDB), moto_server.
# Each listens on a free port on 127.0.0.1 and the command sees
#   KN_TEST_KINESALITE_URL, KN_TEST_DYNALITE_URL, KN_TEST_MOTO_URL (http://127.0.0.1:PORT).
# The servers are stopped (by pid) however the command ends; the command's exit status is returned.
#
# Usage: tests/servers/with-servers.sh CMD [ARGS...]
#        tests/servers/with-servers.sh bash        # a shell with the servers up
# Environment:
#   KN_SERVERS_WAIT_S   seconds to wait for each server to answer (default 60)
#   KN_SERVERS_KEEP_LOGS=1  keep the log directory even on success
# Needs tests/servers/node_modules (tools/setup.sh installs it). When moto_server is missing,
# KN_TEST_MOTO_URL stays unset, a warning says so, and the tests that need moto fail saying so.
# shellcheck disable=SC2317  # functions called from traps look unreachable to shellcheck
set -uo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wait_s=${KN_SERVERS_WAIT_S:-60}
logdir=$(mktemp -d "${TMPDIR:-/tmp}/kn-servers.XXXXXX") || exit 1
server_pids=()
watchdog_pid=
cmd_pid=
failed=0

say() { echo "with-servers: $*" >&2; }

show_logs() {
    local f
    say "server logs are in $logdir"
    for f in "$logdir"/*.log; do
        [ -s "$f" ] || continue
        echo "----- $f (last 20 lines) -----" >&2
        tail -n 20 "$f" >&2
    done
}

stop_servers() {
    local pid i alive
    [ -n "$watchdog_pid" ] && kill "$watchdog_pid" 2>/dev/null
    for pid in "${server_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    # Up to 5 s for a clean exit, then SIGKILL.
    for ((i = 0; i < 50; i++)); do
        alive=0
        for pid in "${server_pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${server_pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${server_pids[@]}" $watchdog_pid; do
        wait "$pid" 2>/dev/null
    done
    server_pids=()
    watchdog_pid=
}

on_exit() {
    local status=$?
    trap - EXIT INT TERM
    [ -n "$cmd_pid" ] && kill -TERM "$cmd_pid" 2>/dev/null
    stop_servers
    if [ "$failed" != 0 ] || [ "${KN_SERVERS_KEEP_LOGS:-0}" = 1 ]; then
        say "logs kept in $logdir"
    else
        rm -rf "$logdir"
    fi
    exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# answers PORT: true once something on 127.0.0.1:PORT answers HTTP (any status).
answers() {
    python3 - "$1" <<'EOF' 2>/dev/null
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/")
c.getresponse().read()
EOF
}

# start NAME CMD...: starts a server whose command line has @PORT@ where the port goes, waits until
# it answers, and sets $port. Retries with another port if the server exits early (port taken).
start() {
    local name=$1 try pid deadline
    shift
    for try in 1 2 3; do
        port=$(free_port) || { say "cannot pick a free port (python3 missing?)"; return 1; }
        local args=("${@//@PORT@/$port}")
        echo "+ ${args[*]}" >"$logdir/$name.log"
        "${args[@]}" >>"$logdir/$name.log" 2>&1 </dev/null &
        pid=$!
        server_pids+=("$pid")
        deadline=$((SECONDS + wait_s))
        while :; do
            if ! kill -0 "$pid" 2>/dev/null; then
                wait "$pid" 2>/dev/null
                say "$name exited before answering on port $port (try $try of 3); log: $logdir/$name.log"
                cp "$logdir/$name.log" "$logdir/$name.try$try.log.txt" 2>/dev/null
                break
            fi
            if answers "$port"; then
                return 0
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "$name did not answer on 127.0.0.1:$port within ${wait_s}s; log: $logdir/$name.log"
                return 1
            fi
            sleep 0.2
        done
    done
    return 1
}

fail_start() {
    failed=1
    show_logs
    exit 1
}

if [ ! -d "$here/node_modules/kinesalite" ] || [ ! -d "$here/node_modules/dynalite" ]; then
    say "$here/node_modules is missing kinesalite or dynalite: run tools/setup.sh first"
    exit 1
fi
command -v node >/dev/null || { say "node is not installed: run tools/setup.sh first"; exit 1; }
command -v python3 >/dev/null || { say "python3 is not installed: run tools/setup.sh first"; exit 1; }

# If this script is killed with SIGKILL its traps cannot run: a watchdog stops the servers once
# this shell is gone. It polls, so it costs nothing measurable.
(
    trap - EXIT INT TERM
    parent=$$
    while kill -0 "$parent" 2>/dev/null; do sleep 1; done
    [ -f "$logdir/command.pid" ] && kill -TERM "$(cat "$logdir/command.pid")" 2>/dev/null
    for f in "$logdir"/*.pid; do
        [ -f "$f" ] && [ "$f" != "$logdir/command.pid" ] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
) </dev/null >/dev/null 2>&1 &
watchdog_pid=$!

record_pid() { echo "${server_pids[-1]}" >"$logdir/$1.pid"; }

start kinesalite node "$here/kinesalite-loopback.js" --port @PORT@ --shardLimit 1000 || fail_start
record_pid kinesalite
export KN_TEST_KINESALITE_URL="http://127.0.0.1:$port"

start dynalite node "$here/node_modules/dynalite/cli.js" --host 127.0.0.1 --port @PORT@ || fail_start
record_pid dynalite
export KN_TEST_DYNALITE_URL="http://127.0.0.1:$port"

moto_cmd=()
if command -v moto_server >/dev/null 2>&1; then
    moto_cmd=(moto_server -H 127.0.0.1 -p @PORT@)
elif python3 -c 'import moto.server' >/dev/null 2>&1; then
    moto_cmd=(python3 -m moto.server -H 127.0.0.1 -p @PORT@)
fi
if [ ${#moto_cmd[@]} -gt 0 ]; then
    start moto "${moto_cmd[@]}" || fail_start
    record_pid moto
    export KN_TEST_MOTO_URL="http://127.0.0.1:$port"
else
    unset KN_TEST_MOTO_URL
    say "WARNING: moto_server is not installed (pip install 'moto[server]'):" \
        "KN_TEST_MOTO_URL is unset and the tests that need moto will fail"
fi

say "kinesalite $KN_TEST_KINESALITE_URL  dynalite $KN_TEST_DYNALITE_URL  moto ${KN_TEST_MOTO_URL:-none}"

# Run the command. On a terminal it runs in the foreground so an interactive shell works;
# otherwise in the background so that a TERM sent to this script is handled at once (the
# trap stops the command, then the servers).
if [ -t 0 ]; then
    "$@"
    status=$?
else
    if { : <&0; } 2>/dev/null; then
        "$@" <&0 &
    else
        "$@" </dev/null & # no standard input at all (closed)
    fi
    cmd_pid=$!
    echo "$cmd_pid" >"$logdir/command.pid"
    wait "$cmd_pid"
    status=$?
    cmd_pid=
fi
exit "$status"
