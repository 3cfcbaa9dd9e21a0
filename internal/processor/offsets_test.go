package processor

import (
	"slices"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestOffsetTracker(t *testing.T) {
	tr := newOffsetTracker()
	rec := func(p int, o int64) pipeline.Record { return pipeline.Record{Partition: p, Offset: o} }
	for o := int64(10); o < 15; o++ {
		r := rec(0, o)
		tr.fetched(&r)
	}
	r := rec(3, 7)
	tr.fetched(&r)
	f := func(finished []pipeline.Record, want []pipeline.Record) {
		t.Helper()
		tr.finished(finished)
		got := tr.commits()
		pos := func(r pipeline.Record) [2]int64 { return [2]int64{int64(r.Partition), r.Offset} }
		if !slices.EqualFunc(got, want, func(a, b pipeline.Record) bool { return pos(a) == pos(b) }) {
			t.Errorf("after finishing %v: commits %v, want %v", finished, got, want)
		}
		tr.committed(got)
	}
	// 12 and 13 finish first: nothing before them is done, so nothing to
	// commit on partition 0.
	f([]pipeline.Record{rec(0, 12), rec(0, 13)}, nil)
	f([]pipeline.Record{rec(0, 10)}, []pipeline.Record{rec(0, 10)})
	f([]pipeline.Record{rec(3, 7), rec(0, 11)}, []pipeline.Record{rec(0, 13), rec(3, 7)})
	// Already committed: nothing new.
	f(nil, nil)
	if n := tr.pending(); n != 1 {
		t.Errorf("pending = %d, want 1 (offset 14)", n)
	}
	f([]pipeline.Record{rec(0, 14)}, []pipeline.Record{rec(0, 14)})
}
