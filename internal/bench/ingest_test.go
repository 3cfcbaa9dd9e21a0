package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
)

// batchEvents is what the apiserver's webhook sends per request at most,
// and what a busy control plane sends every time.
const batchEvents = 400

// eventLists builds webhook bodies of batchEvents events each, as the
// apiserver writes them (items without kind and apiVersion).
func eventLists(b testing.TB, n int) (bodies [][]byte, size int64) {
	b.Helper()
	const typeMeta = `"kind":"Event","apiVersion":"audit.k8s.io/v1",`
	g := gen.New(gen.Config{Seed: 7, AttackRatio: 0.02})
	for range n {
		var buf bytes.Buffer
		buf.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
		for i := range batchEvents {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(bytes.Replace(g.Next().JSON, []byte(typeMeta), nil, 1))
		}
		buf.WriteString("]}")
		bodies = append(bodies, buf.Bytes())
		size += int64(buf.Len())
	}
	return bodies, size
}

// reportBatches sets up per-event figures for a benchmark whose op is one
// batch of batchEvents events.
func reportBatches(b *testing.B, bodies [][]byte, size int64) {
	b.SetBytes(size / int64(len(bodies)))
	b.ReportAllocs()
	b.ResetTimer()
	b.Cleanup(func() {
		events := float64(b.N) * batchEvents
		b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	})
}

// BenchmarkIngestSplitEncodingJSON is the naive baseline of ingest's CPU
// work: encoding/json splits the list, then decodes every item into
// auditv1.Event.
func BenchmarkIngestSplitEncodingJSON(b *testing.B) {
	bodies, size := eventLists(b, 10)
	reportBatches(b, bodies, size)
	for i := 0; b.Loop(); i++ {
		var l struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(bodies[i%len(bodies)], &l); err != nil {
			b.Fatal(err)
		}
		for _, item := range l.Items {
			var ev auditv1.Event
			if err := json.Unmarshal(item, &ev); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkIngestSplitDecode is auditjson.SplitEventList then DecodeEvent
// and the partition key for every item.
func BenchmarkIngestSplitDecode(b *testing.B) {
	bodies, size := eventLists(b, 10)
	reportBatches(b, bodies, size)
	var ev pipeline.Event
	for i := 0; b.Loop(); i++ {
		items, err := auditjson.SplitEventList(bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		for _, item := range items {
			if err := auditjson.Decode(&ev, "prod", item); err != nil {
				b.Fatal(err)
			}
			_ = pipeline.MessageKey("prod", &ev)
		}
	}
}

// nopProducer acknowledges every message at once, so that the handler's
// own work is what gets measured.
type nopProducer struct{}

func (nopProducer) Produce(context.Context, []pipeline.Message) error { return nil }

// BenchmarkIngestHandler posts batches through the whole webhook handler:
// body read, split, redaction, decode and validation, keys, produce.
func BenchmarkIngestHandler(b *testing.B) {
	bodies, size := eventLists(b, 10)
	red, err := redact.New(redact.Config{})
	if err != nil {
		b.Fatal(err)
	}
	// Deduplication off: the benchmark replays ten bodies, which the
	// window would otherwise answer from memory after the first round.
	h, err := ingest.New(ingest.Config{DisableDedup: true}, nopProducer{}, red, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	reportBatches(b, bodies, size)
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest(http.MethodPost, "/audit/prod", bytes.NewReader(bodies[i%len(bodies)]))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
