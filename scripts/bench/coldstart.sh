#!/usr/bin/env bash
# Cold start from the fallback storage vs from a local file, and export time.
#
#   1. Starts MinIO (scripts/ensure-minio.sh), a local upstream
#      (examples/upstream) and `kongfb serve cp --export` (SQLite, s3:// on
#      that MinIO, --export-delay 0), posts kong.yaml (the seed article's
#      httpbin-service + /mock route) and waits for the snapshot.
#   2. Export time, for --changes changes made one at a time (no export delay
#      pending): Admin API write -> "successfully exported" in the CP log,
#      and the exporter's own figure (ExportEvent.Took: offered -> object
#      written, logged as took=).
#   3. Cold start, ALTERNATING in each of --rounds rounds, each a new process
#      with an empty prefix (no cache), timed from exec to the first 200 on
#      GET /mock/status/200 (curl in a tight loop):
#        import-refused   serve dp --import, --cp 127.0.0.1:<closed port>
#                         (connection refused at once), default
#                         --cp-connect-timeout (3s)
#        import-silent-3s serve dp --import, --cp at a port that accepts TCP
#                         and never answers the TLS handshake (a CP host
#                         that hangs), default --cp-connect-timeout 3s
#        import-silent-200ms  the same with --cp-connect-timeout 200ms
#        declarative      serve dp --declarative kong.yaml (same config)
#      and prints per case the median, min and max, and the ratio of each
#      import case to declarative.
#
# Usage: scripts/bench/coldstart.sh [--rounds 10] [--changes 10] [--keep-logs DIR]
#          [--cases "import-refused declarative"] [--baseline BIN] [--dp-log-level debug]
#        --keep-logs copies the logs (CP, last round of each case) to DIR
#        --cases runs only these cold-start cases (default: all four)
#        --baseline BIN also runs every case with another kongfb binary,
#          right after the same case of the one measured (cases "base:..."),
#          so that a before/after comparison shares the machine's load
#        --dp-log-level sets the DPs' --log-level (debug logs the import's
#          steps with their durations; see --keep-logs)
#        --poller curl (default) polls with one curl process per try, as
#          the figures in docs/BENCHMARKS.md were taken: about 30 ms per
#          try on the 2-core machine, which blurs differences smaller than
#          that and loads the machine while the DP starts. --poller python
#          starts the DP from one python3 process that polls in a loop
#          (about 1 ms per try, no fork per try): finer, and smaller
#          figures for every case, so its ratios are not comparable with
#          the curl ones.
# Env:   BENCH_ROUNDS, BENCH_CHANGES, BENCH_KONGFB_BIN (a prebuilt kongfb),
#        BENCH_CASES, BENCH_BASELINE_BIN, BENCH_POLLER
# Loopback only; ports are picked at run time; every process started here is
# stopped on exit and the temp dir removed. Needs curl (with --aws-sigv4, to
# create the bucket) and python3 (the silent CP).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-10}
KEEP=""
CHANGES=${BENCH_CHANGES:-10}
CASES_ARG=${BENCH_CASES:-"import-refused import-silent-3s import-silent-200ms declarative"}
BASELINE=${BENCH_BASELINE_BIN:-}
DP_LOG_LEVEL=""
POLLER=${BENCH_POLLER:-curl}
usage() { sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --changes) CHANGES=$2; shift 2 ;;
    --changes=*) CHANGES=${1#*=}; shift ;;
    --keep-logs) KEEP=$2; shift 2 ;;
    --keep-logs=*) KEEP=${1#*=}; shift ;;
    --cases) CASES_ARG=$2; shift 2 ;;
    --cases=*) CASES_ARG=${1#*=}; shift ;;
    --baseline) BASELINE=$2; shift 2 ;;
    --baseline=*) BASELINE=${1#*=}; shift ;;
    --dp-log-level) DP_LOG_LEVEL=$2; shift 2 ;;
    --dp-log-level=*) DP_LOG_LEVEL=${1#*=}; shift ;;
    --poller) POLLER=$2; shift 2 ;;
    --poller=*) POLLER=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$ROUNDS" "$CHANGES"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "--rounds/--changes: want a positive number, got $v" >&2; exit 2; }
