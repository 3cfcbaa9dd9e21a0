package e2e

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/auditsend"
	"github.com/auditpipe/auditpipe/internal/clickhouse"
	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/processor"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

const cluster = "prod-eu1"

// stream is a generated, labelled slice of realistic audit traffic.
type stream struct {
	events []gen.Event
	// keys are the distinct (auditID, stage) pairs: the rows events FINAL
	// must hold.
	keys map[string]bool
	// expect maps auditID to the detectors that must fire on it once.
	expect map[string][]string
	// lookalikes are auditIDs of benign requests built to resemble attacks.
	lookalikes map[string]string
}

func generate(t *testing.T, n int) stream {
	t.Helper()
	g := gen.New(gen.Config{Seed: 42, Cluster: cluster, AttackRatio: 0.05})
	s := stream{keys: map[string]bool{}, expect: map[string][]string{}, lookalikes: map[string]string{}}
	for range n {
		ev := g.Next()
		s.events = append(s.events, ev)
		s.keys[ev.AuditID+"/"+string(ev.Stage)] = true
		if len(ev.Expect) > 0 {
			s.expect[ev.AuditID] = append(s.expect[ev.AuditID], ev.Expect...)
		}
		if strings.HasPrefix(ev.Scenario, gen.LookalikePrefix) {
			s.lookalikes[ev.AuditID] = ev.Scenario
		}
	}
	return s
}

// countingSink counts what reached ClickHouse, so a test can wait for a
// redelivered batch without sleeping.
type countingSink struct {
	pipeline.Sink
	events atomic.Int64
	// writing counts Writes in progress: the store inserts a batch's
	// events before its findings, so rows can be counted while the
	// findings are still on their way.
	writing atomic.Int64
}

func (c *countingSink) Write(ctx context.Context, b pipeline.Batch) error {
	c.writing.Add(1)
	defer c.writing.Add(-1)
	if err := c.Sink.Write(ctx, b); err != nil {
		return err
	}
	c.events.Add(int64(len(b.Events)))
	return nil
}

type harness struct {
	t       *testing.T
	ch      *chtest.Server
	dsn     string
	db      string
	kafka   *kafkatest.Cluster
	ingest  *httptest.Server
	conn    driver.Conn
	sinkCnt *countingSink
}

// newHarness starts ClickHouse, Kafka and an ingest handler in front of
// them for one test.
func newHarness(t *testing.T) *harness { return startHarness(t, false) }

// newOutageHarness is newHarness with a Kafka the test can stop and
// restart. Ingest's producer gives up on it within seconds and its answers
// ask for a retry after one second, so that the senders' retries, not
// ingest's, carry the outage.
func newOutageHarness(t *testing.T) *harness { return startHarness(t, true) }

