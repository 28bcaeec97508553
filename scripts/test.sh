#!/usr/bin/env bash
# Runs every kongfb test: unit and integration, with -race.
# It prepares what the tests need on a fresh machine by itself:
#   - PostgreSQL on 127.0.0.1:5432 (trust auth), started if it is down;
#   - MinIO (pinned), built once into a cache dir and reused (scripts/ensure-minio.sh).
# Real services are required here (KONGFB_TEST_REQUIRE_SERVICES=1): a test that
# needs one and cannot reach it fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# --- PostgreSQL -------------------------------------------------------------
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
fi
if pg_up; then
  export KONGFB_TEST_PG_DSN="${KONGFB_TEST_PG_DSN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
  log "PostgreSQL ready: $KONGFB_TEST_PG_DSN"
else
  log "PostgreSQL is not reachable on 127.0.0.1:5432"
fi

# --- MinIO ------------------------------------------------------------------
if [ -x scripts/ensure-minio.sh ]; then
  KONGFB_TEST_MINIO_BIN="$(scripts/ensure-minio.sh)"
  export KONGFB_TEST_MINIO_BIN
  log "MinIO: $KONGFB_TEST_MINIO_BIN"
fi

export KONGFB_TEST_REQUIRE_SERVICES=1

# --- Go tests ---------------------------------------------------------------
log "go vet"
go vet ./...
log "go test -race"
go test -race -count=1 -timeout 20m ./... "$@"
