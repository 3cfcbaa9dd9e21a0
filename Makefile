# auditpipe: `make demo` shows the pipeline work on embedded defaults,
# `make test` runs the whole suite (real ClickHouse when installed; CI sets
# AUDITPIPE_REQUIRE_SERVICES=1 so that a missing server fails instead of
# skipping).

GO       ?= go
BIN      ?= bin
FUZZTIME ?= 10s
# Fuzz targets run briefly on every `make test`: package:Target pairs.
FUZZ_TARGETS ?= \
	./internal/pipeline:FuzzDecodeEvents \
	./internal/detectors:FuzzDetectorSet \
	./internal/detectors:FuzzAnonymous \
	./internal/detectors:FuzzTokens \
	./internal/detectors:FuzzPodSpec \
	./internal/detectors:FuzzSelector \
	./internal/redact:FuzzRedact

.PHONY: all build demo test unit fuzz-smoke vet clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

demo: build
	./scripts/demo.sh

test: vet unit fuzz-smoke

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 15m ./...

fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

clean:
	rm -rf $(BIN)
