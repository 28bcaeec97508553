# Shared helpers of the scripts in scripts/bench; source it from the
# repository root after `set -euo pipefail`. Not a script of its own.

log() { printf '==> %s\n' "$*" >&2; }

# bench_workdir NAME: a fresh temporary directory in $WORK. On exit every
# process whose pid the script appends to PIDS is stopped (and reaped) and
# $WORK removed, so a failed or interrupted run leaves nothing behind.
bench_workdir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# free_port: a 127.0.0.1 port nothing accepts on and not handed out before
# in this run; the range avoids the ephemeral ports.
USED_PORTS=" "
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$p "
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

code_of() { curl -s -o /dev/null -w '%{http_code}' "$1" || true; }

# wait_code URL STATUS SECONDS: poll URL until it answers STATUS.
wait_code() {
  local end=$(( $(date +%s) + $3 )) c=""
  while [ "$(date +%s)" -lt "$end" ]; do
    c=$(code_of "$1")
    [ "$c" = "$2" ] && return 0
    sleep 0.05
  done
  echo "timed out waiting for $1 to answer $2 (last: $c)" >&2
  return 1
}

# build_kongfb: KONGFB_BIN is $BENCH_KONGFB_BIN, or a kongfb built in $WORK.
build_kongfb() {
  KONGFB_BIN=${BENCH_KONGFB_BIN:-}
  if [ -z "$KONGFB_BIN" ]; then
    log "building kongfb"
    go build -o "$WORK/kongfb" ./cmd/kongfb
    KONGFB_BIN=$WORK/kongfb
  fi
}
