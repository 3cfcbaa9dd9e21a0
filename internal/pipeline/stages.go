package pipeline

import (
	"container/list"
	"errors"
	"fmt"
	"sync"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Bounds of the StageGate's memory. Each remembered request costs about
// 150 bytes (map slot, list element, key and timestamp; held under 250 by
// TestStageGateMemory), so the defaults hold at most about 40 MiB however
// much traffic passes.
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
	if c.OpenRequests <= 0 {
		errs = append(errs, fmt.Errorf("open_requests must be positive, got %d", c.OpenRequests))
	}
	if c.DoneRequests <= 0 {
		errs = append(errs, fmt.Errorf("done_requests must be positive, got %d", c.DoneRequests))
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
	k := requestKey{cluster: ev.Cluster, hash: RequestHash(&ev.Event)}
	now := ev.StageTimestamp.Time
	if now.IsZero() {
		now = ev.RequestReceivedTimestamp.Time
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if ev.Stage == auditv1.StageResponseStarted {
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
	if g.done.has(k, now) {
		return StageDuplicate
	}
	g.done.add(k, now)
	return StageJudged
}

// Len returns how many requests g remembers.
func (g *StageGate) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open.ll.Len() + g.done.ll.Len()
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

// requestKey names one request of one cluster.
type requestKey struct {
	cluster string
	hash    uint64
}

// requestLRU remembers requests with the event time they were last seen,
// forgetting the least recently seen beyond max and treating entries
// older than ttl (in event time) as absent.
type requestLRU struct {
	max   int
	ttl   time.Duration
	ll    *list.List
	items map[requestKey]*list.Element
}

type requestEntry struct {
	key  requestKey
	seen time.Time
}

func newRequestLRU(max int, ttl time.Duration) *requestLRU {
	return &requestLRU{max: max, ttl: ttl, ll: list.New(), items: make(map[requestKey]*list.Element)}
}

// has reports whether k is remembered and fresh at now. An entry from
// later than now (stages out of order) is fresh.
func (l *requestLRU) has(k requestKey, now time.Time) bool {
	el, ok := l.items[k]
	if !ok {
		return false
	}
	e := el.Value.(*requestEntry)
	if now.Sub(e.seen) > l.ttl {
		l.ll.Remove(el)
		delete(l.items, k)
		return false
	}
	l.ll.MoveToFront(el)
	return true
}

// remove forgets k and reports whether it was remembered and fresh.
func (l *requestLRU) remove(k requestKey, now time.Time) bool {
	if !l.has(k, now) {
		return false
	}
	l.ll.Remove(l.items[k])
	delete(l.items, k)
	return true
}

// add remembers k as seen at now, evicting the least recently seen entry
// beyond max.
func (l *requestLRU) add(k requestKey, now time.Time) {
	if el, ok := l.items[k]; ok {
		el.Value.(*requestEntry).seen = now
		l.ll.MoveToFront(el)
		return
	}
	if l.ll.Len() >= l.max {
		// Full: the least recently seen entry makes room, and its list
		// element is reused, so a busy gate allocates nothing.
		oldest := l.ll.Back()
		e := oldest.Value.(*requestEntry)
		delete(l.items, e.key)
		e.key, e.seen = k, now
		l.ll.MoveToFront(oldest)
		l.items[k] = oldest
		return
	}
	l.items[k] = l.ll.PushFront(&requestEntry{key: k, seen: now})
}
