package aks

import (
	"encoding/json"
	"os"
	"testing"
)

// BenchmarkDecodeAnnotate is the per-message work of ingest eventhubs: the
// fixture's Event Hubs body (eight records, 19 KB) decoded and each audit
// event annotated, beside encoding/json decoding the same envelope into
// structs without annotating (the naive baseline).
func BenchmarkDecodeAnnotate(b *testing.B) {
	body, err := os.ReadFile("testdata/eventhubs-message.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("aks.Decode+Annotate", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		var recs []Record
		for b.Loop() {
			recs, err = Decode(body, recs[:0])
			if err != nil {
				b.Fatal(err)
			}
			for i := range recs {
				if recs[i].IsAudit() {
					if _, err := Annotate(&recs[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var env struct {
				Records []struct {
					Category   string `json:"category"`
					ResourceID string `json:"resourceId"`
					Properties struct {
						Log string `json:"log"`
					} `json:"properties"`
				} `json:"records"`
			}
			if err := json.Unmarshal(body, &env); err != nil {
				b.Fatal(err)
			}
		}
	})
}
