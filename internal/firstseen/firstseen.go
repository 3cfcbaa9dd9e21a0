// Package firstseen is the memory behind first-seen (new_terms) rules: for
// each rule, cluster and key (a principal, say) the terms it was seen with
// (networks, user-agent families, namespaces) and when, so that a term the
// key never used within the rule's history can be reported.
//
// Time is the events' own time, never the wall clock, so that a scan of
// old logs, a replay after a restart and live traffic give the same
// answers. Memory is bounded: at most Config.MaxKeys keys (least recently
// seen evicted first) of at most Config.MaxTermsPerKey terms each. Keys and
// terms are held as 64-bit hashes; the strings are kept only in the journal
// of changes waiting to be persisted (see Tracker.Take).
//
// Eviction errs towards silence: an evicted key that comes back is a new
// key, and whether a new key's first term is reported is the rule's
// KeyLearning policy, while a forgotten term of a key still held is
// reported again. The shipped rules set KeyLearning where a new key is
// routine (a service account on a node it never ran on), so eviction costs
// missed findings there rather than false ones.
package firstseen

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	// DefaultMaxKeys bounds the keys held. A key costs about 150 bytes
	// with one term (BenchmarkObserveKeys reports bytes/key), so the
	// default stays near 30 MiB, far inside detect's 512 MiB, while
	// covering every principal of clusters with tens of thousands of
	// service accounts.
	DefaultMaxKeys = 200_000
	// DefaultMaxTermsPerKey bounds one key's terms: a principal that uses
	// hundreds of namespaces or networks is not well described by a
	// baseline of them, and an attacker must not grow one key without
	// bound. Beyond it the least recently seen term is forgotten (and
	// reported again if it returns).
	DefaultMaxTermsPerKey = 64
	// DefaultMaxJournal bounds the changes waiting to be persisted; see
	// Tracker.Take. Beyond it the oldest are dropped and counted: a
	// restart may then report their terms again.
	DefaultMaxJournal = 1_000_000
)

// Config bounds a Tracker's memory.
type Config struct {
	// MaxKeys is the most keys held, over all rules and clusters.
	MaxKeys int
	// MaxTermsPerKey is the most terms held for one key.
	MaxTermsPerKey int
	// Journal makes the Tracker record every change for Take, so that it
	// can be persisted. Off for detect scan, whose state lives only as
	// long as the scan.
	Journal bool
	// MaxJournal bounds the changes recorded and not yet taken.
	MaxJournal int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.MaxTermsPerKey == 0 {
		c.MaxTermsPerKey = DefaultMaxTermsPerKey
	}
	if c.MaxJournal == 0 {
		c.MaxJournal = DefaultMaxJournal
	}
	return c
}

// Validate reports every out-of-range field.
func (c Config) Validate() error {
	var errs []error
	if c.MaxKeys < 1 {
		errs = append(errs, fmt.Errorf("first_seen.max_keys must be positive, got %d", c.MaxKeys))
	}
	if c.MaxTermsPerKey < 1 {
		errs = append(errs, fmt.Errorf("first_seen.max_terms_per_key must be positive, got %d", c.MaxTermsPerKey))
	}
	if c.MaxJournal < 1 {
		errs = append(errs, fmt.Errorf("first_seen.max_journal must be positive, got %d", c.MaxJournal))
	}
	return errors.Join(errs...)
}

// Policy is one rule's notion of new.
type Policy struct {
	// History is how long a term stays known after it was last seen.
	History time.Duration
	// Learning keeps the rule quiet in a cluster until it has watched the
	// cluster this long, measured from the first event it judged there.
	Learning time.Duration
	// KeyLearning keeps a key quiet until it has been known this long: its
	// terms until then are its baseline. Zero reports a new key's first
	// term too (once the rule's Learning is over).
	KeyLearning time.Duration
}

// Verdict is what Observe found.
type Verdict struct {
	// New is set when the term was not known for the key.
	New bool
	// Report is set when New and neither learning period holds.
	Report bool
	// KeyFirstSeen is when the key was first seen (within history).
	KeyFirstSeen time.Time
	// Terms is how many distinct terms the key has now, this one included.
	Terms int
}

// Update is one change to persist: a key's term seen at Last, the key
// first seen at KeyFirst. A rule's baseline start in a cluster is an Update
// with empty Key and Term and Last the start.
type Update struct {
	Rule, Cluster, Key, Term string
	KeyFirst, Last           time.Time
	// Tag is what the caller passed to Observe (detect passes the event),
	// so that Take can hand over exactly the changes of stored events.
	Tag any
}

// Stats are counters of a Tracker's bounds at work.
type Stats struct {
	Keys, EvictedKeys, EvictedTerms, DroppedJournal int
}

type term struct {
	h    uint64
	last int64 // unix seconds
	// saved is when last was last journaled: a known term is journaled
	// again only once per History/saveEvery, bounding the writes of busy
	// keys to a few per history.
	saved int64
}

type entry struct {
	id          uint64
	first, last int64 // unix seconds
	prev, next  *entry
	terms       []term
}

