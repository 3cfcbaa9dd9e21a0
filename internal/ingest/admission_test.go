package ingest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tests of what a hostile or broken sender can hold: stalled and slow
// bodies, EventLists of very many tiny items, and lists of bad items. They
// assert on outcomes (codes, answers, counters), never on how fast
// something happened; durations only pick which limit applies.

// startBody opens a raw connection and sends a webhook request's headers,
// declaring a body of length bytes, and the first part of that body.
func startBody(t *testing.T, addr string, length int, part string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	if _, err := fmt.Fprintf(conn, "POST /audit/c1 HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", length, part); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readAnswer reads a webhook answer from a raw connection.
func readAnswer(t *testing.T, conn net.Conn) (int, Response) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decoding %d answer: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, r
}

// waitMetric waits until a gauge or counter reads want. The bound is a hang
// guard only.
func waitMetric(t *testing.T, reg *prometheus.Registry, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metricValue(t, reg, name, append([]string(nil), labels...)...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIngestStalledBodiesDoNotStarve: four senders declare bodies of the
// largest size, send 1 KiB of them and stall, on a handler whose byte
// budget is four such bodies and which processes four requests at once.
// Before, they reserved the whole budget and held every processing slot,
// and everyone else got 429 until read-timeout; now they hold only what
// they sent and a reader slot each.
func TestIngestStalledBodiesDoNotStarve(t *testing.T) {
	prod := &memProducer{}
	srv, reg := newServerWith(t, Config{
		MaxBodyBytes: 1 << 20, MaxInFlightBytes: 4 << 20, MaxInFlightRequests: 4, MaxEventsPerRequest: 1000,
		BodyRateGrace: 50 * time.Second, // they stay stalled throughout
	}, prod)
	addr := srv.Listener.Addr().String()
	var stalled []net.Conn
	for range 4 {
		stalled = append(stalled, startBody(t, addr, 1<<20, `{"kind":"EventList","items":[`+strings.Repeat(" ", 1<<10)))
	}
	waitMetric(t, reg, 4, MetricReadingRequests)
	if got := metricValue(t, reg, MetricInFlightBytes); got >= 1<<20 {
		t.Fatalf("%s = %v with four stalled 1 KiB bodies", MetricInFlightBytes, got)
	}
	if got := metricValue(t, reg, MetricInFlightRequests); got != 0 {
		t.Fatalf("%s = %v, want 0: stalled bodies hold processing slots", MetricInFlightRequests, got)
	}
	code, resp, _ := post(t, srv.URL+"/audit/c1", eventList(item(1, "alice", "")))
	if code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("valid sender beside stalled ones: %d %+v", code, resp)
	}
	for _, c := range stalled {
		c.Close()
	}
	waitMetric(t, reg, 0, MetricReadingRequests)
	waitMetric(t, reg, 0, MetricInFlightBytes)
}

// TestIngestStalledBodyCutOff: once the grace has passed, a body that
// stopped arriving is cut off with 408 and counted, and what it held is
// released.
func TestIngestStalledBodyCutOff(t *testing.T) {
	srv, reg := newServerWith(t, Config{MaxBodyBytes: 1 << 20, BodyRateGrace: 300 * time.Millisecond, MinBodyRate: 64 << 10}, &memProducer{})
	addr := srv.Listener.Addr().String()
	var conns []net.Conn
	for range 4 {
		conns = append(conns, startBody(t, addr, 1<<20, `{"kind":"EventList","items":[`))
	}
	for _, c := range conns {
		code, resp := readAnswer(t, c)
		if code != http.StatusRequestTimeout || !strings.Contains(resp.Error, "min-body-rate") {
			t.Fatalf("stalled body: %d %+v", code, resp)
		}
	}
	if got := metricValue(t, reg, MetricRejected, "reason", ReasonBodyTooSlow); got != 4 {
		t.Fatalf("%s{reason=%s} = %v, want 4", MetricRejected, ReasonBodyTooSlow, got)
	}
	waitMetric(t, reg, 0, MetricReadingRequests)
	waitMetric(t, reg, 0, MetricInFlightBytes)
	// The same handler still serves a sender whose body arrives.
	if code, resp, _ := post(t, srv.URL+"/audit/c1", eventList(item(1, "alice", ""))); code != http.StatusOK {
		t.Fatalf("after the cut-off: %d %+v", code, resp)
	}
}

// TestIngestSlowBodiesDoNotHoldSlots: 80 senders trickle their bodies a
// byte at a time, steadily enough to stay within the rate, on a handler
// that processes 4 requests at once. Before, they held the processing
// slots and valid senders got 429; now they wait for their bodies in
// reader slots.
func TestIngestSlowBodiesDoNotHoldSlots(t *testing.T) {
	srv, reg := newServerWith(t, Config{MaxInFlightRequests: 4, BodyRateGrace: 50 * time.Second}, &memProducer{})
	addr := srv.Listener.Addr().String()
	var (
		conns  []net.Conn
		bodies []string
	)
	for i := range 80 {
		body := eventList(item(100+i, "slow", ""))
		conns = append(conns, startBody(t, addr, len(body), body[:1]))
		bodies = append(bodies, body)
	}
	stop := make(chan struct{})
	var trickle sync.WaitGroup
	trickle.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for pos := 1; ; pos++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for i, c := range conns {
				if pos < len(bodies[i])-1 { // never the last byte
					_, _ = c.Write([]byte{bodies[i][pos]})
				}
			}
		}
	})
	defer func() { close(stop); trickle.Wait() }()

	waitMetric(t, reg, 80, MetricReadingRequests)
	if got := metricValue(t, reg, MetricInFlightRequests); got != 0 {
		t.Fatalf("%s = %v, want 0: slow bodies hold processing slots", MetricInFlightRequests, got)
	}
	for i := range 3 {
		code, resp, _ := post(t, srv.URL+"/audit/c1", eventList(item(i, "alice", "")))
		if code != http.StatusOK || resp.Accepted != 1 {
			t.Fatalf("valid sender %d beside 80 slow ones: %d %+v", i, code, resp)
		}
	}
	if got := metricValue(t, reg, MetricRejected, "reason", ReasonTooManyRequests); got != 0 {
		t.Fatalf("%s{reason=%s} = %v, want 0", MetricRejected, ReasonTooManyRequests, got)
	}
}

