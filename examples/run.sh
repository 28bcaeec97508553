#!/usr/bin/env bash
# Quickstart: start a local upstream and a DB-less kongfb data plane on
# examples/kong.yaml, send a request that matches a route (200) and one that
# does not (404), show the node status, then stop everything.
# Ports: upstream 127.0.0.1:8080, proxy 127.0.0.1:8000, status 127.0.0.1:8100
# (override with UPSTREAM_ADDR, PROXY_ADDR, STATUS_ADDR).
set -euo pipefail
cd "$(dirname "$0")/.."
UPSTREAM_ADDR="${UPSTREAM_ADDR:-127.0.0.1:8080}"
PROXY_ADDR="${PROXY_ADDR:-127.0.0.1:8000}"
STATUS_ADDR="${STATUS_ADDR:-127.0.0.1:8100}"
BIN="${KONGFB_BIN:-bin/kongfb}"
[ -x "$BIN" ] || make build
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

go build -o "$tmp/upstream" ./examples/upstream
"$tmp/upstream" -listen "$UPSTREAM_ADDR" 2>"$tmp/upstream.log" &
pids+=($!)
sed "s#http://127.0.0.1:8080#http://$UPSTREAM_ADDR#" examples/kong.yaml > "$tmp/kong.yaml"
"$BIN" serve dp --declarative "$tmp/kong.yaml" --proxy-listen "$PROXY_ADDR" \
  --status-listen "$STATUS_ADDR" 2>"$tmp/dp.log" &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs "http://$STATUS_ADDR/status/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$STATUS_ADDR/status/ready" >/dev/null || { echo "data plane did not become ready:"; cat "$tmp/dp.log"; exit 1; }

echo "\$ curl -i http://$PROXY_ADDR/mock/status/200"
curl -si "http://$PROXY_ADDR/mock/status/200"
echo
echo "\$ curl -i http://$PROXY_ADDR/nothing"
curl -si "http://$PROXY_ADDR/nothing"
echo
echo "\$ curl -s http://$STATUS_ADDR/status"
curl -s "http://$STATUS_ADDR/status"
echo
