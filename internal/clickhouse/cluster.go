package clickhouse

import (
	"fmt"
	"regexp"
	"strings"
)

// This file derives the cluster form of the schema from the migrations,
// so that a migration written for one server (see migrations) runs on a
// cluster unchanged, and a table added later gets cluster mode for free.
//
// On a cluster (Config.Cluster) every table a migration creates becomes
// two, both created ON CLUSTER:
//
//   - <name>_local, the same columns with the Replicated form of the
//     engine, its ZooKeeper path naming the shard ({shard} macro), the
//     database and the table, and the replica ({replica} macro);
//   - <name>, a Distributed table over <name>_local, sharded by
//     cityHash64 of the table's sorting key. The sorting key is what
//     ReplacingMergeTree collapses on and what AggregatingMergeTree merges
//     on, so a redelivered row hashes to the shard holding its first copy
//     and collapses there under FINAL, and a rollup key's partial states
//     stay on one shard.
//
// Readers (the dashboards, the Store's INSERTs) keep using <name>, now the
// Distributed table. Materialized views are created on every node and read
// from and write to the local tables, so each shard rolls up the rows it
// stores, and the rollups' Distributed tables merge the shards' partial
// aggregate states at query time. schema_migrations is replicated to every
// node of the cluster instead (one ZooKeeper path for all shards), so any
// node knows which migrations ran without asking the others.

// LocalSuffix names the per-node table behind each Distributed table in
// cluster mode: events_local behind events.
const LocalSuffix = "_local"

// zooKeeperPathPrefix roots the replicated tables' ZooKeeper paths. The
// database name is part of each path so that two auditpipe databases on one
// cluster never share a replica log.
const zooKeeperPathPrefix = "/clickhouse/tables/"

var (
	// createTableStmt matches a migration's CREATE TABLE: name, column
	// list, MergeTree-family engine, engine arguments, and the rest
	// (PARTITION BY, ORDER BY, SETTINGS).
	createTableStmt = regexp.MustCompile(`(?s)^\s*CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) (\(.*\))\s*ENGINE = (\w*MergeTree)\(([^)]*)\)(.*)$`)
	// createViewStmt matches a migration's CREATE MATERIALIZED VIEW … TO.
	createViewStmt = regexp.MustCompile(`(?s)^\s*CREATE MATERIALIZED VIEW IF NOT EXISTS \{db\}\.(\w+) TO \{db\}\.(\w+) AS\s+(.*)$`)
	// orderByClause captures the sorting key, up to the next clause.
	orderByClause = regexp.MustCompile(`(?s)\bORDER BY\s+(.*?)\s*(?:\bSETTINGS\b|\bSAMPLE BY\b|\bTTL\b|$)`)
	// tableRef is a qualified table name in a statement.
	tableRef = regexp.MustCompile(`\{db\}\.(\w+)\b`)
)

// clusterDDL rewrites the schema's statements for one cluster.
type clusterDDL struct {
	db, cluster string
	// tables are the tables the migrations create; references to them
	// inside views are rewritten to their local tables.
	tables map[string]bool
	// distributed maps each table to the ENGINE clause of its
	// Distributed table, for recreating it after a column is added.
	distributed map[string]string
}

// newClusterDDL scans migs for the tables they create.
func newClusterDDL(db, cluster string, migs []migration) (*clusterDDL, error) {
	c := &clusterDDL{db: db, cluster: cluster, tables: map[string]bool{}, distributed: map[string]string{}}
	for _, m := range migs {
		for _, stmt := range m.Statements {
			mt := createTableStmt.FindStringSubmatch(stmt)
			if mt == nil {
				continue
			}
			key, err := shardingKey(mt[5])
			if err != nil {
				return nil, fmt.Errorf("migration %d (%s): table %s: %w", m.Version, m.Name, mt[1], err)
			}
			c.tables[mt[1]] = true
			c.distributed[mt[1]] = fmt.Sprintf("ENGINE = Distributed(%s, %s, %s, %s)",
				quote(cluster), quote(db), quote(mt[1]+LocalSuffix), key)
		}
	}
	return c, nil
}

// onCluster is the ON CLUSTER clause.
func (c *clusterDDL) onCluster() string { return " ON CLUSTER `" + c.cluster + "`" }

