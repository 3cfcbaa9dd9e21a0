package main

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/clickhouse"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

// seedClusters are generated with different seeds so that the cluster
// filters have something to tell apart.
var seedClusters = []struct {
	name string
	seed int64
}{{"prod-eu", 11}, {"staging-us", 12}}

// seedEvents per cluster: enough for every detector to fire at attack
// ratio 0.2 (the rarest, stale-token and legacy-token, fire a few times).
const seedEvents = 20000

// seed runs realistic labelled traffic with attacks through the detectors
// and write (the ClickHouse sink, as detect does, or its rows as SQL for
// chDB) and returns the event-time span.
func seed(t *testing.T, write func(pipeline.Batch) error) (from, to time.Time) {
	t.Helper()
	from = gen.DefaultStart
	for _, c := range seedClusters {
		g := gen.New(gen.Config{Seed: c.seed, Cluster: c.name, AttackRatio: 0.2})
		set, err := detectors.New(detectors.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		terms := seedFirstSeen(t)
		// Judged as detect judges them: each request once.
		gate := pipeline.NewStageGate(pipeline.StageGateConfig{})
		var b pipeline.Batch
		flush := func() {
			if err := write(b); err != nil {
				t.Fatalf("writing batch: %v", err)
			}
			b = pipeline.Batch{}
		}
		for range seedEvents {
			e := g.Next()
			ev := new(pipeline.Event)
			if err := auditjson.Decode(ev, c.name, e.JSON); err != nil {
				t.Fatalf("decoding generated event: %v", err)
			}
			b.Events = append(b.Events, ev)
			if gate.Admit(ev) == pipeline.StageJudged {
				b.Findings = set.Detect(ev, b.Findings)
				b.Findings = terms.Detect(ev, b.Findings)
			}
			if e.Time.After(to) {
				to = e.Time
			}
			if len(b.Events) == 5000 {
				flush()
			}
		}
		flush()
	}
	return from.Add(-time.Minute), to.Add(time.Minute)
}

// seedFirstSeen judges the shipped first-seen rules without their learning
// period, so that a few minutes of traffic have new terms (exec into
// namespaces, for one) for the dashboard's first-seen panel.
func seedFirstSeen(t *testing.T) *rules.TermsDetector {
	t.Helper()
	files, err := rules.DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	var over strings.Builder
	over.WriteString("rules:\n")
	for _, r := range []string{"sa-new-network", "sa-new-user-agent", "human-secret-read-new-namespace", "exec-new-namespace", "principal-new-verb-resource"} {
		over.WriteString("  - {rule: " + r + ", override: append, new_terms: {learning: 0s}}\n")
	}
	s, err := rules.Load(append(files, rules.File{Name: "seed.yaml", Data: []byte(over.String())})...)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := firstseen.New(firstseen.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return rules.NewTermsDetector(func() *rules.Set { return s }, tr)
}

// result is a query's column names and rows, each value as text.
type result struct {
	columns []string
	rows    [][]string
}

// querier runs SQL on a server holding the seeded tables, with their
// database as the default one.
type querier func(ctx context.Context, sql string) (result, error)

func runNative(ctx context.Context, conn driver.Conn, sql string) (result, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return result{}, err
	}
	defer rows.Close()
	r := result{columns: rows.Columns()}
	types := rows.ColumnTypes()
	for rows.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			vals[i] = newScanTarget(ct.ScanType())
		}
		if err := rows.Scan(vals...); err != nil {
			return r, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(deref(v))
		}
		r.rows = append(r.rows, row)
	}
	return r, rows.Err()
}

func (r result) column(name string) int { return slices.Index(r.columns, name) }

