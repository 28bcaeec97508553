#!/usr/bin/env bash
# Hybrid-mode propagation: how long an Admin API write takes to reach every
# data plane, and what a 10,000-route configuration costs.
#
#   1. BenchmarkPropagation (internal/cli): a real `serve cp` (SQLite, Admin
#      API, cluster listener) and N data planes in one process; each of
#      --writes Admin API writes adds a route, timed until every DP serves it.
#      --rounds R runs every case R times, interleaved (N=1, N=50, ..., N=1,
#      N=50, ...), and prints each round's N=50 p99 / N=1 p99: the p99 of
#      300 writes is their fourth-largest, and one busy second moves it.
#        N=1             one real `serve dp --cp`: from its apply event, confirmed
#                        by a request through its proxy answering 200
#        N=50            3 real DPs + 47 light sync clients (receive, gunzip,
#                        decode; the issue's setup)
#        N=50-full-apply 3 real DPs + 47 light DPs that also parse and apply
#                        every push (50 applies share this machine's 2 cores)
#        N=50-frame-only 3 real DPs + 47 clients that only read each frame
#                        (diagnostic: the CP's fan-out without client work)
#        N=3-real        the 3 real DPs alone (diagnostic)
#   2. BenchmarkLargeConfig (internal/cp/cluster): 10,000 routes; CP export
#      time, frame size, DP decode+parse+apply, write -> applied, DP heap.
#   3. Separate processes: `kongfb serve cp` + `kongfb serve dp --cp`, a
#      10,000-route config posted to /config; time until the DP serves the
#      last route, and the DP's RSS before/after (VmRSS, VmHWM).
#
# Usage: scripts/bench/propagation.sh [--writes 300] [--rounds 3] [--skip-go] [--skip-process]
# Env:   BENCH_WRITES, BENCH_ROUNDS, BENCH_KONGFB_BIN (a prebuilt kongfb for step 3)
# Everything listens on 127.0.0.1 ports picked at run time; every process
# started here is stopped on exit. The machine may be shared: run it more
# than once and compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh

