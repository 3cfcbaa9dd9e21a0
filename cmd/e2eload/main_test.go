package main

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Replayed bodies must stay valid EventLists whose every (auditID, stage)
// is new, or the run would measure deduplication instead of the pipeline.
func TestPoolBodiesAreNewEvents(t *testing.T) {
	p := newPool(2)
	seen := map[string]bool{}
	var buf []byte
	for i := range 6 { // three rounds over the two bodies
		buf = p.body(i, buf)
		items, err := auditjson.SplitEventList(buf)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if len(items) != batchEvents {
			t.Fatalf("batch %d: %d items, want %d", i, len(items), batchEvents)
		}
		for _, item := range items {
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "load", item); err != nil {
				t.Fatalf("batch %d: %v", i, err)
			}
			key := string(ev.AuditID) + "/" + string(ev.Stage)
			if seen[key] {
				t.Fatalf("batch %d repeats %s", i, key)
			}
			seen[key] = true
		}
	}
	// Rewriting works on a copy: the pool stays as generated.
	if !bytes.Equal(p.bodies[0], newPool(1).bodies[0]) {
		t.Fatal("replaying a batch changed the pool")
	}
}

func TestLatencies(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	sends := []sent{{at: at(0)}, {at: at(1)}, {at: at(2)}, {at: at(3)}}
	samples := []sample{
		{at(0.5), 0},
		{at(1.5), batchEvents},    // batch 0 landed: 1.5 s
		{at(4), 3 * batchEvents},  // batches 1 and 2: 3 s and 2 s
		{at(10), 3 * batchEvents}, // batch 3 never lands
	}
	p50, p99, maxLat := latencies(sends, samples)
	if p50 != 2 || p99 != 3 || maxLat != 3 {
		t.Fatalf("p50 %v p99 %v max %v, want 2 3 3", p50, p99, maxLat)
	}
}

func TestProcReaders(t *testing.T) {
	if cpuSeconds(os.Getpid()) <= 0 {
		// The test binary has run for a while by now; zero means the
		// fields were misread.
		busy := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(busy) {
		}
		if cpuSeconds(os.Getpid()) <= 0 {
			t.Fatal("cpuSeconds of this process is 0")
		}
	}
	if rss := peakRSS(os.Getpid()); rss < 1024 {
		t.Fatalf("peak RSS %d KiB, want at least 1 MiB", rss)
	}
	if cpuSeconds(-1) != 0 || peakRSS(-1) != 0 {
		t.Fatal("a missing process must read as 0")
	}
}
