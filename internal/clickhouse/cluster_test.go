package clickhouse

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

// clusterNow is the test clock: the testdata events are of the day
// before, so a 30-day retention keeps them and drops clusterOld's.
var clusterNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// clusterOld is the day of the rows retention must drop.
var clusterOld = clusterNow.AddDate(0, 0, -40)

// clusterBatch is testBatch plus n more realistic events, each a testdata
// event with its own auditID, every fourth with a finding, and every
// seventh dated at clusterOld. Enough distinct keys that both shards of a
// two-shard cluster get rows.
func clusterBatch(t testing.TB, n int) pipeline.Batch {
	t.Helper()
	b := testBatch(t)
	templates := []struct{ file, auditID string }{
		{"exec_pod_sa.json", "6f0e3f0a-3b0c-4a8e-9f5e-2d7c1c9b4a11"},
		{"get_secret_user.json", "b1c2d3e4-5f60-4718-9a0b-c1d2e3f40506"},
		{"anonymous_401.json", "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"},
	}
	for i := range n {
		tpl := templates[i%len(templates)]
		ev := loadEvent(t, tpl.file)
		id := fmt.Sprintf("%s%012x", tpl.auditID[:24], i+1)
		ev = decodeEvent(t, strings.Replace(string(ev.Raw), tpl.auditID, id, 1))
		if i%7 == 0 {
			ev.StageTimestamp.Time = clusterOld.Add(time.Duration(i) * time.Second)
		}
		b.Events = append(b.Events, ev)
		if i%4 == 0 {
			f := pipeline.NewFinding("cluster_test_detector", ev, "")
			f.Severity = pipeline.SeverityMedium
			f.Summary = "finding for " + id
			b.Findings = append(b.Findings, f)
		}
	}
	return b
}

// clusterConfig is a Store config for db on the test cluster through node.
func clusterConfig(node *chtest.Server, db string) Config {
	return Config{
		DSN: node.DSN, Database: db, Cluster: chtest.ClusterName,
		Retention: map[string]int{EventsTable: 30, FindingsTable: 30, EventsByMinuteTable: 30, FindingsByMinuteTable: 30, UsersByMinuteTable: 30},
	}
}