done
read -r -a CASES <<<"$CASES_ARG"
[ ${#CASES[@]} -gt 0 ] || { echo "--cases: no case given" >&2; exit 2; }
for c in "${CASES[@]}"; do
  case "$c" in
    import-refused|import-silent-3s|import-silent-200ms|declarative) ;;
    *) echo "--cases: unknown case $c (import-refused, import-silent-3s, import-silent-200ms, declarative)" >&2; exit 2 ;;
  esac
done
case "$POLLER" in curl|python) ;; *) echo "--poller: curl or python, got $POLLER" >&2; exit 2 ;; esac
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || { echo "--baseline: $BASELINE is not an executable" >&2; exit 2; }
  BASELINE=$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")
fi
command -v python3 >/dev/null || { echo "python3 is needed for the silent-CP case" >&2; exit 1; }

bench_workdir kongfb-coldstart
build_kongfb
MINIO_BIN=$(scripts/ensure-minio.sh)
go build -o "$WORK/upstream" ./examples/upstream

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# stop_pid PID: SIGTERM and reap one process we started.
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "n/a"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s..%s", min, max}'; }

# --- MinIO ------------------------------------------------------------------
MINIO_PORT=$(free_port); MINIO_CONSOLE=$(free_port)
export AWS_ACCESS_KEY_ID=kongfbbench AWS_SECRET_ACCESS_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n') AWS_REGION=us-east-1
MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY MINIO_UPDATE=off MINIO_BROWSER=off \
  "$MINIO_BIN" server "$WORK/minio" --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE" \
  --certs-dir "$WORK/minio-certs" --quiet >"$WORK/minio.log" 2>&1 &
PIDS+=($!)
ENDPOINT=http://127.0.0.1:$MINIO_PORT
wait_code "$ENDPOINT/minio/health/live" 200 60
BUCKET=kongfb-bench
curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X PUT "$ENDPOINT/$BUCKET" >/dev/null
STORAGE=s3://$BUCKET/kong
log "MinIO $ENDPOINT, storage $STORAGE"

# --- upstream, config, certificate -----------------------------------------
UP_PORT=$(free_port)
"$WORK/upstream" -listen "127.0.0.1:$UP_PORT" 2>"$WORK/upstream.log" &
PIDS+=($!)
wait_code "http://127.0.0.1:$UP_PORT/status/200" 200 10
cat >"$WORK/kong.yaml" <<EOF
_format_version: "3.0"
services:
  - name: httpbin-service
    url: http://127.0.0.1:$UP_PORT
    routes:
      - name: httpbin-route
        paths:
          - /mock
        strip_path: true
EOF
(cd "$WORK" && "$KONGFB_BIN" cert gen >/dev/null)
CERT=$WORK/cluster.crt KEY=$WORK/cluster.key

# --- CP exporter: seed + export time ----------------------------------------
ADMIN_PORT=$(free_port); CLUSTER_PORT=$(free_port)
"$KONGFB_BIN" serve cp --prefix "$WORK/cp" --admin-listen "127.0.0.1:$ADMIN_PORT" --status-listen off \
  --cluster-listen "127.0.0.1:$CLUSTER_PORT" --cluster-cert "$CERT" --cluster-cert-key "$KEY" \
  --export --fallback-storage "$STORAGE" --s3-endpoint "$ENDPOINT" --export-delay 0 >"$WORK/cp.log" 2>&1 &
CP_PID=$!
PIDS+=($CP_PID)
ADMIN=http://127.0.0.1:$ADMIN_PORT
wait_code "$ADMIN/status" 200 30
exported() { grep -c 'successfully exported config to fallback storage' "$WORK/cp.log" || true; }
# wait_exports N: until the CP log shows N successful exports (30 s max).
wait_exports() {
  local end=$(( $(now_ms) + 30000 ))
  while [ "$(exported)" -lt "$1" ]; do
    [ "$(now_ms)" -lt "$end" ] || { echo "no export #$1 within 30s; CP log:" >&2; tail -20 "$WORK/cp.log" >&2; exit 1; }
  done
}
n0=$(exported)
curl -sf -o /dev/null -X POST "$ADMIN/config" -H 'Content-Type: application/yaml' --data-binary @"$WORK/kong.yaml"
wait_exports $((n0 + 1))

