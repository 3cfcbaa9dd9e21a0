package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// metricValue reads a counter or gauge from reg; labels are name, value
// pairs the series must carry.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func newServerWith(t *testing.T, cfg Config, prod pipeline.Producer) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := New(cfg, prod, nil, nil, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, reg
}

// TestIngestHugeDeclaredBodyRefusedUnread sends the headers of a 100 MB
// request and 1 KiB of its body on a raw connection: the 413 arrives
// without ingest waiting for (or reading) the rest.
func TestIngestHugeDeclaredBodyRefusedUnread(t *testing.T) {
	srv, reg := newServerWith(t, Config{MaxBodyBytes: 1 << 20}, &memProducer{})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	fmt.Fprintf(conn, "POST /audit/c1 HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 100<<20)
	conn.Write([]byte(`{"kind":"EventList","items":[` + strings.Repeat(" ", 1<<10)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Response
	_ = json.NewDecoder(resp.Body).Decode(&r)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(r.Error, "1048576-byte limit") {
		t.Fatalf("got %d %+v", resp.StatusCode, r)
	}
	if got := metricValue(t, reg, MetricRejected, "reason", ReasonBodyTooLarge); got != 1 {
		t.Fatalf("%s{reason=body_too_large} = %v", MetricRejected, got)
	}
}

// countingReader produces n bytes of JSON-ish filler lazily and counts what
// the HTTP client took from it.
type countingReader struct {
	mu   sync.Mutex
	left int
	read int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.left)
	for i := range p[:n] {
		p[i] = ' '
	}
	c.left -= n
	c.read += n
	return n, nil
}

// TestIngestHugeChunkedBodyStopsAtLimit streams 100 MB without a declared
// length: ingest reads up to the limit, answers 413, and the client is cut
// off long before it has sent it all.
func TestIngestHugeChunkedBodyStopsAtLimit(t *testing.T) {
	srv, _ := newServerWith(t, Config{MaxBodyBytes: 1 << 20}, &memProducer{})
	body := &countingReader{left: 100 << 20}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/audit/c1", io.MultiReader(strings.NewReader(`{"kind":"EventList","items":[`), body))
	req.ContentLength = -1
	resp, err := srv.Client().Do(req)
	if err == nil {
		defer resp.Body.Close()
		var r Response
		_ = json.NewDecoder(resp.Body).Decode(&r)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(r.Error, "max-body-bytes") {
			t.Fatalf("got %d %+v", resp.StatusCode, r)
		}
	}
	// Either way (a 413, or the connection closed under the writer),
	// most of the 100 MB was never taken.
	body.mu.Lock()
	defer body.mu.Unlock()
	if body.read > 50<<20 {
		t.Fatalf("client sent %d bytes before being stopped", body.read)
	}
}

// TestIngestTruncatesOversizedEvent posts a 5 MiB RequestResponse event:
// it is accepted without its bodies, marked as the apiserver's truncate
// backend marks it, and counted.
func TestIngestTruncatesOversizedEvent(t *testing.T) {
	prod := &memProducer{}
	srv, reg := newServerWith(t, Config{}, prod)
	big := strings.Repeat("x", 5<<20)
	ev := `{"level":"RequestResponse","auditID":"5f0c2a8e-1d3b-4c7a-9e6f-0a1b2c3d4e5f","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/configmaps/bundle","verb":"update","user":{"username":"alice@example.com","groups":["system:authenticated"]},"sourceIPs":["10.0.3.17"],"objectRef":{"resource":"configmaps","namespace":"payments","name":"bundle","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"ConfigMap","data":{"bundle":"` + big + `"}},"responseObject":{"kind":"ConfigMap","data":{"bundle":"` + big + `"}},"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.325981Z","annotations":{"authorization.k8s.io/decision":"allow"}}`
	code, resp, _ := post(t, srv.URL+"/audit/c1", eventList(ev, item(2, "bob", "")))
	if code != http.StatusOK || resp.Accepted != 2 {
		t.Fatalf("got %d %+v", code, resp)
	}
	msgs := prod.snapshot()
	if len(msgs) != 2 || len(msgs[0].Value) > 4096 {
		t.Fatalf("produced %d messages, first of %d bytes", len(msgs), len(msgs[0].Value))
	}
	var got pipeline.Event
	if err := auditjson.Decode(&got, "c1", msgs[0].Value); err != nil {
		t.Fatal(err)
	}
	if got.RequestObject != nil || got.ResponseObject != nil || got.Annotations[AnnotationTruncated] != "true" ||
		got.Annotations["authorization.k8s.io/decision"] != "allow" || got.User.Username != "alice@example.com" || got.Code() != 200 {
		t.Fatalf("truncated event: %s", msgs[0].Value)
	}
	if string(msgs[0].Key) != "c1/alice@example.com" {
		t.Fatalf("key %q", msgs[0].Key)
	}
	if n := metricValue(t, reg, MetricTruncated); n != 1 {
		t.Fatalf("%s = %v, want 1", MetricTruncated, n)
	}
}

func TestTruncateEvent(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		out, err := truncateEvent([]byte(in))
		if err != nil {
			if want != "error" {
				t.Fatalf("truncateEvent(%s): %v", in, err)
			}
			return
		}
		if string(out) != want {
			t.Fatalf("truncateEvent(%s)\n got %s\nwant %s", in, out, want)
		}
	}
	f(`{"auditID":"a","requestObject":{"x":1},"responseObject":{"y":2}}`, `{"annotations":{"audit.k8s.io/truncated":"true"},"auditID":"a"}`)
	f(`{"auditID":"a","requestObject":{},"annotations":{"k":"<v&>"}}`, `{"annotations":{"audit.k8s.io/truncated":"true","k":"<v&>"},"auditID":"a"}`)
	// encoding/json matches keys case-insensitively: no spelling survives.
	f(`{"RequestObject":{"x":1},"RESPONSEOBJECT":[],"annotations":null}`, `{"annotations":{"audit.k8s.io/truncated":"true"}}`)
	f(`[1]`, "error")
	f(`null`, "error")
	f(`{"annotations":{"k":1}}`, "error")
}

// TestNewServerCutsOffSlowloris trickles a request's headers a byte at a
// time: the server built by NewServer closes the connection once the header
// timeout passes, however steadily the bytes come.
func TestNewServerCutsOffSlowloris(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h, err := New(Config{}, &memProducer{}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Config{ReadHeaderTimeout: 300 * time.Millisecond}, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() {
		_ = srv.Close()
		wg.Wait()
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	var trickle sync.WaitGroup
	trickle.Go(func() {
		header := []byte("POST /audit HTTP/1.1\r\nHost: ingest\r\nX-Slow: " + strings.Repeat("a", 10000))
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for _, b := range header {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{b}); err != nil {
				return // cut off
			}
		}
	})
	defer func() { close(stop); trickle.Wait() }()
	// Hang guard only: the header timeout is 300 ms; 30 s means it never
	// fired.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept a trickling connection open for 30 s")
	}
}

// TestNewServerDefaults checks NewServer applies every timeout.
func TestNewServerDefaults(t *testing.T) {
	srv := NewServer(Config{}, http.NotFoundHandler())
	if srv.ReadHeaderTimeout != DefaultReadHeaderTimeout || srv.ReadTimeout != DefaultReadTimeout ||
		srv.WriteTimeout != DefaultWriteTimeout || srv.IdleTimeout != DefaultIdleTimeout || srv.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Fatalf("server timeouts not set: %+v", srv)
	}
}

