package rules

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	ruleA   = "rules:\n  - rule: watch-a\n    severity: low\n    condition: verb == \"create\"\n"
	ruleB   = "rules:\n  - rule: watch-b\n    severity: low\n    condition: verb == \"create\"\n"
	ruleBad = "rules:\n  - rule: watch-bad\n    severity: low\n    condition: verb == 3\n"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.yaml")
	writeFile(t, path, ruleA)
	reg := prometheus.NewRegistry()
	w, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, NoDefault: true}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ev := decode(t, metadataPod)
	check := func(want string) {
		t.Helper()
		if got := ids(w.Detect(ev, nil)); !slices.Equal(got, []string{want}) {
			t.Fatalf("fired %v, want %s", got, want)
		}
	}
	check("rule:watch-a")
	if w.Reload(context.Background()) {
		t.Fatal("reloaded unchanged files")
	}
	writeFile(t, path, ruleB)
	if w.Reload(context.Background()) {
		t.Fatal("loaded a change before it settled")
	}
	if !w.Reload(context.Background()) {
		t.Fatal("valid change not loaded")
	}
	check("rule:watch-b")
	writeFile(t, path, ruleBad)
	w.Reload(context.Background())
	if w.Reload(context.Background()) {
		t.Fatal("invalid change went live")
	}
	check("rule:watch-b")
	// An invalid file is reported once, not at every interval.
	w.Reload(context.Background())
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if w.Reload(context.Background()) {
		t.Fatal("missing file went live")
	}
	check("rule:watch-b")
	writeFile(t, path, ruleA)
	w.Reload(context.Background())
	if !w.Reload(context.Background()) {
		t.Fatal("fixed file not loaded")
	}
	check("rule:watch-a")
	if got := counterValue(t, w.metrics.reloads.WithLabelValues("ok")); got != 2 {
		t.Errorf("ok reloads = %v, want 2", got)
	}
	if got := counterValue(t, w.metrics.reloads.WithLabelValues("invalid")); got != 2 {
		t.Errorf("invalid reloads = %v, want 2 (bad content once, missing file once)", got)
	}
}

func TestWatcherStartInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.yaml")
	writeFile(t, path, ruleBad)
	if _, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, NoDefault: true}, nil, nil); err == nil {
		t.Fatal("started with an invalid rule file")
	}
}

// TestWatcherConcurrentSwap swaps sets while goroutines detect: every event
// must be judged by exactly one set (one finding, from a or b), under -race.
func TestWatcherConcurrentSwap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.yaml")
	writeFile(t, path, ruleA)
	w, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, NoDefault: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := gen.New(gen.Config{Seed: 3, AttackRatio: 0.05})
	var events []pipeline.Event
	for len(events) < 400 {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", g.Next().JSON); err != nil {
			t.Fatal(err)
		}
		if ev.IsAuthoritative() && ev.Verb == "create" {
			events = append(events, ev)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var judged, bad atomic.Int64
	for range 4 {
		wg.Go(func() {
			var out []pipeline.Finding
			for i := 0; ctx.Err() == nil || i < len(events); i++ {
				out = w.Detect(&events[i%len(events)], out[:0])
				judged.Add(1)
				if len(out) != 1 {
					bad.Add(1)
				}
			}
		})
	}
	for i := range 50 {
		writeFile(t, path, []string{ruleA, ruleB}[i%2])
		w.Reload(context.Background())
		w.Reload(context.Background())
	}
	cancel()
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d events were not judged exactly once", bad.Load(), judged.Load())
	}
}

func TestWatcherRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.yaml")
	writeFile(t, path, ruleA)
	w, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, NoDefault: true, Interval: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	writeFile(t, path, ruleB)
	// Run polls; wait for the swap by watching the set, not the clock.
	for w.Current().Len() == 0 || w.Current().Names()[0] != "watch-b" {
		runtimeGosched()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