log "export time: $CHANGES changes, one at a time (--export-delay 0)"
: >"$WORK/export_wall.txt"; : >"$WORK/export_took.txt"
for i in $(seq 1 "$CHANGES"); do
  n=$(exported)
  t0=$(now_ms)
  curl -sf -o /dev/null -X POST "$ADMIN/services/httpbin-service/routes" -H 'Content-Type: application/json' \
    -d "{\"name\":\"r$i\",\"paths\":[\"/r$i\"]}"
  wait_exports $((n + 1))
  echo $(( $(now_ms) - t0 )) >>"$WORK/export_wall.txt"
  grep 'successfully exported config to fallback storage' "$WORK/cp.log" | tail -1 |
    sed -n 's/.* took=\([0-9.]*\)\(m\{0,1\}s\).*/\1 \2/p' |
    awk '{ if ($2=="s") printf "%.1f\n", $1*1000; else print $1 }' >>"$WORK/export_took.txt"
done
# Back to exactly kong.yaml: the snapshot the importers read is the file the
# declarative DP loads.
n=$(exported)
curl -sf -o /dev/null -X POST "$ADMIN/config" -H 'Content-Type: application/yaml' --data-binary @"$WORK/kong.yaml"
wait_exports $((n + 1))
stop_pid "$CP_PID"

# --- the silent CP: accepts TCP, never answers -------------------------------
SILENT_PORT=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024)
time.sleep(86400)' "$SILENT_PORT" &
PIDS+=($!)
for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$SILENT_PORT") 2>/dev/null && break; sleep 0.02; done
CLOSED_PORT=$(free_port)   # nothing listens there

# --- cold start rounds ------------------------------------------------------
# --poller python: poll.py URL LOG CMD... starts CMD (output to LOG), polls
# URL until it answers 200, prints the milliseconds from the start, stops CMD
# (SIGTERM, then waits). Exit 1, with the last answer on stderr, when CMD
# exits or 30 s pass first.
cat >"$WORK/poll.py" <<'PY'
import http.client, signal, subprocess, sys, time, urllib.parse
url, logpath, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
u = urllib.parse.urlsplit(url)
with open(logpath, "wb") as log:
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    last = "nothing"
    while True:
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=1)
            c.request("GET", u.path)
            r = c.getresponse()
            r.read()
            c.close()
            last = str(r.status)
            if r.status == 200:
                break
        except OSError as e:
            last = type(e).__name__
        if time.monotonic() - t0 > 30 or p.poll() is not None:
            if p.poll() is None:
                p.kill()
            p.wait()
            print(last, file=sys.stderr)
            sys.exit(1)
        time.sleep(0.001)
    elapsed = (time.monotonic() - t0) * 1000
    p.send_signal(signal.SIGTERM)
    p.wait()
print("%.1f" % elapsed)
PY

