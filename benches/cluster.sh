#!/usr/bin/env bash
# Starts a 3-node raft-ipam cluster of release builds on 127.0.0.1, runs the load generator
# against it, prints the table, and stops the cluster.
#
#   cargo build --release -p ipam-node -p ipam-bench
#   benches/cluster.sh                          # 1 and 64 clients, allocate mode, 10 s each
#   benches/cluster.sh --mode batch --batch-size 100
#   benches/cluster.sh --clients 1,8,64,256,1000 --duration 10
#   IPAM_BENCH_FLOOR=1 benches/cluster.sh       # also measure the latency floor first
#
# Arguments are passed to ipam-bench; without a --clients of their own, --clients 1,64.
# Nodes' data dirs live under one `mktemp -d` (the disk whose fsync the figures include);
# their logs go to node-N.log there and are printed if a node fails.
# Environment: IPAM_BENCH_KEEP=1 keeps the temp dir, IPAM_BENCH_READY_SECS (default 120)
# bounds the wait for the cluster, IPAM_BENCH_NODE_ARGS adds flags to every node,
# IPAM_BENCH_NODE_BIN runs another ipam-node build (to compare a change), IPAM_BENCH_LOG_LEVEL sets
# the nodes' --log-level (default warn; info, the nodes' own default, cost ~20 % more per request
# until the request span moved to debug, docs/performance.md "Session 6").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
release_bins

# One join at a time, so that node ids and roles come up in order (node 1 leads). Concurrent
# joins also work: a learner join waits out a membership change in progress.
start_node 1
addr1=$addr
wait_ready 1 "$addr1"
start_node 2 --join "http://$addr1"
addr2=$addr
wait_ready 2 "$addr1" "$addr2"
start_node 3 --join "http://$addr1"
addr3=$addr
wait_ready 3 "$addr1" "$addr2" "$addr3"
endpoints="http://$addr1,http://$addr2,http://$addr3"
echo "nodes: $endpoints (data under $work, pids ${pids[*]})" >&2
echo "cluster ready: 3 voters; $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

node_pids="$(IFS=,; echo "${pids[*]}")"
if [[ "${IPAM_BENCH_FLOOR:-0}" == 1 ]]; then
    "$bench_bin" --floor --floor-dir "$work" --endpoints "http://$addr1" --token "$token"
fi
defaults=(--clients 1,64)
for arg in "$@"; do
    [[ "$arg" == --clients || "$arg" == --clients=* ]] && defaults=()
done
"$bench_bin" --endpoints "$endpoints" --token "$token" --node-pids "$node_pids" \
    "${defaults[@]}" "$@"
