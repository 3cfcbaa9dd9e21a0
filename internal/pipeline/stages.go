package pipeline

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Bounds of the StageGate's memory. Each remembered request costs about
// 70 bytes (map slot, and an entry of key, timestamp and links; held
// under 150 by TestStageGateMemory), so the defaults hold at most about
// 18 MiB however much traffic passes.
const (
	// DefaultOpenRequests bounds the long-running requests (watch, exec,
	// attach, port-forward, proxy, logs?follow) and failed authentications
	// judged at ResponseStarted whose ResponseComplete has not arrived:
	// about the number of watches and sessions open at once across the
	// clusters one detect instance serves. An entry evicted early costs a
	// second judgement of its request when ResponseComplete arrives, which
	// yields the same finding ids (they name the request, not the stage).
	DefaultOpenRequests = 1 << 17
	// DefaultOpenTTL is how long, in event time, a request judged at
	// ResponseStarted waits for its ResponseComplete: a watch ends within
	// an hour (the apiserver's request timeout), an exec session rarely
	// outlives a working day.
	DefaultOpenTTL = 24 * time.Hour
	// DefaultDoneRequests bounds the requests judged at ResponseComplete,
	// Panic or without a stage, remembered so that the same event delivered
	// twice (webhook retries resend whole batches; log files get
	// concatenated) and a late ResponseStarted are not judged again.
	DefaultDoneRequests = 1 << 17
	// DefaultDoneTTL is how long, in event time, a judged request is
	// remembered: the webhook gives up after five attempts within minutes,
	// and out-of-order stages of one request arrive within seconds.
	DefaultDoneTTL = time.Hour
)

// StageGateConfig bounds a StageGate. Zero values take the defaults.
type StageGateConfig struct {
	OpenRequests int
	OpenTTL      time.Duration
	DoneRequests int
	DoneTTL      time.Duration
}

// WithDefaults returns c with every unset (zero or negative) field set to
// its default.
func (c StageGateConfig) WithDefaults() StageGateConfig {
	if c.OpenRequests <= 0 {
		c.OpenRequests = DefaultOpenRequests
	}
	if c.OpenTTL <= 0 {
		c.OpenTTL = DefaultOpenTTL
	}
	if c.DoneRequests <= 0 {
		c.DoneRequests = DefaultDoneRequests
	}
	if c.DoneTTL <= 0 {
		c.DoneTTL = DefaultDoneTTL
	}
	return c
}

// Validate reports every problem in c, each naming its key. Call it on
// c.WithDefaults(): zero means "default".
func (c StageGateConfig) Validate() error {
	var errs []error
	// The LRUs index their entries with int32.
	if c.OpenRequests <= 0 || c.OpenRequests > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("open_requests must be between 1 and %d, got %d", math.MaxInt32, c.OpenRequests))
	}
	if c.DoneRequests <= 0 || c.DoneRequests > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("done_requests must be between 1 and %d, got %d", math.MaxInt32, c.DoneRequests))
	}
	if c.OpenTTL <= 0 {
		errs = append(errs, fmt.Errorf("open_ttl must be positive, got %s", c.OpenTTL))
	}
	if c.DoneTTL <= 0 {
		errs = append(errs, fmt.Errorf("done_ttl must be positive, got %s", c.DoneTTL))
	}
	return errors.Join(errs...)
}

// StageVerdict is what a StageGate decided about one event.
type StageVerdict uint8

// StageGate verdicts.
const (
	// StageJudged: the first authoritative stage of its request; judge it.
	StageJudged StageVerdict = iota
	// StageNotJudged: a stage no request is judged at (RequestReceived,
	// ResponseStarted of a short request, an unknown stage).
	StageNotJudged
	// StageDuplicate: an authoritative stage of a request already judged
	// from another stage, or the same event again.
	StageDuplicate
)

var stageVerdictNames = [...]string{"judged", "not_judged", "duplicate"}

func (v StageVerdict) String() string { return stageVerdictNames[v] }

// StageGate decides which event of a request is judged, so that each
// request is judged exactly once from whichever authoritative stage
// arrives first (see Event.IsAuthoritative): the apiserver's webhook sends
// batches concurrently, so a long-running request's ResponseComplete can
// overtake its ResponseStarted, and clusters that set
// `omitStages: [ResponseStarted]` send no ResponseStarted at all.
//
// Requests are told apart by cluster and RequestHash, not by auditID
// alone: the auditID comes from the client's Audit-ID header, and a
// client reusing one must not hide its second request behind its first.
//
// Memory is bounded (StageGateConfig): least recently seen requests are
// forgotten first, and entries expire by event time (stage timestamps),
// never the wall clock, so a replay behaves like live traffic. A request
// forgotten too early is judged a second time; the finding ids repeat, so
// storage deduplicates them. A restart forgets everything the same way.
//
// Detect's Processor and `detect scan` share this type, so both judge the
// same events. It is safe for concurrent use.
type StageGate struct {
	mu   sync.Mutex
	open *requestLRU // judged at ResponseStarted, ResponseComplete pending
	done *requestLRU // judged, nothing more expected
}

