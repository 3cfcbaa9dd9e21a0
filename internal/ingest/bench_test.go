package ingest

import (
	"context"
	"testing"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
)

type discardProducer struct{}

func (discardProducer) Produce(context.Context, []pipeline.Message) error { return nil }

// BenchmarkIngestSplit measures ingest's per-request work on apiserver-style
// 400-event EventLists, up to the producer: split the list, validate and key
// every event, hash it for deduplication. "full" decodes every item into an
// auditv1.Event; "fast" is the default single-pass key extractor.
func BenchmarkIngestSplit(b *testing.B) {
	g := gen.New(gen.Config{Seed: 1, AttackRatio: 0.02})
	var bodies [][]byte
	for range 8 {
		evs := make([][]byte, 400)
		for i := range evs {
			evs[i] = g.Next().JSON
		}
		bodies = append(bodies, gen.EventList(evs))
	}
	for _, mode := range []struct {
		name   string
		redact bool
	}{{"plain", false}, {"redacted", true}} {
		b.Run(mode.name, func(b *testing.B) {
			var red Redactor
			if mode.redact {
				r, err := redact.New(redact.Config{})
				if err != nil {
					b.Fatal(err)
				}
				red = r
			}
			// Deduplication off, so every iteration does the whole work.
			h, err := New(Config{DisableDedup: true}, discardProducer{}, red, nil, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var size int64
			for _, body := range bodies {
				size += int64(len(body))
			}
			b.SetBytes(size / int64(len(bodies)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				st := h.getState()
				items, err := h.split(bodies[i%len(bodies)], st)
				if err != nil {
					b.Fatal(err)
				}
				res, err := h.ingestBatch(ctx, "prod-eu1", items, st)
				if err != nil || res.Accepted != 400 {
					b.Fatalf("accepted %d: %v", res.Accepted, err)
				}
				h.putState(st)
				i++
			}
			b.ReportMetric(float64(b.N*400)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
