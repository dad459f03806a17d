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

# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"

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
