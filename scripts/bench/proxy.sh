#!/usr/bin/env bash
# Proxy throughput/latency: `kongfb serve dp` against nginx doing the same job.
#
# Both proxies forward /mock/<file> to a local nginx upstream, stripping /mock
# (Kong's strip_path), over keep-alive HTTP/1.1 upstream connections. wrk
# drives each in turn, ALTERNATING kongfb and nginx runs so that noise from
# other work on the machine spreads over both. Everything listens on
# 127.0.0.1 ports picked at run time; every process started here is stopped
# on exit. See scripts/bench/README.md.
#
# Usage: scripts/bench/proxy.sh [--duration 10s] [--rounds 3] [--connections 50]
#                               [--threads 1] [--sizes "100 4096 65536"]
# Env:   BENCH_DURATION, BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_THREADS, BENCH_SIZES,
#        BENCH_KONGFB_BIN (a prebuilt kongfb to measure instead of building one)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh

DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-50}
THREADS=${BENCH_THREADS:-1}
SIZES=${BENCH_SIZES:-"100 4096 65536"}

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --duration=*) DURATION=${1#*=}; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --connections) CONNS=$2; shift 2 ;;
    --connections=*) CONNS=${1#*=}; shift ;;
    --threads) THREADS=$2; shift 2 ;;
    --threads=*) THREADS=${1#*=}; shift ;;
    --sizes) SIZES=$2; shift 2 ;;
    --sizes=*) SIZES=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $DURATION =~ ^[0-9]+[smh]?$ ]] || { echo "--duration: want e.g. 10s, got $DURATION" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds: want a positive number, got $ROUNDS" >&2; exit 2; }
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || { echo "--connections: want a positive number, got $CONNS" >&2; exit 2; }
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || { echo "--threads: want a positive number, got $THREADS" >&2; exit 2; }
for s in $SIZES; do [[ $s =~ ^[1-9][0-9]*$ ]] || { echo "--sizes: want byte counts, got $s" >&2; exit 2; }; done

# duration in seconds, for timeouts
dur_s() {
  local d=$1
  case "$d" in
    *h) echo $(( ${d%h} * 3600 )) ;;
    *m) echo $(( ${d%m} * 60 )) ;;
    *s) echo "${d%s}" ;;
    *) echo "$d" ;;
  esac
}

# --- tools -------------------------------------------------------------------
NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
if ! command -v wrk >/dev/null 2>&1 || [ -z "$NGINX" ]; then
  [ "$(id -u)" = 0 ] || { echo "wrk and nginx are needed: apt-get install wrk nginx (as root)" >&2; exit 1; }
  log "installing wrk and nginx from Debian"
  # Keep the package's postinst from starting a system nginx on port 80.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk nginx >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi

bench_workdir kongfb-bench
# nginx started as root serves files from unprivileged workers.
chmod 755 "$WORK"

# --- build -------------------------------------------------------------------
build_kongfb

UP_PORT=$(free_port)
KONGFB_PORT=$(free_port)
STATUS_PORT=$(free_port)
NGINX_PORT=$(free_port)

# --- upstream: nginx serving fixed bodies ------------------------------------
mkdir -p "$WORK/www" "$WORK/up" "$WORK/px"
for s in $SIZES; do head -c "$s" /dev/zero | tr '\0' 'x' >"$WORK/www/b$s"; done

nginx_common() { # prefix
  cat <<EOF
pid $1/nginx.pid;
error_log $1/error.log warn;
EOF
}
nginx_http_common() { # prefix
  cat <<EOF
  access_log off;
  client_body_temp_path $1/client_body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
EOF
}

{
  nginx_common "$WORK/up"
  cat <<EOF
worker_processes 1;
events { worker_connections 4096; }
http {
$(nginx_http_common "$WORK/up")
  sendfile on;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    root $WORK/www;
    default_type application/octet-stream;
    location / { try_files \$uri =404; }
  }
}
EOF
} >"$WORK/up/nginx.conf"

# --- nginx as the reference proxy --------------------------------------------
# The same job as the kongfb route: strip /mock, HTTP/1.1 to a keep-alive pool,
# and the X-Forwarded-* headers Kong adds. Two workers, like Kong's
# nginx_worker_processes=auto on this machine; kongfb uses every core as well.
{
  nginx_common "$WORK/px"
  cat <<EOF
worker_processes $(nproc);
events { worker_connections 4096; }
http {
$(nginx_http_common "$WORK/px")
  upstream backend {
    server 127.0.0.1:$UP_PORT;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location /mock/ {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$proxy_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Port \$server_port;
      proxy_set_header X-Forwarded-Prefix /mock;
      proxy_set_header X-Real-IP \$remote_addr;
    }
  }
}
EOF
} >"$WORK/px/nginx.conf"

cat >"$WORK/kong.yaml" <<EOF
_format_version: "3.0"
services:
  - name: bench-upstream
    url: http://127.0.0.1:$UP_PORT
    routes:
      - name: bench-route
        paths:
          - /mock
        strip_path: true
EOF

