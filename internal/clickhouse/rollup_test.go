package clickhouse

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

// TestRollups writes a batch twice (a redelivery) and checks that every
// rollup counts each event and finding once, and that users_by_minute
// counts the 401 as denied.
func TestRollups(t *testing.T) {
	srv := chtest.Start(t)
	conn := checker(t, srv)
	st := openStore(t, srv, nil)
	db := "`" + st.Database() + "`."
	b := testBatch(t)
	for range 2 {
		if err := st.Write(testContext(t), b); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	f := func(query string, want uint64) {
		t.Helper()
		if got := count(t, conn, query); got != want {
			t.Errorf("%s = %d, want %d", query, got, want)
		}
	}
	f("SELECT uniqExactMerge(events) FROM "+db+EventsByMinuteTable, uint64(len(b.Events)))
	f("SELECT uniqExactMerge(events) FROM "+db+EventsByMinuteTable+" WHERE response_code = 401", 1)
	f("SELECT uniqExactMerge(findings) FROM "+db+FindingsByMinuteTable, uint64(len(b.Findings)))
	f("SELECT uniqExactMerge(findings) FROM "+db+FindingsByMinuteTable+" WHERE detector = 'exec_into_pod' AND severity = 'high'", 1)
	f("SELECT uniqExactMerge(events) FROM "+db+UsersByMinuteTable, uint64(len(b.Events)))
	f("SELECT uniqExactMerge(denied) FROM "+db+UsersByMinuteTable, 1)
	f("SELECT uniqExactMerge(denied) FROM "+db+UsersByMinuteTable+" WHERE username = ''", 1)
	// The rollup agrees with the deduplicated table it summarises.
	f("SELECT count() FROM "+db+EventsTable+" FINAL", uint64(len(b.Events)))
}
