package clickhouse

import (
	"slices"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

// TestFirstSeenRoundTrip saves first-seen changes twice (a retried batch)
// plus a later sighting of one term, and loads them back collapsed: one
// row per term with its latest last_seen, the baseline row however old,
// and nothing saved before savedSince.
func TestFirstSeenRoundTrip(t *testing.T) {
	srv := chtest.Start(t)
	st := openStore(t, srv, nil)
	ctx := testContext(t)
	t0 := time.Now().UTC().Truncate(time.Second).Add(-48 * time.Hour)
	rows := []firstseen.Update{
		{Rule: "sa-new-network", Cluster: testCluster, Last: t0.Add(-100 * 24 * time.Hour)}, // baseline start
		{Rule: "sa-new-network", Cluster: testCluster, Key: "system:serviceaccount:payments:api | node-a", Term: "10.244.1.0/24", KeyFirst: t0, Last: t0},
		{Rule: "sa-new-network", Cluster: testCluster, Key: "system:serviceaccount:payments:api | node-a", Term: "10.244.2.0/24", KeyFirst: t0, Last: t0.Add(time.Hour)},
		{Rule: "exec-new-namespace", Cluster: testCluster, Key: "alice@example.com", Term: "old", KeyFirst: t0.Add(-40 * 24 * time.Hour), Last: t0.Add(-40 * 24 * time.Hour)},
	}
	for range 2 {
		if err := st.SaveFirstSeen(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	later := rows[1]
	later.Last = t0.Add(24 * time.Hour)
	if err := st.SaveFirstSeen(ctx, []firstseen.Update{later}); err != nil {
		t.Fatal(err)
	}
	got, err := st.LoadFirstSeen(ctx, t0.Add(-14*24*time.Hour), time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b firstseen.Update) int { return a.Last.Compare(b.Last) })
	want := []firstseen.Update{rows[0], rows[2], later}
	if !slices.EqualFunc(got, want, func(a, b firstseen.Update) bool {
		return a.Rule == b.Rule && a.Cluster == b.Cluster && a.Key == b.Key && a.Term == b.Term && a.Last.Equal(b.Last) && (a.Key == "" || a.KeyFirst.Equal(b.KeyFirst))
	}) {
		t.Fatalf("loaded %+v\nwant %+v", got, want)
	}
	// The limit cuts the latest terms, never a rule's learning start.
	if got, err := st.LoadFirstSeen(ctx, t0.Add(-14*24*time.Hour), time.Time{}, 1); err != nil || len(got) != 1 || got[0].Key != "" {
		t.Fatalf("load of one row: %+v, %v; want the baseline start", got, err)
	}
	// Nothing was saved after now: a sync load finds nothing new.
	if got, err := st.LoadFirstSeen(ctx, t0.Add(-14*24*time.Hour), time.Now().Add(time.Hour), 100); err != nil || len(got) != 0 {
		t.Fatalf("sync load: %+v, %v", got, err)
	}
}