// TestPanelQueries runs every ClickHouse panel and variable query of every
// dashboard against ClickHouse 18.16 holding detected attack traffic,
// expanded the way Grafana and the plugin expand them, under the variable
// forms Grafana produces: All, one value from a URL, several values from
// a multi-select, and a value for each filter.
func TestPanelQueries(t *testing.T) {
	srv := chtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := srv.NewDatabase(t)
	st, err := clickhouse.New(ctx, clickhouse.Config{DSN: srv.DSN, Database: db}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatalf("creating schema: %v", err)
	}
	defer st.Close()
	from, to := seed(t, func(b pipeline.Batch) error { return st.Write(ctx, b) })

	opts, err := ch.ParseDSN(srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	// The provisioned datasource sets defaultDatabase; queries name tables
	// without a database.
	opts.Auth.Database = db
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checkPanelQueries(t, ctx, func(ctx context.Context, sql string) (result, error) { return runNative(ctx, conn, sql) }, from, to)
}

// bucketed matches a time value on a 10 s bucket as clickhouse-go
// ("… 09:00:10 +0000 UTC") or TabSeparated ("… 09:00:10") prints it.
var bucketed = regexp.MustCompile(`:[0-5]0( \+0000 UTC)?$`)

// checkPanelQueries runs every panel and variable query over seeded data
// from..to through run, under each variable form, and checks the rows.
func checkPanelQueries(t *testing.T, ctx context.Context, run querier, from, to time.Time) {
	// Every detector fired, so every detector row has rows to show.
	var fired []string
	r, err := run(ctx, "SELECT DISTINCT detector FROM findings ORDER BY detector")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range r.rows {
		fired = append(fired, row[0])
	}
	for _, d := range []string{"anonymous-access", "stale-token", "legacy-token", "token-replay", "unsigned-jwt",
		"broad-selector", "apparmor-unconfined", "unsecured-image-pull", "admission-policy-change"} {
		if !slices.Contains(fired, d) {
			t.Fatalf("seed traffic produced no %s finding (got %v): panels for it cannot be checked", d, fired)
		}
	}

	// A value of each filter that findings hold, the most common one, and
	// the audit id of a critical finding, which a Slack alert links to.
	pick := func(sql string) string {
		t.Helper()
		r, err := run(ctx, sql)
		if err != nil || len(r.rows) == 0 {
			t.Fatalf("%s: %v (%d rows)", sql, err, len(r.rows))
		}
		return r.rows[0][0]
	}
	top := func(col string) string {
		return pick("SELECT " + col + " FROM findings WHERE " + col + " != '' GROUP BY " + col + " ORDER BY count() DESC, " + col + " LIMIT 1")
	}
	values := map[string]string{
		"namespace": top("namespace"),
		"user":      top("username"),
		"detector":  top("detector"),
		"severity":  top("severity"),
	}
	auditID := pick("SELECT audit_id FROM findings WHERE severity = 'critical' ORDER BY audit_id LIMIT 1")

	_, queries, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	all := func() map[string]varValue {
		return map[string]varValue{
			"cluster": []string{allValue}, "namespace": []string{allValue}, "user": []string{allValue},
			"detector": []string{allValue}, "severity": []string{allValue}, "audit_id": "",
		}
	}
	type scenario struct {
		name     string
		vars     map[string]varValue
		wantRows bool
		// col must hold only these values in every row, when the result
		// has that column.
		col  string
		only []string
	}
	for _, q := range queries {
		scenarios := []scenario{{name: "all", vars: all(), wantRows: true}}
		if slices.Contains(q.Filters, "cluster") {
			one := all()
			one["cluster"] = "prod-eu" // var-cluster=prod-eu from an alert link
			both := all()
			both["cluster"] = []string{"prod-eu", "staging-us"}
			scenarios = append(scenarios,
				scenario{name: "cluster from URL", vars: one, wantRows: true, col: "cluster", only: []string{"prod-eu"}},
				scenario{name: "two clusters", vars: both, wantRows: true, col: "cluster", only: []string{"prod-eu", "staging-us"}})
		}
		for _, f := range []string{"namespace", "user", "detector", "severity"} {
			if !slices.Contains(q.Filters, f) {
				continue
			}
			v := all()
			v[f] = []string{values[f]}
			scenarios = append(scenarios, scenario{name: f + "=" + values[f], vars: v, col: filterColumns[f], only: []string{values[f]}})
		}
		if slices.Contains(q.Filters, "audit_id") {
			one := all()
			one["audit_id"] = auditID
			quote := all()
			quote["audit_id"] = "x' OR '1'='1"
			scenarios = append(scenarios,
				scenario{name: "audit_id", vars: one, wantRows: q.Panel == "Audit events", col: "audit_id", only: []string{auditID}},
				scenario{name: "audit_id with a quote", vars: quote, col: "audit_id", only: []string{}})
		}
		for _, sc := range scenarios {
			t.Run(q.Dashboard+"/"+q.Panel+"/"+sc.name, func(t *testing.T) {
				sql, err := expand(q.SQL, sc.vars, from, to, 10*time.Second)
				if err != nil {
					t.Fatalf("expanding: %v\n%s", err, q.SQL)
				}
				r, err := run(ctx, sql)
				if err != nil {
					t.Fatalf("running: %v\n%s", err, sql)
				}
				if !slices.Equal(r.columns, q.Columns) {
					t.Errorf("columns = %v, want %v", r.columns, q.Columns)
				}
				if sc.wantRows && len(r.rows) == 0 {
					t.Errorf("no rows\n%s", sql)
				}
				if i := r.column(sc.col); sc.col != "" && i >= 0 {
					for _, row := range r.rows {
						if !slices.Contains(sc.only, row[i]) {
							t.Errorf("row with %s=%q, want only %v", sc.col, row[i], sc.only)
							break
						}
					}
				}
				if i := r.column("time"); i == 0 && strings.Contains(q.SQL, "$__interval_s") {
					for _, row := range r.rows {
						if !bucketed.MatchString(row[0]) {
							t.Errorf("time %s is not on a 10 s bucket", row[0])
							break
						}
					}
				}
			})
		}
	}
	if t.Failed() {
		return
	}
	// The audit explorer, opened from an alert, shows every stage of the
	// linked request and nothing else.
	for _, q := range queries {
		if q.Dashboard != explorerUID || q.Panel != "Audit events" {
			continue
		}
		v := all()
		v["cluster"], v["audit_id"] = "prod-eu", auditID
		sql, err := expand(q.SQL, v, from, to, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		r, err := run(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		want := pick("SELECT toString(count()) FROM events FINAL WHERE audit_id = '" + auditID + "' AND cluster = 'prod-eu'")
		if fmt.Sprint(len(r.rows)) != want {
			t.Errorf("explorer shows %d events of %s, want %s", len(r.rows), auditID, want)
		}
	}
}

// newScanTarget returns a pointer clickhouse-go can scan a column of type
// typ into.
func newScanTarget(typ reflect.Type) any {
	return reflect.New(typ).Interface()
}

func deref(v any) any {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if t, ok := rv.Interface().(time.Time); ok {
		return t.UTC()
	}
	return rv.Interface()
}
