#!/usr/bin/env bash
# Builds MinIO with `go install` into the cache; a second run is a no-op.
set -euo pipefail
. "$(dirname "$0")/common.sh"
dest="$TALONFLOW_CACHE/minio-$MINIO_VERSION"
if [ -x "$dest/minio" ]; then
  echo "minio $MINIO_VERSION: already installed in $dest"
  exit 0
fi
command -v go >/dev/null || { echo "install-minio: go is required" >&2; exit 1; }
echo "minio $MINIO_VERSION: building with go install (a few minutes the first time)"
mkdir -p "$dest.tmp"
GOBIN="$dest.tmp" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "minio $MINIO_VERSION: installed in $dest"
