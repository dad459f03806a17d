#!/usr/bin/env bash
# Rolling upgrade under load: builds OLD_COMMIT and the current tree (release), starts a
# 3-node cluster of the old ipam-node on 127.0.0.1, puts allocations on it, replaces one node
# at a time (followers first, the leader last) with the new binary on the same id, data dir
# and port, and at the end checks that every acknowledged allocation is held on every node,
# that all state digests agree (`ipam-cli check`) and that the cluster reached the new
# feature level.
#
#   benches/upgrade.sh OLD_COMMIT          # e.g. the release-0.1.0 commit: e5e5a8f
#
# The old tree is built in a git worktree under a temp dir with its own target dir (a full
# release build: several minutes on two cores); IPAM_UPGRADE_OLD_TARGET=DIR reuses a target
# dir across runs, IPAM_UPGRADE_OLD_BIN=PATH uses an ipam-node built from OLD_COMMIT already.
# The load is the new ipam-cli allocating one owner after another: through every node before
# and after the upgrade, through the leader alone while releases are mixed (a forwarded
# write's answer would cross releases, and the results' format changed between them).
# Environment: IPAM_UPGRADE_KEEP=1 keeps the temp dir; IPAM_UPGRADE_PAUSE (default 3) is the
# seconds of load before and between node replacements.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OLD_COMMIT" >&2
    exit 2
fi
old_commit=$1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_INCREMENTAL=0
work="$(mktemp -d -t ipam-upgrade.XXXXXX)"
token="upgrade-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
pause="${IPAM_UPGRADE_PAUSE:-3}"
declare -A pid port bin
load_pid=""