// TestIngestReaderSlotsFull: the requests receiving bodies are bounded too;
// beyond the bound the answer is 429 with what to do, at once.
func TestIngestReaderSlotsFull(t *testing.T) {
	srv, reg := newServerWith(t, Config{MaxReadingRequests: 2, BodyRateGrace: 50 * time.Second}, &memProducer{})
	addr := srv.Listener.Addr().String()
	for range 2 {
		startBody(t, addr, 1<<10, `{"kind":"EventList","items":[`)
	}
	waitMetric(t, reg, 2, MetricReadingRequests)
	code, resp, hdr := post(t, srv.URL+"/audit/c1", eventList(item(1, "alice", "")))
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "5" || !strings.Contains(resp.Error, "max-reading-requests") {
		t.Fatalf("got %d Retry-After=%q %+v", code, hdr.Get("Retry-After"), resp)
	}
	if got := metricValue(t, reg, MetricRejected, "reason", ReasonTooManyRequests); got != 1 {
		t.Fatalf("%s{reason=%s} = %v, want 1", MetricRejected, ReasonTooManyRequests, got)
	}
}

// manyItems is an EventList of n copies of it.
func manyItems(n int, it string) string {
	var b strings.Builder
	b.Grow(n * (len(it) + 1))
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(it)
	}
	b.WriteString("]}")
	return b.String()
}

// TestIngestEventCap: a 3 MB EventList of a million `{}` items is refused
// as a whole with 413 and what to do, before any per-item work.
func TestIngestEventCap(t *testing.T) {
	prod := &memProducer{}
	srv, reg := newServerWith(t, Config{}, prod)
	code, resp, _ := post(t, srv.URL+"/audit/c1", manyItems(1_000_000, "{}"))
	if code != http.StatusRequestEntityTooLarge || resp.Accepted != 0 ||
		!strings.Contains(resp.Error, "too many events: more than 10000 in one request (max-events-per-request): send smaller batches") {
		t.Fatalf("got %d %+v", code, resp)
	}
	if got := metricValue(t, reg, MetricRejected, "reason", ReasonTooManyEvents); got != 1 {
		t.Fatalf("%s{reason=%s} = %v, want 1", MetricRejected, ReasonTooManyEvents, got)
	}
	if got := metricValue(t, reg, MetricBatchEvents); got != 0 {
		t.Fatalf("%s has %v samples: the items were processed", MetricBatchEvents, got)
	}
	if n := len(prod.snapshot()); n != 0 {
		t.Fatalf("produced %d", n)
	}
	waitMetric(t, reg, 0, MetricInFlightBytes)
	// At the cap exactly, the request is processed.
	if code, resp, _ := post(t, srv.URL+"/audit/c1", manyItems(10_000, "1")); code != http.StatusBadRequest || resp.RejectedCount != 10_000 {
		t.Fatalf("10,000 items: %d %+v", code, resp)
	}
}