// saveEvery is how many times per History a term that keeps being seen is
// persisted again, so that a restart still knows it: 14 for a 14-day
// history is a write per term per day.
const saveEvery = 14

// Tracker holds the terms of every rule, cluster and key. It is safe for
// concurrent use; detect calls it from one goroutine in event order.
type Tracker struct {
	mu      sync.Mutex
	cfg     Config
	keys    map[uint64]*entry
	lru     entry // sentinel: lru.next is the most recently seen
	starts  map[ruleCluster]int64
	journal []Update
	stats   Stats
}

// New returns an empty Tracker. cfg is used WithDefaults.
func New(cfg Config) (*Tracker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, keys: map[uint64]*entry{}, starts: map[ruleCluster]int64{}}
	t.lru.next, t.lru.prev = &t.lru, &t.lru
	return t, nil
}

// KeyID hashes a rule, cluster and key into the id the Tracker holds them
// by. The NUL separators keep ("a", "b/c") apart from ("a/b", "c").
func KeyID(rule, cluster, key string) uint64 {
	d := xxhash.New()
	// xxhash's writes never fail.
	_, _ = d.WriteString(rule)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(cluster)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(key)
	return d.Sum64()
}

// ruleCluster keys a rule's learning start in a cluster; a struct, so
// that a lookup builds no string.
type ruleCluster struct{ rule, cluster string }

func baselineKey(rule, cluster string) ruleCluster { return ruleCluster{rule, cluster} }

// Start records that rule began watching cluster at at, unless it did
// earlier: the start of its Learning period. Callers call it for every
// rule on the first event of a cluster they judge, so that a rule whose
// condition first holds weeks later is not still learning then.
func (t *Tracker) Start(rule, cluster string, at time.Time, tag any) {
	now := at.Unix()
	t.mu.Lock()
	defer t.mu.Unlock()
	bk := baselineKey(rule, cluster)
	if start, ok := t.starts[bk]; !ok || now < start {
		t.starts[bk] = now
		t.record(Update{Rule: rule, Cluster: cluster, Last: at, Tag: tag})
	}
}

// Observe records that key was seen with term at time at under rule in
// cluster, and says whether the term is new and to be reported. tag is
// kept with the journaled change (see Take).
func (t *Tracker) Observe(rule, cluster, key, termValue string, at time.Time, p Policy, tag any) Verdict {
	now := at.Unix()
	hist := int64(p.History / time.Second)
	t.mu.Lock()
	defer t.mu.Unlock()

	bk := baselineKey(rule, cluster)
	start, ok := t.starts[bk]
	if !ok || now < start {
		start = now
		t.starts[bk] = now
		t.record(Update{Rule: rule, Cluster: cluster, Last: at, Tag: tag})
	}
	learning := now-start < int64(p.Learning/time.Second)

	id := KeyID(rule, cluster, key)
	e := t.keys[id]
	if e != nil && now-e.last > hist {
		// Every term expired: the key starts over.
		e.first, e.terms = now, e.terms[:0]
	}
	if e == nil {
		e = &entry{id: id, first: now, last: now}
		t.keys[id] = e
		t.pushFront(e)
		t.evict()
	} else {
		t.moveFront(e)
	}
	e.last = max(e.last, now)
	if now < e.first {
		e.first = now
	}

	th := xxhash.Sum64String(termValue)
	live := 0
	found := -1
	for i := range e.terms {
		tm := &e.terms[i]
		if now-tm.last > hist {
			continue
		}
		live++
		if tm.h == th {
			found = i
		}
	}
	v := Verdict{KeyFirstSeen: time.Unix(e.first, 0).UTC()}
	if found >= 0 {
		tm := &e.terms[found]
		tm.last = max(tm.last, now)
		if now-tm.saved >= max(hist/saveEvery, 1) {
			tm.saved = now
			t.record(Update{Rule: rule, Cluster: cluster, Key: key, Term: termValue, KeyFirst: v.KeyFirstSeen, Last: at, Tag: tag})
		}
		v.Terms = live
		return v
	}
	t.addTerm(e, term{h: th, last: now, saved: now}, now, hist)
	t.record(Update{Rule: rule, Cluster: cluster, Key: key, Term: termValue, KeyFirst: v.KeyFirstSeen, Last: at, Tag: tag})
	v.New = true
	v.Terms = min(live+1, t.cfg.MaxTermsPerKey)
	v.Report = !learning && now-e.first >= int64(p.KeyLearning/time.Second)
	return v
}

// addTerm puts tm in e, reusing an expired slot, else evicting the least
// recently seen term when e is full.
func (t *Tracker) addTerm(e *entry, tm term, now, hist int64) {
	oldest := -1
	for i := range e.terms {
		if now-e.terms[i].last > hist {
			e.terms[i] = tm
			return
		}
		if oldest < 0 || e.terms[i].last < e.terms[oldest].last {
			oldest = i
		}
	}
	if len(e.terms) < t.cfg.MaxTermsPerKey {
		e.terms = append(e.terms, tm)
		return
	}
	e.terms[oldest] = tm
	t.stats.EvictedTerms++
}

