package rules

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// learnNothing makes every generated term new at once, so that a short
// stream reports hundreds of first sightings to lose or repeat.
const learnNothing = `rules:
  - {rule: sa-new-network, override: append, new_terms: {learning: 0s, key_learning: 0s}}
  - {rule: sa-new-user-agent, override: append, new_terms: {learning: 0s, key_learning: 0s}}
  - {rule: human-secret-read-new-namespace, override: append, new_terms: {learning: 0s}}
  - {rule: exec-new-namespace, override: append, new_terms: {learning: 0s}}
  - {rule: principal-new-verb-resource, override: append, new_terms: {learning: 0s, key_learning: 0s}}
`

// memStore stands in for the first_seen_terms table and the findings
// table: rows appended, findings kept with their ids.
type memStore struct {
	rows     []firstseen.Update
	findings []pipeline.Finding
}

// consumer is one detect instance as the processor runs it: judge a batch
// in order, store its findings, save the first-seen changes of its events
// (firstseen.Sink), commit.
type consumer struct {
	t      *testing.T
	set    *Set
	tr     *firstseen.Tracker
	det    *TermsDetector
	gate   *pipeline.StageGate
	store  *memStore
	synced int // rows of store restored so far
}

func newConsumer(t *testing.T, set *Set, store *memStore) *consumer {
	tr, err := firstseen.New(firstseen.Config{Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	c := &consumer{t: t, set: set, tr: tr, det: NewTermsDetector(func() *Set { return set }, tr),
		gate: pipeline.NewStageGate(pipeline.StageGateConfig{}), store: store}
	c.sync(time.Time{}) // at start: everything saved so far
	return c
}

// sync restores the rows other consumers saved since the last sync.
func (c *consumer) sync(now time.Time) {
	rows := c.store.rows[c.synced:]
	c.synced = len(c.store.rows)
	if now.IsZero() && len(rows) > 0 {
		now = rows[len(rows)-1].Last
	}
	c.tr.Restore(rows, now, c.set.TermPolicy)
}

// crash says where a batch is interrupted: 0 not at all, 1 after
// detection (nothing stored), 2 after the findings are stored (first-seen
// changes not saved), 3 after saving (offsets not committed).
func (c *consumer) batch(raw [][]byte, crash int) bool {
	events := make([]pipeline.Event, len(raw))
	var out []pipeline.Finding
	for i := range raw {
		ev := &events[i]
		if err := auditjson.Decode(ev, "prod", raw[i]); err != nil {
			c.t.Fatal(err)
		}
		if c.gate.Admit(ev) == pipeline.StageJudged {
			out = c.det.Detect(ev, out)
		}
	}
	if crash == 1 {
		return false
	}
	c.store.findings = append(c.store.findings, out...)
	if crash == 2 {
		return false
	}
	in := map[*pipeline.Event]bool{}
	for i := range events {
		in[&events[i]] = true
	}
	c.store.rows = append(c.store.rows, c.tr.Take(func(tag any) bool { ev, _ := tag.(*pipeline.Event); return in[ev] })...)
	return crash != 3
}

func generatedRaw(n int) [][]byte {
	g := gen.New(gen.Config{Seed: 23, Rate: 2, Lifecycle: true})
	raw := make([][]byte, n)
	for i := range raw {
		raw[i] = g.Next().JSON
	}
	return raw
}

func restartSet(t *testing.T) *Set {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadContext(context.Background(), append(files, File{Name: "learn.yaml", Data: []byte(learnNothing)})...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reported maps each (rule, key, term) reported to the finding ids it was
// reported with.
func reported(fs []pipeline.Finding) map[string][]string {
	out := map[string][]string{}
	for _, f := range fs {
		var key, term string
		for _, e := range f.Evidence {
			switch e.Field {
			case EvidenceTermKey:
				key = e.Value
			case EvidenceTerm:
				term = e.Value
			}
		}
		k := f.Detector + "\x00" + key + "\x00" + term
		if !slices.Contains(out[k], f.ID) {
			out[k] = append(out[k], f.ID)
		}
	}
	return out
}

const restartBatch = 1000

// TestFirstSeenRestart crashes detect at each point of a batch's life and
// restarts it from the first_seen_terms rows saved and the last committed
// offset (the batch is redelivered). Every term reported without a crash is
// reported after one, with the same finding id, and none is reported
// twice under different ids: a redelivered batch's findings repeat with
// their ids, which the findings table collapses.
func TestFirstSeenRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("judges 40,000 generated events four times")
	}
	set := restartSet(t)
	raw := generatedRaw(40_000)
	run := func(crashAt map[int]int) *memStore {
		store := &memStore{}
		c := newConsumer(t, set, store)
		for off := 0; off < len(raw); {
			end := min(off+restartBatch, len(raw))
			b := off / restartBatch
			if crash := crashAt[b]; crash != 0 {
				delete(crashAt, b)
				c.batch(raw[off:end], crash)
				c = newConsumer(t, set, store) // restart; offset not advanced
				continue
			}
			c.batch(raw[off:end], 0)
			off = end
		}
		return store
	}
	want := reported(run(nil).findings)
	if len(want) < 50 {
		t.Fatalf("only %d terms reported without a crash: the test needs more", len(want))
	}
	for crash := 1; crash <= 3; crash++ {
		got := reported(run(map[int]int{3: crash, 17: crash, 31: crash}).findings)
		for k, ids := range got {
			if len(ids) > 1 {
				t.Errorf("crash point %d: %q reported under %d ids", crash, k, len(ids))
			}
			if w, ok := want[k]; !ok || w[0] != ids[0] {
				t.Errorf("crash point %d: %q reported as %v, without a crash %v", crash, k, ids, w)
			}
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				t.Errorf("crash point %d: %q lost", crash, k)
			}
		}
	}
	t.Logf("%d terms reported; identical after crashes before storing, before saving terms and before committing", len(want))
}

// TestFirstSeenRebalance runs two consumers over two partitions (split by
// pipeline.MessageKey, as ingest partitions: one service account's pods
// land on both), each syncing the other's saved terms every sync batches,
// and moves partition 1 from the second to the first halfway. No term is
// reported under two ids, none reported by a single consumer is lost, and
// the terms a split key reports that a single consumer would not (learned
// by one instance within the last sync interval) are counted.
func TestFirstSeenRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("judges 40,000 generated events three times")
	}
	set := restartSet(t)
	raw := generatedRaw(40_000)
	parts := [2][][]byte{}
	for _, r := range raw {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", r); err != nil {
			t.Fatal(err)
		}
		p := xxhash.Sum64(pipeline.MessageKey("prod", &ev)) % 2
		parts[p] = append(parts[p], r)
	}
	single := &memStore{}
	one := newConsumer(t, set, single)
	for off := 0; off < len(raw); off += restartBatch {
		one.batch(raw[off:min(off+restartBatch, len(raw))], 0)
	}
	want := reported(single.findings)

	for _, syncEvery := range []int{1, 10} {
		store := &memStore{}
		cs := [2]*consumer{newConsumer(t, set, store), newConsumer(t, set, store)}
		owner := [2]int{0, 1}
		offs := [2]int{}
		const half = restartBatch / 2 // batches per partition are half as full
		for step := 0; offs[0] < len(parts[0]) || offs[1] < len(parts[1]); step++ {
			if step == 20 {
				owner[1] = 0 // rebalance: the second instance leaves
			}
			for p := range 2 {
				if offs[p] >= len(parts[p]) {
					continue
				}
				end := min(offs[p]+half, len(parts[p]))
				cs[owner[p]].batch(parts[p][offs[p]:end], 0)
				offs[p] = end
			}
			if step%syncEvery == 0 {
				for _, c := range cs {
					c.sync(time.Time{})
				}
			}
		}
		got := reported(store.findings)
		extra := 0
		for k, ids := range got {
			if len(ids) > 1 {
				t.Errorf("sync every %d: %q reported under %d ids", syncEvery, k, len(ids))
			}
			if _, ok := want[k]; !ok {
				extra++
			}
		}
		lost := 0
		for k := range want {
			if _, ok := got[k]; !ok {
				lost++
				t.Errorf("sync every %d: %q lost", syncEvery, k)
			}
		}
		t.Logf("sync every %d batches: %d terms as one instance reports them, %d lost, %d more from keys split over partitions", syncEvery, len(want), lost, extra)
	}
}
