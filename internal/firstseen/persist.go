package firstseen

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Saver persists journaled changes; clickhouse.Store implements it.
type Saver interface {
	SaveFirstSeen(ctx context.Context, rows []Update) error
}

// Sink stores batches through another sink and then persists the first-seen
// changes of the batch's events, so that what the Tracker knows is durable
// no earlier than the findings it led to (a crash in between re-detects the
// batch on redelivery, and the same term yields the same finding id) and no
// later than the offsets are committed (a restart does not report again a
// term whose event was committed).
type Sink struct {
	inner pipeline.Sink
	t     *Tracker
	saver Saver
}

var _ pipeline.Sink = (*Sink)(nil)

// NewSink wraps inner. t must journal (Config.Journal).
func NewSink(inner pipeline.Sink, t *Tracker, saver Saver) *Sink {
	return &Sink{inner: inner, t: t, saver: saver}
}

// Write stores b, then saves the changes Observe journaled for b's events
// (and any earlier ones not saved yet). A failed save puts them back and
// returns the error, so that the processor retries the batch: the store
// absorbs the second write of the same rows.
func (s *Sink) Write(ctx context.Context, b pipeline.Batch) error {
	if err := s.inner.Write(ctx, b); err != nil {
		return err
	}
	in := make(map[*pipeline.Event]struct{}, len(b.Events))
	for _, ev := range b.Events {
		in[ev] = struct{}{}
	}
	rows := s.t.Take(func(tag any) bool {
		ev, ok := tag.(*pipeline.Event)
		if !ok {
			return false
		}
		_, stored := in[ev]
		return stored
	})
	if err := s.saver.SaveFirstSeen(ctx, rows); err != nil {
		s.t.untake(rows)
		return fmt.Errorf("saving %d first-seen terms: %w", len(rows), err)
	}
	return nil
}

// untake puts rows Take returned back at the head of the journal.
func (t *Tracker) untake(rows []Update) {
	if len(rows) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.journal = append(rows[:len(rows):len(rows)], t.journal...)
}

// LoadFunc reads persisted rows of terms seen since since and saved at or
// after savedSince (clickhouse.Store.LoadFirstSeen with a row limit).
type LoadFunc func(ctx context.Context, since, savedSince time.Time) ([]Update, error)

// Sync restores what load returns into t every interval until ctx is done:
// what other detect instances learned (one principal's events can reach
// several instances when it uses several credentials, and a rebalance
// moves partitions) reaches this one within about interval. Each load
// reads rows saved since the previous one began, less a minute for clock
// skew between instances.
func Sync(ctx context.Context, t *Tracker, load LoadFunc, policy func(rule string) (Policy, bool), history func() time.Duration, interval time.Duration, log *slog.Logger) {
	last := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := time.Now()
		rows, err := load(ctx, start.Add(-history()), last.Add(-time.Minute))
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("loading first-seen terms of other instances, will retry", "err", err)
			}
			continue
		}
		t.Restore(rows, start, policy)
		last = start
	}
}
