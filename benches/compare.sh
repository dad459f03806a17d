#!/usr/bin/env bash
# Compares two ipam-node builds on this machine by alternating them: A, B, A, B, ... each run
# on a fresh 3-node cluster (benches/cluster.sh), so that drift in the machine (a neighbour's
# build, the host's disk) hits both builds alike. One table row per run, labelled by build.
#
#   benches/compare.sh OLD_NODE_BIN NEW_NODE_BIN [ROUNDS] [ipam-bench args...]
#   benches/compare.sh /tmp/ipam-node-main target/release/ipam-node 3 --clients 1,64 --duration 5
#
# Without ipam-bench args: --clients 1,64 --duration 5. Runs use --no-verify (the comparison is
# about speed; cluster.sh runs verify). Judge a change by the pairs, not by one row: on a shared
# 2-core VM consecutive runs of one build differ by 20 % or more.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
a=$1
b=$2
shift 2
rounds=3
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
    rounds=$1
    shift
fi
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    args=(--clients 1,64 --duration 5)
fi
for bin in "$a" "$b"; do
    if [[ ! -x "$bin" ]]; then
        echo "not an executable: $bin" >&2
        exit 2
    fi
done

header_printed=0
for round in $(seq "$rounds"); do
    for label in A B; do
        bin=$a
        [[ $label == B ]] && bin=$b
        out="$(IPAM_BENCH_NODE_BIN="$bin" "$root/benches/cluster.sh" "${args[@]}" --no-verify 2>&1)" || {
            printf '%s\n' "$out" >&2
            echo "run $round of build $label failed" >&2
            exit 1
        }
        if [[ $header_printed -eq 0 ]]; then
            printf 'build round %s\n' "$(printf '%s\n' "$out" | grep -m1 '^mode ')"
            header_printed=1
        fi
        printf '%s\n' "$out" | grep -E '^(allocate|mixed|batch|healthz|renew)' | sed "s/^/$label     $round     /"
    done
done
echo "A = $a"
echo "B = $b"
