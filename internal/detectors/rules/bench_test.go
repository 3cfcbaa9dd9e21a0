package rules

import (
	"fmt"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// BenchmarkRules measures Detect alone (events decoded beforehand) over the
// generator's realistic stream, for rule sets of growing size. The empty
// set is the floor: the authoritative-stage check.
func BenchmarkRules(b *testing.B) {
	g := gen.New(gen.Config{Seed: 7, AttackRatio: 0.02})
	events := make([]pipeline.Event, 20000)
	for i := range events {
		if err := auditjson.Decode(&events[i], "prod", g.Next().JSON); err != nil {
			b.Fatal(err)
		}
	}
	pack, err := DefaultFiles()
	if err != nil {
		b.Fatal(err)
	}
	sets := []struct {
		name  string
		files []File
	}{
		{"rules=0", nil},
		{"rules=default", pack},
		{"rules=100", []File{{Name: "gen.yaml", Data: generatedRules(100)}}},
		{"rules=1000", []File{{Name: "gen.yaml", Data: generatedRules(1000)}}},
	}
	for _, bc := range sets {
		s, err := Load(bc.files...)
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []string{"indexed", "brute"} {
			if mode == "brute" && s.Len() == 0 {
				continue
			}
			b.Run(fmt.Sprintf("%s/%s", bc.name, mode), func(b *testing.B) {
				b.ReportAllocs()
				var out []pipeline.Finding
				for i := 0; b.Loop(); i++ {
					// Bodies are decoded lazily per event; reset them so
					// each iteration pays as a fresh event would.
					out = s.detect(&events[i%len(events)], out[:0], mode == "brute")
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
