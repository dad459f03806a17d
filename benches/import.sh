#!/usr/bin/env bash
# Measures `ipam-cli import` into a 3-node cluster of release builds on 127.0.0.1: generates
# ROWS explicit-address rows in one /12 pool, imports them, and prints rows per second (the
# whole command: reading, checking every row against the cluster, and writing in batches).
#
#   cargo build --release -p ipam-node -p ipam-cli
#   benches/import.sh            # 50,000 rows
#   benches/import.sh 200000
#
# Data dirs live under one `mktemp -d` (the disk whose fsync the figure includes), removed at
# the end unless IPAM_BENCH_KEEP=1. IPAM_BENCH_PROFILE=debug runs target/debug builds instead
# (slower nodes: a lower bound).
set -euo pipefail

rows="${1:-50000}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
profile="${IPAM_BENCH_PROFILE:-release}"
node_bin="$target_dir/$profile/ipam-node"
cli_bin="$target_dir/$profile/ipam-cli"
for bin in "$node_bin" "$cli_bin"; do
    if [[ ! -x "$bin" ]]; then
        echo "missing $bin: run cargo build --profile $([[ $profile == debug ]] && echo dev || echo "$profile") -p ipam-node -p ipam-cli" >&2
        exit 2
    fi
done

work="$(mktemp -d -t ipam-import.XXXXXX)"
token="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
pids=()

cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for log in "$work"/node-*.log; do
            [[ -f "$log" ]] && tail -n 20 "$log" >&2
        done
    fi
    if [[ "${IPAM_BENCH_KEEP:-0}" == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts node $1 with extra flags; sets $addr to its bound host:port.
start_node() {
    local id=$1
    shift
    local out="$work/node-$id.out"
    mkdir -p "$work/data-$id"
    : >"$out"
    RUST_BACKTRACE=0 "$node_bin" --id "$id" --listen 127.0.0.1:0 --data-dir "$work/data-$id" \
        --token "$token" --log-level warn "$@" >"$out" 2>"$work/node-$id.log" &
    pids+=("$!")
    local deadline=$((SECONDS + 30))
    addr=""
    while [[ -z "$addr" ]]; do
        kill -0 "${pids[-1]}" 2>/dev/null || { echo "node $id exited" >&2; exit 1; }
        ((SECONDS < deadline)) || { echo "node $id did not start" >&2; exit 1; }
        addr="$(sed -n '1s/^listening on //p' "$out")"
        [[ -n "$addr" ]] || sleep 0.05
    done
}

# Waits until node 1 reports $1 voters and every address given is ready.
wait_ready() {
    local want=$1
    shift
    local deadline=$((SECONDS + 120))
    while :; do
        local ready=0
        for a in "$@"; do
            curl -fsS -o /dev/null --max-time 2 "http://$a/readyz" 2>/dev/null && ready=$((ready + 1))
        done
        local voters
        voters="$(curl -fsS --max-time 2 -H "Authorization: Bearer $token" \
            "http://$addr1/api/v1/cluster" 2>/dev/null | grep -o '"role":"voter"' | wc -l || true)"
        [[ $ready -eq $# && "$voters" -eq $want ]] && return 0
        ((SECONDS < deadline)) || { echo "cluster not ready in time" >&2; exit 1; }
        sleep 0.2
    done
}

start_node 1
addr1=$addr
wait_ready 1 "$addr1"
start_node 2 --join "http://$addr1"
addr2=$addr
wait_ready 2 "$addr1" "$addr2"
start_node 3 --join "http://$addr1"
wait_ready 3 "$addr1" "$addr2" "$addr"

cli() { IPAM_TOKEN="$token" "$cli_bin" --endpoint "http://$addr1" "$@"; }
cli ip-pool create import 10.0.0.0/12 >/dev/null
# Addresses from 10.0.1.0 on, so neither the network address nor the gateway is among them.
awk -v n="$rows" 'BEGIN {
    print "pool,ip,owner,labels"
    for (i = 0; i < n; i++) {
        a = 256 + i
        printf "import,10.%d.%d.%d,vm-%d/eth0,env=bench;row=%d\n", int(a / 65536), int(a / 256) % 256, a % 256, i, i
    }
}' >"$work/rows.csv"

echo "importing $rows rows into 3 voters ($profile builds); $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s.%N)
cli import "$work/rows.csv" >"$work/report.txt" 2>"$work/progress.txt"
end=$(date +%s.%N)
cat "$work/report.txt"
allocated="$(cli -o json ip-pool show import | grep -o '"allocated": *"[0-9]*"' | grep -o "[0-9]\+" || true)"
[[ "$allocated" == "$rows" ]] || { echo "pool holds $allocated allocations, not $rows" >&2; exit 1; }
awk -v n="$rows" -v s="$start" -v e="$end" \
    'BEGIN { printf "%d rows in %.2f s: %.0f rows/s\n", n, e - s, n / (e - s) }'

start=$(date +%s.%N)
cli import "$work/rows.csv" >"$work/again.txt" 2>&1
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "re-run (nothing to write): %.2f s\n", e - s }'
