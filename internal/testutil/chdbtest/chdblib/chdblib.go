//go:build chdb

// Package chdblib checks, before github.com/chdb-io/chdb-go loads it, that
// the chDB library is there.
//
// chdb-go opens libchdb.so in an init function and panics when it cannot,
// which no test can turn into a skip. Go initialises packages in import
// path order among those whose imports are ready (the spec since Go 1.21),
// and this package imports only the standard library, so its init runs
// first: without the library it ends the test binary with a message,
// passing unless AUDITPIPE_REQUIRE_SERVICES=1 asks for a failure. Every
// test in a package built with -tags chdb is skipped that way, the
// package's plain tests included; they run in the untagged `make test`.
package chdblib

import (
	"fmt"
	"os"
)

const (
	// PathEnv names the library, as chdb-go reads it.
	PathEnv = "CHDB_LIB_PATH"
	// RequireEnv set to "1" turns a missing library into a failure, as
	// for every other service the tests use.
	RequireEnv = "AUDITPIPE_REQUIRE_SERVICES"
)

// Check returns why the library cannot be loaded, or nil.
func Check() error {
	path := os.Getenv(PathEnv)
	if path == "" {
		return fmt.Errorf("%s is not set; scripts/ci-chdb.sh fetches libchdb.so and sets it", PathEnv)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("chDB library %s=%s: %w; scripts/ci-chdb.sh fetches it", PathEnv, path, err)
	}
	return nil
}

func init() {
	err := Check()
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		fmt.Fprintf(os.Stderr, "FAIL: chDB tests cannot run: %v (%s=1 forbids skipping)\n", err, RequireEnv)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "--- SKIP: every test of this package built with -tags chdb: %v\n", err)
	fmt.Println("PASS")
	os.Exit(0)
}

// Required reports whether AUDITPIPE_REQUIRE_SERVICES=1 forbids skipping.
func Required() bool { return os.Getenv(RequireEnv) == "1" }
