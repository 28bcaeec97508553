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
#        --keep-logs copies the logs (CP, last round of each case) to DIR
# Env:   BENCH_ROUNDS, BENCH_CHANGES, BENCH_KONGFB_BIN (a prebuilt kongfb)
# Loopback only; ports are picked at run time; every process started here is
# stopped on exit and the temp dir removed. Needs curl (with --aws-sigv4, to
# create the bucket) and python3 (the silent CP).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-10}
KEEP=""
CHANGES=${BENCH_CHANGES:-10}
usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --changes) CHANGES=$2; shift 2 ;;
    --changes=*) CHANGES=${1#*=}; shift ;;
    --keep-logs) KEEP=$2; shift 2 ;;
    --keep-logs=*) KEEP=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$ROUNDS" "$CHANGES"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "--rounds/--changes: want a positive number, got $v" >&2; exit 2; }
done
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
# start_dp CASE: one DP process, timed from exec to the first 200.
start_dp() {
  local case=$1 port prefix t0 t1 code pid
  port=$(free_port)
  prefix=$WORK/dp-$case-$RANDOM$RANDOM
  local args=(serve dp --proxy-listen "127.0.0.1:$port" --status-listen off)
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
  t0=$(now_ms)
  "$KONGFB_BIN" "${args[@]}" >"$WORK/$case.log" 2>&1 &
  pid=$!
  PIDS+=($pid)
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/mock/status/200" || true)
    [ "$code" = 200 ] && break
    if [ $(( $(now_ms) - t0 )) -gt 30000 ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "$case: no 200 within 30s (last $code); log:" >&2; tail -20 "$WORK/$case.log" >&2; exit 1
    fi
  done
  t1=$(now_ms)
  echo $(( t1 - t0 )) >>"$WORK/cold-$case.txt"
  stop_pid "$pid"
  # After the stop, so that the log is complete.
  if [ "$case" != declarative ] && ! grep -q 'fallback config applied' "$WORK/$case.log"; then
    echo "$case: served without 'fallback config applied' in its log:" >&2; tail -20 "$WORK/$case.log" >&2; exit 1
  fi
  rm -rf "$prefix"
}

CASES=(import-refused import-silent-3s import-silent-200ms declarative)
log "cold start: $ROUNDS rounds, alternating ${CASES[*]}"
for c in "${CASES[@]}"; do : >"$WORK/cold-$c.txt"; done
for r in $(seq 1 "$ROUNDS"); do
  for c in "${CASES[@]}"; do start_dp "$c"; done
  printf '  round %2d:' "$r" >&2
  for c in "${CASES[@]}"; do printf ' %s=%sms' "$c" "$(tail -1 "$WORK/cold-$c.txt")" >&2; done
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
DECL=$(median <"$WORK/cold-declarative.txt")
for c in "${CASES[@]}"; do
  m=$(median <"$WORK/cold-$c.txt")
  ratio=$(awk -v a="$m" -v b="$DECL" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf '  %-20s median %7s ms   min..max %-13s  ratio to declarative %s\n' "$c" "$m" "$(minmax <"$WORK/cold-$c.txt") ms" "$ratio"
done
