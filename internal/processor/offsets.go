package processor

import (
	"sort"
	"sync"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// offsetTracker knows, per partition, which fetched offsets are still in
// flight, and so the highest offset that can be committed: the last one
// before the oldest record not yet stored. Committing past an in-flight
// record would lose it on a crash; with records finishing out of order
// (parallel workers, a bisected batch) the highest finished offset is not
// safe, only the highest contiguous one.
//
// The processor's loop marks records fetched while its store stage marks
// earlier batches finished and commits, so it is locked.
type offsetTracker struct {
	mu    sync.Mutex
	parts map[int]*partitionOffsets
}

type partitionOffsets struct {
	// inflight holds fetched, unfinished offsets in fetch order, which is
	// offset order within a partition.
	inflight []int64
	done     map[int64]bool
	// committable is the highest offset with nothing in flight at or
	// before it; -1 when none.
	committable int64
	// committed is the last offset handed to Source.Commit.
	committed int64
}

func newOffsetTracker() *offsetTracker {
	return &offsetTracker{parts: map[int]*partitionOffsets{}}
}

// fetched records that r is in flight.
func (t *offsetTracker) fetched(r *pipeline.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.parts[r.Partition]
	if !ok {
		p = &partitionOffsets{done: map[int64]bool{}, committable: -1, committed: -1}
		t.parts[r.Partition] = p
	}
	p.inflight = append(p.inflight, r.Offset)
}

// finished marks recs stored (or dead-lettered) and advances each
// partition's committable offset over the finished prefix.
func (t *offsetTracker) finished(recs []pipeline.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range recs {
		if p, ok := t.parts[recs[i].Partition]; ok {
			p.done[recs[i].Offset] = true
		}
	}
	for _, p := range t.parts {
		n := 0
		for n < len(p.inflight) && p.done[p.inflight[n]] {
			delete(p.done, p.inflight[n])
			p.committable = p.inflight[n]
			n++
		}
		p.inflight = p.inflight[n:]
	}
}

// commits returns one record per partition whose committable offset moved
// since the last call, for Source.Commit, in partition order.
func (t *offsetTracker) commits() []pipeline.Record {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []pipeline.Record
	for part, p := range t.parts {
		if p.committable > p.committed {
			out = append(out, pipeline.Record{Partition: part, Offset: p.committable})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

// committed notes that recs (from commits) were committed.
func (t *offsetTracker) committed(recs []pipeline.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range recs {
		if p, ok := t.parts[r.Partition]; ok && r.Offset > p.committed {
			p.committed = r.Offset
		}
	}
}

// pending is the number of records in flight.
func (t *offsetTracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.parts {
		n += len(p.inflight)
	}
	return n
}
