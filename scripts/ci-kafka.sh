#!/usr/bin/env bash
# scripts/ci-kafka.sh is CI's pass against Apache Kafka itself: it starts the
# broker compose ships (scripts/kafka.sh, KAFKA_VERSION, default 4.1.0) and
# runs every package whose tests talk to Kafka with KAFKA_BROKERS set, then
# a short cmd/e2eload run through real ingest and detect processes. The
# broker is stopped and its directory removed however the run ends.
#
#   scripts/ci-kafka.sh                 # what .ci/run calls
#   KAFKA_VERSION=4.2.0 scripts/ci-kafka.sh
#   KAFKA_TEST_PKGS=./internal/kafka scripts/ci-kafka.sh
#
# Packages not listed use no Kafka: they run in `make test` once, on kfake's
# side of the switch they do not have.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=${KAFKA_TEST_PKGS:-./internal/kafka ./internal/ingest ./internal/e2e ./internal/eventhubs}
# A fresh machine of this kind has a JDK and Maven; install them if not.
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
	echo "installing: openjdk-17-jre-headless maven"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven
fi
# Versions for the log. head closes the pipe after one line, which can end
# mvn with SIGPIPE; under pipefail that must not fail the run.
java -version 2>&1 | head -1 || true
mvn -v 2>/dev/null | head -1 || true

# Missing services fail their tests instead of skipping them.
export AUDITPIPE_REQUIRE_SERVICES=${AUDITPIPE_REQUIRE_SERVICES:-1}
KAFKA_STATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/auditpipe-ci-kafka.XXXXXX")
export KAFKA_STATE_DIR
trap 'scripts/kafka.sh stop' EXIT

began=$SECONDS
KAFKA_BROKERS=$(scripts/kafka.sh start)
export KAFKA_BROKERS
echo "ci-kafka: Apache Kafka ${KAFKA_VERSION:-4.1.0} at $KAFKA_BROKERS after $((SECONDS - began))s"

# shellcheck disable=SC2086
go test -count=1 -timeout 20m $pkgs
echo "ci-kafka: tests against Apache Kafka took $((SECONDS - began))s"

# cmd/e2eload end to end: apiserver-style posts -> ingest -> Kafka ->
# detect -> ClickHouse, briefly; it exits non-zero on any lost event.
if [ "${KAFKA_E2ELOAD:-1}" = 1 ]; then
	bin=$(mktemp -d "${TMPDIR:-/tmp}/auditpipe-ci-bin.XXXXXX")
	go build -o "$bin/" ./cmd/e2eload ./cmd/ingest ./cmd/detect
	"$bin/e2eload" -ingest "$bin/ingest" -detect "$bin/detect" \
		-rate 5000 -duration 10s -drain 60s -kafka-brokers "$KAFKA_BROKERS"
	rm -rf "$bin"
	echo "ci-kafka: e2eload against Apache Kafka passed; whole pass took $((SECONDS - began))s"
fi