// openClusterStore is New on the cluster through node, closed at cleanup.
func openClusterStore(t *testing.T, node *chtest.Server, db string) *Store {
	t.Helper()
	st, err := New(testContext(t), clusterConfig(node, db), nil, nil)
	if err != nil {
		t.Fatalf("New on cluster through %s: %v", node.TCPAddr, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// wantRows is what a batch leaves in the tables once deduplicated.
type wantRows struct{ events, findings, oldEvents uint64 }

func wantOf(b pipeline.Batch) wantRows {
	w := wantRows{events: uint64(len(b.Events)), findings: uint64(len(b.Findings))}
	for _, ev := range b.Events {
		if ev.StageTimestamp.Time.Before(clusterNow.AddDate(0, 0, -30)) {
			w.oldEvents++
		}
	}
	return w
}

// rowQueries are the counts every node must agree on: each table read
// through its Distributed table (or, with suffix LocalSuffix, a replica's
// own copy), deduplicated as the dashboards read them.
func rowQueries(db, suffix string, w wantRows) map[string]uint64 {
	q := "`" + db + "`."
	return map[string]uint64{
		"SELECT count() FROM " + q + EventsTable + suffix + " FINAL":                                    w.events,
		"SELECT count() FROM " + q + FindingsTable + suffix + " FINAL":                                  w.findings,
		"SELECT uniqExactMerge(events) FROM " + q + EventsByMinuteTable + suffix:                        w.events,
		"SELECT uniqExactMerge(findings) FROM " + q + FindingsByMinuteTable + suffix:                    w.findings,
		"SELECT uniqExactMerge(events) FROM " + q + UsersByMinuteTable + suffix:                         w.events,
		"SELECT count() FROM " + q + EventsTable + suffix + " FINAL WHERE time < '2026-10-28 00:00:00'": w.oldEvents,
	}
}

// checkRows asserts the counts at once: inserts through the Distributed
// tables are synchronous (insert_distributed_sync), so when Write has
// returned every shard holds its rows.
func checkRows(t *testing.T, conn driver.Conn, node string, queries map[string]uint64) {
	t.Helper()
	for q, want := range queries {
		if got := count(t, conn, q); got != want {
			t.Errorf("through %s: %s = %d, want %d", node, q, got, want)
		}
	}
}

// eventuallyRows polls the counts for a minute: replication to another
// replica of a shard is asynchronous.
func eventuallyRows(t *testing.T, conn driver.Conn, node string, queries map[string]uint64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for q, want := range queries {
		for {
			got := count(t, conn, q)
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("through %s: %s = %d after a minute, want %d", node, q, got, want)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// ddlTasks counts the distributed DDL tasks queued in ZooKeeper (the path
// is the packaged config's <distributed_ddl>): a start that plans nothing
// adds none.
func ddlTasks(t *testing.T, conn driver.Conn) uint64 {
	t.Helper()
	return count(t, conn, "SELECT count() FROM system.zookeeper WHERE path = '/clickhouse/task_queue/ddl'")
}

// TestReplicatedDistributedTwoShards runs the Store on two shards of one
// replica each: the schema is created on both through node 0, a batch
// written through node 0 is split between the shards and reads back whole
// through either node, a redelivery collapses, a second start through the
// other node runs no DDL, and retention drops old partitions on both
// shards.
func TestReplicatedDistributedTwoShards(t *testing.T) {
	c := chtest.StartCluster(t, 2, 1)
	db := c.Nodes[0].NewDatabase(t)
	st := openClusterStore(t, c.Nodes[0], db)
	conns := []driver.Conn{checker(t, c.Nodes[0]), checker(t, c.Nodes[1])}

	b := clusterBatch(t, 120)
	w := wantOf(b)
	if err := st.Write(testContext(t), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for i, conn := range conns {
		checkRows(t, conn, c.Nodes[i].TCPAddr, rowQueries(db, "", w))
		// Column values survive the trip through the Distributed table.
		checkExecEvent(t, conn, db, b.Events[0])
		checkFinding(t, conn, db, b.Findings[0])
	}
	// Sharded: each shard holds part of the rows, together all of them.
	var sum uint64
	for i, conn := range conns {
		n := count(t, conn, "SELECT count() FROM `"+db+"`.events_local")
		if n == 0 || n == w.events {
			t.Errorf("shard %d holds %d of %d events, want a share", i+1, n, w.events)
		}
		sum += n
	}
	if sum != w.events {
		t.Errorf("shards hold %d events together, want %d", sum, w.events)
	}

	// A redelivered batch lands on the shards holding the first copies,
	// and FINAL on each shard collapses them. It comes with new records,
	// as a redelivery after a crash often does, and spans two day
	// partitions: with replicated block deduplication on, 18.16 skipped
	// the rollup views for a block whose last partition's part was a
	// duplicate, and lost the new records' rollups (see
	// clusterInsertSettings).
	again := clusterBatch(t, 150)
	if err := st.Write(testContext(t), again); err != nil {
		t.Fatalf("Write (redelivery): %v", err)
	}
	w = wantOf(again)
	if got := count(t, conns[1], "SELECT count() FROM `"+db+"`.events"); got != w.events+uint64(len(b.Events)) {
		t.Errorf("events without FINAL = %d after redelivery, want both copies (%d)", got, w.events+uint64(len(b.Events)))
	}
	for i, conn := range conns {
		checkRows(t, conn, c.Nodes[i].TCPAddr, rowQueries(db, "", w))
	}
	b = again

	// A second start, through the other node, finds every migration
	// recorded and queues no DDL.
	before := ddlTasks(t, conns[0])
	st2 := openClusterStore(t, c.Nodes[1], db)
	if after := ddlTasks(t, conns[0]); after != before {
		t.Errorf("second start queued %d DDL tasks, want none", after-before)
	}
	if got := count(t, conns[1], "SELECT count() FROM `"+db+"`.schema_migrations FINAL"); got != uint64(len(migrations)) {
		t.Errorf("schema_migrations on node 1 has %d rows, want %d", got, len(migrations))
	}

	// First-seen state saved through one node loads through the other.
	var seen []firstseen.Update
	for i := range 20 {
		seen = append(seen, firstseen.Update{Cluster: testCluster, Rule: "new_user_agent", Key: fmt.Sprintf("user-%d", i), Term: "kubectl/v1.31.2",
			KeyFirst: clusterNow.Add(-time.Hour), Last: clusterNow})
	}
	if err := st.SaveFirstSeen(testContext(t), seen); err != nil {
		t.Fatalf("SaveFirstSeen: %v", err)
	}
	loaded, err := st2.LoadFirstSeen(testContext(t), clusterNow.AddDate(0, 0, -1), time.Time{}, 100)
	if err != nil {
		t.Fatalf("LoadFirstSeen: %v", err)
	}
	if len(loaded) != len(seen) {
		t.Errorf("LoadFirstSeen through node 1 = %d rows, want %d", len(loaded), len(seen))
	}

	// Old days held by one shard only: retention must find their
	// partitions on the shard that holds them, not only on the node it
	// asks. Each event is its own day, so its partition lives on the one
	// shard its key hashes to; the hash is deterministic, so the
	// precondition below holds on every run.
	var lone []*pipeline.Event
	for i := range 6 {
		ev := loadEvent(t, "get_secret_user.json")
		ev = decodeEvent(t, strings.Replace(string(ev.Raw), "b1c2d3e4-5f60-4718-9a0b-c1d2e3f40506", fmt.Sprintf("10e0da7e-0000-4000-8000-%012x", i), 1))
		ev.StageTimestamp.Time = clusterOld.AddDate(0, 0, -1-i)
		lone = append(lone, ev)
	}
	if err := st.Write(testContext(t), pipeline.Batch{Events: lone}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	onlyOnSecond := count(t, conns[1], "SELECT count() FROM `"+db+"`.events_local WHERE audit_id LIKE '10e0da7e-%'")
	if onlyOnSecond == 0 || onlyOnSecond == uint64(len(lone)) {
		t.Fatalf("the lone old days all landed on one shard (%d of %d on shard 2): pick other auditIDs", onlyOnSecond, len(lone))
	}

	// Retention through the second Store drops the old days on both shards.
	if err := st2.EnforceRetention(testContext(t), clusterNow); err != nil {
		t.Fatalf("EnforceRetention: %v", err)
	}
	kept := wantRows{events: w.events - w.oldEvents}
	for _, f := range b.Findings {
		if !f.Time.Before(clusterNow.AddDate(0, 0, -30)) {
			kept.findings++
		}
	}
	for i, conn := range conns {
		for _, table := range append([]string{EventsTable, FindingsTable}, RollupTables...) {
			col := ttlColumn(table)
			q := "SELECT count() FROM `" + db + "`." + table + LocalSuffix + " WHERE " + col + " < '2026-10-28 00:00:00'"
			if got := count(t, conn, q); got != 0 {
				t.Errorf("shard %d: %s = %d after retention, want 0", i+1, q, got)
			}
		}
		checkRows(t, conn, c.Nodes[i].TCPAddr, rowQueries(db, "", kept))
	}
}

// TestReplicatedDistributedTwoReplicas runs the Store on one shard of two
// replicas: rows written through node 0 replicate to node 1; with node 1
// stopped, detect starts again and writes go on; node 1 catches up when it
// returns; retention drops old partitions on both replicas.
func TestReplicatedDistributedTwoReplicas(t *testing.T) {
	c := chtest.StartCluster(t, 1, 2)
	db := c.Nodes[0].NewDatabase(t)
	st := openClusterStore(t, c.Nodes[0], db)
	conns := []driver.Conn{checker(t, c.Nodes[0]), checker(t, c.Nodes[1])}

	b := clusterBatch(t, 60)
	w := wantOf(b)
	for range 2 { // the second Write is a redelivery
		if err := st.Write(testContext(t), b); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	checkRows(t, conns[0], c.Nodes[0].TCPAddr, rowQueries(db, "", w))
	// Node 1's own copy, not a Distributed read that could be served by
	// node 0.
	eventuallyRows(t, conns[1], c.Nodes[1].TCPAddr, rowQueries(db, LocalSuffix, w))

	second := c.Nodes[1]
	if err := second.Stop(); err != nil {
		t.Fatal(err)
	}
	// detect restarting now must not wait on the stopped replica: every
	// migration is recorded, so it runs no ON CLUSTER DDL.
	stDown, err := New(testContext(t), clusterConfig(c.Nodes[0], db), nil, nil)
	if err != nil {
		t.Fatalf("New with a replica down: %v", err)
	}
	defer stDown.Close()
	more := clusterBatch(t, 90) // the first 60 events again, and 30 new
	if err := stDown.Write(testContext(t), more); err != nil {
		t.Fatalf("Write with a replica down: %v", err)
	}
	w = wantOf(more)
	checkRows(t, conns[0], c.Nodes[0].TCPAddr, rowQueries(db, "", w))

	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	conns[1] = checker(t, second) // the old connection died with the server
	eventuallyRows(t, conns[1], second.TCPAddr, rowQueries(db, LocalSuffix, w))

	// Retention needs every replica up (ON CLUSTER waits for each node).
	if err := st.EnforceRetention(testContext(t), clusterNow); err != nil {
		t.Fatalf("EnforceRetention: %v", err)
	}
	kept := rowQueries(db, LocalSuffix, wantRows{events: w.events - w.oldEvents})
	for i, conn := range conns {
		q := "SELECT count() FROM `" + db + "`.events_local FINAL"
		eventuallyRows(t, conn, c.Nodes[i].TCPAddr, map[string]uint64{q: kept[q]})
		eventuallyRows(t, conn, c.Nodes[i].TCPAddr, map[string]uint64{
			"SELECT count() FROM `" + db + "`.events_by_minute_local WHERE minute < '2026-10-28 00:00:00'": 0,
		})
	}
}
