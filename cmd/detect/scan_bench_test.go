package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
)

// BenchmarkScanWorkers runs scan's core (read, decode, gate, built-ins
// and the default pack, print JSON to io.Discard) over a generated stream
// with 1 and 2 workers, and reports events/s. The machine is shared:
// compare the two rows of one run, never figures of different runs.
//
//	go test ./cmd/detect -run '^$' -bench ScanWorkers -benchtime 3x -count 3
func BenchmarkScanWorkers(b *testing.B) {
	const events = 100000
	path := genLog(b, b.TempDir(), events, 5, 0.02)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	set, err := rules.LoadWithDefault(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	newBuiltins := func() (*detectors.Suite, error) { return loadDetectors("") }
	for _, workers := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(st.Size())
			for b.Loop() {
				s := newScanner("demo", console.NewPrinter(io.Discard, console.FormatJSON), io.Discard)
				if err := s.scan(b.Context(), []string{path}, workers, newBuiltins, set); err != nil {
					b.Fatal(err)
				}
				if s.events != events {
					b.Fatalf("scanned %d events, want %d", s.events, events)
				}
			}
			b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
