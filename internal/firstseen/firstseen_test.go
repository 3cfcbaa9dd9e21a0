package firstseen

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func newTracker(t testing.TB, cfg Config) *Tracker {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

var week = Policy{History: 14 * 24 * time.Hour, Learning: 24 * time.Hour}

func TestObserve(t *testing.T) {
	tr := newTracker(t, Config{})
	f := func(at time.Duration, key, termValue string, p Policy, want Verdict) {
		t.Helper()
		got := tr.Observe("r", "c", key, termValue, t0.Add(at), p, nil)
		if got != want {
			t.Fatalf("at %v %s/%s: got %+v, want %+v", at, key, termValue, got, want)
		}
	}
	day := 24 * time.Hour
	// Learning: the first day is the baseline, terms new but quiet.
	f(0, "sa", "10.0.1.0/24", week, Verdict{New: true, KeyFirstSeen: t0, Terms: 1})
	f(time.Hour, "sa", "10.0.2.0/24", week, Verdict{New: true, KeyFirstSeen: t0, Terms: 2})
	f(2*time.Hour, "sa", "10.0.1.0/24", week, Verdict{KeyFirstSeen: t0, Terms: 2})
	// After learning: a known term is quiet, a new one is reported.
	f(2*day, "sa", "10.0.1.0/24", week, Verdict{KeyFirstSeen: t0, Terms: 2})
	f(2*day, "sa", "203.0.113.0/24", week, Verdict{New: true, Report: true, KeyFirstSeen: t0, Terms: 3})
	f(2*day+time.Second, "sa", "203.0.113.0/24", week, Verdict{KeyFirstSeen: t0, Terms: 3})
	// A new key's first term is reported with KeyLearning zero...
	f(3*day, "bob", "kube-system", week, Verdict{New: true, Report: true, KeyFirstSeen: t0.Add(3 * day), Terms: 1})
	// ...and learned when KeyLearning holds.
	kl := week
	kl.KeyLearning = time.Hour
	f(3*day, "ci", "a", kl, Verdict{New: true, KeyFirstSeen: t0.Add(3 * day), Terms: 1})
	f(3*day+time.Minute, "ci", "b", kl, Verdict{New: true, KeyFirstSeen: t0.Add(3 * day), Terms: 2})
	f(3*day+2*time.Hour, "ci", "c", kl, Verdict{New: true, Report: true, KeyFirstSeen: t0.Add(3 * day), Terms: 3})
	// History: 10.0.2.0/24 was last seen at 1h; 15 days later it is
	// forgotten and new again, while 10.0.1.0/24 (seen at 2 days) is not.
	f(15*day+2*time.Hour, "sa", "10.0.2.0/24", week, Verdict{New: true, Report: true, KeyFirstSeen: t0, Terms: 3})
	f(15*day+2*time.Hour, "sa", "10.0.1.0/24", week, Verdict{KeyFirstSeen: t0, Terms: 3})
	// A key unseen for longer than history starts over.
	f(40*day, "sa", "10.0.1.0/24", week, Verdict{New: true, Report: true, KeyFirstSeen: t0.Add(40 * day), Terms: 1})
	// Rules and clusters do not share state.
	if v := tr.Observe("other", "c", "sa", "10.0.1.0/24", t0.Add(40*day), week, nil); !v.New || v.Report {
		t.Fatalf("another rule: got %+v, want new and learning", v)
	}
}

func TestEviction(t *testing.T) {
	tr := newTracker(t, Config{MaxKeys: 2, MaxTermsPerKey: 2})
	p := Policy{History: time.Hour}
	for i, k := range []string{"a", "b", "c"} {
		tr.Observe("r", "c", k, "x", t0.Add(time.Duration(i)*time.Second), p, nil)
	}
	if s := tr.Stats(); s.Keys != 2 || s.EvictedKeys != 1 {
		t.Fatalf("stats %+v, want 2 keys, 1 evicted", s)
	}
	// "a" was least recently seen and is gone: new again.
	if v := tr.Observe("r", "c", "a", "x", t0.Add(5*time.Second), p, nil); !v.New {
		t.Fatalf("evicted key: got %+v, want new", v)
	}
	// "c" is held (and "b" now evicted).
	if v := tr.Observe("r", "c", "c", "x", t0.Add(6*time.Second), p, nil); v.New {
		t.Fatalf("held key: got %+v, want known", v)
	}
	for i, term := range []string{"y", "z"} {
		tr.Observe("r", "c", "c", term, t0.Add(time.Duration(7+i)*time.Second), p, nil)
	}
	if s := tr.Stats(); s.EvictedTerms != 1 {
		t.Fatalf("stats %+v, want 1 evicted term", s)
	}
	if v := tr.Observe("r", "c", "c", "x", t0.Add(10*time.Second), p, nil); !v.New || v.Terms != 2 {
		t.Fatalf("evicted term: got %+v, want new with 2 terms", v)
	}
}

func TestJournalTakeRestore(t *testing.T) {
	tr := newTracker(t, Config{Journal: true})
	p := Policy{History: 14 * 24 * time.Hour}
	for i, tag := range []int{1, 1, 2, 3} {
		tr.Observe("r", "c", "k", fmt.Sprint("t", i), t0.Add(time.Duration(i)*time.Minute), p, tag)
	}
	// Batch 2 stored: batch 1's changes come along, batch 3's stay.
	got := tr.Take(func(tag any) bool { return tag == 2 })
	if len(got) != 4 { // the baseline row and three terms
		t.Fatalf("took %d updates, want 4: %+v", len(got), got)
	}
	if got[0].Key != "" || got[1].Term != "t0" || got[3].Term != "t2" {
		t.Fatalf("took %+v", got)
	}
	if rest := tr.Take(func(any) bool { return false }); rest != nil {
		t.Fatalf("took %+v with nothing stored", rest)
	}
	// A new tracker restored from what was taken knows t0..t2, and the
	// baseline start: t3 is reported, t2 is not.
	tr2 := newTracker(t, Config{})
	pl := Policy{History: p.History, Learning: time.Hour}
	tr2.Restore(got, t0.Add(2*time.Hour), func(string) (Policy, bool) { return pl, true })
	if v := tr2.Observe("r", "c", "k", "t2", t0.Add(2*time.Hour), pl, nil); v.New {
		t.Fatalf("restored term: %+v", v)
	}
	if v := tr2.Observe("r", "c", "k", "t3", t0.Add(2*time.Hour), pl, nil); !v.Report || v.Terms != 4 || !v.KeyFirstSeen.Equal(t0) {
		t.Fatalf("new term after restore: %+v", v)
	}
	// Rows of a rule no longer loaded are skipped.
	tr3 := newTracker(t, Config{})
	tr3.Restore(got, t0, func(string) (Policy, bool) { return Policy{}, false })
	if s := tr3.Stats(); s.Keys != 0 {
		t.Fatalf("restored %d keys of an unknown rule", s.Keys)
	}
}

func TestJournalBound(t *testing.T) {
	tr := newTracker(t, Config{Journal: true, MaxJournal: 3})
	for i := range 5 {
		tr.Observe("r", "c", "k", fmt.Sprint(i), t0, week, i)
	}
	got := tr.Take(func(any) bool { return true })
	if len(got) != 3 || got[2].Term != "4" || tr.Stats().DroppedJournal != 3 {
		t.Fatalf("took %+v, stats %+v", got, tr.Stats())
	}
}

// BenchmarkObserveKeys measures the memory a tracked key costs: b.N keys
// of one term each (the common case: a principal and its one network), as
// heap bytes per key.
func BenchmarkObserveKeys(b *testing.B) {
	b.ReportAllocs()
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("system:serviceaccount:ns-%d:sa-%d", i%1000, i)
	}
	tr := newTracker(b, Config{MaxKeys: b.N + 1})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i, k := range keys {
		tr.Observe("sa-new-network", "prod", k, "10.244.1.0/24", t0.Add(time.Duration(i)*time.Millisecond), week, nil)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "bytes/key")
	runtime.KeepAlive(tr)
	runtime.KeepAlive(keys) // else freeing them is subtracted
}

