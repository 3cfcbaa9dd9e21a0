package alert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/prometheus/client_golang/prometheus"
)

// Notifier routes findings to receivers. It implements processor.Alerter:
// Notify only hands the batch to a bounded queue, and one dispatcher
// goroutine routes, groups and folds findings, then hands each message to
// its receiver's bounded queue, drained by that receiver's one sender
// goroutine. A slow or dead receiver therefore only ever fills its own
// queue; Notify never waits.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	root    *route
	senders map[string]*sender // discarding receivers have none
	state   *sendLog
	in      chan []pipeline.Finding
	client  *http.Client
	ownHTTP bool

	// Owned by the dispatcher goroutine.
	groups  map[string]*group
	pending int
	matched []*route

	closed   atomic.Bool // set by Stop: Notify drops from then on
	mu       sync.Mutex
	started  bool
	stopped  bool
	stopErr  error
	stopCh   chan struct{}
	dispDone chan struct{}
	senderWG sync.WaitGroup
	hardCtx  context.Context
	hardStop context.CancelFunc
}

// group is one route's findings with equal group_by values.
type group struct {
	route     *route
	labels    []Label
	entries   map[string]*entry
	next      time.Time // when to flush; zero when nothing is pending
	flushed   bool
	lastFlush time.Time
}

// entry folds one cooldown key's findings.
type entry struct {
	key                 string
	last                pipeline.Finding
	count               int // occurrences since the last message
	firstSeen, lastSeen time.Time
	lastSent            time.Time
	ids                 []string
}

// New builds a Notifier: it resolves secrets, compiles the routing tree and
// opens the state file. log and reg may be nil. Call Start, then Stop.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating alert config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	n := &Notifier{
		cfg: cfg, log: log, m: m,
		root:     compileRoute(cfg.Route, nil, "0"),
		senders:  map[string]*sender{},
		in:       make(chan []pipeline.Finding, cfg.IntakeSize),
		groups:   map[string]*group{},
		stopCh:   make(chan struct{}),
		dispDone: make(chan struct{}),
		client:   cfg.HTTPClient,
	}
	n.hardCtx, n.hardStop = context.WithCancel(context.Background())
	if n.client == nil {
		// A transport of our own, so Stop can close its idle connections
		// without touching anyone else's.
		n.client = &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
		n.ownHTTP = true
	}
	stdout := cfg.Stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	for i, rc := range cfg.Receivers {
		key := fmt.Sprintf("receivers[%d]", i)
		var d deliverer
		switch {
		case rc.Slack != nil:
			u, err := resolveSecret(key+".slack", rc.Slack)
			if err != nil {
				return nil, err
			}
			d = &slackReceiver{url: u, opts: SlackOptions{Channel: rc.Slack.Channel}, client: n.client}
		case rc.Alertmanager != nil:
			d = &amReceiver{url: strings.TrimRight(rc.Alertmanager.URL, "/") + "/api/v2/alerts", resolve: time.Duration(rc.Alertmanager.ResolveTimeout), client: n.client}
		case rc.Webhook != nil:
			d = &webhookReceiver{url: rc.Webhook.URL, client: n.client}
		case rc.Stdout != nil:
			d = &stdoutReceiver{w: stdout}
		default:
			continue
		}
		n.senders[rc.Name] = &sender{name: rc.Name, d: d, q: make(chan *Group, cfg.QueueSize), retry: cfg.Retry, m: n.m, log: log.With("receiver", rc.Name)}
	}
	if cfg.StateFile != "" {
		st, err := openSendLog(cfg.StateFile, cfg.StateMaxIDs, max(n.root.maxRepeat(), time.Hour), time.Now())
		if err != nil {
			return nil, err
		}
		n.state = st
		for _, s := range n.senders {
			s.state = st
		}
	}
	return n, nil
}

