// Package gen generates a deterministic stream of Kubernetes audit events
// that looks like a real cluster's: mostly routine controller and kubelet
// traffic, with labelled attack scenarios mixed in at a configured ratio.
// It feeds the pipeline's tests, demos and benchmarks.
//
// Each request produces the stages the apiserver would write for it
// (RequestReceived then ResponseComplete; ResponseStarted for watches and
// exec; a lone ResponseStarted for failed authentication; Panic), emitted in
// stageTimestamp order, so the stages of different requests interleave as
// they do in a real log.
package gen

import (
	"bytes"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Defaults applied by New to zero Config fields. auditgen uses the same
// values, so its output for a seed matches New(Config{Seed: seed}).
const (
	DefaultCluster     = "demo"
	DefaultRate        = 100.0
	DefaultAttackRatio = 0.02
)

// DefaultStart is the event time of the first request when Config.Start is
// zero: fixed, so that a seed always yields the same bytes.
var DefaultStart = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

// eventsPerRequest is the average number of stages a request contributes
// soon after it arrives (RequestReceived plus ResponseComplete or
// ResponseStarted). Arrivals are paced by Rate divided by it so that the
// stream carries about Rate events per second of event time.
const eventsPerRequest = 2

// Config configures a Generator.
type Config struct {
	// Seed selects the stream: the same Config yields the same events.
	Seed int64
	// Cluster names the simulated cluster; it appears in node names.
	// Default DefaultCluster.
	Cluster string
	// Start is the event time of the first request. Default DefaultStart.
	Start time.Time
	// Rate is events per second of event time. Default DefaultRate.
	Rate float64
	// AttackRatio is the fraction of requests that belong to an attack
	// scenario, in [0, 1]. Zero means none (there is no default, so that a
	// clean stream can be asked for); auditgen defaults it to
	// DefaultAttackRatio.
	AttackRatio float64
	// Lifecycle adds the cluster's life over days (see lifecycle.go): pod
	// restarts and rolling deploys with new IPs and nodes, CI pipelines in
	// fresh namespaces, a nightly CronJob, a developer reading their own
	// secrets. Off, the stream is what it always was for a seed.
	Lifecycle bool
}

// Event is one generated audit event.
type Event struct {
	// JSON is the event on one line, without a newline, as the apiserver's
	// log backend writes it (with kind and apiVersion).
	JSON []byte
	// AuditID is the request's auditID, shared by all its stages.
	AuditID string
	// Stage is the event's stage.
	Stage auditv1.Stage
	// Time is the event's stageTimestamp.
	Time time.Time
	// Scenario is "" for routine traffic, an attack scenario name (one of
	// Scenarios) for attack traffic, or a look-alike name (prefixed
	// LookalikePrefix) for benign traffic built to resemble an attack.
	// Every stage of a request carries it.
	Scenario string
	// Expect lists the detector ids that must fire on this event. It is set
	// only on the stage a request is judged from (see
	// pipeline.Event.IsAuthoritative) and is empty for routine traffic,
	// look-alikes and the set-up requests of an attack.
	Expect []string
}

// pending is an event waiting for its stageTimestamp to come up. It holds
// no pointers (the event sits in a slot of Generator.slots), so the heap's
// swaps cost no GC write barriers.
type pending struct {
	at   int64  // stageTimestamp, Unix nanoseconds
	seq  uint64 // submission order: breaks ties so output is deterministic
	slot int32  // index into Generator.slots
}

// Generator produces an endless, deterministic stream of audit events. It
// is not safe for concurrent use.
type Generator struct {
	cfg   Config
	r     *rng
	w     *world
	gap   float64 // mean seconds between request arrivals
	next  int64   // arrival time of the next request, Unix nanoseconds
	seq   uint64
	queue []pending // min-heap on (at, seq)
	slots []Event   // events of queue entries
	free  []int32   // unused slots

	routines     []routine
	routineTotal int
	attacks      []func(g *Generator, at time.Time)
	followUps    []func(g *Generator, at time.Time) // later requests of a multi-request attack
	life         *lifecycle                         // nil unless Config.Lifecycle
	injected     map[string]int                     // Inject calls per kind
}

// New returns a Generator for cfg, applying defaults to zero fields.
func New(cfg Config) *Generator {
	if cfg.Cluster == "" {
		cfg.Cluster = DefaultCluster
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	cfg.AttackRatio = min(max(cfg.AttackRatio, 0), 1)
	r := newRNG(cfg.Seed)
	g := &Generator{
		cfg:  cfg,
		r:    r,
		w:    newWorld(r, cfg.Cluster),
		gap:  eventsPerRequest / cfg.Rate,
		next: cfg.Start.UTC().Truncate(time.Microsecond).UnixNano(),
	}
	g.routines = routines()
	for _, rt := range g.routines {
		g.routineTotal += rt.weight
	}
	g.attacks = attacks()
	if cfg.Lifecycle {
		g.startLifecycle()
	}
	return g
}

// Config returns the configuration in effect, defaults applied.
func (g *Generator) Config() Config { return g.cfg }

// Next returns the next event in stageTimestamp order.
func (g *Generator) Next() Event {
	// Admit requests until none arriving before the earliest pending stage
	// could precede it.
	for len(g.queue) == 0 || g.queue[0].at > g.next {
		at := time.Unix(0, g.next).UTC()
		g.request(at)
		// Whole microseconds, the resolution of audit timestamps.
		g.next += int64(g.r.exp(g.gap)*1e6) * int64(time.Microsecond)
	}
	p := g.pop()
	ev := g.slots[p.slot]
	g.slots[p.slot] = Event{}
	g.free = append(g.free, p.slot)
	return ev
}

// request admits the request arriving at at: routine, or the next step of
// an attack with probability AttackRatio.
func (g *Generator) request(at time.Time) {
	if g.life != nil && g.lifecycleDue(at) {
		return
	}
	if g.cfg.AttackRatio > 0 && g.r.chance(g.cfg.AttackRatio) {
		if len(g.followUps) > 0 {
			f := g.followUps[0]
			g.followUps = g.followUps[1:]
			f(g, at)
			return
		}
		pick(g.r, g.attacks)(g, at)
		return
	}
	n := g.r.intn(g.routineTotal)
	for _, rt := range g.routines {
		if n < rt.weight {
			rt.fn(g, at)
			return
		}
		n -= rt.weight
	}
}

// then queues a later request of the current attack for the next attack
// slot, so multi-request scenarios spread over time like real ones.
func (g *Generator) then(f func(g *Generator, at time.Time)) {
	g.followUps = append(g.followUps, f)
}

// submit renders every stage of rq and queues them for emission.
func (g *Generator) submit(rq *request) {
	id := g.r.uuid()
	rq.received = rq.received.Truncate(time.Microsecond)
	done := rq.received.Add(rq.latency).Truncate(time.Microsecond)
	switch rq.shape {
	case shapeNormal:
		g.push(rq, id, stReceived, rq.received, false)
		g.push(rq, id, stComplete, done, true)
	case shapeLong:
		g.push(rq, id, stReceived, rq.received, false)
		g.push(rq, id, stStarted, rq.received.Add(rq.started).Truncate(time.Microsecond), true)
		g.push(rq, id, stComplete, done, false)
	case shapeFailedAuth:
		g.push(rq, id, stStarted, done, true)
	case shapePanic:
		g.push(rq, id, stReceived, rq.received, false)
		g.push(rq, id, stPanic, done, true)
	}
}

func (g *Generator) push(rq *request, id string, stage auditv1.Stage, at time.Time, authoritative bool) {
	size := 512 + len(rq.uri) + len(rq.user) + len(rq.ua) + len(rq.status) + len(rq.reqObj) + len(rq.respObj)
	ev := Event{
		JSON:     render(make([]byte, 0, size), rq, id, stage, at),
		AuditID:  id,
		Stage:    stage,
		Time:     at,
		Scenario: rq.scenario,
	}
	if authoritative {
		ev.Expect = rq.expect
	}
	var slot int32
	if n := len(g.free); n > 0 {
		slot = g.free[n-1]
		g.free = g.free[:n-1]
		g.slots[slot] = ev
	} else {
		slot = int32(len(g.slots))
		g.slots = append(g.slots, ev)
	}
	g.seq++
	g.queue = append(g.queue, pending{at: at.UnixNano(), seq: g.seq, slot: slot})
	g.up(len(g.queue) - 1)
}

func (g *Generator) less(i, j int) bool {
	a, b := &g.queue[i], &g.queue[j]
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

func (g *Generator) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !g.less(i, p) {
			return
		}
		g.queue[i], g.queue[p] = g.queue[p], g.queue[i]
		i = p
	}
}

func (g *Generator) pop() pending {
	top := g.queue[0]
	last := len(g.queue) - 1
	g.queue[0] = g.queue[last]
	g.queue = g.queue[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(g.queue) && g.less(l, m) {
			m = l
		}
		if l+1 < len(g.queue) && g.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		g.queue[i], g.queue[m] = g.queue[m], g.queue[i]
		i = m
	}
	return top
}

// eventPrefix is how the log backend starts every event; the webhook
// backend's EventList items start without it.
var eventPrefix = []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1",`)

// EventList builds a webhook request body holding events, as the
// apiserver's webhook backend POSTs it: an audit.k8s.io/v1 EventList whose
// items omit kind and apiVersion.
func EventList(events [][]byte) []byte {
	size := 80
	for _, e := range events {
		size += len(e) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`...)
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		if rest, ok := bytes.CutPrefix(e, eventPrefix); ok {
			b = append(b, '{')
			b = append(b, rest...)
			continue
		}
		b = append(b, e...)
	}
	return append(b, "]}"...)
}