WRITES=${BENCH_WRITES:-300}
ROUNDS=${BENCH_ROUNDS:-3}
SKIP_GO=""
SKIP_PROC=""
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --writes) WRITES=$2; shift 2 ;;
    --writes=*) WRITES=${1#*=}; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --skip-go) SKIP_GO=1; shift ;;
    --skip-process) SKIP_PROC=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $WRITES =~ ^[1-9][0-9]*$ ]] || { echo "--writes: want a positive number, got $WRITES" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds: want a positive number, got $ROUNDS" >&2; exit 2; }

if [ -z "$SKIP_GO" ]; then
  log "BenchmarkPropagation: $WRITES writes per case, $ROUNDS rounds (metrics in ms; ns/op is meaningless here)"
  # One test binary, run once per round: go test -count R would run each
  # case R times in a row, not interleaved.
  go test -c -o "${TMPDIR:-/tmp}/kongfb-propagation.test.$$" ./internal/cli/
  for _ in $(seq 1 "$ROUNDS"); do
    (cd internal/cli && "${TMPDIR:-/tmp}/kongfb-propagation.test.$$" -test.run '^$' -test.bench 'BenchmarkPropagation' \
      -test.benchtime "${WRITES}x") | grep -E '^(Benchmark|ok|FAIL)'
  done | tee "${TMPDIR:-/tmp}/kongfb-propagation.$$"
  rm -f "${TMPDIR:-/tmp}/kongfb-propagation.test.$$"
  # The target: p99 at N=50 <= 2 x p99 at N=1, per round.
  awk '
    function p99(   i) { for (i = 1; i < NF; i++) if ($(i+1) == "p99-ms") return $i }
    $1 ~ /^BenchmarkPropagation\/N=1-[0-9]+$/  { one = p99() }
    $1 ~ /^BenchmarkPropagation\/N=50-[0-9]+$/ { r++; printf "round %d: p99 N=50 %s ms / N=1 %s ms = %.2f\n", r, p99(), one, p99() / one }
  ' "${TMPDIR:-/tmp}/kongfb-propagation.$$" >&2
  rm -f "${TMPDIR:-/tmp}/kongfb-propagation.$$"
  log "BenchmarkLargeConfig: 10,000 routes, 5 changes"
  go test -run '^$' -bench 'BenchmarkLargeConfig' -benchtime 5x -count 1 ./internal/cp/cluster/ | grep -E '^(Benchmark|ok|FAIL)'
fi

[ -n "$SKIP_PROC" ] && exit 0

# --- separate processes ----------------------------------------------------
bench_workdir kongfb-prop
rss() { awk '/^(VmRSS|VmHWM)/ {printf "%s %.1f MiB  ", $1, $2/1024}' "/proc/$1/status"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

build_kongfb
"$KONGFB_BIN" cert gen --cert "$WORK/cluster.crt" --key "$WORK/cluster.key" >/dev/null

ADMIN=$(free_port); CPST=$(free_port); CLUSTER=$(free_port); PROXY=$(free_port); DPST=$(free_port)
"$KONGFB_BIN" serve cp --prefix "$WORK/cp" --admin-listen "127.0.0.1:$ADMIN" --status-listen "127.0.0.1:$CPST" \
  --cluster-listen "127.0.0.1:$CLUSTER" --cluster-cert "$WORK/cluster.crt" --cluster-cert-key "$WORK/cluster.key" \
  >"$WORK/cp.log" 2>&1 &
CP_PID=$!; PIDS+=("$CP_PID")
wait_code "http://127.0.0.1:$CPST/status/ready" 200 30
"$KONGFB_BIN" serve dp --cp "127.0.0.1:$CLUSTER" --prefix "$WORK/dp" \
  --proxy-listen "127.0.0.1:$PROXY" --status-listen "127.0.0.1:$DPST" \
  --cluster-cert "$WORK/cluster.crt" --cluster-cert-key "$WORK/cluster.key" >"$WORK/dp.log" 2>&1 &
DP_PID=$!; PIDS+=("$DP_PID")
wait_code "http://127.0.0.1:$PROXY/nothing" 404 30
sleep 1
log "DP before the config:  $(rss "$DP_PID")"

# 100 services x 100 routes; the services point at a closed port, so a
# matched route answers 502 and an unknown path 404.
awk 'BEGIN {
  printf "{\"_format_version\":\"3.0\",\"services\":["
  for (s = 0; s < 100; s++) {
    if (s) printf ","
    printf "{\"name\":\"s%d\",\"url\":\"http://127.0.0.1:9\",\"routes\":[", s
    for (r = 0; r < 100; r++) { if (r) printf ","; printf "{\"name\":\"s%d-r%d\",\"paths\":[\"/s%d/r%d\"]}", s, r, s, r }
    printf "]}"
  }
  printf "]}"
}' >"$WORK/kong.json"

t0=$(now_ms)
code=$(curl -s -o "$WORK/post.out" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary "@$WORK/kong.json" "http://127.0.0.1:$ADMIN/config")
[ "$code" = 201 ] || { echo "POST /config: $code $(head -c 500 "$WORK/post.out")" >&2; exit 1; }
t1=$(now_ms)
wait_code "http://127.0.0.1:$PROXY/s99/r99" 502 120
t2=$(now_ms)
log "10,000 routes: POST /config took $((t1 - t0)) ms; config served by the DP $((t2 - t1)) ms after the write returned ($((t2 - t0)) ms from its start)"
sleep 1
log "DP after the config:   $(rss "$DP_PID")"
log "CP after the config:   $(rss "$CP_PID")"

# One more route on top of the 10,000: the steady-state cost of a change.
t0=$(now_ms)
code=$(curl -s -o "$WORK/post.out" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data '{"name":"extra","paths":["/extra"]}' "http://127.0.0.1:$ADMIN/services/s0/routes")
[ "$code" = 201 ] || { echo "POST route: $code $(cat "$WORK/post.out")" >&2; exit 1; }
wait_code "http://127.0.0.1:$PROXY/extra" 502 120
t1=$(now_ms)
log "one route added to the 10,000-route config: served by the DP $((t1 - t0)) ms after the write started"
log "DP after the change:   $(rss "$DP_PID")"
