package clickhouse

// Table names, unqualified. Store qualifies them with Config.Database.
const (
	// EventsTable holds one row per audit event and stage.
	EventsTable = "events"
	// FindingsTable holds one row per detector finding.
	FindingsTable = "findings"
	// MigrationsTable records which migrations have run.
	MigrationsTable = "schema_migrations"

	// EventsByMinuteTable counts distinct events per minute, cluster,
	// verb, resource and response code. Read it with
	// uniqExactMerge(events).
	EventsByMinuteTable = "events_by_minute"
	// FindingsByMinuteTable counts distinct findings per minute, cluster,
	// detector and severity. Read it with uniqExactMerge(findings).
	FindingsByMinuteTable = "findings_by_minute"
	// UsersByMinuteTable counts distinct events and denied events per
	// minute, cluster and username. Read it with uniqExactMerge(events)
	// and uniqExactMerge(denied).
	UsersByMinuteTable = "users_by_minute"
)

// RollupTables lists the rollup tables, which share one retention.
var RollupTables = []string{EventsByMinuteTable, FindingsByMinuteTable, UsersByMinuteTable}

// migration is one step of the schema. Its statements run in order with
// {db} replaced by the quoted database name.
//
// Every statement must be idempotent (CREATE … IF NOT EXISTS and the like):
// two instances starting at once can both see a migration as pending and
// both run it, and a crash between running a migration and recording it
// runs it again. 18.16 has no ALTER … ADD COLUMN IF NOT EXISTS, so a later
// column addition has to be made idempotent by the migration runner
// (checking system.columns) rather than by SQL.
//
// Migrations are append-only: never edit or reorder a released one.
type migration struct {
	Version    uint32
	Name       string
	Statements []string
	// AddColumns run after Statements. Each is skipped when
	// system.columns already lists the column, which makes an ADD COLUMN
	// idempotent on servers without ADD COLUMN IF NOT EXISTS.
	AddColumns []addColumn
}

// addColumn is one idempotent ALTER TABLE … ADD COLUMN.
type addColumn struct {
	Table, Column, Type, After string
}