# start_dp [base:]CASE: one DP process, timed from exec to the first 200;
# "base:" runs the --baseline binary.
start_dp() {
  local label=$1 case=${1#base:} bin=$KONGFB_BIN port prefix t0 t1 code pid
  [ "$label" = "$case" ] || bin=$BASELINE
  port=$(free_port)
  prefix=$WORK/dp-$case-$RANDOM$RANDOM
  local args=(serve dp --proxy-listen "127.0.0.1:$port" --status-listen off)
  [ -z "$DP_LOG_LEVEL" ] || args+=(--log-level "$DP_LOG_LEVEL")
  case "$case" in
    declarative) args+=(--declarative "$WORK/kong.yaml") ;;
    import-*)
      args+=(--prefix "$prefix" --cluster-cert "$CERT" --cluster-cert-key "$KEY"
        --import --fallback-storage "$STORAGE" --s3-endpoint "$ENDPOINT")
      case "$case" in
        import-refused) args+=(--cp "127.0.0.1:$CLOSED_PORT") ;;
        import-silent-3s) args+=(--cp "127.0.0.1:$SILENT_PORT") ;;
        import-silent-200ms) args+=(--cp "127.0.0.1:$SILENT_PORT" --cp-connect-timeout 200ms) ;;
      esac ;;
  esac
  local file=${label/:/-} url="http://127.0.0.1:$port/mock/status/200"
  if [ "$POLLER" = python ]; then
    if ! t1=$(python3 "$WORK/poll.py" "$url" "$WORK/$file.log" "$bin" "${args[@]}" 2>"$WORK/poll.err"); then
      echo "$label: no 200 within 30s (last $(cat "$WORK/poll.err")); log:" >&2; tail -20 "$WORK/$file.log" >&2; exit 1
    fi
    echo "$t1" >>"$WORK/cold-$file.txt"
    check_applied "$label" "$case" "$file"
    rm -rf "$prefix"
    return
  fi
  t0=$(now_ms)
  "$bin" "${args[@]}" >"$WORK/$file.log" 2>&1 &
  pid=$!
  PIDS+=($pid)
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
    [ "$code" = 200 ] && break
    if [ $(( $(now_ms) - t0 )) -gt 30000 ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "$label: no 200 within 30s (last $code); log:" >&2; tail -20 "$WORK/$file.log" >&2; exit 1
    fi
  done
  t1=$(now_ms)
  echo $(( t1 - t0 )) >>"$WORK/cold-$file.txt"
  stop_pid "$pid"
  check_applied "$label" "$case" "$file"
  rm -rf "$prefix"
}

# check_applied LABEL CASE FILE: an import case must have served the
# snapshot (run after the stop, so that the log is complete).
check_applied() {
  if [ "$2" != declarative ] && ! grep -q 'fallback config applied' "$WORK/$3.log"; then
    echo "$1: served without 'fallback config applied' in its log:" >&2; tail -20 "$WORK/$3.log" >&2; exit 1
  fi
}

LABELS=()
for c in "${CASES[@]}"; do
  LABELS+=("$c")
  [ -z "$BASELINE" ] || LABELS+=("base:$c")
done
log "cold start: $ROUNDS rounds, alternating ${LABELS[*]}${BASELINE:+ (base: $BASELINE)}"
for l in "${LABELS[@]}"; do : >"$WORK/cold-${l/:/-}.txt"; done
for r in $(seq 1 "$ROUNDS"); do
  for l in "${LABELS[@]}"; do start_dp "$l"; done
  printf '  round %2d:' "$r" >&2
  for l in "${LABELS[@]}"; do printf ' %s=%sms' "$l" "$(tail -1 "$WORK/cold-${l/:/-}.txt")" >&2; done
  echo >&2
done

if [ -n "$KEEP" ]; then
  mkdir -p "$KEEP" && cp "$WORK"/*.log "$WORK"/*.txt "$KEEP"/ && log "logs copied to $KEEP"
fi

# --- report -------------------------------------------------------------------
echo
echo "export time (change -> object written; $CHANGES changes, --export-delay 0)"
printf '  %-44s median %6s ms   min..max %s ms\n' "Admin API write -> CP log 'exported' (wall)" \
  "$(median <"$WORK/export_wall.txt")" "$(minmax <"$WORK/export_wall.txt")"
printf '  %-44s median %6s ms   min..max %s ms\n' "exporter: offered -> written (ExportEvent.Took)" \
  "$(median <"$WORK/export_took.txt")" "$(minmax <"$WORK/export_took.txt")"
echo
echo "cold start: exec -> first 200 through the proxy ($ROUNDS rounds, alternating)"
for l in "${LABELS[@]}"; do
  m=$(median <"$WORK/cold-${l/:/-}.txt")
  # Each binary's import cases against its own declarative run.
  decl=declarative
  [ "$l" = "${l#base:}" ] || decl=base-declarative
  ratio=n/a
  if [ -s "$WORK/cold-$decl.txt" ]; then
    ratio=$(awk -v a="$m" -v b="$(median <"$WORK/cold-$decl.txt")" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  fi
  printf '  %-25s median %7s ms   min..max %-13s  ratio to declarative %s\n' "$l" "$m" "$(minmax <"$WORK/cold-${l/:/-}.txt") ms" "$ratio"
done
