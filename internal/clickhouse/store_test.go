package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testCluster = "prod-eu-1"

func loadEvent(t testing.TB, name string) *pipeline.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return decodeEvent(t, strings.TrimSpace(string(data)))
}

func decodeEvent(t testing.TB, js string) *pipeline.Event {
	t.Helper()
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, testCluster, []byte(js)); err != nil {
		t.Fatalf("decoding test event: %v", err)
	}
	return &ev
}

// testBatch is three realistic events and two findings about them.
func testBatch(t testing.TB) pipeline.Batch {
	exec := loadEvent(t, "exec_pod_sa.json")
	secret := loadEvent(t, "get_secret_user.json")
	anon := loadEvent(t, "anonymous_401.json")

	f1 := pipeline.NewFinding("exec_into_pod", exec, "")
	f1.Severity = pipeline.SeverityHigh
	f1.Summary = "system:serviceaccount:ci:deployer opened an interactive shell in payments/api-7d9f8b6c5-xk2lp"
	f1.Evidence = []pipeline.Evidence{
		{Field: "objectRef.subresource", Value: "exec", Source: pipeline.FromEvent},
		{Field: "requestURI.command", Value: "sh", Source: pipeline.FromEvent},
	}
	f1.MITRE = "T1609"
	f2 := pipeline.NewFinding("anonymous_access", anon, "")
	f2.Severity = pipeline.SeverityLow
	f2.Summary = "unauthenticated list of deployments from 198.51.100.77"
	return pipeline.Batch{
		Events:   []*pipeline.Event{exec, secret, anon},
		Findings: []pipeline.Finding{f1, f2},
	}
}

