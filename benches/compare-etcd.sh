#!/usr/bin/env bash
# raft-ipam against etcd on this machine, side by side, with the same load loop and the same
# client counts: a 3-member etcd (Debian etcd-server, fsync on) and a 3-node raft-ipam cluster
# of release builds, both on 127.0.0.1, one after the other in one invocation.
#
#   apt-get install etcd-server protobuf-compiler libprotobuf-dev  # once; protoc builds etcd-client
#   cargo build --release -p ipam-node && cargo build --release -p ipam-bench --features etcd
#   benches/compare-etcd.sh                             # 1,64,256,1000 clients, allocate, 8 s
#   benches/compare-etcd.sh --mode mixed --clients 1,64
#   benches/compare-etcd.sh --mode renew               # a fenced expiry rewrite per heartbeat
#   IPAM_BENCH_NODE_BIN=target/pgo/ipam-node benches/compare-etcd.sh   # deploy/build-pgo.sh's node
#
# Arguments go to both ipam-bench runs (without --clients of their own: 1,64,256,1000;
# without --duration: 8). etcd's data dirs live in one `mktemp -d`, on the same disk as the
# raft-ipam nodes' (benches/cluster.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bench_bin="$target_dir/release/ipam-bench"
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 2; }
[[ -x "$bench_bin" ]] || { echo "missing $bench_bin (cargo build --release -p ipam-bench --features etcd)" >&2; exit 2; }

args=("$@")
[[ " ${args[*]} " == *" --clients "* ]] || args+=(--clients 1,64,256,1000)
[[ " ${args[*]} " == *" --duration "* ]] || args+=(--duration 8)

work="$(mktemp -d -t ipam-etcd.XXXXXX)"
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $status -ne 0 ]]; then tail -n 20 "$work"/etcd-*.log >&2 || true; fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Six free loopback ports (client and peer for three members).
read -r -a ports <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
cluster=""
for i in 0 1 2; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:${ports[$((i * 2 + 1))]}"
done
endpoints=""
for i in 0 1 2; do
    client="http://127.0.0.1:${ports[$((i * 2))]}"
    peer="http://127.0.0.1:${ports[$((i * 2 + 1))]}"
    endpoints+="${endpoints:+,}$client"
    etcd --name "e$i" --data-dir "$work/e$i" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token "ipam-bench" --log-level error >"$work/etcd-$i.log" 2>&1 &
    pids+=("$!")
done
deadline=$((SECONDS + 60))
# Each member's /health (etcd-server has no etcdctl; that is Debian's etcd-client).
healthy() {
    local e
    for e in ${endpoints//,/ }; do
        curl -fsS --max-time 2 "$e/health" 2>/dev/null | grep -q '"health":"true"' || return 1
    done
}
until healthy; do
    ((SECONDS < deadline)) || { echo "etcd not healthy within 60 s" >&2; exit 1; }
    sleep 0.2
done

echo "== etcd $(etcd --version | sed -n '1s/etcd Version: //p'), 3 members (CAS on a free candidate key)"
"$bench_bin" --target etcd --etcd-endpoints "$endpoints" --node-pids "$(IFS=,; echo "${pids[*]}")" "${args[@]}"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
pids=()

echo "== raft-ipam, 3 nodes"
"$root/benches/cluster.sh" "${args[@]}"
