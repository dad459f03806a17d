#!/usr/bin/env bash
# Scale figures (issue 20) of a 3-node cluster of release builds holding N allocations
# (default 1,000,000; IPAM_SCALE_ALLOCATIONS): how long loading them takes, each node's
# resident memory, a follower's restart until /readyz answers 200, and a fourth node's catch-up
# through a snapshot (its join until it has applied what the leader had applied). Targets:
# restart ≤ 5 s, catch-up ≤ 10 s, RSS ≤ 300 MB.
#
#   cargo build --release -p ipam-node -p ipam-bench
#   benches/scale.sh
#   IPAM_SCALE_ALLOCATIONS=100000 benches/scale.sh
#
# The nodes build a snapshot every 100 entries and keep 10 behind it, so the new member cannot
# catch up from the log. Environment as for benches/cluster.sh (IPAM_BENCH_NODE_BIN,
# IPAM_BENCH_KEEP, IPAM_BENCH_NODE_ARGS, ...).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
source "$root/benches/lib.sh"
release_bins
n="${IPAM_SCALE_ALLOCATIONS:-1000000}"
batch=1000
if ((n < batch)); then
    echo "IPAM_SCALE_ALLOCATIONS must be at least $batch" >&2
    exit 2
fi
IPAM_BENCH_NODE_ARGS="${IPAM_BENCH_NODE_ARGS:-} --snapshot-logs 100 --snapshot-keep-logs 10"

now_ms() { date +%s%3N; }
# One field of a node's /readyz answer.
ready_field() {
    curl -sS --max-time 2 "http://$1/readyz" 2>/dev/null | grep -o "\"$2\":[a-z0-9]*" | cut -d: -f2
}
rss_mb() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
# The parts of a process's resident memory: anonymous (heap, of which LazyFree is freed but
# not yet taken back by the kernel) and file-backed.
rss_parts() {
    awk '/^(Anonymous|LazyFree|Rss|Private_Clean|Shared_Clean):/ { printf "%s %.0f MB  ", $1, $2 / 1024 }' \
        "/proc/$1/smaps_rollup" 2>/dev/null || true
}
# Polls until `$@` succeeds, at most $1 seconds; the elapsed milliseconds on stdout.
time_until() {
    local limit=$1
    shift
    local t0 deadline
    t0=$(now_ms)
    deadline=$((SECONDS + limit))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "not within ${limit} s: $*" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo $(($(now_ms) - t0))
}

start_node 1
addr1=$addr
wait_ready 1 "$addr1"
start_node 2 --join "http://$addr1"
addr2=$addr
wait_ready 2 "$addr1" "$addr2"
start_node 3 --join "http://$addr1"
addr3=$addr
wait_ready 3 "$addr1" "$addr2" "$addr3"
echo "cluster ready: 3 voters; $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

t0=$(now_ms)
"$bench_bin" --endpoints "http://$addr1,http://$addr2,http://$addr3" --token "$token" \
    --mode batch --batch-size "$batch" --clients 4 --count $((n / batch)) --warmup 0 \
    --max-duration 1200 --no-verify >"$work/load.txt"
load_ms=$(($(now_ms) - t0))
held="$(curl -fsS -H "Authorization: Bearer $token" "http://$addr1/api/v1/pools/bench" |
    grep -o '"allocated":"[0-9]*"' | grep -o '[0-9]\+')"
echo "loaded: $held allocations in $((load_ms / 1000)) s ($((held * 1000 / (load_ms + 1))) /s)"
for i in 0 1 2; do
    echo "node $((i + 1)) RSS: $(rss_mb "${pids[$i]}") MB ($(rss_parts "${pids[$i]}"))"
done
# What stays once the load's last snapshot builds and applies are done, and the peak.
sleep "${IPAM_SCALE_SETTLE_SECS:-15}"
for i in 0 1 2; do
    echo "node $((i + 1)) RSS $((${IPAM_SCALE_SETTLE_SECS:-15})) s later: $(rss_mb "${pids[$i]}") MB, peak $(hwm_mb "${pids[$i]}") MB"
done

# A follower's restart: same id, data dir and port (its peers know it by that address).
port2="${addr2##*:}"
kill -TERM "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
unset 'pids[1]'
t_restart=$(now_ms)
listen="127.0.0.1:$port2" start_node 2
ready2() { [[ "$(ready_field "$addr" ready)" == true ]]; }
waited=$(time_until 120 ready2)
for i in 0 1 2; do
  gdb -p "${pids[$i]}" -batch -ex 'call (void)mi_stats_print(0)' >/dev/null 2>&1
  echo "== node $((i+1)) $(curl -sS "http://$( [ $i = 0 ] && echo $addr1 || ([ $i = 1 ] && echo $addr2 || echo $addr3))/readyz")"
  grep -A40 'heap stats' "$work/node-$((i+1)).log" | head -45
done