// NewStageGate builds a StageGate bounded by cfg.
func NewStageGate(cfg StageGateConfig) *StageGate {
	cfg = cfg.WithDefaults()
	return &StageGate{
		open: newRequestLRU(cfg.OpenRequests, cfg.OpenTTL),
		done: newRequestLRU(cfg.DoneRequests, cfg.DoneTTL),
	}
}

// StageLabel names ev's stage for metrics and summaries: the stage, "none"
// when the event carries none, "other" for a value the API does not define
// (the label set stays bounded whatever clients send).
func StageLabel(ev *Event) string {
	switch ev.Stage {
	case "":
		return "none"
	case auditv1.StageRequestReceived, auditv1.StageResponseStarted, auditv1.StageResponseComplete, auditv1.StagePanic:
		return string(ev.Stage)
	}
	return "other"
}

// Admit decides whether ev is judged. An event without a stage (some log
// exports drop it) is judged as ResponseComplete: its Stage is set to
// ResponseComplete before the decision, so detectors, rules and the stored
// row all read that stage. Callers count such events (StageLabel before the
// call says "none").
func (g *StageGate) Admit(ev *Event) StageVerdict {
	if ev.Stage == "" {
		ev.Stage = auditv1.StageResponseComplete
	}
	if !ev.IsAuthoritative() {
		return StageNotJudged
	}
	k := newRequestKey(ev.Cluster, RequestHash(&ev.Event))
	now := ev.StageTimestamp.Time
	if now.IsZero() {
		now = ev.RequestReceivedTimestamp.Time
	}
	started := ev.Stage == auditv1.StageResponseStarted
	g.mu.Lock()
	v := g.admit(k, now, started)
	g.mu.Unlock()
	return v
}

// admit is Admit's decision, under g.mu, for a ResponseStarted event
// (started) or a last stage.
func (g *StageGate) admit(k requestKey, now time.Time, started bool) StageVerdict {
	if started {
		// The request's ResponseComplete (or this event) came first.
		if g.open.has(k, now) || g.done.has(k, now) {
			return StageDuplicate
		}
		g.open.add(k, now)
		return StageJudged
	}
	// ResponseComplete or Panic: the last stage of the request.
	if g.open.remove(k, now) {
		g.done.add(k, now)
		return StageDuplicate
	}
	if g.done.hasOrAdd(k, now) {
		return StageDuplicate
	}
	return StageJudged
}

// Len returns how many requests g remembers.
func (g *StageGate) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open.len() + g.done.len()
}

// RequestHash fingerprints the request an event describes, whatever its
// stage: the fields the apiserver sets once per request (auditID, verb,
// requestURI, user, user agent, source IPs, requestReceivedTimestamp), but
// not the stage, stage timestamp or response. Every stage of one request
// hashes the same; two requests sharing a client-chosen auditID do not.
// Finding ids are built from it (NewFinding), so a request judged from
// ResponseStarted in one run and from ResponseComplete in another yields
// the same ids.
func RequestHash(ev *auditv1.Event) uint64 { return eventHash(ev, false) }

// requestKey names one request of one cluster: its RequestHash mixed with
// a hash of the cluster's name. A plain integer, so the LRUs' maps hash
// and compare 8 bytes per lookup instead of a struct holding a string
// (the gate was 6 % of detect scan's CPU, its map lookups two thirds of
// that). Two requests share a key only if their 64-bit hashes collide,
// which RequestHash alone already risks.
type requestKey uint64

func newRequestKey(cluster string, hash uint64) requestKey {
	// Multiplying by an odd constant keeps the cluster's hash a
	// bijection and spreads it before the XOR.
	return requestKey(xxhash.Sum64String(cluster)*0x9e3779b97f4a7c15 ^ hash)
}

// requestLRU remembers requests with the event time they were last seen,
// forgetting the least recently seen beyond max and treating entries
// older than ttl (in event time) as absent.
//
// The entries live in one slice, linked by index from the most recently
// seen (head) to the least (tail), and the map holds indexes: no
// allocation per request (container/list made two, a list element and
// an entry, 300,000 over a 150,000-event scan), half the memory per
// entry, and a third of the objects the collector has to trace.
type requestLRU struct {
	max   int
	ttl   time.Duration
	items map[requestKey]int32 // index into ents
	ents  []requestEntry
	// head and tail are the most and least recently seen entries, free
	// the first of the entries forgotten and not reused yet (linked by
	// next); noEntry when there is none.
	head, tail, free int32
}