// TestHundredThousandKeys holds detect's memory target: 100,000 keys of
// four terms each under five rules stay far below 512 MiB of heap.
func TestHundredThousandKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 keys")
	}
	tr := newTracker(t, Config{})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 100_000 {
		k := fmt.Sprintf("user-%d", i)
		for j := range 4 {
			tr.Observe(fmt.Sprint("rule-", i%5), "prod", k, fmt.Sprint("term-", j), t0.Add(time.Duration(i)*time.Second), week, nil)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := after.HeapAlloc - before.HeapAlloc
	t.Logf("100,000 keys of 4 terms: %d KiB of heap, %d bytes/key; process RSS %d MiB", heap>>10, heap/100_000, rssMiB(t))
	if rss := rssMiB(t); rss > 512 {
		t.Errorf("process RSS %d MiB, over detect's 512 MiB target", rss)
	}
	if tr.Stats().Keys != 100_000 || heap > 64<<20 {
		t.Fatalf("%d keys in %d bytes: want 100,000 within 64 MiB", tr.Stats().Keys, heap)
	}
}

// TestStart: learning runs from when the rule began watching the cluster,
// not from its first match.
func TestStart(t *testing.T) {
	tr := newTracker(t, Config{})
	tr.Start("r", "c", t0, nil)
	tr.Start("r", "c", t0.Add(time.Hour), nil) // later: keeps the earliest
	if v := tr.Observe("r", "c", "alice", "kube-system", t0.Add(25*time.Hour), week, nil); !v.Report {
		t.Fatalf("first match a day after the start: %+v, want reported", v)
	}
	if v := tr.Observe("r", "other", "alice", "kube-system", t0.Add(25*time.Hour), week, nil); v.Report {
		t.Fatalf("a cluster never started: %+v, want learning", v)
	}
}

// rssMiB reads the process's resident set size (Linux), or 0.
func rssMiB(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Logf("reading RSS: %v", err)
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb >> 10
		}
	}
	return 0
}

// TestRegisterSecondTrackerErrs: the gauges read their Tracker, so a
// second Tracker on one registry gets an error from Register, not a panic.
func TestRegisterSecondTrackerErrs(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := range 2 {
		tr, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		err = Register(reg, tr)
		if (err != nil) != (i == 1) {
			t.Fatalf("Register %d: %v", i, err)
		}
	}
}