// TestIngestEventCharge: under the cap, each event is charged against the
// byte budget, so a small body of many items does not fit beside another
// request although its bytes would.
func TestIngestEventCharge(t *testing.T) {
	prod := &blockingProducer{entered: make(chan struct{}, 8), release: make(chan struct{})}
	// The least budget Validate allows: 64 KiB of body, as much for its
	// decoded copy, and 1000 events at 1 KiB each.
	srv, reg := newServerWith(t, Config{MaxBodyBytes: 64 << 10, MaxEventsPerRequest: 1000, MaxInFlightBytes: 2*64<<10 + 1000<<10}, prod)
	var held []string
	for i := range 50 {
		held = append(held, item(i, "alice", ""))
	}
	var wg sync.WaitGroup
	wg.Go(func() { post(t, srv.URL+"/audit/c1", eventList(held...)) }) // 40 KiB, 50 events
	<-prod.entered
	// 2 KB of body, but 1000 events: about 1000 KiB, more than is left.
	many := manyItems(1000, "1")
	code, resp, hdr := post(t, srv.URL+"/audit/c1", many)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(resp.Error, "max-inflight-bytes") {
		t.Fatalf("many items beside a held request: %d %+v", code, resp)
	}
	close(prod.release)
	wg.Wait()
	waitMetric(t, reg, 0, MetricInFlightBytes)
	// Alone it fits; its items are then rejected one by one.
	if code, resp, _ := post(t, srv.URL+"/audit/c1", many); code != http.StatusBadRequest || resp.RejectedCount != 1000 {
		t.Fatalf("many items alone: %d %+v", code, resp)
	}
	waitMetric(t, reg, 0, MetricInFlightBytes)
}

// TestIngestRejectionsCapped: 300,000 bad items (0.6 MB) once made a 37 MB
// answer. The answer lists the first 100 and counts the rest; the
// per-reason counter still counts each one.
func TestIngestRejectionsCapped(t *testing.T) {
	srv, reg := newServerWith(t, Config{MaxBodyBytes: 1 << 20, MaxEventsPerRequest: 300_000}, &memProducer{})
	resp, err := http.Post(srv.URL+"/audit/c1", "application/json", strings.NewReader(manyItems(300_000, "1")))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) >= 64<<10 {
		t.Fatalf("answer of %d bytes", len(raw))
	}
	var r Response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || r.Accepted != 0 || r.RejectedCount != 300_000 || len(r.Rejected) != MaxRejectionsListed ||
		r.Error != "300000 of 300000 events rejected; first 100 listed" {
		t.Fatalf("got %d, %d listed: %.300s", resp.StatusCode, len(r.Rejected), raw)
	}
	for i, rej := range r.Rejected {
		if rej.Index != i || rej.Reason != ReasonMalformed || rej.Error == "" {
			t.Fatalf("rejection %d: %+v", i, rej)
		}
	}
	if got := metricValue(t, reg, MetricEventsRejected, "reason", ReasonMalformed); got != 300_000 {
		t.Fatalf("%s{reason=%s} = %v", MetricEventsRejected, ReasonMalformed, got)
	}
	if got := metricValue(t, reg, MetricEvents, "result", "rejected"); got != 300_000 {
		t.Fatalf("%s{result=rejected} = %v", MetricEvents, got)
	}

	// Under the cap, every rejection is listed and the count agrees.
	code, few, _ := post(t, srv.URL+"/audit/c1", eventList(item(1, "alice", ""), "1", `"x"`, item(2, "bob", ""), "[]"))
	if code != http.StatusBadRequest || few.Accepted != 2 || few.RejectedCount != 3 || len(few.Rejected) != 3 ||
		few.Error != "3 of 5 events rejected" || few.Rejected[1].Index != 2 {
		t.Fatalf("got %d %+v", code, few)
	}
}

func TestRejectionError(t *testing.T) {
	f := func(in string, wantLen int, wantSuffix string) {
		t.Helper()
		got := rejectionError(errors.New(in))
		if len(got) != wantLen || !strings.HasSuffix(got, wantSuffix) {
			t.Fatalf("rejectionError(%.20q…): %d bytes %q", in, len(got), got)
		}
	}
	f("decoding event: not an object", 29, "object")
	f(strings.Repeat("a", maxRejectionErrorBytes), maxRejectionErrorBytes, "a")
	f(strings.Repeat("a", 10000), maxRejectionErrorBytes+len("…"), "a…")
	// Cut at a character boundary: 255 ASCII bytes, then "é" (2 bytes)
	// would straddle byte 256.
	f(strings.Repeat("a", 255)+strings.Repeat("é", 100), 255+len("…"), "a…")
}
