#!/usr/bin/env bash
# Runs the suites built with -tags chdb on ClickHouse 26.7 embedded in the
# test process (chDB), fetching the engine first.
#
# chDB's engine ships as the npm package @chdb/lib-linux-x64-gnu (178 MB
# tarball, 566 MB libchdb.so). It is fetched with `npm pack` (which checks
# the registry's integrity hash) into a cache directory named by version,
# so a second run downloads nothing; only libchdb.so is kept. chdb-go
# loads it at run time from CHDB_LIB_PATH (no cgo).
#
# AUDITPIPE_REQUIRE_SERVICES defaults to 1 here, so a missing library
# fails the run instead of skipping. Override the packages with
# CHDB_TEST_PKGS.
set -euo pipefail
cd "$(dirname "$0")/.."

CHDB_NPM_VERSION=${CHDB_NPM_VERSION:-26.7.3-stable.1}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/auditpipe/chdb-${CHDB_NPM_VERSION%%-*}
lib=$cache/package/libchdb.so

if [ ! -s "$lib" ]; then
	echo "fetching @chdb/lib-linux-x64-gnu@$CHDB_NPM_VERSION into $cache"
	mkdir -p "$cache/package"
	tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$CHDB_NPM_VERSION" >/dev/null)
	tar -xzf "$tmp"/*.tgz -C "$tmp" package/libchdb.so
	# Renamed into place only once complete, so an interrupted fetch is
	# retried rather than loaded half-written.
	mv "$tmp/package/libchdb.so" "$lib"
fi

export CHDB_LIB_PATH=$lib
export AUDITPIPE_REQUIRE_SERVICES=${AUDITPIPE_REQUIRE_SERVICES:-1}
export CGO_ENABLED=${CGO_ENABLED:-0}
# Every package with a chdb-tagged test file. Their untagged tests run
# again here (on 18.16, about 20 s): cheaper than a naming rule that a new
# chDB test could miss.
read -r -a pkgs <<<"${CHDB_TEST_PKGS:-./internal/clickhouse ./dashboards}"
go test -count=1 -timeout 15m -tags chdb "${pkgs[@]}"