// resolveSecret reads the webhook URL from its file or variable.
func resolveSecret(key string, sc *SlackConfig) (Secret, error) {
	switch {
	case sc.WebhookURL != "":
		return sc.WebhookURL, nil
	case sc.WebhookURLFile != "":
		b, err := os.ReadFile(sc.WebhookURLFile)
		if err != nil {
			return "", fmt.Errorf("%s.webhook_url_file: reading: %w", key, err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return Secret(s), nil
		}
		return "", fmt.Errorf("%s.webhook_url_file: %s is empty", key, sc.WebhookURLFile)
	default:
		if s := strings.TrimSpace(os.Getenv(sc.WebhookURLEnv)); s != "" {
			return Secret(s), nil
		}
		return "", fmt.Errorf("%s.webhook_url_env: variable %s is unset or empty", key, sc.WebhookURLEnv)
	}
}

// Start launches the dispatcher and one sender per receiver. It returns at
// once; Stop waits for them.
func (n *Notifier) Start() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started || n.stopped {
		return
	}
	n.started = true
	go n.dispatch()
	for _, s := range n.senders {
		n.senderWG.Go(func() { s.run(n.hardCtx) })
	}
}

// Notify queues a copy of fs for routing. It never blocks: when the queue is
// full (or the notifier is stopped) the findings are dropped and counted
// under receiver "_intake".
func (n *Notifier) Notify(fs []pipeline.Finding) {
	if len(fs) == 0 {
		return
	}
	if n.closed.Load() {
		n.m.dropped.WithLabelValues(intakeReceiver).Add(float64(len(fs)))
		return
	}
	select {
	case n.in <- slices.Clone(fs):
	default:
		n.m.dropped.WithLabelValues(intakeReceiver).Add(float64(len(fs)))
	}
}

// Stop flushes every pending group to its receiver and waits, within ctx and
// shutdown_timeout, for the queues to drain; what is still undelivered at
// the deadline is counted as failed. Stop is safe to call twice.
func (n *Notifier) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return n.stopErr
	}
	n.stopped = true
	n.closed.Store(true)
	var err error
	if n.started {
		close(n.stopCh)
		<-n.dispDone
		// The dispatcher was the only writer of the queues.
		for _, s := range n.senders {
			close(s.q)
		}
		ctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.ShutdownTimeout))
		done := make(chan struct{})
		go func() { n.senderWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			n.hardStop()
			<-done
			err = fmt.Errorf("flushing alerts: %w", ctx.Err())
		}
		cancel()
	}
	n.hardStop()
	if n.ownHTTP {
		n.client.CloseIdleConnections()
	}
	n.stopErr = errors.Join(err, n.state.close())
	return n.stopErr
}

// dispatch is the dispatcher goroutine: it owns the groups.
func (n *Notifier) dispatch() {
	defer close(n.dispDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var tick <-chan time.Time
		if next := n.nextFlush(); !next.IsZero() {
			timer.Reset(time.Until(next))
			tick = timer.C
		}
		select {
		case fs := <-n.in:
			n.ingest(fs, time.Now())
		case <-tick:
			n.flush(time.Now(), false)
		case <-n.stopCh:
			// Route what was queued before Stop, then send every group
			// now rather than lose it at exit.
		drain:
			for {
				select {
				case fs := <-n.in:
					n.ingest(fs, time.Now())
				default:
					break drain
				}
			}
			n.flush(time.Now(), true)
			return
		}
	}
}

func (n *Notifier) nextFlush() time.Time {
	var next time.Time
	for _, g := range n.groups {
		if !g.next.IsZero() && (next.IsZero() || g.next.Before(next)) {
			next = g.next
		}
	}
	return next
}

// ingest routes fs and folds each finding into its groups.
func (n *Notifier) ingest(fs []pipeline.Finding, now time.Time) {
	for i := range fs {
		f := &fs[i]
		n.matched = n.root.match(f, n.matched[:0])
		var clean *pipeline.Finding
		for _, r := range n.matched {
			if n.senders[r.receiver] == nil {
				continue // a discarding receiver
			}
			// A finding already delivered before a restart (the batch was
			// redelivered because its commit was lost) is not sent again.
			if n.state.sentID(r.receiver, f.ID) {
				continue
			}
			if clean == nil {
				c := scrubFinding(*f)
				clean = &c
			}
			n.fold(r, clean, now)
		}
	}
}

