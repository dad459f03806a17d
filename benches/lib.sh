# Shared by benches/cluster.sh, scale.sh and import.sh (sourced, not run): a temp dir for the
# nodes' data and logs, release_bins, start_node, wait_ready, and a cleanup that stops every
# node started. The caller sets node_bin (or calls release_bins) before starting nodes.
# IPAM_BENCH_KEEP=1 keeps the temp dir, IPAM_BENCH_READY_SECS (default 120) bounds wait_ready,
# IPAM_BENCH_NODE_ARGS adds flags to every node,
# IPAM_BENCH_LOG_LEVEL sets their --log-level (default warn).
# shellcheck shell=bash
# Sets node_bin (IPAM_BENCH_NODE_BIN, else the release build) and bench_bin, the release
# ipam-bench; stops (status 2) when either is missing.
release_bins() {
    local target_dir="${CARGO_TARGET_DIR:-$root/target}"
    node_bin="${IPAM_BENCH_NODE_BIN:-$target_dir/release/ipam-node}"
    bench_bin="$target_dir/release/ipam-bench"
    local bin
    for bin in "$node_bin" "$bench_bin"; do
        if [[ ! -x "$bin" ]]; then
            echo "missing $bin: run cargo build --release -p ipam-node -p ipam-bench" >&2
            exit 2
        fi
    done
}

work="$(mktemp -d -t ipam-bench.XXXXXX)"
token="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
pids=()

cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them the graceful stop, then make sure.
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
            [[ -f "$log" ]] || continue
            echo "--- last lines of $log" >&2
            grep -m 5 -A 3 'panicked' "$log" >&2 || true
            tail -n 20 "$log" >&2 || true
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

# A thousand clients need a thousand sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Starts node $1 with extra flags (on $listen if set, else port 0); sets $addr to its bound
# host:port.
start_node() {
    local id=$1
    shift
    local out="$work/node-$id.out"
    mkdir -p "$work/data-$id"
    : >"$out"
    # shellcheck disable=SC2086 # IPAM_BENCH_NODE_ARGS is a list of flags
    RUST_BACKTRACE=0 "$node_bin" --id "$id" --listen "${listen:-127.0.0.1:0}" --data-dir "$work/data-$id" \
        --token "$token" --log-level "${IPAM_BENCH_LOG_LEVEL:-warn}" ${IPAM_BENCH_NODE_ARGS:-} "$@" \
        >"$out" 2>"$work/node-$id.log" &
    pids+=("$!")
    local deadline=$((SECONDS + 30))
    addr=""
    while [[ -z "$addr" ]]; do
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "node $id exited during start-up" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "node $id printed no 'listening on' line within 30 s" >&2
            exit 1
        fi
        addr="$(sed -n '1s/^listening on //p' "$out")"
        [[ -n "$addr" ]] || sleep 0.05
    done
}

# Waits until /readyz answers 200 on every address given and node 1 counts $1 voters.
wait_ready() {
    local want=$1
    shift
    local deadline=$((SECONDS + ${IPAM_BENCH_READY_SECS:-120}))
    local ready voters
    while :; do
        ready=0
        for a in "$@"; do
            if curl -fsS -o /dev/null --max-time 2 "http://$a/readyz" 2>/dev/null; then
                ready=$((ready + 1))
            fi
        done
        voters="$(curl -fsS --max-time 2 -H "Authorization: Bearer $token" \
            "http://$addr1/api/v1/cluster" 2>/dev/null | grep -o '"role":"voter"' | wc -l || true)"
        if [[ $ready -eq $# && "$voters" -eq $want ]]; then
            return 0
        fi
        for i in "${!pids[@]}"; do
            if ! kill -0 "${pids[$i]}" 2>/dev/null; then
                echo "node $((i + 1)) exited before the cluster was ready" >&2
                exit 1
            fi
        done
        if ((SECONDS >= deadline)); then
            echo "cluster not ready in time: $ready/$# ready, $voters/$want voters" >&2
            exit 1
        fi
        sleep 0.2
    done
}