// noEntry ends requestLRU's lists.
const noEntry = -1

type requestEntry struct {
	key        requestKey
	seen       instant
	prev, next int32 // towards head and towards tail
}

// instant is an event time as requestEntry keeps it: the instant of a
// time.Time without its Location pointer, so that the entries hold no
// pointer. The collector then neither scans them (two LRUs of up to
// 131,072 entries per gate, one gate per detect scan worker) nor has
// writes to them go through its write barrier, and an entry is 32 bytes
// instead of 40: filling a gate with 75,000 requests, as the realistic
// 150,000-event scan does, took 30 % less time (BenchmarkStageGateFill).
type instant struct {
	sec  int64 // Unix seconds
	nsec int32
}

func instantOf(t time.Time) instant { return instant{sec: t.Unix(), nsec: int32(t.Nanosecond())} }

// since returns now.Sub of the time i was made from: the same instant,
// and Sub does not depend on the Location.
func (i instant) since(now time.Time) time.Duration {
	return now.Sub(time.Unix(i.sec, int64(i.nsec)))
}

func newRequestLRU(max int, ttl time.Duration) *requestLRU {
	return &requestLRU{max: max, ttl: ttl, items: make(map[requestKey]int32), head: noEntry, tail: noEntry, free: noEntry}
}

// len returns how many requests l remembers.
func (l *requestLRU) len() int { return len(l.items) }

// has reports whether k is remembered and fresh at now. An entry from
// later than now (stages out of order) is fresh.
func (l *requestLRU) has(k requestKey, now time.Time) bool {
	if len(l.items) == 0 {
		return false // most scans open no request: spare the hashing
	}
	i, ok := l.items[k]
	if !ok {
		return false
	}
	if l.ents[i].seen.since(now) > l.ttl {
		l.forget(k, i)
		return false
	}
	l.toFront(i)
	return true
}

// remove forgets k and reports whether it was remembered and fresh.
func (l *requestLRU) remove(k requestKey, now time.Time) bool {
	if len(l.items) == 0 {
		return false
	}
	i, ok := l.items[k]
	if !ok {
		return false
	}
	fresh := l.ents[i].seen.since(now) <= l.ttl
	l.forget(k, i)
	return fresh
}

// hasOrAdd reports whether k is remembered and fresh at now, as has does,
// and remembers it as seen at now when it is not: has then add, with one
// map lookup for a request not seen before.
func (l *requestLRU) hasOrAdd(k requestKey, now time.Time) bool {
	if i, ok := l.items[k]; ok {
		e := &l.ents[i]
		if e.seen.since(now) > l.ttl {
			e.seen = instantOf(now) // stale: remembered anew
			l.toFront(i)
			return false
		}
		l.toFront(i)
		return true
	}
	l.insert(k, now)
	return false
}

// add remembers k as seen at now, evicting the least recently seen entry
// beyond max.
func (l *requestLRU) add(k requestKey, now time.Time) {
	if i, ok := l.items[k]; ok {
		l.ents[i].seen = instantOf(now)
		l.toFront(i)
		return
	}
	l.insert(k, now)
}

// insert remembers k, which l does not hold, as seen at now.
func (l *requestLRU) insert(k requestKey, now time.Time) {
	var i int32
	switch {
	case len(l.items) >= l.max:
		// Full: the least recently seen entry makes room.
		i = l.tail
		delete(l.items, l.ents[i].key)
		l.unlink(i)
	case l.free != noEntry:
		i = l.free
		l.free = l.ents[i].next
	default:
		l.ents = append(l.ents, requestEntry{})
		i = int32(len(l.ents) - 1)
	}
	l.ents[i] = requestEntry{key: k, seen: instantOf(now), prev: noEntry, next: noEntry}
	l.items[k] = i
	l.pushFront(i)
}

// forget drops entry i, which holds k.
func (l *requestLRU) forget(k requestKey, i int32) {
	delete(l.items, k)
	l.unlink(i)
	l.ents[i] = requestEntry{next: l.free}
	l.free = i
}

func (l *requestLRU) toFront(i int32) {
	if l.head == i {
		return
	}
	l.unlink(i)
	l.pushFront(i)
}

func (l *requestLRU) pushFront(i int32) {
	e := &l.ents[i]
	e.prev, e.next = noEntry, l.head
	if l.head != noEntry {
		l.ents[l.head].prev = i
	}
	l.head = i
	if l.tail == noEntry {
		l.tail = i
	}
}

func (l *requestLRU) unlink(i int32) {
	e := &l.ents[i]
	if e.prev != noEntry {
		l.ents[e.prev].next = e.next
	} else {
		l.head = e.next
	}
	if e.next != noEntry {
		l.ents[e.next].prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = noEntry, noEntry
}
