#!/usr/bin/env bash
# Runs the workspace test suite N times and reports every test that failed, with how many
# runs it failed in. Exits 1 if any run failed (a failing test, or a test binary that died
# without reporting one), 2 on usage or build errors.
#
#   benches/flake.sh N [cargo test args...]
#   benches/flake.sh 10                               # cargo test --workspace, 10 times
#   benches/flake.sh 30 -p ipam-node --test it api::  # one module's tests, 30 times
#
# The suite is built once first, so a run measures the tests, not the compiler. Each run's
# full output is kept in a temp dir (printed at the end) for the failures' panic messages.
set -uo pipefail

if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
runs=$1
shift
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    args=(--workspace)
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
logs="$(mktemp -d -t flake.XXXXXX)"

if ! cargo test "${args[@]}" --no-run >"$logs/build.log" 2>&1; then
    echo "build failed; see $logs/build.log" >&2
    exit 2
fi

declare -A fails=()
failed_runs=0
for ((i = 1; i <= runs; i++)); do
    log="$logs/run-$i.log"
    cargo test "${args[@]}" --no-fail-fast >"$log" 2>&1
    rc=$?
    # libtest prints `Running <file> (<binary>)` before each binary and `test <name> ... FAILED`
    # per failure; the file tells apart equal test names in different binaries.
    names="$(awk '
        /^ *(Running|Doc-tests) / { bin = $2 }
        /^test .* \.\.\. FAILED$/ { sub(/^test /, ""); sub(/ \.\.\. FAILED$/, ""); print bin "::" $0 }
    ' "$log" | sort -u)"
    if [[ $rc -ne 0 ]]; then
        failed_runs=$((failed_runs + 1))
        if [[ -z "$names" ]]; then
            # A binary that crashed or timed out, or a harness error: no test line to blame.
            names="(run failed without a failing test line; see $log)"
        fi
    fi
    while IFS= read -r name; do
        [[ -n "$name" ]] && fails["$name"]=$((${fails["$name"]:-0} + 1))
    done <<<"$names"
    echo "run $i/$runs: $([[ $rc -eq 0 ]] && echo ok || echo FAILED)"
done

echo
if [[ $failed_runs -eq 0 ]]; then
    echo "all $runs runs passed (logs in $logs)"
    exit 0
fi
echo "$failed_runs of $runs runs failed (logs in $logs):"
for name in "${!fails[@]}"; do
    printf '%5d  %s\n' "${fails[$name]}" "$name"
done | sort -rn
exit 1
