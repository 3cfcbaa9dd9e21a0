package bench

import (
	"encoding/json"
	"syscall"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
)

// streamSize is large enough that the stream's mix of levels, sizes and
// scenarios, not one event, decides the figures.
const streamSize = 20000

func realisticStream(b testing.TB) (events [][]byte, bytes int64) {
	b.Helper()
	return redactedStream(b, 0.02)
}

// redactedStream is the generator's stream with the given share of attacks,
// as it travels through Kafka: ingest has already replaced every token and
// secret value with its redacted record, so detect never parses a raw JWT.
// The events lie back to back in one buffer, one per line, as detect has
// them: scan decodes lines from chunks it has just copied, run records a
// Kafka fetch has just written.
func redactedStream(b testing.TB, attackRatio float64) (events [][]byte, bytes int64) {
	b.Helper()
	g := gen.New(gen.Config{Seed: 7, AttackRatio: attackRatio})
	red, err := redact.New(redact.Config{})
	if err != nil {
		b.Fatal(err)
	}
	events = make([][]byte, streamSize)
	for i := range events {
		out, _, err := red.Event(g.Next().JSON)
		if err != nil {
			b.Fatal(err)
		}
		events[i] = out
		bytes += int64(len(out))
	}
	return contiguous(events, bytes), bytes
}

// contiguous moves events into one buffer, in order, a newline after each.
// Left as 20,000 separate allocations scattered over 22 MB of heap, each
// event began with a load from memory the hardware prefetcher could not
// foresee: perf annotate put 9 % of BenchmarkDecodeDetectDefaultRules'
// time on the first byte read of each event, a cost neither detect scan
// nor detect run pays.
func contiguous(events [][]byte, bytes int64) [][]byte {
	buf := make([]byte, 0, bytes+int64(len(events)))
	for i, e := range events {
		start := len(buf)
		buf = append(buf, e...)
		events[i] = buf[start:len(buf):len(buf)]
		buf = append(buf, '\n')
	}
	return events
}

// report sets up per-event figures for a benchmark whose op is one event:
// MB/s from the mean event size, allocs, events/s, and cpu-ns/event, the
// process's user and system time per event, which other work on a
// loaded machine inflates far less than the wall time of sec/op.
func report(b *testing.B, events [][]byte, bytes int64) {
	b.SetBytes(bytes / int64(len(events)))
	b.ReportAllocs()
	start := cpuTime()
	b.ResetTimer()
	b.Cleanup(func() {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/event")
	})
}

// cpuTime is the process's user and system time so far, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkDecodeEncodingJSON is the naive baseline: encoding/json into the
// apiserver's own type.
func BenchmarkDecodeEncodingJSON(b *testing.B) {
	events, bytes := realisticStream(b)
	benchEncodingJSON(b, events, bytes)
}

func benchEncodingJSON(b *testing.B, events [][]byte, bytes int64) {
	report(b, events, bytes)
	for i := 0; b.Loop(); i++ {
		var ev auditv1.Event
		if err := json.Unmarshal(events[i%len(events)], &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEvent is auditjson.DecodeEvent alone, into the same type as
// the baseline.
func BenchmarkDecodeEvent(b *testing.B) {
	events, bytes := realisticStream(b)
	benchDecodeEvent(b, events, bytes)
}

func benchDecodeEvent(b *testing.B, events [][]byte, bytes int64) {
	report(b, events, bytes)
	for i := 0; b.Loop(); i++ {
		var ev auditv1.Event
		if err := auditjson.DecodeEvent(events[i%len(events)], &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is what detect does before detection: DecodeEvent, the
// cluster tag and the content hash.
func BenchmarkDecode(b *testing.B) {
	events, bytes := realisticStream(b)
	report(b, events, bytes)
	var ev pipeline.Event
	for i := 0; b.Loop(); i++ {
		if err := auditjson.Decode(&ev, "prod", events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeDetect is what detect does per event: decode, then every
// built-in detector.
func BenchmarkDecodeDetect(b *testing.B) {
	events, bytes := realisticStream(b)
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	report(b, events, bytes)
	var ev pipeline.Event
	var out []pipeline.Finding
	for i := 0; b.Loop(); i++ {
		if err := auditjson.Decode(&ev, "prod", events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
		out = set.Detect(&ev, out[:0])
	}
}

// BenchmarkDecodeDetectFindingHeavy is BenchmarkDecodeDetect on an
// incident's slice of logs: every request the generator makes belongs to
// an attack, so the built-ins build findings and their state on a large
// share of the events instead of passing over them.
func BenchmarkDecodeDetectFindingHeavy(b *testing.B) {
	events, bytes := findingHeavyStream(b)
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	report(b, events, bytes)
	var ev pipeline.Event
	var out []pipeline.Finding
	found := 0
	for i := 0; b.Loop(); i++ {
		if err := auditjson.Decode(&ev, "prod", events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
		out = set.Detect(&ev, out[:0])
		found += len(out)
	}
	b.ReportMetric(float64(found)/float64(b.N), "findings/event")
}

// findingHeavyStream is realisticStream with every generated request an
// attack's.
func findingHeavyStream(b testing.TB) (events [][]byte, bytes int64) {
	b.Helper()
	return redactedStream(b, 1)
}
