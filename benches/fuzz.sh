#!/usr/bin/env bash
# Long fuzz campaign of the node's HTTP surface: the property test of
# ipam-node/tests/it/fuzz.rs with many more cases (default 100,000), in release mode.
#   benches/fuzz.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-${IPAM_FUZZ_CASES:-100000}}"
IPAM_FUZZ_CASES="$cases" exec cargo test --release -p ipam-node --test it fuzz:: -- --nocapture
