#!/usr/bin/env bash
# Run the reference collector in the foreground (exec), for bench.receiver --target.
#   KAFKA_BROKERS=127.0.0.1:9092 OTLP_PORT=4417 bench/collector/run.sh
# Builds the collector first if needed (bench/collector/build.sh; a no-op once built).
# Extra arguments are passed to the collector.
set -euo pipefail

: "${KAFKA_BROKERS:?set KAFKA_BROKERS, e.g. 127.0.0.1:9092 (comma-separated)}"
: "${OTLP_PORT:?set OTLP_PORT, the OTLP/gRPC port to listen on at 127.0.0.1}"
export KAFKA_BROKERS OTLP_PORT

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binary="$("$here/build.sh" | tail -n 1)"

exec "$binary" --config="file:$here/otelcol.yaml" "$@"
