#!/usr/bin/env bash
# Validates compose/docker-compose.yml with `docker compose config`, as a Docker user's client would.
# This machine has no Compose plugin, so the pinned Compose is built from its module source into the
# cache once (`go install` refuses it: its go.mod has exclude directives, honoured only when it is
# the main module); later runs reuse it.
set -euo pipefail
. "$(dirname "$0")/common.sh"
dest="$TALONFLOW_CACHE/compose-$COMPOSE_VERSION"
if [ ! -x "$dest/docker-compose" ]; then
  command -v go >/dev/null || { echo "check-compose: go is required" >&2; exit 1; }
  echo "docker compose $COMPOSE_VERSION: building from source (about a minute the first time)"
  src="$(go mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  (cd "$src" && GOFLAGS=-buildvcs=false go build -o "$dest.tmp/docker-compose" ./cmd)
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
compose_dir="$here/.."
"$dest/docker-compose" --project-directory "$compose_dir" -f "$compose_dir/docker-compose.yml" config --quiet
echo "compose/docker-compose.yml: valid (docker compose $COMPOSE_VERSION config)"
