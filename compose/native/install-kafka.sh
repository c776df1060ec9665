#!/usr/bin/env bash
# Installs the Apache Kafka broker jars from Maven Central into the cache; a second run is a no-op.
set -euo pipefail
. "$(dirname "$0")/common.sh"

fetch_jars() {
  require java "Java 17+ runs the broker"
  require mvn "Maven fetches the jars"
  echo "kafka $KAFKA_VERSION: fetching jars from Maven Central"
  mvn -q -B -f "$here/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$1/libs"
  echo "kafka $KAFKA_VERSION: $(ls "$1/libs" | wc -l) jars"
  touch "$1/.complete"
}

cached_install kafka "$KAFKA_VERSION" .complete fetch_jars
