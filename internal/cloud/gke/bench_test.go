package gke

import (
	"encoding/base64"
	"testing"
)

// BenchmarkConvert converts the six fixtures in turn (1.1 KB to 4.2 KB of
// LogEntry each, a pod create with both bodies the largest): the per-entry
// cost of Pub/Sub ingestion and of reading a gcloud export, before
// ingest's own per-event work.
func BenchmarkConvert(b *testing.B) {
	es := fixtures(b)
	total := 0
	for _, e := range es {
		total += len(e)
	}
	b.SetBytes(int64(total / len(es)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := Convert(es[i%len(es)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePush unwraps the push envelope of the largest fixture.
func BenchmarkDecodePush(b *testing.B) {
	e := fixtures(b)[0]
	body := []byte(`{"message":{"data":"` + base64.StdEncoding.EncodeToString(e) + `","messageId":"1","publishTime":"2026-11-30T10:15:10.25Z"},"subscription":"projects/acme-prod/subscriptions/auditpipe-gke-prod-eu1"}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodePush(body); err != nil {
			b.Fatal(err)
		}
	}
}
