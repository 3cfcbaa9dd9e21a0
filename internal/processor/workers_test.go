package processor_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/processor"
)

// partitionedStream is gen's attack-rich stream as a consumer of a
// partitions-partition topic would fetch it: each record keyed like ingest
// keys it (pipeline.MessageKey) and placed on the partition its key hashes
// to, with per-partition offsets, the partitions interleaved in round
// robin. A record that does not decode (a poison message) and an oversized
// one are mixed in.
func partitionedStream(t *testing.T, n, partitions int) []pipeline.Record {
	t.Helper()
	g := gen.New(gen.Config{Seed: 5, Cluster: "prod-eu-1", AttackRatio: 0.3})
	perPart := make([][]pipeline.Record, partitions)
	next := make([]int64, partitions)
	add := func(key, value []byte) {
		p := int(xxhash.Sum64(key) % uint64(partitions))
		perPart[p] = append(perPart[p], pipeline.Record{Message: pipeline.Message{Key: key, Value: value}, Partition: p, Offset: next[p]})
		next[p]++
	}
	for i := range n {
		e := g.Next()
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod-eu-1", e.JSON); err != nil {
			t.Fatalf("decoding generated event: %v", err)
		}
		add(pipeline.MessageKey("prod-eu-1", &ev), e.JSON)
		switch i {
		case n / 3:
			add([]byte("prod-eu-1/mallory"), []byte(`{"kind":"Event","auditID":`))
		case n / 2:
			add([]byte("prod-eu-1/mallory"), make([]byte, 100<<10))
		}
	}
	var out []pipeline.Record
	for i := 0; ; i++ {
		more := false
		for p := range perPart {
			if i < len(perPart[p]) {
				out = append(out, perPart[p][i])
				more = true
			}
		}
		if !more {
			return out
		}
	}
}

// ledger is a sink, dead-letter sink and source in one, so that every
// commit can be checked against what was stored: it fails the test when a
// commit covers an offset that was neither stored nor dead-lettered.
type ledger struct {
	t *testing.T
	memSource
	mu       sync.Mutex
	done     map[[2]int64]bool   // partition, offset → stored or dead-lettered
	pos      map[string][2]int64 // auditID/stage → partition, offset
	rows     []string
	findings []string
	dead     []string
	order    map[string][]string // message key → events judged, in order
}

func newLedger(t *testing.T, recs []pipeline.Record) *ledger {
	l := &ledger{t: t, memSource: memSource{recs: recs}, done: map[[2]int64]bool{}, pos: map[string][2]int64{}}
	for _, r := range recs {
		var d pipeline.Event
		if auditjson.Decode(&d, "prod-eu-1", r.Value) == nil {
			l.pos[string(d.AuditID)+"/"+string(d.Stage)] = [2]int64{int64(r.Partition), r.Offset}
		}
	}
	return l
}

func (l *ledger) Write(_ context.Context, b pipeline.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range b.Events {
		l.rows = append(l.rows, string(ev.AuditID)+"/"+string(ev.Stage))
		// The event's record is found by its auditID and stage: unique in
		// gen's stream.
		pos, ok := l.pos[string(ev.AuditID)+"/"+string(ev.Stage)]
		if !ok {
			l.t.Errorf("stored event %s/%s is not in the stream", ev.AuditID, ev.Stage)
		}
		l.done[pos] = true
	}
	for _, f := range b.Findings {
		// Not the auditID: a detector that deduplicates across keys
		// (stale-token, per service account, while the key is the token)
		// attaches its one finding to whichever of the keys' events it
		// saw first, which depends on how partitions interleave, with one
		// worker as with several.
		l.findings = append(l.findings, f.ID+" "+f.Detector)
	}
	return nil
}

func (l *ledger) WriteDeadLetters(_ context.Context, dls []pipeline.DeadLetter) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, dl := range dls {
		l.done[[2]int64{int64(dl.Record.Partition), dl.Record.Offset}] = true
		l.dead = append(l.dead, fmt.Sprintf("%d/%d %s", dl.Record.Partition, dl.Record.Offset, dl.Reason))
	}
	return nil
}

