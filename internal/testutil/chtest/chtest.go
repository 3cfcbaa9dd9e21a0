// Package chtest runs a real ClickHouse server as a child process for tests.
//
// It uses the distribution's clickhouse-server binary (Debian ships 18.16)
// through chserver: data, logs and ports live in the test's temporary
// directory, listening on loopback only. Each test package that needs
// ClickHouse starts its own server; each test takes its own database from
// NewDatabase, so tests never see each other's rows.
package chtest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/chserver"
)

const (
	// DefaultBinary is where Debian's clickhouse-server package installs the
	// server.
	DefaultBinary = chserver.DefaultBinary
	// DefaultConfigDir holds the packaged config.xml and users.xml that each
	// instance derives its own from.
	DefaultConfigDir = chserver.DefaultConfigDir

	// RequireEnv names the variable that, when set to "1", turns a missing
	// binary into a test failure instead of a skip, so CI cannot pass by
	// skipping.
	RequireEnv = "AUDITPIPE_REQUIRE_SERVICES"
)

// Server is a running (or stopped) clickhouse-server child process: DSN,
// TCPAddr, HTTPURL, Start, Stop, Pause, Resume and Exec come from
// chserver.Server.
type Server struct {
	*chserver.Server
}

// Start starts a ClickHouse server for the duration of the test and stops
// it in t.Cleanup. Without the binary it skips the test, or fails it when
// AUDITPIPE_REQUIRE_SERVICES=1.
func Start(t testing.TB) *Server {
	t.Helper()
	return startBinary(t, DefaultBinary)
}

func startBinary(t testing.TB, binary string) *Server {
	t.Helper()
	if _, err := os.Stat(binary); err != nil {
		msg := fmt.Sprintf("ClickHouse server not available (%v); install it with: apt-get install -y clickhouse-server", err)
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg + " (" + RequireEnv + "=1 forbids skipping)")
		}
		t.Skip(msg)
	}
	s, err := chserver.Launch(t.TempDir(), binary)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping ClickHouse: %v", err)
		}
	})
	t.Logf("ClickHouse started in %v at %s", s.StartupTime.Round(time.Millisecond), s.TCPAddr)
	return &Server{Server: s}
}

var (
	dbSeq     atomic.Uint64
	nonIdent  = regexp.MustCompile(`[^a-z0-9_]+`)
	maxDBName = 48
)

// NewDatabase returns a database name unique to this test and this server
// and drops that database when the test ends. It does not create the
// database: the code under test is expected to.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(name) > maxDBName {
		name = name[:maxDBName]
	}
	db := fmt.Sprintf("t%d_%s", dbSeq.Add(1), name)
	t.Cleanup(func() {
		// Dropping keeps the server's data dir small across a package's
		// tests; a failure here must not hide the test's own result.
		if s.Server == nil || !s.Running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := s.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil && s.Running() {
			t.Logf("dropping database %s: %v", db, err)
		}
	})
	return db
}
