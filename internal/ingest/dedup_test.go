package ingest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestWindowEviction(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	w := newWindow(time.Minute, 3, func() time.Time { return now })
	has := func(k uint64) bool { return w.filter([]uint64{k}, nil)[0] }

	w.add([]uint64{1, 2})
	if !has(1) || !has(2) || has(3) {
		t.Fatal("keys just added are not seen")
	}
	// Full: the oldest leaves first.
	w.add([]uint64{3, 4})
	if has(1) || !has(2) || !has(4) || w.len() != 3 {
		t.Fatalf("after overflow: has(1)=%v has(2)=%v len=%d", has(1), has(2), w.len())
	}
	// Older than the window: not seen, and dropped on the next add.
	now = now.Add(time.Minute)
	if has(2) || has(4) {
		t.Fatal("expired keys still seen")
	}
	w.add([]uint64{5})
	if w.len() != 1 || !has(5) {
		t.Fatalf("len %d after expiry, want 1", w.len())
	}
	// A key added again lives from its second addition, even when the
	// ring entry of its first one is dropped.
	now = now.Add(10 * time.Second)
	w.add([]uint64{5, 6})
	now = now.Add(30 * time.Second)
	w.add([]uint64{7})
	if !has(5) {
		t.Fatal("re-added key dropped with its first entry")
	}
}

// TestIngestDeduplicatesResentBatch resends a batch as the apiserver does
// after a non-2xx: nothing new is produced, and the sender is still told
// its events are accepted (they are durable).
func TestIngestDeduplicatesResentBatch(t *testing.T) {
	prod := &memProducer{}
	srv, reg := newServerWith(t, Config{}, prod)
	batch := eventList(item(1, "alice", ""), item(2, "system:serviceaccount:payments:payments-api", boundTokenExtra), item(3, "bob", ""))
	for range 3 {
		code, resp, _ := post(t, srv.URL+"/audit/c1", batch)
		if code != http.StatusOK || resp.Accepted != 3 {
			t.Fatalf("got %d %+v", code, resp)
		}
	}
	if n := len(prod.snapshot()); n != 3 {
		t.Fatalf("produced %d, want 3", n)
	}
	if got := metricValue(t, reg, MetricDeduplicated); got != 6 {
		t.Fatalf("%s = %v, want 6", MetricDeduplicated, got)
	}
	// Another cluster's identical events are its own.
	post(t, srv.URL+"/audit/c2", batch)
	if n := len(prod.snapshot()); n != 6 {
		t.Fatalf("produced %d after another cluster's batch, want 6", n)
	}
}

// TestIngestFailedProduceDoesNotPoisonWindow: events are marked durable only
// once acknowledged, so the resend after a 503 produces them.
func TestIngestFailedProduceDoesNotPoisonWindow(t *testing.T) {
	prod := &memProducer{err: errors.New("kafka: leader not available")}
	srv, _ := newServerWith(t, Config{}, prod)
	batch := eventList(item(1, "alice", ""), item(2, "bob", ""))
	if code, _, _ := post(t, srv.URL+"/audit/c1", batch); code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", code)
	}
	prod.mu.Lock()
	prod.err = nil
	prod.mu.Unlock()
	if code, resp, _ := post(t, srv.URL+"/audit/c1", batch); code != http.StatusOK || resp.Accepted != 2 {
		t.Fatalf("resend: %d %+v", code, resp)
	}
	if n := len(prod.snapshot()); n != 2 {
		t.Fatalf("produced %d after the resend, want 2", n)
	}
}

// partialProducer acknowledges the first message of its first call only,
// reporting which, as the Kafka producer does.
type partialProducer struct {
	memProducer
	once sync.Once
}

type partialErr struct{ acked []bool }

func (e *partialErr) Error() string        { return "producing: 1 not acknowledged: broker down" }
func (e *partialErr) Acknowledged() []bool { return e.acked }

func (p *partialProducer) Produce(ctx context.Context, msgs []pipeline.Message) error {
	var err error
	p.once.Do(func() {
		acked := make([]bool, len(msgs))
		acked[0] = true
		_ = p.memProducer.Produce(ctx, msgs[:1])
		err = &partialErr{acked: acked}
	})
	if err != nil {
		return err
	}
	return p.memProducer.Produce(ctx, msgs)
}

func TestIngestPartialAckResendsOnlyTheRest(t *testing.T) {
	prod := &partialProducer{}
	srv, _ := newServerWith(t, Config{}, prod)
	batch := eventList(item(1, "alice", ""), item(2, "bob", ""), item(3, "carol", ""))
	if code, _, _ := post(t, srv.URL+"/audit/c1", batch); code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", code)
	}
	if code, resp, _ := post(t, srv.URL+"/audit/c1", batch); code != http.StatusOK || resp.Accepted != 3 {
		t.Fatalf("resend: %d %+v", code, resp)
	}
	var users []string
	for _, m := range prod.snapshot() {
		users = append(users, string(m.Key))
	}
	if strings.Join(users, " ") != "c1/alice c1/bob c1/carol" {
		t.Fatalf("produced %v, want each once", users)
	}
}

// TestIngestClientChosenAuditIDCollision: a client may set Audit-ID, so two
// different requests can share an auditID and stage. The window keys on the
// content too, so the second request is kept, while a true resend is not.
func TestIngestClientChosenAuditIDCollision(t *testing.T) {
	prod := &memProducer{}
	srv, _ := newServerWith(t, Config{}, prod)
	victim := item(1, "alice@example.com", "")
	// Same auditID and stage, another user and request.
	attacker := strings.NewReplacer(`"verb":"get"`, `"verb":"delete"`, `alice@example.com`, `mallory`).Replace(item(1, "alice@example.com", ""))
	for _, b := range []string{victim, attacker, victim, attacker} {
		if code, _, _ := post(t, srv.URL+"/audit/c1", eventList(b)); code != http.StatusOK {
			t.Fatalf("got %d", code)
		}
	}
	msgs := prod.snapshot()
	if len(msgs) != 2 || string(msgs[0].Key) != "c1/alice@example.com" || string(msgs[1].Key) != "c1/mallory" {
		t.Fatalf("produced %d messages, want the victim's and the attacker's once each", len(msgs))
	}
}