func (l *ledger) Commit(ctx context.Context, recs []pipeline.Record) error {
	l.mu.Lock()
	for _, c := range recs {
		for o := int64(0); o <= c.Offset; o++ {
			if !l.done[[2]int64{int64(c.Partition), o}] {
				l.t.Errorf("commit of partition %d up to offset %d covers offset %d, which is not stored", c.Partition, c.Offset, o)
				break
			}
		}
	}
	l.mu.Unlock()
	return l.memSource.Commit(ctx, recs)
}

// TestWorkersMatchOne runs the built-in detectors, the default rule pack
// and first-seen rules over a multi-partition stream with one prepare
// worker and with several: the stored rows, findings (ids included) and
// dead letters are the same, every partition is committed to its end, and
// no commit ever covers an offset not yet stored (the ledger checks each
// one as it happens).
func TestWorkersMatchOne(t *testing.T) {
	recs := partitionedStream(t, 2000, 6)
	run := func(workers int) *ledger {
		builtins, err := detectors.New(detectors.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		set, err := rules.LoadDefault(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tracker, err := firstseen.New(firstseen.Config{})
		if err != nil {
			t.Fatal(err)
		}
		order := &orderRecorder{seen: map[string][]string{}}
		newSet := func() pipeline.EventDetector {
			return chain{order, builtins, set, rules.NewTermsDetector(func() *rules.Set { return set }, tracker)}
		}
		l := newLedger(t, recs)
		p, err := processor.New(processor.Config{BatchRecords: 400, MaxRecordBytes: 64 << 10, ExitWhenIdle: 200 * time.Millisecond, Workers: workers},
			l, newSet(), l, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.SetDetectorFactory(newSet)
		p.SetDeadLetters(l)
		if err := p.Run(context.Background()); err != nil {
			t.Fatalf("%d workers: Run: %v", workers, err)
		}
		l.order = order.seen
		slices.Sort(l.rows)
		slices.Sort(l.findings)
		slices.Sort(l.dead)
		return l
	}
	one := run(1)
	if len(one.findings) < 100 || len(one.dead) != 2 {
		t.Fatalf("1 worker: %d findings, dead letters %v: want a finding-rich stream with 2 dead letters", len(one.findings), one.dead)
	}
	want := map[int]int64{}
	for _, r := range recs {
		want[r.Partition] = max(want[r.Partition], r.Offset)
	}
	for _, workers := range []int{1, 4} {
		got := one
		if workers != 1 {
			got = run(workers)
		}
		if !slices.Equal(got.rows, one.rows) {
			t.Errorf("%d workers stored %d rows, unlike 1 worker's %d", workers, len(got.rows), len(one.rows))
		}
		if !slices.Equal(got.findings, one.findings) {
			t.Errorf("%d workers: %d findings, unlike 1 worker's %d; only with %d: %v; only with 1: %v", workers, len(got.findings), len(one.findings),
				workers, minus(got.findings, one.findings), minus(one.findings, got.findings))
		}
		if !maps.EqualFunc(got.order, one.order, slices.Equal) {
			for k, seq := range one.order {
				if !slices.Equal(got.order[k], seq) {
					t.Errorf("%d workers judged key %s's events in the order %v, 1 worker in %v", workers, k, got.order[k], seq)
					break
				}
			}
		}
		if !slices.Equal(got.dead, one.dead) {
			t.Errorf("%d workers: dead letters %v, want %v", workers, got.dead, one.dead)
		}
		if c := got.committed(); !maps.Equal(c, want) {
			t.Errorf("%d workers: committed %v, want every partition to its end %v", workers, c, want)
		}
	}
}

// orderRecorder remembers, per message key, the events it was shown in
// the order it saw them: what a stateful detector keyed by subject sees.
type orderRecorder struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (o *orderRecorder) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := string(pipeline.MessageKey(ev.Cluster, ev))
	o.seen[k] = append(o.seen[k], string(ev.AuditID)+"/"+string(ev.Stage))
	return out
}

// chain runs detectors in order, as detect run's chain does.
type chain []pipeline.EventDetector

func (c chain) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	for _, d := range c {
		out = d.Detect(ev, out)
	}
	return out
}

// minus is a's elements not in b.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
