package chtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// clusterExec runs a statement on node n, failing the test on error.
func clusterExec(t *testing.T, n *Server, query string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := n.Exec(ctx, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return strings.TrimSpace(out)
}

// eventually polls query on n until it returns want, for 30 s: inserts
// through a Distributed table reach remote shards in the background (a
// SETTINGS clause on INSERT … SELECT sets the SELECT's settings on 18.16,
// not insert_distributed_sync), and replication is asynchronous.
func eventually(t *testing.T, n *Server, query, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := clusterExec(t, n, query)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s on %s = %s after 30 s, want %s", query, n.TCPAddr, got, want)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkReplicatedDistributed creates a ReplicatedReplacingMergeTree on every
// node and a Distributed table in front, ON CLUSTER through node 0, writes
// rows (one of them twice) through node 0 and reads them back through
// every node.
func checkReplicatedDistributed(t *testing.T, c *Cluster) {
	t.Helper()
	first := c.Nodes[0]
	clusterExec(t, first, "CREATE DATABASE IF NOT EXISTS ap ON CLUSTER "+ClusterName)
	clusterExec(t, first, `CREATE TABLE ap.events_local ON CLUSTER `+ClusterName+` (time DateTime, audit_id String, stage String)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/ap/events_local', '{replica}')
PARTITION BY toYYYYMMDD(time) ORDER BY (time, audit_id, stage)`)
	// Sharded by the replacing key, so a redelivered row lands on the shard
	// holding its first copy and collapses there under FINAL.
	clusterExec(t, first, `CREATE TABLE ap.events ON CLUSTER `+ClusterName+` AS ap.events_local
ENGINE = Distributed(`+ClusterName+`, ap, events_local, cityHash64(audit_id, stage))`)
	insert := "INSERT INTO ap.events (time, audit_id, stage) SELECT toDateTime('2026-12-01 00:00:00') + number, concat('id-', toString(number)), 'ResponseComplete' FROM system.numbers LIMIT 1000"
	clusterExec(t, first, insert)
	clusterExec(t, first, "INSERT INTO ap.events (time, audit_id, stage) SELECT toDateTime('2026-12-01 00:00:07'), 'id-7', 'ResponseComplete'")
	for _, n := range c.Nodes {
		eventually(t, n, "SELECT count() FROM ap.events FINAL", "1000")
	}
}

// TestReplicatedDistributedTwoShards: two shards of one replica each.
func TestReplicatedDistributedTwoShards(t *testing.T) {
	c := StartCluster(t, 2, 1)
	checkReplicatedDistributed(t, c)
	// Both shards hold rows.
	for i, n := range c.Nodes {
		if got := clusterExec(t, n, "SELECT count() > 0 FROM ap.events_local"); got != "1" {
			t.Errorf("shard %d holds no rows", i)
		}
	}
}

// TestReplicatedDistributedTwoReplicas: one shard of two replicas; each
// holds every row.
func TestReplicatedDistributedTwoReplicas(t *testing.T) {
	c := StartCluster(t, 1, 2)
	checkReplicatedDistributed(t, c)
	for _, n := range c.Nodes {
		eventually(t, n, "SELECT count() FROM ap.events_local FINAL", "1000")
	}
	if t.Failed() {
		return
	}
	// With one replica down, writes go on; it catches up when it returns.
	second := c.Nodes[1]
	if err := second.Stop(); err != nil {
		t.Fatal(err)
	}
	clusterExec(t, c.Nodes[0], "INSERT INTO ap.events (time, audit_id, stage) SELECT toDateTime('2026-12-02 00:00:00') + number, concat('late-', toString(number)), 'ResponseComplete' FROM system.numbers LIMIT 500")
	eventually(t, c.Nodes[0], "SELECT count() FROM ap.events FINAL", "1500")
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, second, "SELECT count() FROM ap.events_local FINAL", "1500")
}