cleanup() {
    local status=$?
    [[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null || true
    for id in "${!pid[@]}"; do
        kill -TERM "${pid[$id]}" 2>/dev/null || true
    done
    for id in "${!pid[@]}"; do
        for _ in $(seq 50); do
            kill -0 "${pid[$id]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${pid[$id]}" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for log in "$work"/node-*.log; do
            [[ -f "$log" ]] || continue
            echo "--- last lines of $log" >&2
            tail -n 20 "$log" >&2 || true
        done
    fi
    git -C "$root" worktree remove --force "$work/old" 2>/dev/null || true
    if [[ "${IPAM_UPGRADE_KEEP:-0}" == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date -u +%H:%M:%S)] $*"; }

if [[ -n "${IPAM_UPGRADE_OLD_BIN:-}" ]]; then
    old_node=$IPAM_UPGRADE_OLD_BIN
    log "using $old_node as the build of $old_commit"
else
    log "building $old_commit (release) in $work/old"
    git -C "$root" worktree add --detach "$work/old" "$old_commit" >/dev/null
    old_target="${IPAM_UPGRADE_OLD_TARGET:-$work/old-target}"
    (cd "$work/old" && CARGO_TARGET_DIR="$old_target" cargo build --release -q -p ipam-node)
    old_node="$old_target/release/ipam-node"
fi
log "building the current tree (release)"
(cd "$root" && cargo build --release -q -p ipam-node -p ipam-cli)
new_target="${CARGO_TARGET_DIR:-$root/target}"
new_node="$new_target/release/ipam-node"
cli="$new_target/release/ipam-cli"
export IPAM_TOKEN=$token

# A free loopback port: bound once by the kernel's choice, then released for the node.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start ID BINARY [FLAGS...]: starts node ID on its port and data dir.
start() {
    local id=$1 binary=$2
    shift 2
    mkdir -p "$work/data-$id"
    RUST_BACKTRACE=1 "$binary" --id "$id" --listen "127.0.0.1:${port[$id]}" \
        --data-dir "$work/data-$id" --token "$token" --log-level warn "$@" \
        >>"$work/node-$id.out" 2>>"$work/node-$id.log" &
    pid[$id]=$!
    bin[$id]=$binary
}

endpoint() { echo "http://127.0.0.1:${port[$1]}"; }

status() { "$cli" --endpoint "$(endpoint "$1")" -o json --timeout 3 cluster status 2>/dev/null; }

# Waits until node $1 answers, sees 3 voters and a leader, and has applied what it knows to be
# committed.
wait_member() {
    local id=$1 deadline=$((SECONDS + 120)) s
    while :; do
        if ! kill -0 "${pid[$id]}" 2>/dev/null; then
            echo "node $id exited" >&2
            exit 1
        fi
        if s="$(status "$id")" && python3 -c '
import json, sys
s = json.loads(sys.argv[1])
voters = [m for m in s["members"] if m["role"] == "voter"]
# Caught up: within a few entries of the commit index (the load keeps appending).
ok = len(voters) == 3 and s["leader"] is not None and s["applied_index"] + 100 >= s.get("commit_index", 0)
sys.exit(0 if ok else 1)' "$s"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            echo "node $id not caught up in time: $s" >&2
            exit 1
        fi
        sleep 0.2
    done
}

leader() {
    local id l
    for id in 1 2 3; do
        l="$(status "$id" | python3 -c 'import json,sys; l=json.load(sys.stdin)["leader"]; print(l if l is not None else "")' 2>/dev/null)" || continue
        if [[ -n "$l" ]]; then
            echo "$l"
            return 0
        fi
    done
    return 1
}

# Replaces the list of nodes the load goes to (atomically: the load reads it concurrently).
set_targets() {
    echo "$*" >"$work/targets.tmp"
    mv "$work/targets.tmp" "$work/targets"
}

for id in 1 2 3; do
    port[$id]=$(free_port)
done
log "starting 3 nodes of $old_commit"
start 1 "$old_node"
wait_ready_1() {
    local deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null --max-time 2 "$(endpoint 1)/readyz"; do
        ((SECONDS < deadline)) || { echo "node 1 not ready" >&2; exit 1; }
        sleep 0.2
    done
}
wait_ready_1
start 2 "$old_node" --join "$(endpoint 1)"
start 3 "$old_node" --join "$(endpoint 1)"
for id in 1 2 3; do wait_member "$id"; done
"$cli" --endpoint "$(endpoint 1)" ip-pool create up 10.200.0.0/16 >/dev/null

# The load: one allocation after another through the nodes in $work/targets (re-read each
# time), each acknowledged owner and address appended to $work/acked.
set_targets 1 2 3
: >"$work/acked"
: >"$work/errors"
(
    i=0
    while :; do
        read -r -a targets <"$work/targets"
        id=${targets[$((i % ${#targets[@]}))]}
        owner="load-$i"
        if out="$("$cli" --endpoint "$(endpoint "$id")" -o json --timeout 5 \
            ip allocate up --owner "$owner" 2>>"$work/errors")"; then
            ip="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ip"])' <<<"$out")" || ip=""
            [[ -n "$ip" ]] && echo "$owner $ip" >>"$work/acked"
        fi
        i=$((i + 1))
    done
) &
load_pid=$!
sleep "$pause"

first=$(leader)
order=()
for id in 1 2 3; do [[ "$id" != "$first" ]] && order+=("$id"); done
order+=("$first")
# While releases are mixed, a forwarded write's answer crosses releases (which neither side
# decodes): the load goes to the leader itself.
set_targets "$first"
for id in "${order[@]}"; do
    log "replacing node $id (acknowledged so far: $(wc -l <"$work/acked"))"
    kill -TERM "${pid[$id]}"
    wait "${pid[$id]}" 2>/dev/null || true
    start "$id" "$new_node"
    for other in 1 2 3; do wait_member "$other"; done
    set_targets "$(leader)"
    sleep "$pause"
done
set_targets 1 2 3
sleep "$pause"

kill "$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
load_pid=""
acked=$(wc -l <"$work/acked")
log "load stopped: $acked acknowledged allocations, $(wc -l <"$work/errors") refused or failed attempts"

# Nothing acknowledged lost: every node holds every acknowledged (owner, address).
for id in 1 2 3; do wait_member "$id"; done
for id in 1 2 3; do
    "$cli" --endpoint "$(endpoint "$id")" --consistency local -o json \
        ip-pool allocations up --all >"$work/listing-$id.json"
    python3 - "$work/acked" "$work/listing-$id.json" "$id" <<'EOF'
import json, sys
acked = dict(line.split() for line in open(sys.argv[1]) if line.strip())
held = {a["owner"]: a["ip"] for a in json.load(open(sys.argv[2]))["allocations"]}
lost = {o: ip for o, ip in acked.items() if held.get(o) != ip}
if lost:
    print(f"node {sys.argv[3]}: {len(lost)} acknowledged allocations lost, e.g. {list(lost.items())[:5]}")
    sys.exit(1)
print(f"node {sys.argv[3]}: all {len(acked)} acknowledged allocations held ({len(held)} in the pool)")
EOF
done

log "ipam-cli check (digests of every member at one applied index)"
"$cli" --endpoint "$(endpoint 1)" --timeout 60 check

# The leader's view: it hears from every member (a follower only from the leader).
level="$(status "$(leader)" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("feature_level"))')"
log "cluster feature level after the upgrade: $level"
if [[ "$level" -lt 2 ]]; then
    echo "the cluster did not reach feature level 2" >&2
    exit 1
fi
"$cli" --endpoint "$(endpoint 1)" ip allocate up --owner lease-after-upgrade --ttl 60s >/dev/null
log "upgrade from $old_commit: OK"