// blockingProducer holds every Produce until released, so tests can fill
// ingest's in-flight slots deterministically.
type blockingProducer struct {
	memProducer
	entered chan struct{}
	release chan struct{}
}

func (p *blockingProducer) Produce(ctx context.Context, msgs []pipeline.Message) error {
	p.entered <- struct{}{}
	select {
	case <-p.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.memProducer.Produce(ctx, msgs)
}

func TestIngestSaturatedAnswers429(t *testing.T) {
	t.Run("requests", func(t *testing.T) {
		prod := &blockingProducer{entered: make(chan struct{}, 8), release: make(chan struct{})}
		srv, reg := newServerWith(t, Config{MaxInFlightRequests: 2}, prod)
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i := range 2 {
			wg.Go(func() { codes[i], _, _ = post(t, srv.URL+"/audit/c1", eventList(item(i, "a", ""))) })
			<-prod.entered
		}
		if got := metricValue(t, reg, MetricInFlightRequests); got != 2 {
			t.Fatalf("%s = %v, want 2", MetricInFlightRequests, got)
		}
		// Both slots are held by requests waiting for acks: the next one
		// is refused at once rather than queued.
		code, resp, hdr := post(t, srv.URL+"/audit/c1", eventList(item(3, "a", "")))
		if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "5" || !strings.Contains(resp.Error, "max-inflight-requests") {
			t.Fatalf("got %d Retry-After=%q %+v", code, hdr.Get("Retry-After"), resp)
		}
		if got := metricValue(t, reg, MetricRejected, "reason", ReasonTooManyRequests); got != 1 {
			t.Fatalf("%s{reason=too_many_requests} = %v", MetricRejected, got)
		}
		close(prod.release)
		wg.Wait()
		if codes[0] != 200 || codes[1] != 200 {
			t.Fatalf("held requests answered %v", codes)
		}
		// The slots are free again.
		go func() { <-prod.entered }()
		if code, _, _ := post(t, srv.URL+"/audit/c1", eventList(item(4, "a", ""))); code != 200 {
			t.Fatalf("after release: %d", code)
		}
		if n := len(prod.snapshot()); n != 3 {
			t.Fatalf("produced %d, want 3 (the refused request produced nothing)", n)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		prod := &blockingProducer{entered: make(chan struct{}, 8), release: make(chan struct{})}
		// The smallest budget Validate allows: one request at both limits,
		// 64 KiB of body, as much again for its decoded copy, and 60 events
		// at 1 KiB each.
		srv, reg := newServerWith(t, Config{MaxBodyBytes: 64 << 10, MaxEventsPerRequest: 60, MaxInFlightBytes: 188 << 10}, prod)
		batch := func(base int) string {
			var items []string
			for i := range 50 {
				items = append(items, item(base+i, "a", ""))
			}
			return eventList(items...) // about 40 KiB, twice, and 50 KiB of events: two do not fit in 188 KiB
		}
		var wg sync.WaitGroup
		wg.Go(func() { post(t, srv.URL+"/audit/c1", batch(0)) })
		<-prod.entered
		if got := metricValue(t, reg, MetricInFlightBytes); got < 30<<10 {
			t.Fatalf("%s = %v", MetricInFlightBytes, got)
		}
		code, resp, hdr := post(t, srv.URL+"/audit/c1", batch(100))
		if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(resp.Error, "max-inflight-bytes") {
			t.Fatalf("got %d %+v", code, resp)
		}
		close(prod.release)
		wg.Wait()
		if got := metricValue(t, reg, MetricInFlightBytes); got != 0 {
			t.Fatalf("%s = %v after the request ended", MetricInFlightBytes, got)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	f := func(c Config, want string) {
		t.Helper()
		err := c.WithDefaults().Validate()
		if want == "" {
			if err != nil {
				t.Fatalf("%+v: %v", c, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%+v: error %v, want %q", c, err, want)
		}
	}
	f(Config{}, "")
	f(Config{MaxEventBytes: -1}, "max-event-bytes must be positive")
	f(Config{MaxInFlightRequests: -1}, "max-inflight-requests must be positive")
	f(Config{DedupWindow: -time.Second}, "dedup-window must be positive")
	f(Config{DedupEntries: -1}, "dedup-entries must be positive")
	f(Config{MaxBodyBytes: 1 << 20, MaxEventBytes: 2 << 20}, "max-event-bytes (2097152) must not exceed max-body-bytes")
	f(Config{MaxBodyBytes: 1 << 20, MaxInFlightBytes: 1 << 10}, "max-inflight-bytes (1024) must be at least twice max-body-bytes")
	f(Config{MaxBodyBytes: 1 << 20, MaxEventsPerRequest: 1000, MaxInFlightBytes: 3_000_000}, "max-inflight-bytes (3000000) must be at least twice max-body-bytes (1048576: the body and its decoded copy) plus max-events-per-request (1000) × 1024 bytes per event, 3121152 in all")
	f(Config{MaxBodyBytes: 1 << 20, MaxEventsPerRequest: 1000, MaxInFlightBytes: 3121152}, "")
	f(Config{MaxEventsPerRequest: -1}, "max-events-per-request must be positive")
	f(Config{MaxReadingRequests: -1}, "max-reading-requests must be positive")
	f(Config{MinBodyRate: -1}, "min-body-rate must be positive")
	f(Config{BodyRateGrace: -time.Second}, "body-rate-grace must be positive")
	f(Config{BodyRateGrace: time.Minute, ReadTimeout: 30 * time.Second}, "body-rate-grace (1m0s) must be shorter than read-timeout (30s)")
	// The budget's default grows to fit a raised event cap.
	f(Config{MaxEventsPerRequest: 1_000_000}, "")
	f(Config{RetryAfter: time.Millisecond}, "retry-after must be at least 1s")
	f(Config{DefaultCluster: "a b"}, "cluster: invalid cluster name")
}
