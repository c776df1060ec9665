#!/usr/bin/env bash
# Installs the Apache Kafka broker jars from Maven Central into the cache; a second run is a no-op.
set -euo pipefail
. "$(dirname "$0")/common.sh"
dest="$TALONFLOW_CACHE/kafka-$KAFKA_VERSION"
if [ -f "$dest/.complete" ]; then
  echo "kafka $KAFKA_VERSION: already installed in $dest"
  exit 0
fi
command -v java >/dev/null || { echo "install-kafka: java (17+) is required" >&2; exit 1; }
command -v mvn >/dev/null || { echo "install-kafka: mvn is required" >&2; exit 1; }
echo "kafka $KAFKA_VERSION: fetching jars from Maven Central into $dest"
rm -rf "$dest.tmp"
mvn -q -B -f "$here/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest.tmp/libs"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
touch "$dest/.complete"
echo "kafka $KAFKA_VERSION: installed ($(ls "$dest/libs" | wc -l) jars)"
