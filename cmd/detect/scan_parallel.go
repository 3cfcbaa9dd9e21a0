package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sync/errgroup"

	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Sizes of the parallel scan's queues.
const (
	// scanChunkEvents is how many consecutive events the reader hands out
	// at once: large enough that channel operations and the merge cost
	// little per event, small enough that a chunk's events (a few KiB
	// each, bodies included) stay in the hundreds of KiB.
	scanChunkEvents = 512
	// scanQueueChunks bounds the chunks queued per worker and awaiting
	// the merge: with scanChunkEvents, at most a few thousand events are
	// decoded ahead of what has been printed, whatever the input size.
	scanQueueChunks = 4
	// scanSlabBytes is the size of the buffers raw lines are copied into:
	// a decoded event aliases its line (bodies stay raw until a detector
	// reads them), and the file reader reuses its buffer for the next one.
	scanSlabBytes = 256 << 10
	// scanFreeChunks bounds the chunks kept for reuse once printed: as
	// many as can be in flight (queued to the workers and the merge, one
	// being filled), so that a steady scan allocates no chunk, event
	// array or slab after the first few. Fresh ones cost about 3.5 µs of
	// CPU per event with two workers: allocating, zeroing and collecting
	// 512 events and their line copies per chunk.
	scanFreeChunks = scanQueueChunks + 2
)

// scanChunk is a run of consecutive decoded events, in input order. Each
// worker judges the events of its shard (shards[w]) and writes their
// verdicts and findings in place; the last to finish closes done, which
// lets the merge print the chunk in input order.
type scanChunk struct {
	events   []pipeline.Event
	shards   [][]int32 // per worker, indices into events in input order
	verdicts []pipeline.StageVerdict
	findings [][]pipeline.Finding
	// found holds, per worker, the findings of its shard's events, which
	// findings[i] slices: one growing buffer per worker, reused with the
	// chunk, instead of a slice allocated per event with findings.
	found [][]pipeline.Finding
	// terms holds the first-seen rules each event matched; the merge
	// judges them in input order, against one Tracker, so that what is
	// new does not depend on the number of workers.
	terms [][]rules.TermMatch
	// termsFound holds, per worker, the matches terms[i] slices, as found
	// does for findings.
	termsFound [][]rules.TermMatch
	slab       []byte   // copies of the raw lines events alias
	slabs      [][]byte // every slab the chunk filled, reused in order
	slabIdx    int      // slabs[slabIdx] is slab
	pending    atomic.Int32
	done       chan struct{}
}

func newScanChunk(workers int) *scanChunk {
	return &scanChunk{
		events:     make([]pipeline.Event, 0, scanChunkEvents),
		shards:     make([][]int32, workers),
		found:      make([][]pipeline.Finding, workers),
		termsFound: make([][]rules.TermMatch, workers),
		done:       make(chan struct{}),
	}
}

// reset readies a printed chunk for reuse: its buffers keep their
// capacity. Nothing may reference the chunk's events or slabs any more:
// the merge is done with it, and, as with the reader's buffer that the
// single-worker scan decodes from, no detector keeps an event's bytes
// past its Detect call (strings are copied out of the line).
func (c *scanChunk) reset() {
	clear(c.events) // drop the references to bodies and strings
	c.events = c.events[:0]
	for w := range c.shards {
		c.shards[w] = c.shards[w][:0]
		clear(c.found[w])
		c.found[w] = c.found[w][:0]
		clear(c.termsFound[w])
		c.termsFound[w] = c.termsFound[w][:0]
	}
	clear(c.findings)
	clear(c.terms)
	c.slabIdx = 0
	if len(c.slabs) > 0 {
		c.slab = c.slabs[0][:0]
	}
	c.done = make(chan struct{})
}

// keep copies data into the chunk's slab, so that it outlives the reader's
// buffer.
func (c *scanChunk) keep(data []byte) []byte {
	if cap(c.slab)-len(c.slab) < len(data) {
		// The old slab stays reachable through the events that alias it.
		c.slab = nil
		for c.slabIdx+1 < len(c.slabs) {
			c.slabIdx++
			if cap(c.slabs[c.slabIdx]) >= len(data) {
				c.slab = c.slabs[c.slabIdx][:0]
				break
			}
		}
		if c.slab == nil {
			c.slab = make([]byte, 0, max(scanSlabBytes, len(data)))
			c.slabs = append(c.slabs, c.slab)
			c.slabIdx = len(c.slabs) - 1
		}
	}
	start := len(c.slab)
	c.slab = append(c.slab, data...)
	return c.slab[start:len(c.slab):len(c.slab)]
}

