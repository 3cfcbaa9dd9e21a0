package clickhouse

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

var createdOnCluster = regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) ON CLUSTER`)

// TestClusterDDLCoversEveryMigration derives the cluster form of every
// migration: a new migration whose statements have no cluster form fails
// here, before it reaches a cluster.
func TestClusterDDLCoversEveryMigration(t *testing.T) {
	c, err := newClusterDDL("audit", "prod-eu", migrations)
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]bool{}
	for _, m := range migrations {
		for _, stmt := range m.Statements {
			forms, err := c.statements(stmt)
			if err != nil {
				t.Errorf("migration %d (%s): %v", m.Version, m.Name, err)
				continue
			}
			for _, f := range forms {
				if !strings.Contains(f, " ON CLUSTER `prod-eu` ") {
					t.Errorf("migration %d: statement is not ON CLUSTER:\n%s", m.Version, f)
				}
				if mt := createdOnCluster.FindStringSubmatch(f); mt != nil {
					created[mt[1]] = true
				}
			}
			// A view reads and writes local tables only: a view over a
			// Distributed table would fire on one node and see every
			// shard's rows, or none.
			if createViewStmt.MatchString(stmt) {
				for _, ref := range tableRef.FindAllStringSubmatch(forms[0], -1) {
					if !strings.HasSuffix(ref[1], LocalSuffix) && !strings.HasSuffix(ref[1], "_mv") {
						t.Errorf("migration %d: view refers to %s, not a local table:\n%s", m.Version, ref[0], forms[0])
					}
				}
			}
		}
		for _, ac := range m.AddColumns {
			if !c.tables[ac.Table] {
				t.Errorf("migration %d adds a column to %s, which no migration creates", m.Version, ac.Table)
			}
		}
	}
	for _, table := range append([]string{EventsTable, FindingsTable}, RollupTables...) {
		if !created[table+LocalSuffix] {
			t.Errorf("no local table created for %s", table)
		}
	}
}

func TestClusterDDLForms(t *testing.T) {
	c, err := newClusterDDL("audit", "prod", migrations)
	if err != nil {
		t.Fatal(err)
	}
	forms, err := c.statements(migrations[0].Statements[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(forms) != 2 {
		t.Fatalf("events has %d cluster statements, want 2", len(forms))
	}
	f := func(stmt, want string) {
		t.Helper()
		if !strings.Contains(stmt, want) {
			t.Errorf("statement lacks %q:\n%s", want, stmt)
		}
	}
	f(forms[0], "CREATE TABLE IF NOT EXISTS {db}.events_local ON CLUSTER `prod` (")
	f(forms[0], "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/audit/events_local', '{replica}')")
	f(forms[0], "PARTITION BY toYYYYMMDD(time)\nORDER BY (cluster, time, audit_id, stage, event_hash)")
	f(forms[1], "CREATE TABLE IF NOT EXISTS {db}.events ON CLUSTER `prod` AS {db}.events_local\n")
	// Sharded by the whole replacing key: a redelivered row goes where its
	// first copy went.
	f(forms[1], "ENGINE = Distributed('prod', 'audit', 'events_local', cityHash64(cluster, time, audit_id, stage, event_hash))")

	mv, err := c.statements(migrations[1].Statements[5])
	if err != nil {
		t.Fatal(err)
	}
	f(mv[0], "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.users_by_minute_mv ON CLUSTER `prod` TO {db}.users_by_minute_local AS")
	f(mv[0], "FROM {db}.events_local\n")

	agg, err := c.statements(migrations[1].Statements[0])
	if err != nil {
		t.Fatal(err)
	}
	f(agg[0], "ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/audit/events_by_minute_local', '{replica}')")

	mt, err := c.migrationsTable()
	if err != nil {
		t.Fatal(err)
	}
	// One replica set over the whole cluster.
	f(mt, "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/audit/schema_migrations', '{shard}-{replica}')")

	// A table added by a later migration gets its cluster form without
	// changes here, engine arguments kept after the replication ones.
	later := migration{Version: 99, Name: "first seen", Statements: []string{
		"CREATE TABLE IF NOT EXISTS {db}.first_seen (\n\trule String,\n\tkey String,\n\tseen DateTime\n) ENGINE = ReplacingMergeTree(seen)\nORDER BY (rule, key)\nSETTINGS index_granularity = 1024",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.first_seen_mv TO {db}.first_seen AS\nSELECT rule, key, seen FROM {db}.events",
	}}
	c2, err := newClusterDDL("audit", "prod", append(slices.Clone(migrations), later))
	if err != nil {
		t.Fatal(err)
	}
	lf, err := c2.statements(later.Statements[0])
	if err != nil {
		t.Fatal(err)
	}
	f(lf[0], "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/audit/first_seen_local', '{replica}', seen)")
	f(lf[0], "SETTINGS index_granularity = 1024")
	f(lf[1], "cityHash64(rule, key))")
	lv, err := c2.statements(later.Statements[1])
	if err != nil {
		t.Fatal(err)
	}
	f(lv[0], "TO {db}.first_seen_local AS\nSELECT rule, key, seen FROM {db}.events_local")

	// Statements without a cluster form are refused, not run on one node.
	for _, stmt := range []string{
		"ALTER TABLE {db}.events DELETE WHERE 1",
		"CREATE TABLE IF NOT EXISTS {db}.m (x UInt8) ENGINE = Memory",
	} {
		if _, err := c.statements(stmt); err == nil {
			t.Errorf("statements(%q) = nil error, want a refusal", stmt)
		}
	}
	// A table without a sorting key cannot be sharded by it.
	unkeyed := migration{Version: 1, Statements: []string{"CREATE TABLE IF NOT EXISTS {db}.n (x UInt8) ENGINE = MergeTree() ORDER BY tuple()"}}
	if _, err := newClusterDDL("audit", "prod", []migration{unkeyed}); err == nil {
		t.Error("newClusterDDL accepted a table ordered by tuple()")
	}

	// Recreating a Distributed table spells out the local table's columns.
	rd := c.recreateDistributed(EventsTable, [][2]string{{"time", "DateTime"}, {"annotations.key", "Array(String)"}})
	if !slices.Equal(rd[:1], []string{"DROP TABLE IF EXISTS `audit`.`events` ON CLUSTER `prod`"}) {
		t.Errorf("recreate starts with %q", rd[0])
	}
	f(rd[1], "CREATE TABLE IF NOT EXISTS `audit`.`events` ON CLUSTER `prod` (`time` DateTime, `annotations.key` Array(String))\nENGINE = Distributed('prod', 'audit', 'events_local', cityHash64(")
}

// TestPlanTuningOnCluster: on a cluster the version gate tunes the local
// tables on every node and leaves the Distributed tables alone.
func TestPlanTuningOnCluster(t *testing.T) {
	all := features{TTL: true, Codecs: true, LowCardinality: true, TTLOnlyDropParts: true}
	state := freshState()
	got := planTuningOn("audit", "prod", all, map[string]int{EventsTable: 30}, state)
	single := planTuning("audit", all, map[string]int{EventsTable: 30}, state)
	if len(got) != len(single) || len(got) == 0 {
		t.Fatalf("cluster plan has %d statements, single-server plan %d", len(got), len(single))
	}
	for i, stmt := range got {
		want := strings.Replace(single[i], "`audit`.`", "`audit`.`", 1)
		table := strings.SplitN(strings.TrimPrefix(want, "ALTER TABLE `audit`.`"), "`", 2)[0]
		want = strings.Replace(want, "`audit`.`"+table+"`", "`audit`.`"+table+"_local` ON CLUSTER `prod`", 1)
		if stmt != want {
			t.Errorf("cluster statement %d = %q, want %q", i, stmt, want)
		}
	}
}