func (n *Notifier) fold(r *route, f *pipeline.Finding, now time.Time) {
	var gk strings.Builder
	gk.WriteString(r.id)
	labels := make([]Label, 0, len(r.groupBy))
	for _, name := range r.groupBy {
		v := label(f, name)
		labels = append(labels, Label{name, v})
		gk.WriteByte(0)
		gk.WriteString(v)
	}
	g := n.groups[gk.String()]
	if g == nil {
		g = &group{route: r, labels: labels, entries: map[string]*entry{}}
		n.groups[gk.String()] = g
	}
	ck := CooldownKey(f)
	e := g.entries[ck]
	if e == nil {
		if n.pending >= n.cfg.MaxPending {
			n.m.dropped.WithLabelValues(r.receiver).Inc()
			return
		}
		e = &entry{key: ck, lastSent: n.state.lastSent(r.receiver, ck)}
		g.entries[ck] = e
		n.pending++
	}
	if slices.Contains(e.ids, f.ID) {
		return // the same finding twice in this process
	}
	if e.count == 0 || f.Time.Before(e.firstSeen) {
		e.firstSeen = f.Time
	}
	if e.count == 0 || !f.Time.Before(e.lastSeen) {
		e.lastSeen = f.Time
		e.last = *f
	}
	e.count++
	if len(e.ids) < maxIDsPerAlert {
		e.ids = append(e.ids, f.ID)
	}
	if g.next.IsZero() {
		if g.flushed {
			g.next = later(now, g.lastFlush.Add(r.groupInterval))
		} else {
			g.next = now.Add(r.groupWait)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// flush sends every due group's eligible entries (all groups when final)
// and forgets entries whose cooldown is over.
func (n *Notifier) flush(now time.Time, final bool) {
	for gk, g := range n.groups {
		r := g.route
		if !g.next.IsZero() && (final || !now.Before(g.next)) {
			msg := &Group{Receiver: r.receiver, Labels: g.labels, GrafanaURL: n.cfg.GrafanaURL}
			waiting := false
			for _, e := range g.entries {
				if e.count == 0 {
					continue
				}
				// Within the cooldown the entry keeps counting and is
				// sent, with its count, once the cooldown is over.
				if !e.lastSent.IsZero() && now.Sub(e.lastSent) < r.repeatInterval {
					waiting = true
					continue
				}
				msg.Alerts = append(msg.Alerts, Alert{Finding: e.last, Count: e.count, FirstSeen: e.firstSeen, LastSeen: e.lastSeen, Key: e.key, IDs: e.ids})
				e.count, e.ids, e.lastSent = 0, nil, now
			}
			g.flushed, g.lastFlush, g.next = true, now, time.Time{}
			if waiting {
				g.next = now.Add(r.groupInterval)
			}
			if len(msg.Alerts) > 0 {
				sortAlerts(msg.Alerts)
				n.senders[r.receiver].enqueue(msg)
			}
		}
		for k, e := range g.entries {
			if e.count == 0 && now.Sub(e.lastSent) >= r.repeatInterval {
				delete(g.entries, k)
				n.pending--
			}
		}
		if len(g.entries) == 0 && g.next.IsZero() {
			delete(n.groups, gk)
		}
	}
}

// sortAlerts orders a message most severe first, then by time, so the
// digest leads with what matters and golden files are stable.
func sortAlerts(as []Alert) {
	slices.SortFunc(as, func(a, b Alert) int {
		return cmp.Or(
			cmp.Compare(b.Finding.Severity, a.Finding.Severity),
			a.FirstSeen.Compare(b.FirstSeen),
			cmp.Compare(a.Key, b.Key),
		)
	})
}