// statements returns the cluster form of one migration statement, still
// with {db} placeholders. A statement of another shape is an error: the
// migration's author has to teach this file about it rather than have it
// run on one node only.
func (c *clusterDDL) statements(stmt string) ([]string, error) {
	if m := createTableStmt.FindStringSubmatch(stmt); m != nil {
		name, cols, engine, args, rest := m[1], m[2], m[3], m[4], m[5]
		local := name + LocalSuffix
		replicated := c.replicatedEngine(engine, args, "{shard}", local, "{replica}")
		return []string{
			"CREATE TABLE IF NOT EXISTS {db}." + local + c.onCluster() + " " + cols + "\nENGINE = " + replicated + rest,
			"CREATE TABLE IF NOT EXISTS {db}." + name + c.onCluster() + " AS {db}." + local + "\n" + c.distributed[name],
		}, nil
	}
	if m := createViewStmt.FindStringSubmatch(stmt); m != nil {
		name, to, sel := m[1], m[2], m[3]
		if !c.tables[to] {
			return nil, fmt.Errorf("view %s writes to %s, which no migration creates", name, to)
		}
		return []string{
			"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}." + name + c.onCluster() + " TO {db}." + to + LocalSuffix + " AS\n" + c.localRefs(sel),
		}, nil
	}
	return nil, fmt.Errorf("statement %q has no cluster form: only CREATE TABLE IF NOT EXISTS … ENGINE = …MergeTree(…) and CREATE MATERIALIZED VIEW IF NOT EXISTS … TO … are derived", firstLine(stmt))
}

// migrationsTable is the cluster form of createMigrationsTable: one
// replicated table whose replicas are every node of every shard.
func (c *clusterDDL) migrationsTable() (string, error) {
	m := createTableStmt.FindStringSubmatch(createMigrationsTable)
	if m == nil {
		return "", fmt.Errorf("createMigrationsTable has no cluster form")
	}
	// All shards share the path "all"; the replica name must then be
	// unique across shards, which {shard}-{replica} is where {replica}
	// is unique within a shard.
	engine := c.replicatedEngine(m[3], m[4], "all", MigrationsTable, "{shard}-{replica}")
	return "CREATE TABLE IF NOT EXISTS {db}." + MigrationsTable + c.onCluster() + " " + m[2] + "\nENGINE = " + engine + m[5], nil
}

// replicatedEngine renders Replicated<engine>(path, replica, args…).
func (c *clusterDDL) replicatedEngine(engine, args, shard, table, replica string) string {
	path := zooKeeperPathPrefix + shard + "/" + c.db + "/" + table
	out := "Replicated" + engine + "(" + quote(path) + ", " + quote(replica)
	if a := strings.TrimSpace(args); a != "" {
		out += ", " + a
	}
	return out + ")"
}

// localRefs points a view's references to the migrations' tables at their
// local tables, so that each node's view reads the rows that node stores.
func (c *clusterDDL) localRefs(sql string) string {
	return tableRef.ReplaceAllStringFunc(sql, func(ref string) string {
		name := strings.TrimPrefix(ref, "{db}.")
		if c.tables[name] {
			return ref + LocalSuffix
		}
		return ref
	})
}

// recreateDistributed returns the statements that rebuild table's
// Distributed table with cols (name and type, in order), after a column was
// added to the local table. ALTER on a Distributed table ON CLUSTER is
// refused by 18.16 when the cluster's shards use internal_replication
// ("Table … isn't replicated, but shard #1 is replicated"), and CREATE … AS
// the local table could copy a replica's columns before replication has
// brought it the new one; so the list is spelled out. The Distributed table
// holds no data (inserts are synchronous), so dropping it loses nothing;
// inserts and queries in between fail and are retried.
func (c *clusterDDL) recreateDistributed(table string, cols [][2]string) []string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS `" + c.db + "`.`" + table + "`" + c.onCluster() + " (")
	for i, col := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("`" + col[0] + "` " + col[1])
	}
	b.WriteString(")\n" + c.distributed[table])
	return []string{
		"DROP TABLE IF EXISTS `" + c.db + "`.`" + table + "`" + c.onCluster(),
		b.String(),
	}
}

// shardingKey derives cityHash64 of the sorting key from a CREATE TABLE's
// clauses after the engine.
func shardingKey(rest string) (string, error) {
	m := orderByClause.FindStringSubmatch(rest)
	if m == nil {
		return "", fmt.Errorf("no ORDER BY to derive a sharding key from")
	}
	key := strings.TrimSpace(m[1])
	if strings.HasPrefix(key, "(") && strings.HasSuffix(key, ")") {
		key = strings.TrimSpace(key[1 : len(key)-1])
	}
	if key == "" || key == "tuple()" {
		return "", fmt.Errorf("empty sorting key: rows could not be sharded by it")
	}
	return "cityHash64(" + key + ")", nil
}
