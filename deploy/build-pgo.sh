#!/usr/bin/env bash
# Builds ipam-node with profile-guided optimisation (PGO) for production: an instrumented
# build runs the benchmark loads of benches/cluster.sh on a 3-node loopback cluster, and the
# final build is optimised with the profile it recorded. Measured on the development machine
# against the plain release build (docs/performance.md, "Session 14"): +13 % allocations/s at
# 1 client, +16 % at 64, +24 % at 1,000.
#
#   rustup component add llvm-tools            # once: llvm-profdata of the toolchain's LLVM
#   deploy/build-pgo.sh                         # → target/pgo/ipam-node (~15 min on 2 cores)
#   deploy/build-pgo.sh /tmp/ipam-node          # another output path
#
# The training load is the bench's: allocate, mixed and renew at 1, 64 and 1,000 clients and
# batches of 100, over plain HTTP (code it does not reach, TLS included, is optimised as in
# the plain release build). Every training run and a last run of the finished binary verify
# that every acknowledged allocation is held on all three nodes with no address twice; the
# script fails if one does not. It needs 127.0.0.1 and a few free ports, and stops the
# clusters it starts.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$root/target/pgo/ipam-node}")"
cd "$root"

host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x "$profdata" ]]; then
    echo "missing $profdata: run rustup component add llvm-tools" >&2
    exit 2
fi

work="$(mktemp -d -t ipam-pgo.XXXXXX)"
trap 'rm -rf "$work"' EXIT
target_dir="$root/target/pgo"

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

# The load generator as every benchmark uses it (not instrumented). An existing one is kept:
# it may be the `etcd` build benches/compare-etcd.sh needs, and any build of this tree's bench
# speaks the node's API (the verified runs below would show it if not).
step "load generator"
if [[ ! -x "${CARGO_TARGET_DIR:-$root/target}/release/ipam-bench" ]]; then
    cargo build --release -p ipam-bench
fi

# `--target` keeps RUSTFLAGS off build scripts and proc macros: only the node is instrumented.
step "instrumented node"
RUSTFLAGS="-Cprofile-generate=$work/raw" \
    cargo build --release -p ipam-node --target "$host" --target-dir "$target_dir/generate"
instrumented="$target_dir/generate/$host/release/ipam-node"

# One benches/cluster.sh run against node build $1; its table rows and verify lines are
# printed and kept in runs.txt, and a failed run stops the script with the end of its output.
train() {
    local log="$work/run.log"
    if ! IPAM_BENCH_NODE_BIN="$1" benches/cluster.sh --duration 4 "${@:2}" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "a run of benches/cluster.sh failed (above)" >&2
        exit 1
    fi
    grep -E '^(mode|allocate|mixed|renew|batch)|verify' "$log" | tee -a "$work/runs.txt"
}

step "training load"
for mode in allocate mixed renew; do
    train "$instrumented" --mode "$mode" --clients 1,64,1000
done
train "$instrumented" --mode batch --batch-size 100 --clients 4
# The nodes write their profiles when they exit (benches/cluster.sh stops them with SIGTERM).
shopt -s nullglob
raw=("$work"/raw/*.profraw)
if ((${#raw[@]} == 0)); then
    echo "the instrumented nodes wrote no profile" >&2
    exit 1
fi
"$profdata" merge -o "$work/merged.profdata" "${raw[@]}"

step "optimised node"
RUSTFLAGS="-Cprofile-use=$work/merged.profdata" \
    cargo build --release -p ipam-node --target "$host" --target-dir "$target_dir/use"

step "check of the optimised node"
train "$target_dir/use/$host/release/ipam-node" --clients 1,64

verified="$(grep -c 'verify: ok' "$work/runs.txt")"
runs="$(grep -cE '^(allocate|mixed|renew|batch)' "$work/runs.txt")"
if [[ "$verified" -ne "$runs" ]]; then
    echo "only $verified of $runs runs verified; see above" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
install -m 0755 "$target_dir/use/$host/release/ipam-node" "$out"
echo "built $out ($runs runs, every one verified)"
