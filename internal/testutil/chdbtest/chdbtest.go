//go:build chdb

// Package chdbtest runs SQL on ClickHouse 26.7 embedded in the test
// process (chDB) for the suites built with -tags chdb.
//
// chDB opens no port, so clickhouse-go cannot reach it: a Session runs SQL
// text and implements clickhouse.Runner (not imported here, so that
// package clickhouse's own tests can use this one). chdb-go keeps one session per
// process, so tests using it must not run in parallel.
package chdbtest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chdb-io/chdb-go/chdb"

	// Its init runs before chdb-go's (import path order); see there.
	"github.com/auditpipe/auditpipe/internal/testutil/chdbtest/chdblib"
)

// Session is an open chDB session whose data lives in a test's temporary
// directory.
type Session struct {
	s *chdb.Session
}

// Open opens a session for the duration of the test and closes it in
// t.Cleanup. Without the library it skips the test, or fails it when
// AUDITPIPE_REQUIRE_SERVICES=1 (chdblib has normally ended the binary
// before that).
func Open(t testing.TB) *Session {
	t.Helper()
	return OpenDir(t, t.TempDir())
}

// OpenDir is Open with the data kept in dir, for measurements that read
// the directory afterwards.
func OpenDir(t testing.TB, dir string) *Session {
	t.Helper()
	if err := chdblib.Check(); err != nil {
		if chdblib.Required() {
			t.Fatalf("%v (%s=1 forbids skipping)", err, chdblib.RequireEnv)
		}
		t.Skip(err)
	}
	s, err := chdb.NewSession(dir)
	if err != nil {
		t.Fatalf("opening chDB session in %s: %v", dir, err)
	}
	t.Cleanup(s.Close)
	return &Session{s: s}
}

// Exec runs a statement and discards its output.
func (s *Session) Exec(_ context.Context, stmt string) error {
	r, err := s.s.Query(stmt, "TabSeparated")
	if err != nil {
		return err
	}
	if r != nil {
		r.Free()
	}
	return nil
}

// Query runs a query and returns its rows.
func (s *Session) Query(ctx context.Context, query string) ([][]string, error) {
	_, rows, err := s.QueryNamed(ctx, query)
	return rows, err
}

// QueryNamed runs a query and returns its column names and rows, each
// value as TabSeparated prints it (DateTime as "2006-01-02 15:04:05").
func (s *Session) QueryNamed(_ context.Context, query string) ([]string, [][]string, error) {
	r, err := s.s.Query(query, "TabSeparatedWithNames")
	if err != nil {
		return nil, nil, err
	}
	if r == nil {
		return nil, nil, nil
	}
	out := r.String()
	r.Free()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return nil, nil, nil
	}
	cols := splitTSV(lines[0])
	rows := make([][]string, 0, len(lines)-1)
	for _, l := range lines[1:] {
		row := splitTSV(l)
		if len(row) != len(cols) {
			return nil, nil, fmt.Errorf("reading TabSeparated row: %d values for %d columns", len(row), len(cols))
		}
		rows = append(rows, row)
	}
	return cols, rows, nil
}

// tsvUnescape undoes TabSeparated's escaping of one value.
var tsvUnescape = strings.NewReplacer(`\\`, `\`, `\t`, "\t", `\n`, "\n", `\r`, "\r", `\0`, "\x00", `\b`, "\b", `\f`, "\f", `\'`, "'")

func splitTSV(line string) []string {
	vals := strings.Split(line, "\t")
	for i, v := range vals {
		vals[i] = tsvUnescape.Replace(v)
	}
	return vals
}

var (
	dbSeq    atomic.Uint64
	nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)
)

// NewDatabase returns a database name unique to this test and drops that
// database when the test ends. It does not create it: the code under test
// is expected to.
func (s *Session) NewDatabase(t testing.TB) string {
	t.Helper()
	name := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(name) > 48 {
		name = name[:48]
	}
	db := fmt.Sprintf("t%d_%s", dbSeq.Add(1), name)
	t.Cleanup(func() {
		if err := s.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Logf("dropping database %s: %v", db, err)
		}
	})
	return db
}
