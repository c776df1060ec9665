#!/usr/bin/env bash
# Builds MinIO with `go install` into the cache; a second run is a no-op.
set -euo pipefail
. "$(dirname "$0")/common.sh"

build_minio() {
  require go "MinIO is built from source"
  echo "minio $MINIO_VERSION: building with go install (a few minutes the first time)"
  GOBIN="$1" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
}

cached_install minio "$MINIO_VERSION" minio build_minio
