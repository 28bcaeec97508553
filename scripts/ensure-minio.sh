#!/usr/bin/env bash
# Prints the path of a MinIO server binary at the version the tests pin,
# building it once with `go install` into a cache dir and reusing it after.
# The first build takes several minutes; progress goes to stderr.
set -euo pipefail
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
CACHE="${KONGFB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kongfb}/minio-$MINIO_VERSION"
BIN="$CACHE/minio"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
echo "==> building MinIO $MINIO_VERSION into $CACHE (first time only; takes ~6 min)" >&2
tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION" >&2
mv "$tmp/minio" "$BIN"   # atomic within the same directory
echo "$BIN"
