#!/usr/bin/env bash
# Checks deploy/prometheus/alerts.yml with promtool and runs its unit tests
# (deploy/prometheus/alerts_test.yml). promtool comes with the Debian package `prometheus`;
# `.ci/run` installs it when missing.
set -euo pipefail
cd "$(dirname "$0")/../deploy/prometheus"
if ! command -v promtool >/dev/null; then
    echo "promtool.sh: promtool not found (apt-get install prometheus)" >&2
    exit 1
fi
promtool check rules alerts.yml
promtool test rules alerts_test.yml
