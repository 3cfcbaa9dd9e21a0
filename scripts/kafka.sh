#!/usr/bin/env bash
# scripts/kafka.sh runs one Apache Kafka broker (KRaft, combined broker and
# controller) on loopback ports, for tests and for trying the pipeline by
# hand. The broker's jars come from Maven Central through scripts/kafka/pom.xml
# and are cached; no Docker, no tarball.
#
#   scripts/kafka.sh start     fetch (once), format, start, wait until ready,
#                              print the bootstrap address
#   scripts/kafka.sh stop      stop the broker and remove its directory
#   scripts/kafka.sh stop --keep
#                              stop the broker, keep its data: a later start
#                              brings it back on the same port with the same
#                              topics, records and committed offsets
#   scripts/kafka.sh restart   stop --keep, then start
#   scripts/kafka.sh env       print `export KAFKA_BROKERS=...` for eval
#   scripts/kafka.sh fetch     only fetch the jars into the cache
#
# Environment:
#   KAFKA_VERSION      Apache Kafka version (default 4.1.0, the version
#                      deploy/compose/compose.yaml ships)
#   KAFKA_STATE_DIR    the broker's directory: config, data, pid, logs
#                      (default ${TMPDIR:-/tmp}/auditpipe-kafka); one broker
#                      per directory
#   KAFKA_CACHE_DIR    where the jars are cached (default
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/auditpipe/kafka-$KAFKA_VERSION)
#   KAFKA_START_TIMEOUT  how long start waits for readiness (default 120s)
#   KAFKA_HEAP_OPTS    the JVM's heap flags (default -Xms256m -Xmx1g)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
version=${KAFKA_VERSION:-4.1.0}
cache=${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/auditpipe/kafka-$version}
state=${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/auditpipe-kafka}
start_timeout=${KAFKA_START_TIMEOUT:-120s}
# How long stop waits for a clean shutdown before SIGKILL. A single KRaft
# node shuts down in a few seconds; a minute covers a loaded CI machine.
stop_grace=60

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

running_pid() {
	local pid
	[ -f "$state/pid" ] || return 1
	pid=$(cat "$state/pid")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

# fetch copies kafka_2.13 and its runtime dependencies into the cache once;
# the .complete marker is written last, so an interrupted fetch is redone.
fetch() {
	[ -f "$cache/.complete" ] && return 0
	command -v mvn >/dev/null || die "mvn not found: install Maven 3.8+ (apt-get install maven)"
	command -v java >/dev/null || die "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
	log "fetching Apache Kafka $version from Maven Central into $cache"
	# A directory of this process's own: tests may start brokers in
	# parallel, and only one of them may move its copy into place.
	local tmp=$cache/libs.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$cache"
	mvn -B -q -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
		-Dkafka.version="$version" -DincludeScope=runtime \
		-DoutputDirectory="$tmp" >&2
	[ -f "$tmp/kafka_2.13-$version.jar" ] || die "Maven did not deliver kafka_2.13-$version.jar"
	if [ -f "$cache/.complete" ]; then
		rm -rf "$tmp"
		return 0
	fi
	rm -rf "$cache/libs"
	mv "$tmp" "$cache/libs"
	touch "$cache/.complete"
}

# helper builds scripts/kafkaready, which picks ports and probes readiness,
# into the cache, again only when its source is newer than the binary.
helper() {
	local bin=$cache/bin/kafkaready
	if [ ! -x "$bin" ] || [ "$here/kafkaready/main.go" -nt "$bin" ]; then
		mkdir -p "$cache/bin"
		(cd "$root" && go build -o "$bin.$$" ./scripts/kafkaready && mv -f "$bin.$$" "$bin") >&2
	fi
	echo "$bin"
}

# configure writes server.properties for a fresh directory on free ports.
configure() {
	local ready ports port cport
	ready=$(helper)
	mapfile -t ports < <("$ready" -free-ports 2)
	port=${ports[0]} cport=${ports[1]}
	mkdir -p "$state/data"
	cat >"$state/server.properties" <<EOF
# Written by scripts/kafka.sh for Apache Kafka $version.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/data
# As in deploy/compose: topics are created by whoever needs them, with their
# partition count, never by a fetch or produce that names a missing topic.
auto.create.topics.enable=false
num.partitions=1
delete.topic.enable=true
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
# Fewer partitions than the default 50 for __consumer_offsets: the first
# consumer group in a test creates it, and 50 takes seconds on two cores.
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
# Tests join groups one after another; the default 3 s delay would be paid
# by every first join.
group.initial.rebalance.delay.ms=0
EOF
	cat >"$state/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $state/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
	echo "127.0.0.1:$port" >"$state/bootstrap"
	# A cluster id is a base64url UUID; any random 16 bytes but all zeros do.
	# One in 64 starts with "-", which StorageTool's argument parser takes
	# for an option ("argument --cluster-id/-t: expected one argument"):
	# draw again until it does not.
	local id=-
	while [[ $id == -* ]]; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
	done
	java -cp "$cache/libs/*" -Dlog4j2.configurationFile="$state/log4j2.properties" \
		kafka.tools.StorageTool format -t "$id" -c "$state/server.properties" >"$state/format.log" 2>&1 ||
		{ cat "$state/format.log" >&2; die "formatting $state/data failed"; }
}

start() {
	local pid bootstrap ready
	if pid=$(running_pid); then
		log "already running (pid $pid)"
		cat "$state/bootstrap"
		return 0
	fi
	fetch
	mkdir -p "$state"
	# A directory with a formatted log is a restart: same port, same data.
	[ -f "$state/data/meta.properties" ] && [ -f "$state/bootstrap" ] || configure
	bootstrap=$(cat "$state/bootstrap")
	ready=$(helper)
	# stdin and stdout are not the caller's: a test that runs this script
	# through a pipe would otherwise wait for the broker to exit.
	# shellcheck disable=SC2086
	nohup java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$state/log4j2.properties" \
		-cp "$cache/libs/*" kafka.Kafka "$state/server.properties" \
		</dev/null >>"$state/broker.out" 2>&1 &
	pid=$!
	echo "$pid" >"$state/pid"
	if ! "$ready" -bootstrap "$bootstrap" -pid "$pid" -timeout "$start_timeout"; then
		log "broker did not become ready; last lines of $state/server.log and broker.out:"
		tail -n 30 "$state/server.log" "$state/broker.out" >&2 2>/dev/null || true
		stop_broker
		exit 1
	fi
	log "Apache Kafka $version ready at $bootstrap (pid $pid, dir $state)"
	echo "$bootstrap"
}

# stop_broker sends SIGTERM (a controlled shutdown), waits for the process to
# exit, and kills it if it has not within stop_grace seconds.
stop_broker() {
	local pid i
	pid=$(running_pid) || { rm -f "$state/pid"; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < stop_grace * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "broker $pid still running after ${stop_grace}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$state/pid"
}

stop() {
	stop_broker
	if [ "${1:-}" = --keep ]; then
		return 0
	fi
	case "$state" in
	/ | "$HOME" | "") die "refusing to remove $state" ;;
	esac
	rm -rf "$state"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
restart)
	stop --keep
	start
	;;
env)
	running_pid >/dev/null || die "no broker running in $state (scripts/kafka.sh start)"
	echo "export KAFKA_BROKERS=$(cat "$state/bootstrap")"
	;;
fetch) fetch ;;
*)
	echo "usage: $0 start|stop [--keep]|restart|env|fetch" >&2
	exit 2
	;;
esac
