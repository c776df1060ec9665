#!/usr/bin/env bash
# Build the reference OpenTelemetry Collector (otlpreceiver + kafkaexporter)
# described by builder-config.yaml.  Everything goes outside the repo, under
#   ${TALONFLOW_CACHE:-$HOME/.cache/talonflow}/otelcol-bench/
#     bin/<builder-version>/builder   the ocb builder (go install)
#     dist/                           generated sources + otelcol-bench binary
# Idempotent: if the binary exists and was built from the current manifest,
# this is a no-op.  Prints the binary path on stdout as its last line.
set -euo pipefail

BUILDER_VERSION=v0.160.0   # keep in step with the versions in builder-config.yaml

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="$here/builder-config.yaml"
root="${TALONFLOW_CACHE:-$HOME/.cache/talonflow}/otelcol-bench"
bindir="$root/bin/$BUILDER_VERSION"
dist="$root/dist"
binary="$dist/otelcol-bench"
stamp="$dist/.manifest.sha256"

command -v go >/dev/null || { echo "build.sh: go not found in PATH" >&2; exit 1; }

want="$( (echo "$BUILDER_VERSION"; cat "$manifest") | sha256sum | cut -d' ' -f1)"
if [[ -x "$binary" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "build.sh: up to date, nothing to do" >&2
    echo "$binary"
    exit 0
fi

mkdir -p "$bindir"
if [[ ! -x "$bindir/builder" ]]; then
    echo "build.sh: installing go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION" >&2
    GOBIN="$bindir" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi

# The builder wants dist.output_path in the manifest (the CLI flag is
# deprecated), so build from a copy with the output path filled in.
rm -rf "$dist"
mkdir -p "$root"
rendered="$root/builder-config.rendered.yaml"
awk -v out="$dist" '{print} /^dist:[[:space:]]*$/ {print "  output_path: " out}' "$manifest" > "$rendered"

echo "build.sh: building collector into $dist (this takes a few minutes)" >&2
CGO_ENABLED=0 "$bindir/builder" --config="$rendered"

[[ -x "$binary" ]] || { echo "build.sh: builder finished but $binary is missing" >&2; exit 1; }
echo "$want" > "$stamp"
echo "$binary"
