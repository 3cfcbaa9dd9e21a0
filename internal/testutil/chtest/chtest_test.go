package chtest

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestServerRestart(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := s.NewDatabase(t)
	mustExec(ctx, t, s, "CREATE DATABASE "+db)
	mustExec(ctx, t, s, "CREATE TABLE "+db+".t (x UInt32) ENGINE = MergeTree() ORDER BY x")
	mustExec(ctx, t, s, "INSERT INTO "+db+".t VALUES (1), (2)")

	stopBegin := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %v", time.Since(stopBegin))
	if _, err := s.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("query on stopped server succeeded")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", s.StartupTime)
	// The same data dir means the rows survived the restart.
	if got := mustExec(ctx, t, s, "SELECT count() FROM "+db+".t"); strings.TrimSpace(got) != "2" {
		t.Fatalf("count after restart = %q, want 2", got)
	}
}

func TestNewDatabaseUnique(t *testing.T) {
	s := &Server{}
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %q twice", a)
	}
	if !strings.Contains(a, "testnewdatabaseunique") {
		t.Errorf("database name %q does not name the test", a)
	}
}

// fakeTB records Skip and Fatal instead of ending the real test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestMissingBinary(t *testing.T) {
	f := func(require string, wantSkip bool) {
		t.Helper()
		t.Setenv(RequireEnv, require)
		fake := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			startBinary(fake, filepath.Join(t.TempDir(), "no-clickhouse-server"))
		}()
		<-done
		got := fake.failed
		if wantSkip {
			got = fake.skipped
		}
		if !strings.Contains(got, "apt-get install -y clickhouse-server") {
			t.Errorf("%s=%q: skipped=%q failed=%q, want the install hint in the %s message",
				RequireEnv, require, fake.skipped, fake.failed, map[bool]string{true: "skip", false: "fatal"}[wantSkip])
		}
	}
	f("", true)
	f("0", true)
	f("1", false)
}

func mustExec(ctx context.Context, t *testing.T, s *Server, q string) string {
	t.Helper()
	out, err := s.Exec(ctx, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}
