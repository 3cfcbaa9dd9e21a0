# auditpipe: `make demo` shows the pipeline work on embedded defaults,
# `make test` runs the whole suite (real ClickHouse when installed; CI sets
# AUDITPIPE_REQUIRE_SERVICES=1 so that a missing server fails instead of
# skipping).

GO       ?= go
# Every binary auditpipe ships is static; building the tests the same way
# lets the Dockerfile check reuse the test build instead of compiling
# every dependency a second time.
export CGO_ENABLED ?= 0
BIN      ?= bin
FUZZTIME ?= 6s
# Fuzz targets run briefly on every `make test`: package:Target pairs.
FUZZ_TARGETS ?= \
	./internal/auditjson:FuzzDecodeEvents \
	./internal/auditjson:FuzzDecodeEquivalence \
	./internal/auditjson:FuzzSplitEquivalence \
	./internal/jsonscan:FuzzSkip \
	./internal/pipeline:FuzzFindingJSON \
	./internal/auditjson:FuzzDecodeBody \
	./internal/detectors:FuzzDetectorSet \
	./internal/detectors:FuzzAnonymous \
	./internal/detectors:FuzzTokens \
	./internal/detectors:FuzzPodSpec \
	./internal/detectors:FuzzSelector \
	./internal/redact:FuzzRedact \
	./internal/redact:FuzzRedactMarker \
	./internal/ingest:FuzzIngestBody \
	./internal/detectors/rules:FuzzRuleCompile \
	./internal/cloud/aks:FuzzDecodeRecords \
	./internal/cloud/gke:FuzzConvert \
	./internal/cloud/gke:FuzzDecodePush \
	./internal/cloud/eks:FuzzFirehoseRequest \
	./internal/cloud/eks:FuzzSubscription \
	./internal/ingest:FuzzFirehoseBody \
	./internal/auditjson:FuzzPeekStage \
	./internal/credential:FuzzParseJWT \
	./internal/detectors/rules:FuzzNativeMatchesVM \
	./internal/detectors:FuzzAdmissionAnnotations \
	./internal/detectors:FuzzJWTRecordView \
	./internal/detectors:FuzzPodSpecView \
	./internal/detectors:FuzzJWTRawField

# golangci-lint, pinned: `go run pkg@version` fetches it from the module
# proxy into the module cache on first use (about a minute to build on two
# cores), so CI needs nothing but Go. Settings live in .golangci.yml.
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: all build demo test unit fuzz-smoke vet lint clean bench

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

demo: build
	./scripts/demo.sh

test: vet lint unit fuzz-smoke

vet:
	$(GO) vet ./...

lint:
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

unit:
	$(GO) test -count=1 -timeout 15m ./...

fuzz-smoke:
	@GO=$(GO) bash scripts/fuzz-smoke.sh $(FUZZTIME) $(FUZZ_TARGETS)

clean:
	rm -rf $(BIN)

# `make bench` publishes bench/results.md: the Go benchmarks of internal/bench
# (each beside its baseline, on one core), a bounded end-to-end run of
# cmd/e2eload, and a benchstat comparison with the previous committed run
# (bench/bench.txt). The benchmark binary runs BENCH_COUNT times (6: the
# fewest for which benchstat gives confidence intervals) over the
# whole set rather than -count N per benchmark, so that a burst of load on
# the shared machine hits a baseline and its contender alike. The hostile
# inputs (BenchmarkHostile: 30 rows, each checking that 1 MiB costs at most
# 2x per byte what 1 KiB does) run once more, on their own, for
# BENCH_HOSTILE_FLAGS: a factor of 2 needs no six rounds of a second each.
# The end-to-end run happens twice: on kfake, and on Apache Kafka
# BENCH_KAFKA_VERSION started by scripts/kafka.sh (skipped without java and
# mvn), so the report shows what the in-process broker hides.
# About 8 minutes on a 2-core machine.
BENCH_COUNT     ?= 6
BENCH_KAFKA_VERSION ?= 4.1.0
BENCH_HOSTILE_FLAGS ?= -test.count 3 -test.benchtime 150ms
BENCH_E2E_FLAGS ?= -rate 32000 -duration 30s -drain 60s
BENCHSTAT       ?= $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

bench: build
	@mkdir -p bench
	@cat /proc/loadavg > bench/.loadavg
	$(GO) test -c -o bench/.bench.test ./internal/bench/
	@rm -f bench/new.txt
	@set -e; for i in $$(seq $(BENCH_COUNT)); do \
		echo "benchmark round $$i of $(BENCH_COUNT)"; \
		(cd internal/bench && ../../bench/.bench.test -test.run '^$$' -test.bench . -test.skip '^BenchmarkHostile$$' -test.benchmem -test.cpu 1) >> bench/new.txt; \
	done
	@echo "hostile inputs"
	(cd internal/bench && ../../bench/.bench.test -test.run '^$$' -test.bench '^BenchmarkHostile$$' -test.benchmem -test.cpu 1 $(BENCH_HOSTILE_FLAGS)) >> bench/new.txt
	@rm -f bench/e2e.json
	./$(BIN)/e2eload $(BENCH_E2E_FLAGS) -json bench/e2e.json || echo "e2eload reported a failure; see bench/results.md"
	@rm -f bench/e2e-kafka.json
	@if command -v java >/dev/null && command -v mvn >/dev/null; then \
		export KAFKA_STATE_DIR=$$(mktemp -d)/kafka KAFKA_VERSION=$(BENCH_KAFKA_VERSION); \
		if brokers=$$(scripts/kafka.sh start); then \
			./$(BIN)/e2eload $(BENCH_E2E_FLAGS) -kafka-brokers "$$brokers" -json bench/e2e-kafka.json || echo "e2eload against Apache Kafka reported a failure"; \
		fi; \
		scripts/kafka.sh stop; rmdir "$$(dirname "$$KAFKA_STATE_DIR")"; \
	else echo "no java or mvn: skipping the end-to-end run against Apache Kafka"; fi
	$(GO) run ./internal/bench/report -bench bench/new.txt -e2e bench/e2e.json -previous bench/bench.txt \
		-e2e-kafka bench/e2e-kafka.json -kafka-version $(BENCH_KAFKA_VERSION) \
		-loadavg-file bench/.loadavg -benchstat '$(BENCHSTAT)' -out bench/results.md
	@mv bench/new.txt bench/bench.txt
	@rm -f bench/.loadavg bench/.bench.test

# Dashboards as code: regenerate the JSON deploy/compose provisions (a test
# fails when the committed files are out of date).
.PHONY: dashboards up down
COMPOSE ?= docker compose -f deploy/compose/compose.yaml --env-file deploy/compose/.env

dashboards:
	$(GO) run ./dashboards -out dashboards/generated

# The full stack (Kafka, ClickHouse, Grafana, Prometheus, Alertmanager,
# ingest, detect); copy deploy/compose/.env.example to .env first.
up:
	@test -f deploy/compose/.env || { echo "copy deploy/compose/.env.example to deploy/compose/.env and fill it in"; exit 1; }
	$(COMPOSE) up --build --detach

# Stops the stack; data volumes stay. To wipe them (and the generated TLS
# material): $(COMPOSE) down --volumes.
down:
	$(COMPOSE) down --remove-orphans
