#!/usr/bin/env bash
# Real-browser test of the /ui dashboard: builds and starts a node on a free port, loads pools
# and allocations through the API, renders every page in headless Chromium, checks the DOM for
# the pools, the counts and the leader, and saves screenshots to target/ui-screenshots/.
# Needs `chromium` (Debian package) and `curl`; `.ci/run` installs them when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [[ -z "$CHROMIUM" ]]; then
    echo "ui.sh: chromium not found (apt-get install chromium)" >&2
    exit 1
fi
shots=target/ui-screenshots
mkdir -p "$shots"

cargo build -q -p ipam-node
work=$(mktemp -d)
node_pid=
cleanup() {
    if [[ -n "$node_pid" ]]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the node prints the address it bound as `listening on <addr>`.
target/debug/ipam-node --id 1 --listen 127.0.0.1:0 --data-dir "$work/data" \
    >"$work/stdout" 2>"$work/stderr" &
node_pid=$!

# Poll a condition until it holds or the deadline passes.
wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + 60))
    until "$@"; do
        if ((SECONDS > deadline)); then
            echo "ui.sh: timed out waiting for $what" >&2
            cat "$work/stderr" >&2
            exit 1
        fi
        if ! kill -0 "$node_pid" 2>/dev/null; then
            echo "ui.sh: the node exited" >&2
            cat "$work/stderr" >&2
            exit 1
        fi
        sleep 0.1
    done
}
wait_for "the listening line" grep -q '^listening on ' "$work/stdout"
addr=$(sed -n 's/^listening on //p' "$work/stdout" | head -1)
base="http://$addr"
wait_for "readiness" curl -fs -o /dev/null "$base/readyz"

api() {
    local method=$1 path=$2 body=${3:-}
    curl -fsS -X "$method" -H 'content-type: application/json' ${body:+-d "$body"} "$base$path" >/dev/null
}
api POST /api/v1/pools '{"name":"vms","cidr":"10.0.0.0/24","labels":{"env":"prod"},"description":"VM network"}'
api POST /api/v1/pools '{"name":"edge","cidr":"192.168.10.0/28","reserved":["192.168.10.2-192.168.10.4"]}'
api POST /api/v1/pools '{"name":"v6","cidr":"fd00:1::/64"}'
ops=$(for i in $(seq 1 40); do printf '{"op":"allocate","pool":"vms","owner":"vm-%d/eth0"},' "$i"; done)
api POST /api/v1/batch "{\"ops\":[${ops%,}]}"
ops=$(for i in $(seq 1 9); do printf '{"op":"allocate","pool":"edge","owner":"edge-%d"},' "$i"; done)
api POST /api/v1/batch "{\"ops\":[${ops%,}]}"
api POST /api/v1/pools/v6/allocations '{"owner":"<b>not bold</b>"}'

browse() {
    # A fresh profile per run; --no-sandbox because CI runs as root.
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --user-data-dir="$work/profile" --window-size=1280,900 "$@" 2>>"$work/chromium.log"
}
failures=0
check() {
    local page=$1 dom=$2 needle=$3
    if ! grep -qF -- "$needle" <<<"$dom"; then
        echo "FAIL $page: the rendered DOM lacks: $needle" >&2
        failures=$((failures + 1))
    fi
}

page() {
    local name=$1 path=$2
    dom=$(browse --dump-dom "$base$path")
    browse --screenshot="$shots/$name.png" "$base$path" >/dev/null
    [[ -s "$shots/$name.png" ]] || { echo "FAIL $name: no screenshot" >&2; failures=$((failures + 1)); }
}

page overview /ui
check overview "$dom" '<dd id="leader">node 1 ('
check overview "$dom" '<span id="pool-count">3</span>'
check overview "$dom" 'href="/ui/pools/vms"'
check overview "$dom" 'href="/ui/pools/edge"'
check overview "$dom" '<td class="num allocated">40</td>'
check overview "$dom" '<td class="num allocated">9</td>'
# /28 minus network, broadcast, gateway and three reserved: 10, 9 allocated = 90 %: red bar.
check overview "$dom" '<td class="num capacity">10</td>'
check overview "$dom" 'class="hot"'
check overview "$dom" '<td>voter</td>'

page pool /ui/pools/vms
check pool "$dom" '<dd id="cidr">10.0.0.0/24</dd>'
check pool "$dom" '<dd id="allocated">40</dd>'
check pool "$dom" 'vm-1/eth0'
check pool "$dom" 'VM network'

page address /ui/addresses/10.0.0.2
check address "$dom" 'vm-1/eth0'
check address "$dom" 'href="/ui/pools/vms"'

page owner '/ui/owners?owner=edge-3'
check owner "$dom" '192.168.10.7'

page search '/ui/search?q=10.0.0.3'
check search "$dom" 'Address 10.0.0.3'

page escaped /ui/pools/v6
check escaped "$dom" '&lt;b&gt;not bold&lt;/b&gt;'
if grep -qF '<b>not bold' <<<"$dom"; then
    echo "FAIL escaped: an owner string became markup" >&2
    failures=$((failures + 1))
fi

# A node with a token shows the login form, and nothing of its data, to a browser without
# the session cookie.
kill "$node_pid"; wait "$node_pid" 2>/dev/null || true
IPAM_TOKEN=ui-test-token target/debug/ipam-node --id 1 --listen 127.0.0.1:0 \
    --data-dir "$work/data" >"$work/stdout" 2>"$work/stderr" &
node_pid=$!
wait_for "the listening line (token)" grep -q '^listening on ' "$work/stdout"
base="http://$(sed -n 's/^listening on //p' "$work/stdout" | head -1)"
wait_for "readiness (token)" curl -fs -o /dev/null "$base/readyz"
page login /ui
check login "$dom" 'action="/ui/login"'
check login "$dom" 'type="password"'
if grep -qF 'vm-1/eth0' <<<"$dom" || grep -qF 'pool-count' <<<"$dom"; then
    echo "FAIL login: data shown without the token" >&2
    failures=$((failures + 1))
fi

if ((failures > 0)); then
    echo "ui.sh: $failures check(s) failed; screenshots in $shots" >&2
    exit 1
fi
echo "ui.sh: every page rendered in Chromium; screenshots in $shots"
