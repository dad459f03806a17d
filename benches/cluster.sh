#!/usr/bin/env bash
# Starts a 3-node raft-ipam cluster of release builds on 127.0.0.1 (ports chosen by the OS,
# temporary data dirs), forms it through the admin API, runs the load generator at 1 and 64
# clients, prints its table, and stops the cluster on exit (normal or not).
#
#   benches/cluster.sh                      # allocate mode, 10 s per run
#   BENCH_ARGS="--mode batch" benches/cluster.sh
#   CLIENTS=1,8,64,256 DURATION=5 benches/cluster.sh
#   PROFILE=dev benches/cluster.sh          # debug builds: a quick check, not figures
#
# Loopback only; every wait has a deadline.
set -euo pipefail

cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1,64}
DURATION=${DURATION:-10}
BENCH_ARGS=${BENCH_ARGS:-}

PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" --quiet -p ipam-node -p ipam-cli -p ipam-bench
if [ "$PROFILE" = dev ]; then BIN=target/debug; else BIN=target/$PROFILE; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ipam-bench.XXXXXX")
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for log in "$TMP"/n*.log; do
            [ -f "$log" ] && { echo "--- $log (last lines)"; tail -n 20 "$log"; } >&2
        done
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export IPAM_TOKEN=$TOKEN

# start_node ID [FLAGS...]: starts a node, waits (10 s at most) for its `listening on` line and
# sets ADDR to the address it bound.
start_node() {
    local id=$1
    shift
    mkdir -p "$TMP/n$id"
    # Created before the node starts, so the first read cannot race the node's redirection.
    : >"$TMP/n$id.out"
    "$BIN/ipam-node" --id "$id" --listen 127.0.0.1:0 --data-dir "$TMP/n$id/data" \
        --token "$TOKEN" "$@" >"$TMP/n$id.out" 2>"$TMP/n$id.log" &
    PIDS+=($!)
    local deadline=$((SECONDS + 10))
    ADDR=
    while [ -z "$ADDR" ]; do
        ADDR=$(sed -n 's/^listening on //p' "$TMP/n$id.out" | head -n 1)
        if [ -z "$ADDR" ]; then
            [ "$SECONDS" -lt "$deadline" ] || { echo "node $id did not start" >&2; exit 1; }
            sleep 0.1
        fi
    done
}

# wait_leader ADDR: polls the node's cluster status for 30 s at most, until it knows a leader.
wait_leader() {
    local deadline=$((SECONDS + 30))
    until "$BIN/ipam-cli" --endpoint "http://$1" -o json cluster status 2>/dev/null |
        grep -Eq '"leader": [0-9]+'; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "node at $1 knows no leader" >&2; exit 1; }
        sleep 0.1
    done
}

start_node 1
A1=$ADDR
start_node 2 --no-init
A2=$ADDR
start_node 3 --no-init
A3=$ADDR
wait_leader "$A1"

CLI=("$BIN/ipam-cli" --endpoint "http://$A1")
"${CLI[@]}" cluster add-learner 2 "$A2" >/dev/null
"${CLI[@]}" cluster add-learner 3 "$A3" >/dev/null
"${CLI[@]}" cluster voters 1 2 3 >/dev/null
"${CLI[@]}" cluster status >&2
echo >&2

# ipam-bench waits until every node is ready (/readyz) before its first run.
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
timeout 900 "$BIN/ipam-bench" \
    --endpoints "http://$A1,http://$A2,http://$A3" \
    --clients "$CLIENTS" --duration "$DURATION" $BENCH_ARGS