func startHarness(t *testing.T, outages bool) *harness {
	t.Helper()
	h := &harness{t: t}
	h.ch = chtest.Start(t)
	h.db = h.ch.NewDatabase(t)
	h.dsn = h.ch.DSN + h.db
	// Ingest's own deduplication window is off so that a resent batch
	// reaches Kafka again and the store's deduplication is what is tested.
	pcfg, hcfg := kafka.ProducerConfig{}, ingest.Config{DisableDedup: true}
	if outages {
		h.kafka = kafkatest.Start(t, "audit-events", 4, kafkatest.WithOutages())
		pcfg.WriteTimeout, pcfg.MaxAttempts = 2*time.Second, 2
		hcfg.RetryAfter = time.Second
	} else {
		h.kafka = kafkatest.Start(t, "audit-events", 4)
	}
	pcfg.Brokers, pcfg.Topic = h.kafka.Brokers, h.kafka.Topic

	prod, err := kafka.NewProducer(pcfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	handler, err := ingest.New(hcfg, prod, red, prod, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.ingest = httptest.NewServer(handler)
	t.Cleanup(h.ingest.Close)

	opts, err := chgo.ParseDSN(h.ch.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if h.conn, err = chgo.Open(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.conn.Close() })
	return h
}

// send delivers events through kube-apiserver's webhook client.
func (h *harness) send(events []gen.Event) {
	h.t.Helper()
	kubeconfig := filepath.Join(h.t.TempDir(), "webhook.kubeconfig")
	if err := auditsend.WriteKubeconfig(kubeconfig, h.ingest.URL+"/audit/"+cluster, auditsend.KubeconfigOptions{}); err != nil {
		h.t.Fatal(err)
	}
	sender, err := auditsend.New(auditsend.Config{Kubeconfig: kubeconfig, MaxBatchWait: 20 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, ge := range events {
		var ev auditv1.Event
		if err := auditjson.DecodeEvent(ge.JSON, &ev); err != nil {
			h.t.Fatal(err)
		}
		if err := sender.Send(&ev); err != nil {
			h.t.Fatal(err)
		}
	}
	sender.Shutdown()
	if sent, failed, dropped := sender.Stats(); sent != int64(len(events)) || failed+dropped != 0 {
		h.t.Fatalf("apiserver sender: sent %d, failed %d, dropped %d of %d", sent, failed, dropped, len(events))
	}
}

// detect runs one detect instance until the returned stop is called.
func (h *harness) detect(src pipeline.Source) (stop func() error) {
	h.t.Helper()
	store, err := clickhouse.New(context.Background(), clickhouse.Config{DSN: h.dsn}, nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		h.t.Fatal(err)
	}
	if h.sinkCnt == nil {
		h.sinkCnt = &countingSink{}
	}
	h.sinkCnt.Sink = store
	proc, err := processor.New(processor.Config{BatchRecords: 500, BatchTimeout: 100 * time.Millisecond}, src, set, h.sinkCnt, nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = proc.Run(ctx) })
	return func() error {
		cancel()
		wg.Wait()
		return errors.Join(runErr, store.Close())
	}
}

func (h *harness) consumer() *kafka.Consumer {
	h.t.Helper()
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: h.kafka.Brokers, Topic: h.kafka.Topic, GroupID: "auditpipe-detect"}, nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// startDetect runs one detect instance on a new consumer until the test
// ends.
func (h *harness) startDetect() {
	h.t.Helper()
	cons := h.consumer()
	stop := h.detect(cons)
	h.t.Cleanup(func() {
		if err := stop(); err != nil {
			h.t.Error(err)
		}
		cons.Close()
	})
}

// waitEventsFinal waits until events FINAL holds want rows and the Write
// that stored the last of them has returned (its findings are in too), and
// fails the test if it holds more.
func (h *harness) waitEventsFinal(want uint64) {
	h.t.Helper()
	waitFor(h.t, "every event stored", func() bool {
		return h.count("SELECT count() FROM {db}.events FINAL") >= want && h.sinkCnt.writing.Load() == 0
	})
	if got := h.count("SELECT count() FROM {db}.events FINAL"); got != want {
		h.t.Fatalf("events FINAL = %d, want %d distinct (auditID, stage)", got, want)
	}
}

// checkAnonymousOnce checks that every anonymous-access attack in s raised
// exactly one finding, leaving out the auditIDs keep refuses (nil keeps
// all), and that there was at least one.
func (h *harness) checkAnonymousOnce(s stream, keep func(auditID string) bool) {
	h.t.Helper()
	anon := 0
	for id, dets := range s.expect {
		for _, d := range dets {
			if d != "anonymous-access" || (keep != nil && !keep(id)) {
				continue
			}
			anon++
			if n := h.count("SELECT count() FROM {db}.findings FINAL WHERE detector = 'anonymous-access' AND audit_id = ?", id); n != 1 {
				h.t.Errorf("anonymous-access findings for attack %s = %d, want 1", id, n)
			}
		}
	}
	if anon == 0 {
		h.t.Fatal("the stream held no anonymous-access attack")
	}
}

func (h *harness) count(query string, args ...any) uint64 {
	h.t.Helper()
	var n uint64
	q := strings.ReplaceAll(query, "{db}", "`"+h.db+"`")
	if err := h.conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitFor polls cond until it holds; the deadline only bounds a broken run.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEndToEnd(t *testing.T) {
	h := newHarness(t)
	s := generate(t, 3000)
	if len(s.expect) == 0 || len(s.lookalikes) == 0 {
		t.Fatalf("generator produced %d attacks and %d look-alikes; the test needs both", len(s.expect), len(s.lookalikes))
	}
	h.startDetect()

	h.send(s.events)
	want := uint64(len(s.keys))
	// Wait for the sink's Write to return, not for the rows: events and
	// findings are two inserts, and the findings land second.
	waitFor(t, "every event stored", func() bool { return h.sinkCnt.events.Load() >= int64(len(s.events)) })
	if got := h.count("SELECT count() FROM {db}.events FINAL"); got != want {
		t.Fatalf("events FINAL = %d, want %d distinct (auditID, stage)", got, want)
	}

	// Every anonymous-access attack is reported exactly once, and nothing
	// is reported about the look-alike health probes.
	h.checkAnonymousOnce(s, nil)
	for id, scenario := range s.lookalikes {
		if n := h.count("SELECT count() FROM {db}.findings FINAL WHERE detector = 'anonymous-access' AND audit_id = ?", id); n != 0 {
			t.Errorf("look-alike %s (%s) raised %d anonymous-access findings", id, scenario, n)
		}
	}
	findings := h.count("SELECT count() FROM {db}.findings FINAL")
	h.assertNoTokens(s)

	// The apiserver resends whole batches on any error: the same events
	// again change no count under FINAL.
	written := h.sinkCnt.events.Load()
	h.send(s.events)
	waitFor(t, "the resent events to be stored", func() bool { return h.sinkCnt.events.Load() >= written+int64(len(s.events)) })
	if got := h.count("SELECT count() FROM {db}.events FINAL"); got != want {
		t.Fatalf("after resend: events FINAL = %d, want %d", got, want)
	}
	if got := h.count("SELECT count() FROM {db}.findings FINAL"); got != findings {
		t.Fatalf("after resend: findings FINAL = %d, want %d", got, findings)
	}
}

// crashBeforeCommit stands for a detect process killed after ClickHouse
// accepted a batch and before the Kafka commit: the commit never happens.
type crashBeforeCommit struct {
	pipeline.Source
	crash   context.CancelFunc
	crashed atomic.Bool
}

func (c *crashBeforeCommit) Commit(context.Context, []pipeline.Record) error {
	c.crashed.Store(true)
	c.crash()
	return errors.New("process killed before commit")
}

func TestRedeliveryAfterCrashBetweenInsertAndCommit(t *testing.T) {
	h := newHarness(t)
	s := generate(t, 800)
	h.send(s.events)

	// First detect instance: stores everything it fetches, then "dies"
	// before committing anything.
	cons1 := h.consumer()
	ctx, cancel := context.WithCancel(context.Background())
	crashing := &crashBeforeCommit{Source: cons1, crash: cancel}
	store, err := clickhouse.New(ctx, clickhouse.Config{DSN: h.dsn}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := detectors.New(detectors.DefaultConfig())
	first := &countingSink{Sink: store}
	proc, err := processor.New(processor.Config{BatchRecords: 5000, BatchTimeout: 2 * time.Second}, crashing, set, first, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Run(ctx); err != nil {
		t.Fatalf("first run: %v", err)
	}
	cons1.Close()
	store.Close()
	if !crashing.crashed.Load() || first.events.Load() == 0 {
		t.Fatalf("the first instance stored %d events and crashed=%v; the test needs both", first.events.Load(), crashing.crashed.Load())
	}
	stored := h.count("SELECT count() FROM {db}.events FINAL")
	findings := h.count("SELECT count() FROM {db}.findings FINAL")

	// The restarted instance gets the uncommitted batch again and stores it
	// again; FINAL shows each row once.
	cons2 := h.consumer()
	defer cons2.Close()
	stop := h.detect(cons2)
	want := uint64(len(s.keys))
	waitFor(t, "redelivered events", func() bool { return h.sinkCnt.events.Load() >= int64(len(s.events)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := h.count("SELECT count() FROM {db}.events FINAL"); got != want {
		t.Fatalf("events FINAL = %d, want %d", got, want)
	}
	if stored > want {
		t.Fatalf("stored %d rows before the crash, more than the %d distinct", stored, want)
	}
	// Each finding id once, however often its event was stored, and none
	// of those found before the crash lost.
	distinct := h.count("SELECT uniqExact(finding_id) FROM {db}.findings")
	if got := h.count("SELECT count() FROM {db}.findings FINAL"); got != distinct || got < findings {
		t.Fatalf("findings FINAL = %d, distinct ids %d, before the crash %d", got, distinct, findings)
	}
}

// assertNoTokens checks that the JWTs in the sent stream never reached
// ClickHouse: ingest redacts them before anything is produced.
func (h *harness) assertNoTokens(s stream) {
	h.t.Helper()
	withTokens := 0
	for _, ev := range s.events {
		if credential.ContainsJWT(ev.JSON) {
			withTokens++
		}
	}
	if withTokens == 0 {
		h.t.Fatal("the stream carried no JWT; the redaction check would prove nothing")
	}
	for _, q := range []string{
		"SELECT raw FROM {db}.events",
		"SELECT concat(summary, evidence) FROM {db}.findings",
	} {
		rows, err := h.conn.Query(context.Background(), strings.ReplaceAll(q, "{db}", "`"+h.db+"`"))
		if err != nil {
			h.t.Fatal(err)
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				h.t.Fatal(err)
			}
			if credential.ContainsJWT([]byte(v)) {
				h.t.Fatalf("a JWT reached ClickHouse (%s): %.200s", q, v)
			}
		}
		rows.Close()
	}
}
