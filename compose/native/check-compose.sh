#!/usr/bin/env bash
# Validates compose/docker-compose.yml with `docker compose config`, as a Docker user's client would.
# This machine has no Compose plugin, so the pinned Compose is built from its module source into the
# cache once (`go install` refuses it: its go.mod has exclude directives, honoured only when it is
# the main module); later runs reuse it.
set -euo pipefail
. "$(dirname "$0")/common.sh"

build_compose() {
  require go "Docker Compose is built from source"
  echo "docker-compose $COMPOSE_VERSION: building from source (about a minute the first time)"
  local src
  src="$(go mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  (cd "$src" && GOFLAGS=-buildvcs=false go build -o "$1/docker-compose" ./cmd)
}

cached_install docker-compose "$COMPOSE_VERSION" docker-compose build_compose
compose_dir="$here/.."
"$dest/docker-compose" --project-directory "$compose_dir" -f "$compose_dir/docker-compose.yml" config --quiet
echo "compose/docker-compose.yml: valid (docker compose $COMPOSE_VERSION config)"