// openStore creates a Store on a fresh database of srv.
func openStore(t *testing.T, srv *chtest.Server, reg prometheus.Registerer) *Store {
	t.Helper()
	st, err := New(testContext(t), Config{DSN: srv.DSN, Database: srv.NewDatabase(t)}, nil, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// testContext bounds a test's server calls far above what they need, so a
// hung server fails the test instead of the package timeout.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checker is a separate clickhouse-go connection for reading back rows.
func checker(t *testing.T, srv *chtest.Server) driver.Conn {
	t.Helper()
	opts, err := ch.ParseDSN(srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func count(t *testing.T, conn driver.Conn, query string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(testContext(t), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestStore(t *testing.T) {
	srv := chtest.Start(t)
	conn := checker(t, srv)

	t.Run("migrations run once and are idempotent", func(t *testing.T) {
		db := srv.NewDatabase(t)
		cfg := Config{DSN: srv.DSN, Database: db}
		// Two instances starting at once, then a third on the migrated
		// database.
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() {
				st, err := New(testContext(t), cfg, nil, nil)
				if err == nil {
					err = st.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent New: %v", err)
		}
		st, err := New(testContext(t), cfg, nil, nil)
		if err != nil {
			t.Fatalf("New on migrated database: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if got := count(t, conn, "SELECT count() FROM "+db+".schema_migrations FINAL"); got != uint64(len(migrations)) {
			t.Errorf("schema_migrations FINAL has %d rows, want %d", got, len(migrations))
		}
		for _, table := range []string{EventsTable, FindingsTable} {
			if got := count(t, conn, "SELECT count() FROM system.tables WHERE database = '"+db+"' AND name = '"+table+"'"); got != 1 {
				t.Errorf("table %s exists %d times, want 1", table, got)
			}
		}
	})

	t.Run("database from DSN path", func(t *testing.T) {
		db := srv.NewDatabase(t)
		st, err := New(testContext(t), Config{DSN: srv.DSN + db}, nil, nil)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer st.Close()
		if st.Database() != db {
			t.Errorf("Database() = %q, want %q from the DSN", st.Database(), db)
		}
		// events, findings, migrations, first-seen terms, and three
		// rollups with a view each.
		want := uint64(4 + 2*len(RollupTables))
		if got := count(t, conn, "SELECT count() FROM system.tables WHERE database = '"+db+"'"); got != want {
			t.Errorf("database %s has %d tables, want %d", db, got, want)
		}
	})

	t.Run("batch lands with the right values", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		st := openStore(t, srv, reg)
		b := testBatch(t)
		if err := st.Write(testContext(t), b); err != nil {
			t.Fatalf("Write: %v", err)
		}
		checkExecEvent(t, conn, st.Database(), b.Events[0])
		checkImpersonatedEvent(t, conn, st.Database())
		checkFinding(t, conn, st.Database(), b.Findings[0])
		if got := counterValue(t, st.metrics.rows.WithLabelValues(EventsTable)); got != 3 {
			t.Errorf("rows_inserted_total{table=events} = %v, want 3", got)
		}
		if got := counterValue(t, st.metrics.rows.WithLabelValues(FindingsTable)); got != 2 {
			t.Errorf("rows_inserted_total{table=findings} = %v, want 2", got)
		}
		if n := seriesCount(t, reg, "auditpipe_clickhouse_insert_duration_seconds"); n != 2 {
			t.Errorf("insert_duration_seconds has %d series, want 2 (one per table)", n)
		}
	})

	t.Run("batch larger than a block lands whole, each row its own", func(t *testing.T) {
		// Write sends a batch in blocks of insertBlockRows reusing the
		// row and block buffers: every row must land once, with its own
		// values rather than a neighbour's.
		st := openStore(t, srv, nil)
		db := st.Database()
		tpl := loadEvent(t, "get_secret_user.json")
		n := 2*insertBlockRows + 7
		var b pipeline.Batch
		for i := range n {
			raw := strings.Replace(string(tpl.Raw), string(tpl.AuditID), fmt.Sprintf("00000000-0000-4000-8000-%012d", i), 1)
			raw = strings.Replace(raw, `"verb":"get"`, fmt.Sprintf(`"verb":"v%d"`, i), 1)
			b.Events = append(b.Events, decodeEvent(t, raw))
		}
		if err := st.Write(testContext(t), b); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if got := count(t, conn, "SELECT count() FROM "+db+".events"); got != uint64(n) {
			t.Errorf("events holds %d rows, want %d", got, n)
		}
		// Each row's verb, audit ID and raw JSON come from the same event.
		q := "SELECT count() FROM " + db + ".events WHERE verb = concat('v', toString(toUInt32(substring(audit_id, 25))))" +
			" AND position(raw, concat('\"verb\":\"', verb, '\"')) > 0 AND position(raw, audit_id) > 0"
		if got := count(t, conn, q); got != uint64(n) {
			t.Errorf("%d of %d rows have their own verb, audit ID and raw", got, n)
		}
	})

	t.Run("redelivered batch collapses", func(t *testing.T) {
		st := openStore(t, srv, nil)
		db := st.Database()
		b := testBatch(t)
		if err := st.Write(testContext(t), b); err != nil {
			t.Fatalf("first Write: %v", err)
		}
		// A crash between the insert and the Kafka commit: detect reads the
		// same records again and writes the same batch.
		again := testBatch(t)
		if err := st.Write(testContext(t), again); err != nil {
			t.Fatalf("second Write: %v", err)
		}
		for _, c := range []struct {
			table string
			want  uint64
		}{{EventsTable, 3}, {FindingsTable, 2}} {
			// Without FINAL both copies are there: the dedup under test is
			// real, not an artefact of the second insert being dropped.
			if got := count(t, conn, "SELECT count() FROM "+db+"."+c.table); got != 2*c.want {
				t.Errorf("%s holds %d rows before merging, want %d (both copies)", c.table, got, 2*c.want)
			}
			if got := count(t, conn, "SELECT count() FROM "+db+"."+c.table+" FINAL"); got != c.want {
				t.Errorf("%s FINAL has %d rows after redelivery, want %d", c.table, got, c.want)
			}
		}
	})

	t.Run("auditID reuse with different content keeps both", func(t *testing.T) {
		st := openStore(t, srv, nil)
		db := st.Database()
		// A client may choose its own Audit-ID header; two different
		// requests then share auditID and stage. Neither may replace the
		// other.
		a := loadEvent(t, "get_secret_user.json")
		other := strings.NewReplacer(
			`"verb":"get"`, `"verb":"delete"`,
			`"code":200`, `"code":403`,
			`41.004987Z`, `41.731002Z`, // same second: only event_hash tells them apart
		).Replace(string(a.Raw))
		b := decodeEvent(t, other)
		if a.AuditID != b.AuditID || a.Stage != b.Stage || a.Hash() == b.Hash() {
			t.Fatalf("test events: want same auditID and stage, different hash; got %s/%s/%x and %s/%s/%x",
				a.AuditID, a.Stage, a.Hash(), b.AuditID, b.Stage, b.Hash())
		}
		if err := st.Write(testContext(t), pipeline.Batch{Events: []*pipeline.Event{a, b}}); err != nil {
			t.Fatal(err)
		}
		if err := st.Write(testContext(t), pipeline.Batch{Events: []*pipeline.Event{a, b}}); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(testContext(t), "SELECT verb, response_code FROM "+db+".events FINAL WHERE audit_id = ? ORDER BY verb", string(a.AuditID))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var verb string
			var code int32
			if err := rows.Scan(&verb, &code); err != nil {
				t.Fatal(err)
			}
			got = append(got, verb+"/"+strconv.Itoa(int(code)))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if want := []string{"delete/403", "get/200"}; !slices.Equal(got, want) {
			t.Errorf("events FINAL for auditID %s = %v, want %v", a.AuditID, got, want)
		}
	})

	t.Run("out-of-range timestamps are stored clamped", func(t *testing.T) {
		st := openStore(t, srv, nil)
		ev := loadEvent(t, "get_secret_user.json")
		future := decodeEvent(t, strings.NewReplacer(
			"2026-11-26T09:15:41.002113Z", "2200-01-01T00:00:00Z",
			"2026-11-26T09:15:41.004987Z", "2200-01-01T00:00:01Z",
		).Replace(string(ev.Raw)))
		if err := st.Write(testContext(t), pipeline.Batch{Events: []*pipeline.Event{future}}); err != nil {
			t.Fatalf("Write: %v", err)
		}
		var tm time.Time
		var us uint64
		if err := conn.QueryRow(testContext(t), "SELECT time, time_us FROM "+st.Database()+".events").Scan(&tm, &us); err != nil {
			t.Fatal(err)
		}
		if !tm.Equal(maxDateTime) || us != 7258118401000000 {
			t.Errorf("time=%v time_us=%d, want %v and the exact 7258118401000000", tm, us, maxDateTime)
		}
	})

	t.Run("empty batch is a no-op", func(t *testing.T) {
		st := openStore(t, srv, nil)
		if err := st.Write(testContext(t), pipeline.Batch{}); err != nil {
			t.Fatalf("Write(empty): %v", err)
		}
	})

	t.Run("incompatible table is a permanent error", func(t *testing.T) {
		db := srv.NewDatabase(t)
		// Someone created events by hand with a different type for
		// event_hash. Migrations leave an existing table alone, and the
		// batch can never be encoded for it.
		ctx := testContext(t)
		for _, q := range []string{
			"CREATE DATABASE " + db,
			"CREATE TABLE " + db + ".events (time DateTime, time_us UInt64, received_time DateTime, cluster String, audit_id String, stage String, event_hash Date, level String, verb String, username String, user_uid String, groups Array(String), impersonated_user String, source_ip String, source_ips Array(String), user_agent String, resource String, subresource String, namespace String, name String, api_group String, api_version String, request_uri String, response_code Int32, decision String, reason String, credential_id String, pod_name String, node_name String, annotations Nested(key String, value String), raw String) ENGINE = MergeTree() ORDER BY time",
		} {
			if _, err := srv.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		st, err := New(ctx, Config{DSN: srv.DSN, Database: db}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		err = st.Write(ctx, testBatch(t))
		if err == nil || !pipeline.IsPermanent(err) {
			t.Fatalf("Write into incompatible table = %v, want a permanent error", err)
		}
		if got := counterValue(t, st.metrics.errors.WithLabelValues(EventsTable, "permanent")); got != 1 {
			t.Errorf("insert_errors_total{events,permanent} = %v, want 1", got)
		}
		// The failed batch must not poison the pooled connection.
		if err := st.Write(ctx, pipeline.Batch{Findings: testBatch(t).Findings}); err != nil {
			t.Errorf("Write of findings after a failed events insert: %v", err)
		}
	})

	t.Run("write after close", func(t *testing.T) {
		st := openStore(t, srv, nil)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		err := st.Write(testContext(t), testBatch(t))
		if !errors.Is(err, ErrClosed) || pipeline.IsPermanent(err) {
			t.Errorf("Write after Close = %v, want retryable ErrClosed", err)
		}
	})
}

// counterValue reads c without prometheus/testutil, whose diff dependency
// is not in go.mod.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func seriesCount(t *testing.T, g prometheus.Gatherer, name string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func checkExecEvent(t *testing.T, conn driver.Conn, db string, ev *pipeline.Event) {
	t.Helper()
	var (
		tm, received                                    time.Time
		timeUS, hash                                    uint64
		cluster, stage, level, verb, user, uid, imp     string
		groups, ips, annKeys, annVals                   []string
		ip, ua, res, sub, ns, name, group, version, uri string
		code                                            int32
		decision, reason, cred, pod, node, raw          string
	)
	err := conn.QueryRow(testContext(t), `SELECT time, time_us, received_time, cluster, stage, event_hash, level, verb,
		username, user_uid, impersonated_user, groups, source_ips, annotations.key, annotations.value,
		source_ip, user_agent, resource, subresource, namespace, name, api_group, api_version, request_uri,
		response_code, decision, reason, credential_id, pod_name, node_name, raw
		FROM `+db+`.events FINAL WHERE audit_id = ?`, string(ev.AuditID)).Scan(
		&tm, &timeUS, &received, &cluster, &stage, &hash, &level, &verb,
		&user, &uid, &imp, &groups, &ips, &annKeys, &annVals,
		&ip, &ua, &res, &sub, &ns, &name, &group, &version, &uri,
		&code, &decision, &reason, &cred, &pod, &node, &raw)
	if err != nil {
		t.Fatalf("reading exec event: %v", err)
	}
	type kv struct {
		field     string
		got, want any
	}
	for _, c := range []kv{
		{"time", tm.Unix(), time.Date(2026, 11, 26, 9, 14, 3, 0, time.UTC).Unix()},
		{"time_us", timeUS, uint64(1795684443538911)},
		{"received_time", received.Unix(), time.Date(2026, 11, 26, 9, 14, 3, 0, time.UTC).Unix()},
		{"cluster", cluster, testCluster},
		{"stage", stage, "ResponseStarted"},
		{"event_hash", hash, ev.Hash()},
		{"level", level, "RequestResponse"},
		{"verb", verb, "create"},
		{"username", user, "system:serviceaccount:ci:deployer"},
		{"user_uid", uid, "0c7b1e52-8f3e-4c55-a6a4-90f1d1f3a2b7"},
		{"impersonated_user", imp, ""},
		{"groups", strings.Join(groups, ","), "system:serviceaccounts,system:serviceaccounts:ci,system:authenticated"},
		{"source_ips", strings.Join(ips, ","), "10.0.3.45,192.168.7.1"},
		{"annotations.key", strings.Join(annKeys, ","), "authorization.k8s.io/decision,authorization.k8s.io/reason,pod-security.kubernetes.io/enforce-policy"},
		{"annotations.value[2]", annVals[2], "restricted:latest"},
		{"source_ip", ip, "10.0.3.45"},
		{"user_agent", ua, "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"},
		{"resource", res, "pods"},
		{"subresource", sub, "exec"},
		{"namespace", ns, "payments"},
		{"name", name, "api-7d9f8b6c5-xk2lp"},
		{"api_group", group, ""},
		{"api_version", version, "v1"},
		{"request_uri", uri, ev.RequestURI},
		{"response_code", code, int32(101)},
		{"decision", decision, "allow"},
		{"reason", reason, `RBAC: allowed by ClusterRoleBinding "ci-deployer" of ClusterRole "cluster-admin" to ServiceAccount "deployer/ci"`},
		{"credential_id", cred, "JTI=4f8a2c1e-7d3b-4e9a-b6c5-1a2b3c4d5e6f"},
		{"pod_name", pod, "runner-5b7c9d-qz8wt"},
		{"node_name", node, "ip-10-0-3-17.eu-west-1.compute.internal"},
		{"raw", raw, string(ev.Raw)},
	} {
		if c.got != c.want {
			t.Errorf("events.%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

func checkImpersonatedEvent(t *testing.T, conn driver.Conn, db string) {
	t.Helper()
	var imp, group string
	var code int32
	err := conn.QueryRow(testContext(t), "SELECT impersonated_user, api_group, response_code FROM "+db+".events FINAL WHERE audit_id = 'b1c2d3e4-5f60-4718-9a0b-c1d2e3f40506'").Scan(&imp, &group, &code)
	if err != nil {
		t.Fatal(err)
	}
	if imp != "system:admin" || code != 200 {
		t.Errorf("impersonated event: impersonated_user=%q response_code=%d, want system:admin/200", imp, code)
	}
	err = conn.QueryRow(testContext(t), "SELECT api_group, response_code FROM "+db+".events FINAL WHERE audit_id = '0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a'").Scan(&group, &code)
	if err != nil {
		t.Fatal(err)
	}
	if group != "apps" || code != 401 {
		t.Errorf("anonymous event: api_group=%q response_code=%d, want apps/401", group, code)
	}
}

func checkFinding(t *testing.T, conn driver.Conn, db string, f pipeline.Finding) {
	t.Helper()
	var (
		id, cluster, detector, severity, auditID, stage, summary, evidence string
		user, cred, ip, ua, verb, uri, res, sub, ns, name, mitre           string
		level                                                              uint8
		tm                                                                 time.Time
		timeUS                                                             uint64
		groups                                                             []string
		code                                                               int32
	)
	err := conn.QueryRow(testContext(t), `SELECT finding_id, time, time_us, cluster, detector, severity, severity_level,
		audit_id, stage, summary, evidence, username, groups, credential_id, source_ip, user_agent, verb,
		request_uri, resource, subresource, namespace, name, response_code, mitre_technique
		FROM `+db+`.findings FINAL WHERE detector = 'exec_into_pod'`).Scan(
		&id, &tm, &timeUS, &cluster, &detector, &severity, &level,
		&auditID, &stage, &summary, &evidence, &user, &groups, &cred, &ip, &ua, &verb,
		&uri, &res, &sub, &ns, &name, &code, &mitre)
	if err != nil {
		t.Fatalf("reading finding: %v", err)
	}
	type kv struct {
		field     string
		got, want any
	}
	for _, c := range []kv{
		{"finding_id", id, f.ID},
		{"time", tm.Unix(), f.Time.Unix()},
		{"time_us", timeUS, uint64(f.Time.UnixMicro())},
		{"cluster", cluster, testCluster},
		{"severity", severity, "high"},
		{"severity_level", level, uint8(pipeline.SeverityHigh)},
		{"audit_id", auditID, "6f0e3f0a-3b0c-4a8e-9f5e-2d7c1c9b4a11"},
		{"stage", stage, "ResponseStarted"},
		{"summary", summary, f.Summary},
		{"evidence", evidence, `[{"field":"objectRef.subresource","value":"exec","source":"event"},{"field":"requestURI.command","value":"sh","source":"event"}]`},
		{"username", user, "system:serviceaccount:ci:deployer"},
		{"groups", strings.Join(groups, ","), "system:serviceaccounts,system:serviceaccounts:ci,system:authenticated"},
		{"credential_id", cred, "JTI=4f8a2c1e-7d3b-4e9a-b6c5-1a2b3c4d5e6f"},
		{"source_ip", ip, "10.0.3.45"},
		{"user_agent", ua, f.UserAgent},
		{"verb", verb, "create"},
		{"request_uri", uri, f.RequestURI},
		{"resource", res, "pods"},
		{"subresource", sub, "exec"},
		{"namespace", ns, "payments"},
		{"name", name, "api-7d9f8b6c5-xk2lp"},
		{"response_code", code, int32(101)},
		{"mitre_technique", mitre, "T1609"},
	} {
		if c.got != c.want {
			t.Errorf("findings.%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

func TestStoreOutage(t *testing.T) {
	srv := chtest.Start(t)
	db := srv.NewDatabase(t)
	// Short timeouts so a silent server costs seconds, not the defaults.
	cfg := Config{DSN: srv.DSN, Database: db, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	st, err := New(testContext(t), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Write(testContext(t), testBatch(t)); err != nil {
		t.Fatalf("Write before outage: %v", err)
	}

	stopBegin := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("server stopped in %v", time.Since(stopBegin))
	// No deadline on ctx: the Store's own WriteTimeout must bound the call.
	begin := time.Now()
	err = st.Write(context.Background(), testBatch(t))
	t.Logf("Write against stopped server returned after %v: %v", time.Since(begin), err)
	if err == nil {
		t.Fatal("Write against a stopped server succeeded")
	}
	if pipeline.IsPermanent(err) {
		t.Fatalf("Write against a stopped server = permanent %v, want retryable", err)
	}
	if got := counterValue(t, st.metrics.errors.WithLabelValues(EventsTable, "retryable")); got != 1 {
		t.Errorf("insert_errors_total{events,retryable} = %v, want 1", got)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The batch the outage rejected, retried once the server is back.
	if err := st.Write(testContext(t), testBatch(t)); err != nil {
		t.Fatalf("Write after restart: %v", err)
	}
	conn := checker(t, srv)
	if got := count(t, conn, "SELECT count() FROM "+db+".events FINAL"); got != 3 {
		t.Errorf("events FINAL after outage = %d, want 3", got)
	}
}

func TestStoreHungServer(t *testing.T) {
	srv := chtest.Start(t)
	cfg := Config{DSN: srv.DSN, Database: srv.NewDatabase(t), DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 5 * time.Second}
	st, err := New(testContext(t), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Write(testContext(t), testBatch(t)); err != nil {
		t.Fatalf("Write before pause: %v", err)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	// Only the Store's timeouts can end this call: the server accepts
	// connections but never answers.
	begin := time.Now()
	err = st.Write(context.Background(), testBatch(t))
	t.Logf("Write against paused server returned after %v: %v", time.Since(begin), err)
	if resumeErr := srv.Resume(); resumeErr != nil {
		t.Fatal(resumeErr)
	}
	if err == nil || pipeline.IsPermanent(err) {
		t.Fatalf("Write against a paused server = %v, want a retryable error", err)
	}
	if err := st.Write(testContext(t), testBatch(t)); err != nil {
		t.Fatalf("Write after resume: %v", err)
	}
}

// TestWriteDeadlineConn checks the bound on Write's block sends: a write
// the peer never reads fails once the timeout passes instead of blocking
// (a net.Pipe write blocks until read), and writes the peer reads pass.
func TestWriteDeadlineConn(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := &writeDeadlineConn{Conn: client, timeout: 50 * time.Millisecond}

	done := make(chan []byte)
	go func() {
		buf := make([]byte, 5)
		_, _ = io.ReadFull(server, buf)
		done <- buf
	}()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatalf("write the peer reads: %v", err)
	}
	if got := <-done; string(got) != "hello" {
		t.Fatalf("peer read %q", got)
	}

	result := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("nobody reads this"))
		result <- err
	}()
	select {
	case err := <-result:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("unread write returned %v, want a timeout", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("unread write still blocked after a minute: no write deadline")
	}
}
