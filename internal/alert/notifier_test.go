package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/alert/slacktest"
	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/prometheus/client_golang/prometheus"
)

// slackEnv names the variable the tests' Slack receivers read their URL
// from, as an operator's deployment would.
const slackEnv = "AUDITPIPE_TEST_SLACK_WEBHOOK_URL"

// syncBuffer is a log sink safe for the notifier's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	n    *Notifier
	reg  *prometheus.Registry
	logs *syncBuffer
}

// start builds and starts a Notifier from YAML; Stop runs at cleanup if
// the test did not call it.
func start(t testing.TB, yaml string, edit func(*Config)) *harness {
	t.Helper()
	cfg, err := ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&cfg)
	}
	h := &harness{reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	h.n, err = New(cfg, slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	h.n.Start()
	t.Cleanup(func() { h.n.Stop(context.Background()) })
	return h
}

func (h *harness) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.n.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// counter reads one receiver's counter from the registry.
func (h *harness) counter(t testing.TB, name, receiver string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "receiver" && l.GetValue() == receiver {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return 0
}

// slackConfig routes everything to one Slack receiver. group_wait is an
// hour so that only Stop flushes, which makes message counts exact.
func slackConfig(extra string) string {
	return `
retry:
  min_backoff: 5ms
  max_backoff: 20ms
route:
  receiver: slack
  group_wait: 1h
` + extra + `
receivers:
  - name: slack
    slack:
      webhook_url_env: ` + slackEnv + `
`
}

// repeat returns n copies of f that differ only in ids and audit ids,
// like one client hammering the same request.
func repeat(f pipeline.Finding, n int) []pipeline.Finding {
	out := make([]pipeline.Finding, n)
	for i := range out {
		out[i] = f
		out[i].ID = fmt.Sprintf("%s-%d", f.ID, i)
		out[i].AuditID = fmt.Sprintf("%s-%d", f.AuditID, i)
		out[i].Time = f.Time.Add(time.Duration(i) * time.Millisecond)
	}
	return out
}

func TestBurstBecomesOneMessage(t *testing.T) {
	fake := slacktest.New(t)
	t.Setenv(slackEnv, fake.URL)
	h := start(t, slackConfig(""), nil)
	for _, f := range repeat(fixture("anonymous-access"), 1000) {
		h.n.Notify([]pipeline.Finding{f})
	}
	h.stop(t)
	msgs := fake.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1 (rejected %v)", len(msgs), fake.Rejected())
	}
	if !bytes.Contains(msgs[0].Raw, []byte("×1000")) {
		t.Errorf("message lacks ×1000:\n%s", msgs[0].Raw)
	}
	if got := h.counter(t, MetricSent, "slack"); got != 1 {
		t.Errorf("%s = %v, want 1", MetricSent, got)
	}
}

func TestGroupWaitDigestAndGroupBy(t *testing.T) {
	fake := slacktest.New(t)
	t.Setenv(slackEnv, fake.URL)
	h := start(t, slackConfig("  group_by: [cluster]"), func(c *Config) { *c.Route.GroupWait = Duration(20 * time.Millisecond) })
	var batch []pipeline.Finding
	for i := range 12 {
		f := fixture("token-replay")
		f.ID, f.Namespace = fmt.Sprintf("id-%d", i), fmt.Sprintf("tenant-%d", i)
		batch = append(batch, f)
	}
	other := fixture("unsecured-image-pull") // cluster staging
	batch = append(batch, other)
	h.n.Notify(batch)
	// The timer, not Stop, flushes these: the wait is only a bound.
	msgs := fake.WaitMessages(t, 2, 30*time.Second)
	h.stop(t)
	var prod, staging []byte
	for _, m := range msgs {
		if bytes.Contains(m.Raw, []byte("cluster=prod-eu1")) {
			prod = m.Raw
		} else {
			staging = m.Raw
		}
	}
	if !bytes.Contains(prod, []byte("12 auditpipe findings (cluster=prod-eu1)")) {
		t.Errorf("prod digest:\n%s", prod)
	}
	if !bytes.Contains(staging, []byte("unsecured-image-pull in staging")) {
		t.Errorf("staging message:\n%s", staging)
	}
	if len(fake.Messages()) != 2 {
		t.Errorf("%d messages, want 2", len(fake.Messages()))
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	fake := slacktest.New(t)
	t.Setenv(slackEnv, fake.URL)
	fake.FailNext(1, http.StatusTooManyRequests, "2")
	h := start(t, slackConfig(""), nil)
	h.n.Notify([]pipeline.Finding{fixture("legacy-token")})
	begin := time.Now()
	h.stop(t)
	// A lower bound cannot flake: the retry may not come before 2s.
	if d := time.Since(begin); d < 2*time.Second {
		t.Errorf("delivered after %s, before Retry-After: 2", d)
	}
	if n := len(fake.Messages()); n != 1 || fake.Requests() != 2 {
		t.Errorf("%d messages in %d requests, want 1 in 2", n, fake.Requests())
	}
	if got := h.counter(t, MetricRetried, "slack"); got != 1 {
		t.Errorf("%s = %v, want 1", MetricRetried, got)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f := func(v string, want time.Duration) {
		t.Helper()
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
	f("2", 2*time.Second)
	f(" 120 ", 2*time.Minute)
	f("Fri, 27 Nov 2026 10:00:30 GMT", 30*time.Second)
	f("Fri, 27 Nov 2026 09:00:00 GMT", 0)
	f("-5", 0)
	f("soon", 0)
	f("", 0)
	f("999999", maxRetryAfter)
}

func TestServerErrorsRetriedClientErrorsNot(t *testing.T) {
	t.Run("5xx", func(t *testing.T) {
		fake := slacktest.New(t)
		t.Setenv(slackEnv, fake.URL)
		fake.FailNext(2, http.StatusInternalServerError, "")
		h := start(t, slackConfig(""), nil)
		h.n.Notify([]pipeline.Finding{fixture("stale-token")})
		h.stop(t)
		if len(fake.Messages()) != 1 || h.counter(t, MetricRetried, "slack") != 2 {
			t.Errorf("messages %d, retried %v; want 1 and 2", len(fake.Messages()), h.counter(t, MetricRetried, "slack"))
		}
	})
	t.Run("4xx", func(t *testing.T) {
		fake := slacktest.New(t)
		t.Setenv(slackEnv, fake.URL)
		fake.FailNext(1, http.StatusForbidden, "")
		h := start(t, slackConfig(""), nil)
		h.n.Notify([]pipeline.Finding{fixture("stale-token")})
		h.stop(t)
		if fake.Requests() != 1 || h.counter(t, MetricFailed, "slack") != 1 || h.counter(t, MetricRetried, "slack") != 0 {
			t.Errorf("requests %d, failed %v, retried %v; want 1, 1, 0", fake.Requests(), h.counter(t, MetricFailed, "slack"), h.counter(t, MetricRetried, "slack"))
		}
	})
}

// TestReceiverDownLosesNothing keeps Slack failing for a while with
// several messages queued: every one arrives once it recovers.
func TestReceiverDownLosesNothing(t *testing.T) {
	fake := slacktest.New(t)
	t.Setenv(slackEnv, fake.URL)
	fake.FailNext(8, http.StatusServiceUnavailable, "")
	h := start(t, slackConfig("  group_by: [detector]"), nil)
	h.n.Notify(fixtures())
	h.stop(t)
	if got := len(fake.Messages()); got != len(fixtures()) {
		t.Errorf("%d messages, want %d (one per detector)", got, len(fixtures()))
	}
	if got := fake.Requests(); got != len(fixtures())+8 {
		t.Errorf("%d requests, want %d", got, len(fixtures())+8)
	}
	if got := h.counter(t, MetricFailed, "slack") + h.counter(t, MetricDropped, "slack"); got != 0 {
		t.Errorf("failed+dropped = %v, want 0", got)
	}
}

// TestNotifyNeverBlocks points at a receiver that never answers, with tiny
// queues: Notify must keep returning, and count what it drops.
func TestNotifyNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hang.Close()
	defer close(release)
	t.Setenv(slackEnv, hang.URL)
	h := start(t, slackConfig("  group_by: [namespace]"), func(c *Config) {
		c.QueueSize, c.IntakeSize = 2, 4
		*c.Route.GroupWait = 0
	})
	f := fixture("broad-selector")
	for i := range 20000 {
		f.ID, f.Namespace = fmt.Sprintf("id-%d", i), fmt.Sprintf("ns-%d", i)
		h.n.Notify([]pipeline.Finding{f})
	}
	// Reaching this line is the assertion; the drops prove the queues
	// were full while Notify kept returning.
	if d := h.counter(t, MetricDropped, intakeReceiver) + h.counter(t, MetricDropped, "slack"); d == 0 {
		t.Errorf("nothing dropped with a hung receiver and tiny queues")
	}
	release <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	h.n.Stop(ctx) // gives up on the hung receiver at the deadline
}

// BenchmarkNotify compares Notify against a healthy, a dead (connection
// refused) and a hung receiver: the three must cost about the same, as
// Notify only queues. The figure includes the dispatcher competing for the
// CPU, so it is an upper bound on Notify's own cost.
func BenchmarkNotify(b *testing.B) {
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused from now on
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer hung.Close()
	defer close(release)
	for _, tc := range []struct{ name, url string }{{"healthy", ok.URL}, {"dead", dead.URL}, {"hung", hung.URL}} {
		b.Run(tc.name, func(b *testing.B) {
			b.Setenv(slackEnv, tc.url+"/services/x")
			h := start(b, slackConfig(""), func(c *Config) { *c.Route.GroupWait = 0 })
			batch := []pipeline.Finding{fixture("anonymous-access")}
			b.ReportAllocs()
			for b.Loop() {
				h.n.Notify(batch)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			h.n.Stop(ctx)
		})
	}
}

func TestDedupAcrossRestart(t *testing.T) {
	fake := slacktest.New(t)
	t.Setenv(slackEnv, fake.URL)
	state := filepath.Join(t.TempDir(), "alert-state.jsonl")
	withState := func(c *Config) { c.StateFile = state }
	anon := fixture("anonymous-access")

	h := start(t, slackConfig(""), withState)
	h.n.Notify([]pipeline.Finding{anon})
	h.stop(t)
	if len(fake.Messages()) != 1 {
		t.Fatalf("first run sent %d messages, want 1", len(fake.Messages()))
	}

	// detect restarts and the batch is redelivered (same finding id), plus
	// a repeat within the cooldown (same key, new id): nothing is sent.
	h = start(t, slackConfig(""), withState)
	again := anon
	again.ID, again.AuditID = "a-new-finding-id", "a-new-audit-id"
	h.n.Notify([]pipeline.Finding{anon, again})
	h.stop(t)
	if len(fake.Messages()) != 1 {
		t.Fatalf("after restart %d messages, want still 1", len(fake.Messages()))
	}

	// A different principal is a different key and is sent.
	h = start(t, slackConfig(""), withState)
	other := anon
	other.ID, other.Username, other.SourceIP = "other-id", "system:serviceaccount:default:default", "10.0.0.9"
	h.n.Notify([]pipeline.Finding{anon, other})
	h.stop(t)
	if len(fake.Messages()) != 2 {
		t.Fatalf("%d messages, want 2", len(fake.Messages()))
	}

	// With the cooldown off, only the finding ids stop a redelivered
	// finding; a new id is sent.
	noCooldown := func(c *Config) { c.StateFile = state; *c.Route.RepeatInterval = 0 }
	h = start(t, slackConfig(""), noCooldown)
	third := anon
	third.ID = "third-id"
	h.n.Notify([]pipeline.Finding{anon, again})
	h.stop(t)
	if n := len(fake.Messages()); n != 3 {
		t.Fatalf("%d messages, want 3: again-id was never sent, anon was", n)
	}
	h = start(t, slackConfig(""), noCooldown)
	h.n.Notify([]pipeline.Finding{anon, again, third})
	h.stop(t)
	if n := len(fake.Messages()); n != 4 || !bytes.Contains(fake.Messages()[3].Raw, []byte("anonymous-access in prod-eu1")) || bytes.Contains(fake.Messages()[3].Raw, []byte("×")) {
		t.Fatalf("%d messages, want 4, the last for third-id alone", n)
	}

	// Without the state file the same finding would be sent again: the
	// file, not luck, did the deduplication.
	h = start(t, slackConfig(""), nil)
	h.n.Notify([]pipeline.Finding{anon})
	h.stop(t)
	if len(fake.Messages()) != 5 {
		t.Fatalf("without state %d messages, want 5", len(fake.Messages()))
	}
}

func TestStateFileCompacts(t *testing.T) {
	state := filepath.Join(t.TempDir(), "s.jsonl")
	now := time.Now()
	l, err := openSendLog(state, 100, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		g := &Group{Receiver: "slack", Alerts: []Alert{{Key: fmt.Sprintf("k%d", i%10), IDs: []string{fmt.Sprintf("id-%d", i)}}}}
		if err := l.record(g, now.Add(-2*time.Hour+time.Duration(i)*10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.record(&Group{Receiver: "slack", Alerts: []Alert{{Key: "old"}}}, now.Add(-90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(state, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"r":"slack","k":"torn`) // a crash mid-append
	f.Close()
	l.close()

	l, err = openSendLog(state, 100, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if !l.sentID("slack", "id-499") || l.sentID("slack", "id-0") || l.sentID("webhook", "id-499") {
		t.Errorf("ids: want the newest 100 per log, per receiver")
	}
	// Keys last sent more than an hour before now are forgotten.
	if l.lastSent("slack", "k9").IsZero() || !l.lastSent("slack", "old").IsZero() {
		t.Errorf("want k9 (sent 37m ago) kept and old (90m ago) forgotten")
	}
	data, _ := os.ReadFile(state)
	if lines := bytes.Count(data, []byte("\n")); lines > 20 {
		t.Errorf("compacted file has %d lines", lines)
	}
}

// TestSecretsNeverLeak drives every error path that could print a URL or
// a token and checks logs and payloads.
func TestSecretsNeverLeak(t *testing.T) {
	fake := slacktest.New(t)
	fake.FailNext(1, http.StatusInternalServerError, "")
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "slack-url")
	os.WriteFile(urlFile, []byte(fake.URL+"\n"), 0o600)
	deadSecret := "xoxb-dead-receiver-secret"
	yaml := `
retry: {min_backoff: 20ms, max_backoff: 50ms, max_elapsed: 1s}
route:
  receiver: slack
  group_wait: 1h
  routes:
    - receiver: slack
      continue: true
    - receiver: dead
receivers:
  - name: slack
    slack:
      webhook_url_file: ` + urlFile + `
  - name: dead
    slack:
      webhook_url_env: AUDITPIPE_TEST_DEAD_URL
`
	t.Setenv("AUDITPIPE_TEST_DEAD_URL", "http://127.0.0.1:1/services/T/B/"+deadSecret)
	h := start(t, yaml, nil)
	jwt := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJzeXN0ZW06YWRtaW4ifQ."
	f := fixture("unsigned-jwt")
	f.Summary += " token " + jwt
	f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "requestObject.spec.token", Value: jwt, Source: "request"})
	f.RequestURI = "/apis/authentication.k8s.io/v1/tokenreviews?access_token=hunter2hunter2"
	h.n.Notify([]pipeline.Finding{f})
	h.stop(t)
	msgs := fake.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "giving up") || !strings.Contains(logs, "will retry") {
		t.Fatalf("the error paths did not run; logs:\n%s", logs)
	}
	for what, s := range map[string]string{"logs": logs, "payload": string(msgs[0].Raw)} {
		for _, secret := range []string{"xoxb-fake-webhook-secret", deadSecret, "hunter2hunter2", jwt[:30]} {
			if strings.Contains(s, secret) {
				t.Errorf("%s contain secret %q:\n%s", what, secret, s)
			}
		}
		if credential.ContainsJWT([]byte(s)) {
			t.Errorf("%s contain a JWT", what)
		}
	}
}

func TestWebhookAndStdout(t *testing.T) {
	var mu sync.Mutex
	var got []WebhookPayload
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p WebhookPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}))
	defer hook.Close()
	var out syncBuffer
	yaml := `
grafana_url: https://grafana.example.com/
route:
  receiver: console
  group_wait: 1h
  routes:
    - receiver: hook
      matchers: ['detector="token-replay"']
receivers:
  - name: console
    stdout: {}
  - name: hook
    webhook:
      url: ` + hook.URL + `
`
	h := start(t, yaml, func(c *Config) { c.Stdout = &out })
	h.n.Notify(append(repeat(fixture("token-replay"), 3), fixture("broad-selector")))
	h.stop(t)
	if len(got) != 1 || len(got[0].Alerts) != 1 || got[0].Alerts[0].Count != 3 || len(got[0].Alerts[0].FindingIDs) != 3 {
		t.Fatalf("webhook payloads = %+v", got)
	}
	a := got[0].Alerts[0]
	if a.GrafanaURL != "https://grafana.example.com/d/auditpipe-explorer?var-audit_id="+a.Finding.AuditID+"&var-cluster=prod-eu1" {
		t.Errorf("grafana link = %s", a.GrafanaURL)
	}
	if strings.Contains(a.Finding.Evidence[3].Value, "eyJ") {
		t.Errorf("webhook evidence not scrubbed: %s", a.Finding.Evidence[3].Value)
	}
	if s := out.String(); !strings.Contains(s, "detector=broad-selector") || strings.Contains(s, "token-replay") {
		t.Errorf("stdout = %q", s)
	}
}

func TestDefaultPrintsToStdout(t *testing.T) {
	var out syncBuffer
	cfg := DefaultConfig()
	cfg.Stdout = &out
	*cfg.Route.GroupWait = 0
	n, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	n.Notify([]pipeline.Finding{fixture("apparmor-unconfined")})
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if !strings.Contains(out.String(), "ALERT severity=medium detector=apparmor-unconfined") {
		t.Errorf("stdout = %q", out.String())
	}
	n.Notify(fixtures()) // after Stop: dropped, not blocked, no panic
}

var _ io.Writer = (*syncBuffer)(nil)

// TestTwoNotifiersShareARegistry: a second Notifier on the registry of a
// first adds to the same series instead of panicking on a duplicate
// registration.
func TestTwoNotifiersShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		var out syncBuffer
		cfg := DefaultConfig()
		cfg.Stdout = &out
		*cfg.Route.GroupWait = 0
		n, err := New(cfg, nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		n.Start()
		n.Notify([]pipeline.Finding{fixture("apparmor-unconfined")})
		if err := n.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sent float64
	for _, mf := range mfs {
		if mf.GetName() == MetricSent {
			for _, m := range mf.GetMetric() {
				sent += m.GetCounter().GetValue()
			}
		}
	}
	if sent != 2 {
		t.Errorf("%s = %v over both notifiers, want 2", MetricSent, sent)
	}
}
