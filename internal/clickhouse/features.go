package clickhouse

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file holds every statement that only newer servers get. Migrations
// stay valid on 18.16; on start, Store reads version() and applies the
// tuning below on top of them where the server supports it. Each tuning
// statement is planned against the table's current state (system.columns,
// the CREATE query), so a restart issues nothing and the mutations it
// triggers (a type change rewrites the column) run once.

// serverVersion is a parsed version() string.
type serverVersion struct{ Major, Minor int }

// parseServerVersion reads "18.16.1", "23.8.2.7" or "24.3.1.2672".
func parseServerVersion(s string) (serverVersion, error) {
	parts := strings.SplitN(strings.TrimSpace(s), ".", 3)
	if len(parts) < 2 {
		return serverVersion{}, fmt.Errorf("parsing ClickHouse version %q: want major.minor", s)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return serverVersion{}, fmt.Errorf("parsing ClickHouse version %q: want major.minor", s)
	}
	return serverVersion{major, minor}, nil
}

func (v serverVersion) atLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

func (v serverVersion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// features says which optional statements a server accepts. The
// thresholds are the first release with the feature enabled by default,
// rounded up to an LTS where that was unclear, since a missed optimisation
// costs disk while a refused statement stops detect from starting.
type features struct {
	// TTL: table TTL expressions (19.6; taken as 20.3 LTS).
	TTL bool
	// Codecs: column CODEC(...) and system.columns.compression_codec
	// (19.1; taken as 20.3 LTS).
	Codecs bool
	// LowCardinality without allow_experimental_low_cardinality_type
	// (on by default since 19.x; taken as 20.3 LTS).
	LowCardinality bool
	// TTLOnlyDropParts: expire whole day partitions instead of rewriting
	// parts row by row (20.3 has the setting; it is cheap only when the
	// TTL matches the partition key, as ours does).
	TTLOnlyDropParts bool
}

func featuresOf(v serverVersion) features {
	modern := v.atLeast(20, 3)
	return features{TTL: modern, Codecs: modern, LowCardinality: modern, TTLOnlyDropParts: modern}
}

// columnTuning is how a column should look on a server with the features.
type columnTuning struct {
	Table, Column string
	// Type is the wanted type where LowCardinality is available; empty
	// keeps the type.
	Type string
	// Codec is the wanted codec where codecs are available, as
	// system.columns shows it, e.g. "CODEC(ZSTD(3))".
	Codec string
}

// columnTunings: LowCardinality for the few-valued strings dashboards group
// by, ZSTD for the large, rarely read ones. Sorting-key columns (cluster,
// stage, detector) are left alone: servers refuse to change a key
// column's type. raw is most of the table's
// bytes: audit JSON compresses several times better with ZSTD than LZ4.
var columnTunings = []columnTuning{
	{Table: EventsTable, Column: "level", Type: "LowCardinality(String)"},
	{Table: EventsTable, Column: "verb", Type: "LowCardinality(String)"},
	{Table: EventsTable, Column: "resource", Type: "LowCardinality(String)"},
	{Table: EventsTable, Column: "decision", Type: "LowCardinality(String)"},
	{Table: EventsTable, Column: "user_agent", Codec: "CODEC(ZSTD(3))"},
	{Table: EventsTable, Column: "request_uri", Codec: "CODEC(ZSTD(3))"},
	{Table: EventsTable, Column: "raw", Codec: "CODEC(ZSTD(3))"},
	{Table: FindingsTable, Column: "severity", Type: "LowCardinality(String)"},
	{Table: FindingsTable, Column: "evidence", Codec: "CODEC(ZSTD(3))"},
}

// tableState is what planTuning needs to know about one table.
type tableState struct {
	Columns map[string]columnInfo
	// CreateQuery is system.tables.create_table_query, used to see
	// whether the wanted TTL is in place.
	CreateQuery string
}

// ttlColumn is the time column each table's TTL is computed from.
func ttlColumn(table string) string {
	if slices.Contains(RollupTables, table) {
		return "minute"
	}
	return "time"
}

// planTuning returns the statements that bring tables up to what the
// server supports: TTL per retention (days per table, 0 for none), column
// types and codecs. Tables missing from state are skipped.
func planTuning(db string, f features, retention map[string]int, state map[string]tableState) []string {
	return planTuningOn(db, "", f, retention, state)
}

// planTuningOn is planTuning for a cluster: with cluster set, the
// statements alter each table's local table on every node (state then
// describes the local tables, keyed by the Distributed names).
func planTuningOn(db, cluster string, f features, retention map[string]int, state map[string]tableState) []string {
	var stmts []string
	tables := append([]string{EventsTable, FindingsTable}, RollupTables...)
	for _, table := range tables {
		st, ok := state[table]
		if !ok {
			continue
		}
		qualified := "`" + db + "`.`" + table + "`"
		if cluster != "" {
			qualified = "`" + db + "`.`" + table + LocalSuffix + "` ON CLUSTER `" + cluster + "`"
		}
		if days := retention[table]; f.TTL && days > 0 {
			// The server normalises "INTERVAL 30 DAY" to toIntervalDay(30)
			// in create_table_query.
			want := fmt.Sprintf("TTL %s + toIntervalDay(%d)", ttlColumn(table), days)
			if !strings.Contains(st.CreateQuery, want) {
				stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s MODIFY TTL %s + INTERVAL %d DAY", qualified, ttlColumn(table), days))
			}
			if f.TTLOnlyDropParts && !strings.Contains(st.CreateQuery, "ttl_only_drop_parts = 1") {
				stmts = append(stmts, "ALTER TABLE "+qualified+" MODIFY SETTING ttl_only_drop_parts = 1")
			}
		}
		for _, ct := range columnTunings {
			if ct.Table != table {
				continue
			}
			cur, ok := st.Columns[ct.Column]
			if !ok {
				continue
			}
			typ, codec := cur.Type, cur.Codec
			if f.LowCardinality && ct.Type != "" {
				typ = ct.Type
			}
			if f.Codecs && ct.Codec != "" {
				codec = ct.Codec
			}
			if typ == cur.Type && codec == cur.Codec {
				continue
			}
			stmt := fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN `%s` %s", qualified, ct.Column, typ)
			if codec != "" {
				stmt += " " + codec
			}
			stmts = append(stmts, stmt)
		}
	}
	return stmts
}