// sized makes s hold n zero elements, reusing its array when it can.
func sized[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// shardOf picks the worker for ev by its Kafka message key
// (pipeline.MessageKey, the subject ingest partitions by), so that one
// worker sees all of one credential's events, in input order, as one
// consumer sees all of a partition in `detect run`. The stages of one
// request share their subject, so each worker's StageGate sees every stage
// of the requests it judges.
func shardOf(cluster string, ev *pipeline.Event, workers int) int {
	return int(xxhash.Sum64(pipeline.MessageKey(cluster, ev)) % uint64(workers))
}

// scanWorker is one shard's judge: its own StageGate and built-in
// detectors (their Windows hold per-subject state), and the rule set,
// which is read-only and safe to share.
type scanWorker struct {
	gate     *pipeline.StageGate
	set      pipeline.EventDetector
	termSet  *rules.Set // nil without first-seen rules
	in       chan *scanChunk
	verdicts map[pipeline.StageVerdict]int
}

func (w *scanWorker) run(ctx context.Context, idx int) error {
	var buf []pipeline.Finding
	for {
		var c *scanChunk
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case c = <-w.in:
		}
		if c == nil {
			return nil // closed: the reader is done
		}
		for _, i := range c.shards[idx] {
			ev := &c.events[i]
			v := w.gate.Admit(ev)
			c.verdicts[i] = v
			w.verdicts[v]++
			if v != pipeline.StageJudged {
				continue
			}
			// Detect gets an empty slice, as in the single-worker scan:
			// the rules' deference looks at what out already holds.
			buf = w.set.Detect(ev, buf[:0])
			if len(buf) > 0 {
				start := len(c.found[idx])
				c.found[idx] = append(c.found[idx], buf...)
				n := len(c.found[idx])
				// Full slice expression: the merge's appends (first-seen
				// findings) copy instead of writing over the next event's.
				c.findings[i] = c.found[idx][start:n:n]
			}
			if w.termSet != nil {
				start := len(c.termsFound[idx])
				c.termsFound[idx] = w.termSet.Terms(ev, c.termsFound[idx])
				if n := len(c.termsFound[idx]); n > start {
					c.terms[i] = c.termsFound[idx][start:n:n]
				}
			}
		}
		if c.pending.Add(-1) == 0 {
			close(c.done)
		}
	}
}

// scanParallel is `detect scan` with workers > 1: the calling goroutine
// reads and decodes the files in order (its counts and messages are those
// of the single-worker scan), workers judge the events of their shards,
// and a merge prints each chunk's findings in input order once every
// worker is done with it. The findings and counts equal a single worker's
// as long as no detector correlates events of different subjects; see
// TestScanWorkersMatch.
func (s *scanner) scanParallel(ctx context.Context, files []string, workers int, newBuiltins func() (*detectors.Suite, error), ruleSet pipeline.EventDetector, terms *rules.TermsDetector) error {
	ws := make([]*scanWorker, workers)
	for i := range ws {
		builtins, err := newBuiltins()
		if err != nil {
			return err
		}
		ws[i] = &scanWorker{
			gate:     pipeline.NewStageGate(pipeline.StageGateConfig{}),
			set:      detectorChain{builtins, ruleSet},
			in:       make(chan *scanChunk, scanQueueChunks),
			verdicts: map[pipeline.StageVerdict]int{},
		}
		if terms != nil {
			ws[i].termSet = terms.Set()
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	ordered := make(chan *scanChunk, scanQueueChunks*workers)
	for i, w := range ws {
		g.Go(func() error { return w.run(ctx, i) })
	}
	free := make(chan *scanChunk, scanFreeChunks*workers)
	g.Go(func() error { return s.merge(ctx, ordered, free, terms) })
	g.Go(func() error {
		defer func() {
			for _, w := range ws {
				close(w.in)
			}
			close(ordered)
		}()
		c := newScanChunk(workers)
		dispatch := func() error {
			if len(c.events) == 0 {
				return nil
			}
			c.verdicts = sized(c.verdicts, len(c.events))
			c.findings = sized(c.findings, len(c.events))
			c.terms = sized(c.terms, len(c.events))
			c.pending.Store(int32(workers))
			// The merge learns of the chunk before any worker can finish
			// it; it waits on done, which every worker signals.
			select {
			case ordered <- c:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			for _, w := range ws {
				select {
				case w.in <- c:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			select {
			case c = <-free:
				c.reset()
			default:
				c = newScanChunk(workers)
			}
			return nil
		}
		s.target = func(data []byte) (*pipeline.Event, []byte) {
			c.events = append(c.events, pipeline.Event{})
			return &c.events[len(c.events)-1], c.keep(data)
		}
		s.drop = func() { c.events = c.events[:len(c.events)-1] }
		s.emit = func(ev *pipeline.Event) error {
			w := shardOf(s.cluster, ev, workers)
			c.shards[w] = append(c.shards[w], int32(len(c.events)-1))
			if len(c.events) < scanChunkEvents {
				return nil
			}
			return dispatch()
		}
		for _, f := range files {
			if err := s.file(ctx, f); err != nil {
				return err
			}
		}
		return dispatch()
	})
	if err := g.Wait(); err != nil {
		return err
	}
	for _, w := range ws {
		for v, n := range w.verdicts {
			s.verdicts[v] += n
		}
	}
	return nil
}

// merge prints the chunks' findings in input order, each chunk once all
// workers are done with it, judging the first-seen rules the workers
// matched on the way.
func (s *scanner) merge(ctx context.Context, ordered <-chan *scanChunk, free chan<- *scanChunk, terms *rules.TermsDetector) error {
	for c := range ordered {
		select {
		case <-c.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		for i := range c.findings {
			if terms != nil && c.verdicts[i] == pipeline.StageJudged {
				terms.See(terms.Set(), &c.events[i])
			}
			for _, m := range c.terms[i] {
				c.findings[i] = terms.Judge(&c.events[i], m, c.findings[i])
			}
			if err := s.print(c.findings[i]); err != nil {
				return fmt.Errorf("scan: %w", err)
			}
		}
		// Printed: the reader may refill it. When the free list is full
		// the chunk is left to the collector.
		select {
		case free <- c:
		default:
		}
	}
	return nil
}
