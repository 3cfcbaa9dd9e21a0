package clickhouse

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

func TestParseRetention(t *testing.T) {
	f := func(in string, want map[string]int, wantErr string) {
		t.Helper()
		got, err := ParseRetention(in)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("ParseRetention(%q) error = %v, want %q", in, err, wantErr)
			}
			return
		}
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("ParseRetention(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	f("", map[string]int{}, "")
	f("events=30,findings=365,rollups=90", map[string]int{EventsTable: 30, FindingsTable: 365, EventsByMinuteTable: 90, FindingsByMinuteTable: 90, UsersByMinuteTable: 90}, "")
	f(" events = 7 ", map[string]int{EventsTable: 7}, "")
	f("event=30", nil, `retention key "event"`)
	f("events=0", nil, "positive")
	f("events=-1", nil, "positive")
	f("events", nil, "want table=days")
}

// TestEnforceRetention stores events of today and of 40 days ago and
// checks that a 30-day retention drops the old day's partition from the
// table and from its rollup, and nothing else.
func TestEnforceRetention(t *testing.T) {
	srv := chtest.Start(t)
	conn := checker(t, srv)
	retention, err := ParseRetention("events=30,rollups=30")
	if err != nil {
		t.Fatal(err)
	}
	st, err := New(testContext(t), Config{DSN: srv.DSN, Database: srv.NewDatabase(t), Retention: retention}, nil, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer st.Close()

	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	old := loadEvent(t, "exec_pod_sa.json")
	old.StageTimestamp.Time = now.AddDate(0, 0, -40)
	edge := loadEvent(t, "get_secret_user.json")
	edge.StageTimestamp.Time = now.AddDate(0, 0, -30) // the cutoff's own day stays
	fresh := loadEvent(t, "anonymous_401.json")
	fresh.StageTimestamp.Time = now
	oldFinding := pipeline.NewFinding("exec_into_pod", old, "")
	if err := st.Write(testContext(t), pipeline.Batch{Events: []*pipeline.Event{old, edge, fresh}, Findings: []pipeline.Finding{oldFinding}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := st.EnforceRetention(testContext(t), now); err != nil {
		t.Fatalf("EnforceRetention: %v", err)
	}
	db := "`" + st.Database() + "`."
	f := func(query string, want uint64) {
		t.Helper()
		if got := count(t, conn, query); got != want {
			t.Errorf("%s = %d, want %d", query, got, want)
		}
	}
	f("SELECT count() FROM "+db+EventsTable, 2)
	f("SELECT count() FROM "+db+EventsTable+" WHERE time < toDateTime('2026-10-28 00:00:00')", 0)
	f("SELECT uniqExactMerge(events) FROM "+db+EventsByMinuteTable, 2)
	// findings has no retention here: the old finding stays.
	f("SELECT count() FROM "+db+FindingsTable, 1)
	// Idempotent.
	if err := st.EnforceRetention(testContext(t), now); err != nil {
		t.Fatalf("second EnforceRetention: %v", err)
	}
	f("SELECT count() FROM "+db+EventsTable, 2)
}

// TestAddColumnMigration: the uid columns exist and are filled, and
// running migrations again on the migrated database adds nothing.
func TestAddColumnMigration(t *testing.T) {
	srv := chtest.Start(t)
	conn := checker(t, srv)
	st := openStore(t, srv, nil)
	for _, c := range []string{"pod_uid", "node_uid"} {
		if got := count(t, conn, "SELECT count() FROM system.columns WHERE database = '"+st.Database()+"' AND table = 'events' AND name = '"+c+"'"); got != 1 {
			t.Errorf("column %s exists %d times", c, got)
		}
	}
	st2, err := New(testContext(t), Config{DSN: srv.DSN, Database: st.Database()}, nil, nil)
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	defer st2.Close()
	// Running the step directly on an existing column is a no-op too.
	sc := &schema{r: nativeRunner{st2.conn}, db: st2.Database(), log: st2.log}
	if err := sc.addColumn(testContext(t), migrations[2].AddColumns[0]); err != nil {
		t.Errorf("addColumn on an existing column: %v", err)
	}
}