func (t *Tracker) record(u Update) {
	if !t.cfg.Journal {
		return
	}
	if len(t.journal) >= t.cfg.MaxJournal {
		// Persistence is behind (ClickHouse down for long): drop the
		// oldest change, not the newest, since the newest are what a
		// restart would otherwise re-report soonest.
		n := copy(t.journal, t.journal[1:])
		t.journal = t.journal[:n]
		t.stats.DroppedJournal++
	}
	t.journal = append(t.journal, u)
}

// Take removes and returns the journaled changes up to and including the
// last one whose tag stored reports true, in Observe order. detect calls it
// once a batch is stored, with stored true for that batch's events: the
// changes before them are those of earlier batches (stored, or rejected
// and dead-lettered), and those after belong to the batch being prepared,
// which must not be persisted before its findings are.
func (t *Tracker) Take(stored func(tag any) bool) []Update {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := -1
	for i := len(t.journal) - 1; i >= 0; i-- {
		if stored(t.journal[i].Tag) {
			last = i
			break
		}
	}
	if last < 0 {
		return nil
	}
	// The tags stay: a caller whose save fails puts the rows back
	// (untake), and the retry must still recognise them.
	out := make([]Update, last+1)
	copy(out, t.journal[:last+1])
	n := copy(t.journal, t.journal[last+1:])
	clear(t.journal[n:])
	t.journal = t.journal[:n]
	return out
}

// Restore puts persisted changes back after a restart, or merges those
// another detect instance persisted, as Observe would have recorded them,
// without journaling them again. policy gives a rule's Policy, false for a
// rule no longer loaded (its rows are skipped); terms older than the
// rule's history at now are skipped too.
func (t *Tracker) Restore(rows []Update, now time.Time, policy func(rule string) (Policy, bool)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, u := range rows {
		p, ok := policy(u.Rule)
		if !ok {
			continue
		}
		last := u.Last.Unix()
		if u.Key == "" && u.Term == "" {
			bk := baselineKey(u.Rule, u.Cluster)
			if s, ok := t.starts[bk]; !ok || last < s {
				t.starts[bk] = last
			}
			continue
		}
		hist := int64(p.History / time.Second)
		if now.Unix()-last > hist {
			continue
		}
		id := KeyID(u.Rule, u.Cluster, u.Key)
		e := t.keys[id]
		if e == nil {
			e = &entry{id: id, first: u.KeyFirst.Unix(), last: last}
			t.keys[id] = e
			t.pushFront(e)
			t.evict()
		}
		e.first = min(e.first, u.KeyFirst.Unix())
		e.last = max(e.last, last)
		th := xxhash.Sum64String(u.Term)
		i := 0
		for ; i < len(e.terms) && e.terms[i].h != th; i++ {
		}
		if i < len(e.terms) {
			e.terms[i].last = max(e.terms[i].last, last)
			e.terms[i].saved = max(e.terms[i].saved, last)
			continue
		}
		t.addTerm(e, term{h: th, last: last, saved: last}, last, hist)
	}
}

// Stats returns the Tracker's counters.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Keys = len(t.keys)
	return s
}

func (t *Tracker) pushFront(e *entry) {
	e.prev, e.next = &t.lru, t.lru.next
	t.lru.next.prev = e
	t.lru.next = e
}

func (t *Tracker) moveFront(e *entry) {
	if t.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	t.pushFront(e)
}

func (t *Tracker) evict() {
	for len(t.keys) > t.cfg.MaxKeys {
		old := t.lru.prev
		old.prev.next, t.lru.prev = &t.lru, old.prev
		delete(t.keys, old.id)
		t.stats.EvictedKeys++
	}
}

// Metric names of Register.
const (
	MetricKeys           = "auditpipe_firstseen_keys"
	MetricEvictedKeys    = "auditpipe_firstseen_evicted_keys_total"
	MetricEvictedTerms   = "auditpipe_firstseen_evicted_terms_total"
	MetricJournalDropped = "auditpipe_firstseen_journal_dropped_total"
)

// Register exports t's Stats to reg (nothing when reg is nil). The gauges
// read t itself, so they cannot be shared with another Tracker: a second
// Tracker on one registry gets an error naming the metric, not a panic.
func Register(reg prometheus.Registerer, t *Tracker) error {
	if reg == nil {
		return nil
	}
	stat := func(f func(Stats) int) func() float64 { return func() float64 { return float64(f(t.Stats())) } }
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricKeys, Help: "Keys first-seen rules hold terms for (bounded by max_keys)."}, stat(func(s Stats) int { return s.Keys })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricEvictedKeys, Help: "Keys forgotten because max_keys was reached (least recently seen first)."}, stat(func(s Stats) int { return s.EvictedKeys })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricEvictedTerms, Help: "Terms forgotten because a key reached max_terms_per_key."}, stat(func(s Stats) int { return s.EvictedTerms })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricJournalDropped, Help: "First-seen changes dropped unsaved because the journal was full (ClickHouse down for long)."}, stat(func(s Stats) int { return s.DroppedJournal })),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering first-seen metrics: %w", err)
		}
	}
	return nil
}
