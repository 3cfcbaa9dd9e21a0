package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sync/errgroup"

	"github.com/auditpipe/auditpipe/internal/auditlog"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Sizes of the parallel scan's queues.
const (
	// scanChunkEvents is how many consecutive lines the reader hands out
	// at once: large enough that channel operations and the merge cost
	// little per event, small enough that a chunk's events (a few KiB
	// each, bodies included) stay in the hundreds of KiB.
	scanChunkEvents = 512
	// scanDecodeBlock is how many of a chunk's lines a worker claims to
	// decode at a time. Whichever worker is free decodes the next block,
	// so the decoding spreads over the workers as they have time, in
	// steps small against a chunk and large against an atomic add.
	scanDecodeBlock = 16
	// scanQueueChunks bounds the chunks queued per worker and awaiting
	// the merge: with scanChunkEvents, at most a few thousand events are
	// decoded ahead of what has been printed, whatever the input size.
	// Two keep both workers busy; each chunk more in flight (about 1.5
	// MB: lines, events and what they decoded to) adds five times itself
	// to the heap at GOGC=400, in pages faulted in fresh, and its events
	// are colder in the cache by the time they are judged. Over the
	// realistic 150k-event stream four cost about 50,000 page faults and
	// 1.45 s of CPU, two 38,000 and 1.35 s (one worker: 27,000 faults).
	scanQueueChunks = 2
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

// scanChunk is a run of consecutive lines of one file, in input order.
// The reader fills raw; the workers decode the lines into events, block
// by block, whoever is free (decode), and the last block decoded closes
// decoded. Then each worker judges the events of its shard and writes
// their verdicts and findings in place; the last to finish closes done,
// which lets the merge count and print the chunk in input order.
type scanChunk struct {
	// Filled by the reader.
	raw     [][]byte // the lines (or EventList items), copied into slabs
	lines   []int    // raw[i]'s line number, for messages
	items   []int    // raw[i]'s item number, 0 for a plain line
	file    int      // the index of the file the lines are from
	fileEnd bool     // the file's last chunk

	// Filled by the workers' decode, one entry per line.
	events  []pipeline.Event
	shard   []int32 // the worker judging events[i], or shardUndecodable, shardSkipped
	noStage []bool  // events[i] had no stage (Admit sets one)
	reasons []string
	errs    []error
	// claimed counts the lines handed out to decode, undecoded those not
	// decoded yet.
	claimed   atomic.Int32
	undecoded atomic.Int32
	decoded   chan struct{}

	// Filled by the workers' judging, one entry per line.
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
	// With JSON output, jsonLines holds per worker the JSON lines of the
	// findings in found (formatted where they were raised: see
	// scan_print.go), refs one lineRef per finding in found, and refAt[i]
	// the index in refs of events[i]'s first.
	jsonLines [][]byte
	refs      [][]lineRef
	refAt     []int32
	pending   atomic.Int32
	done      chan struct{}

	slab    []byte   // copies of the raw lines events alias
	slabs   [][]byte // every slab the chunk filled, reused in order
	slabIdx int      // slabs[slabIdx] is slab
}

// The shard of a line no worker judges: it did not decode, or it was
// not decoded (skipLine).
const (
	shardUndecodable = -1
	shardSkipped     = -2
)

func newScanChunk(workers int) *scanChunk {
	return &scanChunk{
		raw:        make([][]byte, 0, scanChunkEvents),
		lines:      make([]int, 0, scanChunkEvents),
		items:      make([]int, 0, scanChunkEvents),
		found:      make([][]pipeline.Finding, workers),
		termsFound: make([][]rules.TermMatch, workers),
		jsonLines:  make([][]byte, workers),
		refs:       make([][]lineRef, workers),
	}
}

// reset readies a printed chunk for reuse: its buffers keep their
// capacity. Nothing may reference the chunk's events or slabs any more:
// the merge is done with it, and, as with the reader's buffer that the
// single-worker scan decodes from, no detector keeps an event's bytes
// past its Detect call (strings are copied out of the line).
func (c *scanChunk) reset() {
	c.raw, c.lines, c.items = c.raw[:0], c.lines[:0], c.items[:0]
	c.fileEnd = false
	for w := range c.found {
		clear(c.found[w])
		c.found[w] = c.found[w][:0]
		clear(c.termsFound[w])
		c.termsFound[w] = c.termsFound[w][:0]
		c.jsonLines[w] = c.jsonLines[w][:0]
		c.refs[w] = c.refs[w][:0]
	}
	clear(c.findings)
	clear(c.terms)
	c.slabIdx = 0
	if len(c.slabs) > 0 {
		c.slab = c.slabs[0][:0]
	}
}

// release drops what the chunk's events decoded to once they are printed,
// so that the collector need not keep it while the chunk waits for reuse,
// and leaves every event zero for the next decode.
func (c *scanChunk) release() {
	clear(c.events)
}

// add copies a line into the chunk.
func (c *scanChunk) add(line, item int, data []byte) {
	c.raw = append(c.raw, c.keep(data))
	c.lines = append(c.lines, line)
	c.items = append(c.items, item)
}

// ready sizes the per-line arrays for the lines the reader added and
// arms the chunk for workers workers.
func (c *scanChunk) ready(workers int) {
	n := len(c.raw)
	// events, shard and noStage are written for every line by decode;
	// the events are zero (a new array, or cleared by release).
	c.events = grown(c.events, n)
	c.shard = grown(c.shard, n)
	c.noStage = grown(c.noStage, n)
	c.reasons = sized(c.reasons, n)
	c.errs = sized(c.errs, n)
	c.verdicts = sized(c.verdicts, n)
	c.findings = sized(c.findings, n)
	c.terms = sized(c.terms, n)
	// Read only for events with findings, which set it.
	c.refAt = grown(c.refAt, n)
	c.claimed.Store(0)
	c.undecoded.Store(int32(n))
	c.decoded = make(chan struct{})
	if n == 0 {
		close(c.decoded)
	}
	c.pending.Store(int32(workers))
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

// decode decodes blocks of the chunk's lines until none is left to
// claim, and shards each event. Every worker calls it as soon as it
// receives the chunk, so a worker busy judging leaves the decoding to
// the others.
func (c *scanChunk) decode(cluster string, workers int, fullDecode bool) {
	n := int32(len(c.raw))
	for {
		lo := c.claimed.Add(scanDecodeBlock) - scanDecodeBlock
		if lo >= n {
			return
		}
		hi := min(lo+scanDecodeBlock, n)
		for i := lo; i < hi; i++ {
			if skipLine(fullDecode, c.raw[i]) {
				c.shard[i] = shardSkipped
				continue
			}
			ev := &c.events[i] // zero: see release
			reason, err := decodeLine(ev, cluster, c.raw[i])
			if err != nil {
				c.shard[i], c.reasons[i], c.errs[i] = shardUndecodable, reason, err
				continue
			}
			c.noStage[i] = ev.Stage == ""
			c.shard[i] = int32(shardOf(cluster, ev, workers))
		}
		if c.undecoded.Add(lo-hi) == 0 {
			close(c.decoded)
		}
	}
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

// grown makes s hold n elements, reusing its array (and what it holds)
// when it can: for arrays whose every element is written before it is
// read.
func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// shardOf picks the worker for ev by its Kafka message key
// (pipeline.MessageKey, the subject ingest partitions by), so that one
// worker sees all of one credential's events, in input order, as one
// consumer sees all of a partition in `detect run`. The stages of one
// request share their subject, so each worker's StageGate sees every stage
// of the requests it judges. The key is built on the stack: MessageKey
// allocates one per event.
func shardOf(cluster string, ev *pipeline.Event, workers int) int {
	var buf [128]byte
	key := append(append(append(buf[:0], cluster...), '/'), ev.Subject()...)
	return int(xxhash.Sum64(key) % uint64(workers))
}

// scanWorker is one shard's judge: its own StageGate and built-in
// detectors (their Windows hold per-subject state), and the rule set,
// which is read-only and safe to share.
type scanWorker struct {
	gate     *pipeline.StageGate
	builtins pipeline.EventDetector
	rules    pipeline.EventDetector
	// termSet is rules when it has first-seen rules, nil otherwise: its
	// DetectTerms judges both kinds of rule on one reading of an event.
	termSet  *rules.Set
	in       chan *scanChunk
	verdicts verdictCounts
	buf      []pipeline.Finding
	// json: format the findings' JSON lines (the printer's format).
	json bool
	// fullDecode is the scanner's: no stage peek (see skipLine).
	fullDecode bool
}

// run decodes its share of each chunk as it arrives and judges its shard
// of the chunk before: while it waits for the others to finish decoding
// a chunk it can decode the next. When no chunk is waiting it judges at
// once, so that a slow reader does not hold back the findings.
func (w *scanWorker) run(ctx context.Context, idx int, cluster string, workers int) error {
	var prev *scanChunk // decoded (by this worker) and not yet judged
	for {
		var c *scanChunk
		var ok bool
		if prev != nil {
			select {
			case c, ok = <-w.in:
			default:
				if err := w.judge(ctx, prev, idx); err != nil {
					return err
				}
				prev = nil
				continue
			}
		} else {
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case c, ok = <-w.in:
			}
		}
		if !ok { // closed: the reader is done
			if prev != nil {
				return w.judge(ctx, prev, idx)
			}
			return nil
		}
		c.decode(cluster, workers, w.fullDecode)
		if prev != nil {
			if err := w.judge(ctx, prev, idx); err != nil {
				return err
			}
		}
		prev = c
	}
}

// judge judges the events of the worker's shard of c, once every line of
// c is decoded.
func (w *scanWorker) judge(ctx context.Context, c *scanChunk, idx int) error {
	select {
	case <-c.decoded:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	for i, sh := range c.shard {
		if int(sh) != idx {
			continue
		}
		ev := &c.events[i]
		v := w.gate.Admit(ev)
		c.verdicts[i] = v
		w.verdicts[v]++
		if v != pipeline.StageJudged {
			continue
		}
		// Detect gets an empty slice, as in the single-worker scan:
		// the rules' deference looks at what out already holds.
		w.buf = w.builtins.Detect(ev, w.buf[:0])
		termsStart := len(c.termsFound[idx])
		if w.termSet != nil {
			w.buf, c.termsFound[idx] = w.termSet.DetectTerms(ev, w.buf, c.termsFound[idx])
		} else {
			w.buf = w.rules.Detect(ev, w.buf)
		}
		if len(w.buf) > 0 {
			start := len(c.found[idx])
			c.found[idx] = append(c.found[idx], w.buf...)
			n := len(c.found[idx])
			// Full slice expression: the merge's appends (first-seen
			// findings) copy instead of writing over the next event's.
			c.findings[i] = c.found[idx][start:n:n]
			if w.json {
				c.refAt[i] = int32(len(c.refs[idx]))
				c.jsonLines[idx], c.refs[idx] = formatLines(c.jsonLines[idx], c.refs[idx], w.buf)
			}
		}
		if n := len(c.termsFound[idx]); n > termsStart {
			c.terms[i] = c.termsFound[idx][termsStart:n:n]
		}
	}
	if c.pending.Add(-1) == 0 {
		close(c.done)
	}
	return nil
}

// scanParallel is `detect scan` with workers > 1: the calling goroutine
// reads the files' lines in order into chunks, the workers decode each
// chunk together and then judge the events of their shards, and a merge
// counts and prints each chunk in input order once every worker is done
// with it (its counts and messages are those of the single-worker scan).
// The findings and counts equal a single worker's as long as no detector
// correlates events of different subjects; see TestScanWorkersMatch.
func (s *scanner) scanParallel(ctx context.Context, files []string, workers int, newBuiltins func() (*detectors.Suite, error), ruleSet pipeline.EventDetector, terms *rules.TermsDetector) error {
	ws := make([]*scanWorker, workers)
	for i := range ws {
		builtins, err := newBuiltins()
		if err != nil {
			return err
		}
		ws[i] = &scanWorker{
			gate:     pipeline.NewStageGate(pipeline.StageGateConfig{}),
			builtins: builtins,
			rules:    ruleSet,
			in:       make(chan *scanChunk, scanQueueChunks),
			json:     s.json,

			fullDecode: s.fullDecode,
		}
		if terms != nil {
			// newScanTerms judges the first-seen rules of ruleSet itself.
			ws[i].termSet = terms.Set()
			if ws[i].termSet != ruleSet {
				return errors.New("scan: the first-seen rules are not those of the rule set")
			}
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	ordered := make(chan *scanChunk, scanQueueChunks*workers)
	for i, w := range ws {
		g.Go(func() error { return w.run(ctx, i, s.cluster, workers) })
	}
	free := make(chan *scanChunk, scanFreeChunks*workers)
	g.Go(func() error { return s.merge(ctx, files, ordered, free, terms) })
	g.Go(func() error {
		defer func() {
			for _, w := range ws {
				close(w.in)
			}
			close(ordered)
		}()
		return s.read(ctx, files, workers, ws, ordered, free)
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

// read splits files into chunks of lines, each of one file, and hands
// each to the merge and to every worker, in order.
func (s *scanner) read(ctx context.Context, files []string, workers int, ws []*scanWorker, ordered, free chan *scanChunk) error {
	c := newScanChunk(workers)
	dispatch := func(file int, fileEnd bool) error {
		c.fileEnd = fileEnd
		c.ready(workers)
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
		c.file = file
		return nil
	}
	lines := 0
	for fi, path := range files {
		c.file = fi
		err := auditlog.Events(path, func(line, item int, data []byte) error {
			// Reading is not interruptible; check now and then.
			if lines++; lines%4096 == 0 && ctx.Err() != nil {
				return context.Cause(ctx)
			}
			c.add(line, item, data)
			if len(c.raw) < scanChunkEvents {
				return nil
			}
			return dispatch(fi, false)
		})
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		// The file's last chunk, empty if the file was: the merge
		// learns from it whether the file had any event.
		if err := dispatch(fi+1, true); err != nil {
			return err
		}
	}
	return nil
}

// merge counts and prints the chunks in input order, each once all
// workers are done with it, judging the first-seen rules the workers
// matched on the way.
func (s *scanner) merge(ctx context.Context, files []string, ordered <-chan *scanChunk, free chan<- *scanChunk, terms *rules.TermsDetector) error {
	before := s.events // events of the files before the current one
	for c := range ordered {
		select {
		case <-c.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		path := files[c.file]
		for i := range c.raw {
			switch c.shard[i] {
			case shardSkipped:
				s.skipped()
				continue
			case shardUndecodable:
				s.undecodable(path, c.lines[i], c.items[i], c.reasons[i], c.errs[i])
				continue
			}
			s.decoded(c.noStage[i])
			if terms != nil && c.verdicts[i] == pipeline.StageJudged {
				terms.See(terms.Set(), &c.events[i])
			}
			nw := len(c.findings[i]) // the worker's; Judge appends
			for _, m := range c.terms[i] {
				c.findings[i] = terms.Judge(&c.events[i], m, c.findings[i])
			}
			if !s.json {
				if err := s.print(c.findings[i]); err != nil {
					return fmt.Errorf("scan: %w", err)
				}
			} else if err := s.addFormatted(c, i, nw); err != nil {
				return fmt.Errorf("scan: %w", err)
			}
		}
		// One write per chunk of the lines its events' findings added.
		if s.json {
			if err := s.flushLines(); err != nil {
				return fmt.Errorf("scan: %w", err)
			}
		}
		if c.fileEnd {
			if s.events == before {
				s.empty = append(s.empty, path)
			}
			before = s.events
		}
		// Printed: the reader may refill it. When the free list is full
		// the chunk is left to the collector.
		c.release()
		select {
		case free <- c:
		default:
		}
	}
	return nil
}
