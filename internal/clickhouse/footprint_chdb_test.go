//go:build chdb

package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chdbtest"
)

// footprintEventsEnv sets how many events TestChDBFootprint stores. The
// default keeps the test quick in CI; the README's figures come from
// 1000000.
const footprintEventsEnv = "AUDITPIPE_FOOTPRINT_EVENTS"

// footprintBatch is the rows per INSERT, about what detect writes at a
// few thousand events per second with a 1 s flush.
const footprintBatch = 10000

// TestChDBFootprint stores the same realistic events (internal/gen at its
// default attack ratio) and the detectors' findings twice on ClickHouse
// 26.7: once as the version gate tunes the tables there (LowCardinality,
// ZSTD codecs) and once with the migrations alone (the 18.16 schema:
// default LZ4, plain String). After OPTIMIZE … FINAL it reports bytes on
// disk per million rows of each table and per million events overall.
func TestChDBFootprint(t *testing.T) {
	n := 20000
	if v := os.Getenv(footprintEventsEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of events", footprintEventsEnv, v)
		}
	}
	s := chdbtest.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()

	tunedDB, plainDB := s.NewDatabase(t), s.NewDatabase(t)
	if _, err := Migrate(ctx, s, tunedDB, nil, nil); err != nil {
		t.Fatalf("migrating %s: %v", tunedDB, err)
	}
	// Migrations only, as on 18.16: no version read, so no tuning.
	plain := &schema{r: s, db: plainDB, log: slog.New(slog.DiscardHandler)}
	if err := plain.migrate(ctx); err != nil {
		t.Fatalf("migrating %s: %v", plainDB, err)
	}

	g := gen.New(gen.Config{Seed: 1, Cluster: "prod-eu", AttackRatio: gen.DefaultAttackRatio})
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var b pipeline.Batch
	flush := func() {
		for _, db := range []string{tunedDB, plainDB} {
			stmts, err := InsertStatements(db, b)
			if err != nil {
				t.Fatal(err)
			}
			for _, stmt := range stmts {
				if err := s.Exec(ctx, stmt); err != nil {
					t.Fatalf("inserting into %s: %v", db, err)
				}
			}
		}
		b = pipeline.Batch{}
	}
	for i := range n {
		e := g.Next()
		ev := new(pipeline.Event)
		if err := auditjson.Decode(ev, "prod-eu", e.JSON); err != nil {
			t.Fatalf("decoding generated event %d: %v", i, err)
		}
		b.Events = append(b.Events, ev)
		b.Findings = set.Detect(ev, b.Findings)
		if len(b.Events) == footprintBatch {
			flush()
		}
	}
	flush()
	t.Logf("stored %d events twice in %v", n, time.Since(start).Round(time.Second))

	tables := append([]string{EventsTable, FindingsTable}, RollupTables...)
	type usage struct{ rows, bytes int64 }
	measure := func(db string) map[string]usage {
		out := map[string]usage{}
		for _, table := range tables {
			// One part per partition, as merges leave a table at rest.
			if err := s.Exec(ctx, "OPTIMIZE TABLE `"+db+"`.`"+table+"` FINAL"); err != nil {
				t.Fatalf("optimizing %s.%s: %v", db, table, err)
			}
		}
		rows, err := s.Query(ctx, "SELECT table, toString(sum(rows)), toString(sum(bytes_on_disk)) FROM system.parts WHERE active AND database = "+quote(db)+" GROUP BY table")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			rs, _ := strconv.ParseInt(r[1], 10, 64)
			bs, _ := strconv.ParseInt(r[2], 10, 64)
			out[r[0]] = usage{rows: rs, bytes: bs}
		}
		return out
	}
	tuned, untuned := measure(tunedDB), measure(plainDB)

	perMillion := func(bytes, rows int64) string {
		if rows == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f MiB", float64(bytes)/float64(rows)*1e6/(1<<20))
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "ClickHouse 26.7 (chDB), %d events from internal/gen, %d findings\n", tuned[EventsTable].rows, tuned[FindingsTable].rows)
	fmt.Fprintf(&sb, "%-20s %10s %22s %22s %7s\n", "table", "rows", "per 1M rows, tuned", "per 1M rows, plain", "ratio")
	var totalTuned, totalPlain int64
	for _, table := range tables {
		tu, pl := tuned[table], untuned[table]
		totalTuned += tu.bytes
		totalPlain += pl.bytes
		ratio := "-"
		if tu.bytes > 0 {
			ratio = fmt.Sprintf("%.2f", float64(pl.bytes)/float64(tu.bytes))
		}
		fmt.Fprintf(&sb, "%-20s %10d %22s %22s %7s\n", table, tu.rows, perMillion(tu.bytes, tu.rows), perMillion(pl.bytes, pl.rows), ratio)
	}
	ev := tuned[EventsTable].rows
	fmt.Fprintf(&sb, "%-20s %10s %22s %22s %7.2f\n", "all, per 1M events", "", perMillion(totalTuned, ev), perMillion(totalPlain, ev), float64(totalPlain)/float64(totalTuned))
	t.Log("\n" + sb.String())

	if tuned[EventsTable].rows != int64(n) {
		t.Errorf("events holds %d rows, want %d", tuned[EventsTable].rows, n)
	}
	if tuned[FindingsTable].rows == 0 {
		t.Error("no findings: the measurement needs detected attacks")
	}
	if tuned[EventsTable].bytes >= untuned[EventsTable].bytes {
		t.Errorf("tuned events take %d bytes, plain %d: the codecs save nothing", tuned[EventsTable].bytes, untuned[EventsTable].bytes)
	}
}
