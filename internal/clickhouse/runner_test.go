package clickhouse

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestExceptionCode(t *testing.T) {
	f := func(err error, wantCode int32, wantMsg string, wantOK bool) {
		t.Helper()
		code, msg, ok := exceptionCode(err)
		if code != wantCode || msg != wantMsg || ok != wantOK {
			t.Errorf("exceptionCode(%v) = %d, %q, %v; want %d, %q, %v", err, code, msg, ok, wantCode, wantMsg, wantOK)
		}
	}
	f(nil, 0, "", false)
	f(errors.New("connection refused"), 0, "", false)
	f(fmt.Errorf("running: %w", &ch.Exception{Code: 57, Message: "Table a.b already exists."}), 57, "Table a.b already exists.", true)
	// chDB reports the server's exception as text.
	f(errors.New("Code: 57. DB::Exception: Table d.t already exists. (TABLE_ALREADY_EXISTS)"), 57, "Table d.t already exists. (TABLE_ALREADY_EXISTS)", true)
	f(errors.New("Code: 44. DB::Exception: Cannot add column pod_uid: column with this name already exists"), 44, "Cannot add column pod_uid: column with this name already exists", true)
	if !columnExists(errors.New("Code: 15. DB::Exception: Column pod_uid already exists. (DUPLICATE_COLUMN)")) {
		t.Error("DUPLICATE_COLUMN as text is not recognised")
	}
}

func TestQuote(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
	f("events", "'events'")
	f("", "''")
	f("it's", `'it\'s'`)
	f(`a\'b`, `'a\\\'b'`)
}

// TestInsertStatements: one JSONEachRow INSERT per table, naming the
// columns Write names, with DateTime as Unix seconds.
func TestInsertStatements(t *testing.T) {
	b := testBatch(t)
	stmts, err := InsertStatements("ap", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 2 {
		t.Fatalf("got %d statements, want 2", len(stmts))
	}
	for i, want := range []string{insertQuery("ap", EventsTable, eventColumns), insertQuery("ap", FindingsTable, findingColumns)} {
		head := want + " FORMAT JSONEachRow\n"
		if len(stmts[i]) < len(head) || stmts[i][:len(head)] != head {
			t.Errorf("statement %d starts %.120q, want %q", i, stmts[i], head)
		}
	}
	var row eventRow
	row.fill(b.Events[0])
	lines := strings.Split(strings.TrimSuffix(stmts[0], "\n"), "\n")[1:]
	if len(lines) != len(b.Events) {
		t.Errorf("events statement has %d rows, want %d", len(lines), len(b.Events))
	}
	if want := fmt.Sprintf(`{"time":%d,"time_us":%d,`, row.time.Unix(), row.timeUS); !strings.HasPrefix(lines[0], want) {
		t.Errorf("first event row starts %.60s, want %s", lines[0], want)
	}
	if s, _ := InsertStatements("ap", pipeline.Batch{}); len(s) != 0 {
		t.Errorf("empty batch gives %d statements", len(s))
	}
}
