package ingest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/redact"
)

// BenchmarkFirehose measures a Firehose request through the handler, up to
// the producer: 1,000 generated events as CloudWatch Logs sends them (10
// records, each a gzip subscription payload of 100 events, in a gzip body),
// beside the same 1,000 events posted as one webhook EventList. Both redact,
// as ingest always does; deduplication is off so that every iteration does
// the whole work.
func BenchmarkFirehose(b *testing.B) {
	g := gen.New(gen.Config{Seed: 3, AttackRatio: 0.02})
	evs := make([][]byte, 1000)
	var raw int64
	for i := range evs {
		evs[i] = g.Next().JSON
		raw += int64(len(evs[i]))
	}
	var records [][]byte
	for i := 0; i < len(evs); i += 100 {
		msgs := make([]string, 0, 100)
		for _, e := range evs[i : i+100] {
			msgs = append(msgs, string(e))
		}
		records = append(records, gz(dataMessage(testLogStream, msgs...)))
	}
	firehose := gz(firehoseBody("bench", records...))
	webhook := gen.EventList(evs)
	red, err := redact.New(redact.Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, encoding string
		body                 []byte
	}{
		{"firehose", "/firehose/prod-eu1", "gzip", firehose},
		{"webhook", "/audit/prod-eu1", "", webhook},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, err := New(Config{DisableDedup: true}, discardProducer{}, red, nil, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			// Bytes of audit JSON, whatever the wrapping, so that MB/s
			// compare.
			b.SetBytes(raw)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, tc.path, bytes.NewReader(tc.body))
				if tc.encoding != "" {
					req.Header.Set("Content-Encoding", tc.encoding)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d: %s", rec.Code, rec.Body)
				}
			}
			b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
		})
	}
}