// migrations is the schema, oldest first. Version numbers are dense from 1.
//
// SQL must stay valid on ClickHouse 18.16, the oldest server we support:
// no TTL, CODEC, DateTime64, Map or LowCardinality (the last needs an
// experimental setting there).
var migrations = []migration{
	{
		Version: 1,
		Name:    "create events and findings",
		Statements: []string{
			// ReplacingMergeTree with the content hash in the sorting key: the
			// sink is at-least-once (a crash between the insert and the Kafka
			// commit writes the batch again), and a redelivered event has the
			// same key, so merges (or SELECT … FINAL) collapse it. A different
			// request that reuses a client-chosen auditID hashes differently
			// and keeps its own row.
			`CREATE TABLE IF NOT EXISTS {db}.` + EventsTable + ` (
	time DateTime,
	time_us UInt64,
	received_time DateTime,
	cluster String,
	audit_id String,
	stage String,
	event_hash UInt64,
	level String,
	verb String,
	username String,
	user_uid String,
	groups Array(String),
	impersonated_user String,
	source_ip String,
	source_ips Array(String),
	user_agent String,
	resource String,
	subresource String,
	namespace String,
	name String,
	api_group String,
	api_version String,
	request_uri String,
	response_code Int32,
	decision String,
	reason String,
	credential_id String,
	pod_name String,
	node_name String,
	annotations Nested(key String, value String),
	raw String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(time)
ORDER BY (cluster, time, audit_id, stage, event_hash)`,
			// finding_id is derived from the detector, the event's identity
			// and content hash, so a re-detected finding collapses the same
			// way a redelivered event does.
			`CREATE TABLE IF NOT EXISTS {db}.` + FindingsTable + ` (
	finding_id String,
	time DateTime,
	time_us UInt64,
	cluster String,
	detector String,
	severity String,
	severity_level UInt8,
	audit_id String,
	stage String,
	summary String,
	evidence String,
	username String,
	groups Array(String),
	credential_id String,
	source_ip String,
	user_agent String,
	verb String,
	request_uri String,
	resource String,
	subresource String,
	namespace String,
	name String,
	response_code Int32,
	mitre_technique String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(time)
ORDER BY (cluster, detector, time, finding_id)`,
		},
	},
	{
		Version: 2,
		Name:    "per-minute rollups maintained by materialized views",
		// The rollups count distinct keys (uniqExact states), not rows:
		// the sink is at-least-once, and a redelivered batch passes through
		// the views again, so count() would inflate on every resend while
		// a set of keys does not. The views see only rows inserted after
		// they exist; events stored before this migration are not rolled
		// up (POPULATE would race with concurrent inserts).
		Statements: []string{
			`CREATE TABLE IF NOT EXISTS {db}.` + EventsByMinuteTable + ` (
	minute DateTime,
	cluster String,
	verb String,
	resource String,
	response_code Int32,
	events AggregateFunction(uniqExact, UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (cluster, minute, verb, resource, response_code)`,
			`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.` + EventsByMinuteTable + `_mv TO {db}.` + EventsByMinuteTable + ` AS
SELECT toStartOfMinute(time) AS minute, cluster, verb, resource, response_code,
	uniqExactState(cityHash64(audit_id, stage, event_hash)) AS events
FROM {db}.` + EventsTable + `
GROUP BY minute, cluster, verb, resource, response_code`,
			`CREATE TABLE IF NOT EXISTS {db}.` + FindingsByMinuteTable + ` (
	minute DateTime,
	cluster String,
	detector String,
	severity String,
	findings AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (cluster, minute, detector, severity)`,
			`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.` + FindingsByMinuteTable + `_mv TO {db}.` + FindingsByMinuteTable + ` AS
SELECT toStartOfMinute(time) AS minute, cluster, detector, severity,
	uniqExactState(finding_id) AS findings
FROM {db}.` + FindingsTable + `
GROUP BY minute, cluster, detector, severity`,
			`CREATE TABLE IF NOT EXISTS {db}.` + UsersByMinuteTable + ` (
	minute DateTime,
	cluster String,
	username String,
	events AggregateFunction(uniqExact, UInt64),
	denied AggregateFunction(uniqExact, UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (cluster, minute, username)`,
			// denied is a uniqExact state of the denied events' keys. 18.16's
			// uniqExactIfState yields AggregateFunction(uniqExactIf, UInt64,
			// UInt8), which the column refuses ("Type mismatch"), and a
			// view must produce every column of its TO table ("Expected
			// column denied"), so a second view per condition is out too.
			// Instead each row contributes a one- or zero-element state
			// (arrayReduce) and uniqExactMergeState unions them into the
			// plain uniqExact state readers merge with uniqExactMerge.
			`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.` + UsersByMinuteTable + `_mv TO {db}.` + UsersByMinuteTable + ` AS
SELECT toStartOfMinute(time) AS minute, cluster, username,
	uniqExactState(cityHash64(audit_id, stage, event_hash)) AS events,
	uniqExactMergeState(arrayReduce('uniqExactState',
		if(decision = 'forbid' OR response_code IN (401, 403),
			[cityHash64(audit_id, stage, event_hash)], emptyArrayUInt64()))) AS denied
FROM {db}.` + EventsTable + `
GROUP BY minute, cluster, username`,
		},
	},
	{
		Version: 3,
		Name:    "bound pod and node uids on events",
		// The uid tells a recreated pod (same name, new token) from the
		// one the credential was bound to.
		AddColumns: []addColumn{
			{Table: EventsTable, Column: "pod_uid", Type: "String", After: "pod_name"},
			{Table: EventsTable, Column: "node_uid", Type: "String", After: "node_name"},
		},
	},
	{
		Version:    4,
		Name:       "first-seen terms",
		Statements: []string{createFirstSeenTable},
	},
}

// createMigrationsTable is run before anything else. ReplacingMergeTree on
// version so that two instances recording the same migration leave one row
// after FINAL.
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS {db}.` + MigrationsTable + ` (
	version UInt32,
	name String,
	applied_at DateTime
) ENGINE = ReplacingMergeTree()
ORDER BY version`

// eventColumns and findingColumns are the INSERT column lists, in the order
// Write appends values. Naming the columns is required: clickhouse-go cannot
// derive the list from an 18.16 server ("expected 0 arguments").
var (
	eventColumns = []string{
		"time", "time_us", "received_time", "cluster", "audit_id", "stage", "event_hash",
		"level", "verb", "username", "user_uid", "groups", "impersonated_user",
		"source_ip", "source_ips", "user_agent", "resource", "subresource", "namespace",
		"name", "api_group", "api_version", "request_uri", "response_code", "decision",
		"reason", "credential_id", "pod_name", "pod_uid", "node_name", "node_uid", "annotations.key",
		"annotations.value", "raw",
	}
	findingColumns = []string{
		"finding_id", "time", "time_us", "cluster", "detector", "severity", "severity_level",
		"audit_id", "stage", "summary", "evidence", "username", "groups", "credential_id",
		"source_ip", "user_agent", "verb", "request_uri", "resource", "subresource",
		"namespace", "name", "response_code", "mitre_technique",
	}
)
