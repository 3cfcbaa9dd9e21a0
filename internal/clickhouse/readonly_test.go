package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

// serverConfigDir finds the directory of srv's config.xml: chtest does not
// expose it, so look for our child clickhouse-server whose config names
// srv's TCP port. Its users.xml there merges users.d/*.xml.
func serverConfigDir(t *testing.T, srv *chtest.Server) string {
	t.Helper()
	_, port, _ := strings.Cut(srv.TCPAddr, ":")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
			path, ok := strings.CutPrefix(string(arg), "--config-file=")
			if !ok {
				continue
			}
			cfg, err := os.ReadFile(path)
			if err == nil && bytes.Contains(cfg, []byte("<tcp_port>"+port+"</tcp_port>")) {
				return filepath.Dir(path)
			}
		}
	}
	t.Fatalf("config dir of the ClickHouse server on %s not found", srv.TCPAddr)
	return ""
}

// TestReadonlyUser loads deploy/clickhouse/users.d/auditpipe-readonly.xml
// into a real server and checks the reader can read auditpipe's tables but
// not write, and that a query reading more than max_rows_to_read rows is
// refused.
func TestReadonlyUser(t *testing.T) {
	const password = "r3ader-secret"
	t.Setenv("AUDITPIPE_CLICKHOUSE_READER_PASSWORD", password)
	srv := chtest.Start(t)
	// The profile allows the auditpipe database only.
	st, err := New(testContext(t), Config{DSN: srv.DSN, Database: "auditpipe"}, nil, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := st.Write(testContext(t), testBatch(t)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	st.Close()

	xml, err := os.ReadFile(filepath.Join("..", "..", "deploy", "clickhouse", "users.d", "auditpipe-readonly.xml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(serverConfigDir(t, srv), "users.d")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auditpipe-readonly.xml"), xml, 0o600); err != nil {
		t.Fatal(err)
	}
	// A restart loads users.d deterministically (the server would also
	// pick it up on its own within seconds).
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}

	opts, err := ch.ParseDSN(fmt.Sprintf("clickhouse://auditpipe_reader:%s@%s/auditpipe", password, srv.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := testContext(t)

	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM auditpipe.events FINAL").Scan(&n); err != nil || n != 3 {
		t.Fatalf("reader SELECT: n=%d err=%v, want 3 rows", n, err)
	}
	if err := conn.Exec(ctx, "INSERT INTO auditpipe.schema_migrations (version, name, applied_at) VALUES (99, 'x', now())"); err == nil {
		t.Errorf("reader INSERT succeeded, want it refused (readonly=1)")
	} else {
		t.Logf("INSERT refused: %v", err)
	}
	err = conn.QueryRow(ctx, "SELECT count() FROM (SELECT number FROM system.numbers LIMIT 2000000000)").Scan(&n)
	var ex *ch.Exception
	if !errors.As(err, &ex) || ex.Code != 158 {
		t.Errorf("reading 2e9 rows: err=%v, want TOO_MANY_ROWS (158) from max_rows_to_read", err)
	} else {
		t.Logf("too-large query refused: %v", err)
	}
	// The default user is unaffected.
	if _, err := srv.Exec(context.Background(), "SELECT count() FROM (SELECT number FROM system.numbers LIMIT 2000000)"); err != nil {
		t.Errorf("default user: %v", err)
	}
}
