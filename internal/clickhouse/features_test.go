package clickhouse

import (
	"slices"
	"strings"
	"testing"
)

// freshState is how migrations leave the tables on any server: plain
// String columns, default codec, no TTL.
func freshState() map[string]tableState {
	state := map[string]tableState{}
	for _, table := range append([]string{EventsTable, FindingsTable}, RollupTables...) {
		cols := map[string]columnInfo{}
		for _, ct := range columnTunings {
			if ct.Table == table {
				cols[ct.Column] = columnInfo{Type: "String"}
			}
		}
		state[table] = tableState{Columns: cols, CreateQuery: "CREATE TABLE db." + table + " (...) ENGINE = MergeTree PARTITION BY toYYYYMMDD(time) ORDER BY x SETTINGS index_granularity = 8192"}
	}
	return state
}

func TestPlanTuningByVersion(t *testing.T) {
	retention := map[string]int{EventsTable: 30, FindingsTable: 365, EventsByMinuteTable: 90, FindingsByMinuteTable: 90, UsersByMinuteTable: 90}
	f := func(version string, want []string) {
		t.Helper()
		v, err := parseServerVersion(version)
		if err != nil {
			t.Fatal(err)
		}
		got := planTuning("ap", featuresOf(v), retention, freshState())
		if !slices.Equal(got, want) {
			t.Errorf("version %s gets:\n  %s\nwant:\n  %s", version, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
	f("18.16.1", nil)
	modern := []string{
		"ALTER TABLE `ap`.`events` MODIFY TTL time + INTERVAL 30 DAY",
		"ALTER TABLE `ap`.`events` MODIFY SETTING ttl_only_drop_parts = 1",
		"ALTER TABLE `ap`.`events` MODIFY COLUMN `level` LowCardinality(String)",
		"ALTER TABLE `ap`.`events` MODIFY COLUMN `verb` LowCardinality(String)",
		"ALTER TABLE `ap`.`events` MODIFY COLUMN `resource` LowCardinality(String)",
		"ALTER TABLE `ap`.`events` MODIFY COLUMN `decision` LowCardinality(String)",
		"ALTER TABLE `ap`.`events` MODIFY COLUMN `user_agent` String CODEC(ZSTD(3))",
		"ALTER TABLE `ap`.`events` MODIFY COLUMN `request_uri` String CODEC(ZSTD(3))",
		"ALTER TABLE `ap`.`events` MODIFY COLUMN `raw` String CODEC(ZSTD(3))",
		"ALTER TABLE `ap`.`findings` MODIFY TTL time + INTERVAL 365 DAY",
		"ALTER TABLE `ap`.`findings` MODIFY SETTING ttl_only_drop_parts = 1",
		"ALTER TABLE `ap`.`findings` MODIFY COLUMN `severity` LowCardinality(String)",
		"ALTER TABLE `ap`.`findings` MODIFY COLUMN `evidence` String CODEC(ZSTD(3))",
		"ALTER TABLE `ap`.`events_by_minute` MODIFY TTL minute + INTERVAL 90 DAY",
		"ALTER TABLE `ap`.`events_by_minute` MODIFY SETTING ttl_only_drop_parts = 1",
		"ALTER TABLE `ap`.`findings_by_minute` MODIFY TTL minute + INTERVAL 90 DAY",
		"ALTER TABLE `ap`.`findings_by_minute` MODIFY SETTING ttl_only_drop_parts = 1",
		"ALTER TABLE `ap`.`users_by_minute` MODIFY TTL minute + INTERVAL 90 DAY",
		"ALTER TABLE `ap`.`users_by_minute` MODIFY SETTING ttl_only_drop_parts = 1",
	}
	f("19.16.14.65", nil)
	f("23.8.2.7", modern)
	f("24.3.1.2672", modern)
	f("24.12.1.1", modern)
}

// TestPlanTuningIdempotent: once a server shows the tuned state, a restart
// plans nothing, so no mutation runs twice.
func TestPlanTuningIdempotent(t *testing.T) {
	state := freshState()
	for _, ct := range columnTunings {
		ci := state[ct.Table].Columns[ct.Column]
		if ct.Type != "" {
			ci.Type = ct.Type
		}
		ci.Codec = ct.Codec
		state[ct.Table].Columns[ct.Column] = ci
	}
	ev := state[EventsTable]
	ev.CreateQuery = "CREATE TABLE ap.events (...) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(time) ORDER BY (cluster, time) TTL time + toIntervalDay(30) SETTINGS ttl_only_drop_parts = 1, index_granularity = 8192"
	state[EventsTable] = ev
	v, _ := parseServerVersion("23.8.2.7")
	got := planTuning("ap", featuresOf(v), map[string]int{EventsTable: 30}, state)
	if len(got) != 0 {
		t.Errorf("tuned state plans %q, want nothing", got)
	}
	// A changed retention is applied again.
	got = planTuning("ap", featuresOf(v), map[string]int{EventsTable: 7}, state)
	if !slices.Equal(got, []string{"ALTER TABLE `ap`.`events` MODIFY TTL time + INTERVAL 7 DAY"}) {
		t.Errorf("retention 7 plans %q", got)
	}
}

func TestParseServerVersion(t *testing.T) {
	for _, bad := range []string{"", "18", "x.y", "18.x.1"} {
		if _, err := parseServerVersion(bad); err == nil {
			t.Errorf("parseServerVersion(%q) = nil error", bad)
		}
	}
}
