//go:build chdb

package clickhouse

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chdbtest"
)

func itoa(n int) string    { return strconv.Itoa(n) }
func utoa(n uint64) string { return strconv.FormatUint(n, 10) }

var _ Runner = (*chdbtest.Session)(nil)

func chdbContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestChDBMigrations runs every migration on ClickHouse 26.7 (chDB), checks
// that the version gate plans and applies the full tuning there, that the
// tables end up tuned, that a second start plans nothing, and that a
// redelivered batch collapses and is rolled up once.
func TestChDBMigrations(t *testing.T) {
	s := chdbtest.Open(t)
	ctx := chdbContext(t)
	db := s.NewDatabase(t)
	retention := map[string]int{EventsTable: 30, FindingsTable: 365, EventsByMinuteTable: 90, FindingsByMinuteTable: 90, UsersByMinuteTable: 90}

	row, err := queryRow(ctx, s, "SELECT version()", 1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseServerVersion(row[0])
	if err != nil {
		t.Fatal(err)
	}
	if !v.atLeast(26, 7) {
		t.Fatalf("chDB runs ClickHouse %s, want 26.7 or later", row[0])
	}
	t.Logf("chDB runs ClickHouse %s", row[0])

	tuned, err := Migrate(ctx, s, db, retention, nil)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	// From freshly migrated tables the gate plans everything it knows.
	if want := planTuning(db, featuresOf(v), retention, freshState()); !slices.Equal(tuned, want) {
		t.Errorf("first start tuned:\n  %s\nwant:\n  %s", strings.Join(tuned, "\n  "), strings.Join(want, "\n  "))
	}

	applied, err := s.Query(ctx, "SELECT toString(version) FROM `"+db+"`.`"+MigrationsTable+"` FINAL ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(migrations) {
		t.Errorf("schema_migrations holds %d rows, want %d", len(applied), len(migrations))
	}
	sc := &schema{r: s, db: db, features: featuresOf(v)}
	for _, ct := range columnTunings {
		cols, err := sc.columns(ctx, ct.Table)
		if err != nil {
			t.Fatal(err)
		}
		got := cols[ct.Column]
		if ct.Type != "" && got.Type != ct.Type {
			t.Errorf("%s.%s has type %s, want %s", ct.Table, ct.Column, got.Type, ct.Type)
		}
		if ct.Codec != "" && got.Codec != ct.Codec {
			t.Errorf("%s.%s has codec %q, want %q", ct.Table, ct.Column, got.Codec, ct.Codec)
		}
	}
	for _, c := range []string{"pod_uid", "node_uid"} {
		cols, err := sc.columns(ctx, EventsTable)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cols[c]; !ok {
			t.Errorf("events lacks %s", c)
		}
	}
	for table, days := range retention {
		row, err := queryRow(ctx, s, "SELECT create_table_query FROM system.tables WHERE database = "+quote(db)+" AND name = "+quote(table), 1)
		if err != nil {
			t.Fatal(err)
		}
		if want := "toIntervalDay(" + itoa(days) + ")"; !strings.Contains(row[0], want) || !strings.Contains(row[0], "ttl_only_drop_parts = 1") {
			t.Errorf("%s is not tuned for a %d-day TTL:\n%s", table, days, row[0])
		}
	}

	again, err := Migrate(ctx, s, db, retention, nil)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	if len(again) != 0 {
		t.Errorf("second start planned %q, want nothing", again)
	}

	// The tuned tables take the rows Write sends; a redelivery collapses
	// under FINAL and the rollups count each event once.
	b := testBatch(t)
	stmts, err := InsertStatements(db, b)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, stmt := range stmts {
			if err := s.Exec(ctx, stmt); err != nil {
				t.Fatalf("inserting: %v", err)
			}
		}
	}
	f := func(query, want string) {
		t.Helper()
		row, err := queryRow(ctx, s, query, 1)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if row[0] != want {
			t.Errorf("%s = %s, want %s", query, row[0], want)
		}
	}
	q := "`" + db + "`."
	f("SELECT count() FROM "+q+EventsTable+" FINAL", itoa(len(b.Events)))
	f("SELECT count() FROM "+q+FindingsTable+" FINAL", itoa(len(b.Findings)))
	f("SELECT uniqExactMerge(events) FROM "+q+EventsByMinuteTable, itoa(len(b.Events)))
	f("SELECT uniqExactMerge(findings) FROM "+q+FindingsByMinuteTable, itoa(len(b.Findings)))
	f("SELECT uniqExactMerge(denied) FROM "+q+UsersByMinuteTable, "1")
	checkChDBRowsMatch(t, ctx, s, db, b)
}

// checkChDBRowsMatch reads one event and one finding back and compares
// them with what Write would have sent.
func checkChDBRowsMatch(t *testing.T, ctx context.Context, s *chdbtest.Session, db string, b pipeline.Batch) {
	t.Helper()
	ev := b.Events[0]
	var want eventRow
	want.fill(ev)
	row, err := queryRow(ctx, s, "SELECT toString(time_us), verb, username, toString(response_code), raw FROM `"+db+"`.events FINAL WHERE audit_id = "+quote(string(ev.AuditID))+" AND stage = "+quote(string(ev.Stage))+" LIMIT 1", 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{row[0], row[1], row[2], row[3], row[4]}; !slices.Equal(got, []string{utoa(want.timeUS), want.verb, want.username, itoa(int(want.code)), want.raw}) {
		t.Errorf("event read back as %q", got)
	}
	fd := b.Findings[0]
	row, err = queryRow(ctx, s, "SELECT detector, severity, summary FROM `"+db+"`.findings FINAL WHERE finding_id = "+quote(fd.ID), 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(row, []string{fd.Detector, fd.Severity.String(), fd.Summary}) {
		t.Errorf("finding read back as %q", row)
	}
}