log "starting upstream nginx on 127.0.0.1:$UP_PORT"
"$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
log "starting nginx proxy on 127.0.0.1:$NGINX_PORT"
"$NGINX" -p "$WORK/px" -c "$WORK/px/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
log "starting kongfb serve dp on 127.0.0.1:$KONGFB_PORT (status 127.0.0.1:$STATUS_PORT)"
"$KONGFB_BIN" serve dp --declarative "$WORK/kong.yaml" \
  --proxy-listen "127.0.0.1:$KONGFB_PORT" --status-listen "127.0.0.1:$STATUS_PORT" \
  --log-level warn 2>"$WORK/kongfb.log" &
PIDS+=($!)

first=${SIZES%% *}
wait_code "http://127.0.0.1:$UP_PORT/b$first" 200 10
wait_code "http://127.0.0.1:$NGINX_PORT/mock/b$first" 200 10
wait_code "http://127.0.0.1:$STATUS_PORT/status/ready" 200 10 || { cat "$WORK/kongfb.log" >&2; exit 1; }

# Both proxies must return the same bytes before their speed means anything.
for s in $SIZES; do
  for port in "$KONGFB_PORT" "$NGINX_PORT"; do
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/mock/b$s")
    [ "$got" = "200 $s" ] || { echo "127.0.0.1:$port/mock/b$s answered '$got', want '200 $s'" >&2; exit 1; }
  done
done

WRK_TIMEOUT=$(( $(dur_s "$DURATION") + 30 ))

# run_wrk name size -> appends "name size rps p50ms p99ms" to results
run_wrk() {
  local name=$1 size=$2 port out
  [ "$name" = kongfb ] && port=$KONGFB_PORT || port=$NGINX_PORT
  out=$(timeout "$WRK_TIMEOUT" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/mock/b$size")
  echo "$out" >>"$WORK/wrk-$name-$size.txt"
  if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
    echo "warning: $name $size B: $(grep -e 'Non-2xx' -e 'Socket errors' <<<"$out" | tr -s ' ')" >&2
  fi
  awk -v name="$name" -v size="$size" '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    END {
      if (rps == "" || p50 == "" || p99 == "") { print "could not parse wrk output" > "/dev/stderr"; exit 1 }
      printf "%s %s %.2f %.3f %.3f\n", name, size, rps, p50, p99
    }' <<<"$out" >>"$WORK/results.txt"
}

log "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $ROUNDS rounds per proxy and size, alternating"
: >"$WORK/results.txt"
for s in $SIZES; do
  # A short warm-up fills both upstream keep-alive pools.
  timeout "$WRK_TIMEOUT" wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$KONGFB_PORT/mock/b$s" >/dev/null
  timeout "$WRK_TIMEOUT" wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$NGINX_PORT/mock/b$s" >/dev/null
  for r in $(seq 1 "$ROUNDS"); do
    log "size $s B, round $r/$ROUNDS"
    run_wrk kongfb "$s"
    run_wrk nginx "$s"
  done
done

# --- report ------------------------------------------------------------------
# Medians over rounds: robust to one disturbed run on a shared machine.
echo
echo "kongfb vs nginx reverse proxy, wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS alternating rounds each, median of rounds"
echo "machine: $(nproc) cores, $(uname -sr), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $("$KONGFB_BIN" version 2>/dev/null | head -1)"
for s in $SIZES; do
  awk -v size="$s" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
      return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
    }
    $2 == size {
      n[$1]++; rps[$1, n[$1]] = $3; p50[$1, n[$1]] = $4; p99[$1, n[$1]] = $5
    }
    END {
      for (k = 1; k <= 2; k++) {
        name = (k == 1) ? "kongfb" : "nginx"
        delete a; for (i = 1; i <= n[name]; i++) a[i] = rps[name, i]; R[name] = median(a, n[name])
        delete a; for (i = 1; i <= n[name]; i++) a[i] = p50[name, i]; P50[name] = median(a, n[name])
        delete a; for (i = 1; i <= n[name]; i++) a[i] = p99[name, i]; P99[name] = median(a, n[name])
        all[name] = ""
        for (i = 1; i <= n[name]; i++) all[name] = all[name] sprintf("%s%.0f", (i > 1 ? " " : ""), rps[name, i])
      }
      label = (size >= 1024) ? sprintf("%d KiB", size / 1024) : sprintf("%d B", size)
      printf "\nbody %s\n", label
      printf "  %-8s %12s %10s %10s   %s\n", "proxy", "req/s", "p50 ms", "p99 ms", "req/s per round"
      printf "  %-8s %12.0f %10.3f %10.3f   %s\n", "kongfb", R["kongfb"], P50["kongfb"], P99["kongfb"], all["kongfb"]
      printf "  %-8s %12.0f %10.3f %10.3f   %s\n", "nginx", R["nginx"], P50["nginx"], P99["nginx"], all["nginx"]
      printf "  kongfb/nginx: req/s %.2f, p99 %.2f\n", R["kongfb"] / R["nginx"], P99["kongfb"] / P99["nginx"]
    }' "$WORK/results.txt"
done
