package firstseen

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type fakeSink struct {
	calls []string
	fail  error
}

func (f *fakeSink) Write(_ context.Context, b pipeline.Batch) error {
	f.calls = append(f.calls, "write")
	return nil
}

func (f *fakeSink) SaveFirstSeen(_ context.Context, rows []Update) error {
	f.calls = append(f.calls, "save")
	if f.fail != nil {
		return f.fail
	}
	return nil
}

// TestSinkSavesStoredBatchOnly: the changes of a stored batch's events are
// saved after the batch is written, those of the next batch (judged
// already: detect prepares one batch ahead) wait for it, and a failed save
// keeps the changes for the retry.
func TestSinkSavesStoredBatchOnly(t *testing.T) {
	tr := newTracker(t, Config{Journal: true})
	inner := &fakeSink{}
	s := NewSink(inner, tr, inner)
	p := Policy{History: time.Hour}
	b1 := []*pipeline.Event{{}, {}}
	b2 := []*pipeline.Event{{}}
	tr.Observe("r", "c", "k", "a", t0, p, b1[0])
	tr.Observe("r", "c", "k", "b", t0, p, b1[1])
	tr.Observe("r", "c", "k", "c", t0, p, b2[0])

	inner.fail = errors.New("clickhouse down")
	if err := s.Write(t.Context(), pipeline.Batch{Events: b1}); err == nil {
		t.Fatal("a failed save must fail the write, so that the batch is retried")
	}
	inner.fail = nil
	var saved []Update
	saver := saverFunc(func(rows []Update) { saved = rows })
	s = NewSink(inner, tr, saver)
	if err := s.Write(t.Context(), pipeline.Batch{Events: b1}); err != nil {
		t.Fatal(err)
	}
	// The baseline start and a, b: not c, whose batch is not stored.
	if len(saved) != 3 || saved[1].Term != "a" || saved[2].Term != "b" {
		t.Fatalf("saved %+v", saved)
	}
	if inner.calls[0] != "write" || inner.calls[1] != "save" {
		t.Fatalf("calls %v: want the write before the save", inner.calls)
	}
	if err := s.Write(t.Context(), pipeline.Batch{Events: b2}); err != nil {
		t.Fatal(err)
	}
	if len(saved) != 1 || saved[0].Term != "c" {
		t.Fatalf("second batch saved %+v", saved)
	}
}

type saverFunc func([]Update)

func (f saverFunc) SaveFirstSeen(_ context.Context, rows []Update) error {
	f(rows)
	return nil
}

// TestSync restores what another instance saved, and stops with its
// context.
func TestSync(t *testing.T) {
	tr := newTracker(t, Config{})
	var mu sync.Mutex
	calls := 0
	load := func(context.Context, time.Time, time.Time) ([]Update, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return nil, errors.New("clickhouse down") // logged, retried
		}
		return []Update{{Rule: "r", Cluster: "c", Key: "k", Term: "x", KeyFirst: time.Now(), Last: time.Now()}}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		Sync(ctx, tr, load, func(string) (Policy, bool) { return Policy{History: time.Hour}, true },
			func() time.Duration { return time.Hour }, time.Millisecond, slog.New(slog.DiscardHandler))
	})
	for tr.Stats().Keys == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	if v := tr.Observe("r", "c", "k", "x", time.Now(), Policy{History: time.Hour}, nil); v.New {
		t.Fatalf("synced term is new: %+v", v)
	}
}
