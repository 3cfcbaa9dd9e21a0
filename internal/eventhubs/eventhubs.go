// Package eventhubs forwards AKS audit events from Azure Event Hubs to
// auditpipe's topic. AKS diagnostic settings (categories kube-audit and
// kube-audit-admin) send resource-log records to an event hub; ingest reads
// it through Event Hubs' Kafka endpoint (<namespace>.servicebus.windows.net:9093,
// SASL PLAIN over TLS, user $ConnectionString) with the project's Kafka
// consumer, unwraps each record's properties.log, and hands the events to
// the webhook's own per-batch path (ingest.Handler.Ingest: truncation,
// redaction, validation, keying, deduplication, produce with acks).
//
// Offsets move only once our producer acknowledged every event of a batch
// (FetchMessage, then CommitMessages for everything fetched, which is
// contiguous per partition since every fetched message is either delivered
// or skipped as poison first). While our Kafka is down nothing is committed
// and the batch is retried with backoff, so a restart resumes from the last
// acknowledged batch; what is produced twice is collapsed by ingest's
// deduplication window and downstream on (auditID, stage).
package eventhubs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/cloud/aks"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/prom"
)

// Source is the event hub as a Kafka topic: kafka.Consumer satisfies it.
// Fetch returns an error only when ctx ends, after Close, or for good
// (pipeline.Permanent: bad credentials, a certificate not trusted).
type Source interface {
	Fetch(ctx context.Context) (pipeline.Record, error)
	Commit(ctx context.Context, recs []pipeline.Record) error
}

// Ingester makes a batch of one cluster's events durable:
// (*ingest.Handler).IngestAnnotated, since every event was annotated by
// aks.Annotate (which drops any auditpipe.io/ annotation the record had).
type Ingester interface {
	IngestAnnotated(ctx context.Context, cluster string, items [][]byte) (ingest.Result, error)
}

// Defaults, each with the reason for its value.
const (
	// DefaultMaxBatchMessages bounds the Event Hubs messages gathered
	// before one round of Ingest calls and one commit. AKS packs tens to
	// hundreds of records into a message, so 100 messages make
	// produce requests of thousands of events and a commit per second or
	// so under load, without holding more than a few MiB.
	DefaultMaxBatchMessages = 100
	// DefaultMaxBatchBytes bounds the bodies held by one batch (their
	// annotated events take about as much again).
	DefaultMaxBatchBytes = 16 << 20
	// DefaultBatchWait is how long a batch waits for more messages after
	// its first: short against AKS's own delivery delay (minutes), long
	// enough to spare a commit per message.
	DefaultBatchWait = 200 * time.Millisecond
	// DefaultMaxMessageBytes is the largest message body decoded; larger
	// ones are skipped as poison. Event Hubs caps an event at 1 MB on the
	// Standard and Premium tiers and 20 MB on Dedicated.
	DefaultMaxMessageBytes = 20 << 20
	// DefaultRetryMin and DefaultRetryMax bound the wait between two
	// attempts at a batch our Kafka refused: quick for a leader moving,
	// at most 30 s while a broker restarts. There is no limit on attempts:
	// Event Hubs keeps the messages for its retention (1 to 90 days).
	DefaultRetryMin = 500 * time.Millisecond
	DefaultRetryMax = 30 * time.Second
	// commitTimeout bounds the commit after a batch, which runs even
	// when shutdown began: the batch is durable and a restart should not
	// see it again.
	commitTimeout = 10 * time.Second
	// logWindow throttles the lines that repeat per message or attempt.
	logWindow = 30 * time.Second
)

// Config configures a Forwarder. Zero fields take the defaults above.
type Config struct {
	// Cluster files events whose resource ID Clusters does not name.
	// Empty: such records are skipped and counted.
	Cluster string
	// Clusters maps AKS resource IDs (compared ignoring case, as Azure
	// does) to cluster names.
	Clusters map[string]string
	// MaxBatchMessages, MaxBatchBytes and BatchWait bound a batch.
	MaxBatchMessages int
	MaxBatchBytes    int64
	BatchWait        time.Duration
	// MaxMessageBytes is the largest message decoded.
	MaxMessageBytes int
	// RetryMin and RetryMax bound the backoff while our Kafka is down.
	RetryMin, RetryMax time.Duration
}

// WithDefaults returns c with zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.MaxBatchMessages == 0 {
		c.MaxBatchMessages = DefaultMaxBatchMessages
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	return c
}

// Validate reports every problem in c (after defaults), each naming its flag.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Cluster == "" && len(c.Clusters) == 0 {
		errs = append(errs, errors.New("no cluster: pass --cluster NAME, --cluster-map-file FILE, or both"))
	}
	if c.Cluster != "" {
		if err := ingest.ValidateCluster(c.Cluster); err != nil {
			errs = append(errs, fmt.Errorf("cluster: %w", err))
		}
	}
	ids := make([]string, 0, len(c.Clusters))
	for id := range c.Clusters {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	seen := make(map[string]string, len(ids))
	for _, id := range ids {
		if aks.ClusterName(id) == "" {
			errs = append(errs, fmt.Errorf("cluster map: %q is not an AKS resource ID (/subscriptions/…/providers/Microsoft.ContainerService/managedClusters/NAME)", id))
		}
		if err := ingest.ValidateCluster(c.Clusters[id]); err != nil {
			errs = append(errs, fmt.Errorf("cluster map: resource %s: %w", id, err))
		}
		if prev, ok := seen[strings.ToLower(id)]; ok {
			errs = append(errs, fmt.Errorf("cluster map: %s and %s are the same resource ID (Azure ignores case)", prev, id))
		}
		seen[strings.ToLower(id)] = id
	}
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, v))
		}
	}
	positive("max-batch-messages", int64(c.MaxBatchMessages))
	positive("max-batch-bytes", c.MaxBatchBytes)
	positive("batch-wait", int64(c.BatchWait))
	positive("max-message-bytes", int64(c.MaxMessageBytes))
	positive("retry-min", int64(c.RetryMin))
	positive("retry-max", int64(c.RetryMax))
	if c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("retry-min (%s) must not exceed retry-max (%s)", c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}

// Metric names.
const (
	MetricMessages      = "auditpipe_eventhubs_messages_total"
	MetricRecords       = "auditpipe_eventhubs_records_total"
	MetricRetries       = "auditpipe_eventhubs_produce_retries_total"
	MetricDropped       = "auditpipe_eventhubs_dropped_events_total"
	MetricCommits       = "auditpipe_eventhubs_commits_total"
	MetricCommitErrors  = "auditpipe_eventhubs_commit_errors_total"
	MetricRejected      = "auditpipe_eventhubs_rejected_events_total"
	MetricBatchMessages = "auditpipe_eventhubs_batch_messages"
)

// Label values of MetricMessages and MetricRecords. Poison messages are
// the too_large and malformed ones: skipped, committed, logged without
// their content.
const (
	resultOK             = "ok"
	resultTooLarge       = "too_large"
	resultMalformed      = "malformed"
	resultAudit          = "audit"
	resultOtherCategory  = "other_category"
	resultUnknownCluster = "unknown_cluster"
)

type metrics struct {
	messages *prometheus.CounterVec
	records  *prometheus.CounterVec
	retries  prometheus.Counter
	dropped  prometheus.Counter
	rejected *prometheus.CounterVec
	commits  prometheus.Counter
	commitEr prometheus.Counter
	batch    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricMessages,
			Help: "Event Hubs messages read, by result: ok, or poison (too_large, malformed) skipped and committed.",
		}, []string{"result"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRecords,
			Help: "Resource-log records read, by result: audit (forwarded), other_category or unknown_cluster (skipped).",
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricRetries,
			Help: "Batches tried again because auditpipe's Kafka did not acknowledge them.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricDropped,
			Help: "Events given up after a permanent produce error (a message Kafka can never take).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRejected,
			Help: "Events ingest refused (malformed, invalid, too_large), by reason.",
		}, []string{"reason"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricCommits,
			Help: "Event Hubs offset commits after a batch was acknowledged.",
		}),
		commitEr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricCommitErrors,
			Help: "Failed offset commits (the batch is then read again after a restart or rebalance).",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricBatchMessages,
			Help:    "Event Hubs messages per batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500},
		}),
	}
	var err error
	reg1 := func(c prometheus.Collector) {
		if err == nil {
			_, err = prom.Register(reg, c)
		}
	}
	reg1(m.messages)
	reg1(m.records)
	reg1(m.retries)
	reg1(m.dropped)
	reg1(m.rejected)
	reg1(m.commits)
	reg1(m.commitEr)
	reg1(m.batch)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Forwarder moves AKS audit events from an event hub to auditpipe's topic.
type Forwarder struct {
	cfg      Config
	clusters map[string]string // lower-cased resource ID → cluster
	src      Source
	ing      Ingester
	log      *slog.Logger
	m        *metrics

	// Throttled logs: when each kind last logged.
	mu      sync.Mutex
	lastLog map[string]time.Time
}

// New validates cfg and returns a Forwarder reading src and writing through
// ing. log and reg may be nil.
func New(cfg Config, src Source, ing Ingester, log *slog.Logger, reg prometheus.Registerer) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	clusters := make(map[string]string, len(cfg.Clusters))
	for id, c := range cfg.Clusters {
		clusters[strings.ToLower(id)] = c
	}
	return &Forwarder{cfg: cfg, clusters: clusters, src: src, ing: ing, log: log, m: m, lastLog: map[string]time.Time{}}, nil
}

// Run forwards batches until ctx ends, and returns nil then; or until the
// source fails for good (bad credentials, an untrusted certificate), and
// returns that error. A batch being retried when ctx ends is not committed.
func (f *Forwarder) Run(ctx context.Context) error {
	var b batch
	for {
		b.reset()
		if err := f.collect(ctx, &b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := f.deliver(ctx, &b); err != nil {
			// Only ctx ends delivery: the batch stays uncommitted.
			return nil
		}
		f.commit(ctx, b.recs)
	}
}

// batch is the messages of one round and the events drawn from them.
type batch struct {
	recs   []pipeline.Record
	bytes  int64
	order  []string            // clusters in first-seen order
	events map[string][][]byte // cluster → annotated events
	scr    []aks.Record
}

func (b *batch) reset() {
	clear(b.recs)
	b.recs, b.bytes = b.recs[:0], 0
	b.order = b.order[:0]
	if b.events == nil {
		b.events = map[string][][]byte{}
	}
	clear(b.events)
}

// collect fetches the next batch: it waits for one message, then takes
// more for up to BatchWait, until a bound is reached. Each message is
// decoded as it arrives, so the body can go as soon as its events are out.
func (f *Forwarder) collect(ctx context.Context, b *batch) error {
	rec, err := f.src.Fetch(ctx)
	if err != nil {
		return err
	}
	f.add(b, rec)
	wctx, cancel := context.WithTimeout(ctx, f.cfg.BatchWait)
	defer cancel()
	for len(b.recs) < f.cfg.MaxBatchMessages && b.bytes < f.cfg.MaxBatchBytes {
		rec, err := f.src.Fetch(wctx)
		if err != nil {
			if ctx.Err() != nil || wctx.Err() == nil {
				// Shutdown, or a failure of the source's own.
				return err
			}
			break // the wait is over
		}
		f.add(b, rec)
	}
	f.m.batch.Observe(float64(len(b.recs)))
	return nil
}

// add decodes one message into b's events. A message that cannot be read
// is poison: counted, logged without its content, and committed with the
// batch, since no retry would ever read it.
func (f *Forwarder) add(b *batch, rec pipeline.Record) {
	b.recs = append(b.recs, pipeline.Record{Partition: rec.Partition, Offset: rec.Offset})
	b.bytes += int64(len(rec.Value))
	if len(rec.Value) > f.cfg.MaxMessageBytes {
		f.m.messages.WithLabelValues(resultTooLarge).Inc()
		if f.due("poison") {
			f.log.Warn("skipping an event hub message larger than max-message-bytes", "partition", rec.Partition, "offset", rec.Offset, "bytes", len(rec.Value), "max", f.cfg.MaxMessageBytes)
		}
		return
	}
	recs, err := aks.Decode(rec.Value, b.scr[:0])
	b.scr = recs
	if err != nil {
		f.m.messages.WithLabelValues(resultMalformed).Inc()
		// The error names no content beyond a byte offset.
		if f.due("poison") {
			f.log.Warn("skipping an event hub message that is not resource-log records", "partition", rec.Partition, "offset", rec.Offset, "bytes", len(rec.Value), "reason", errorClass(err))
		}
		return
	}
	f.m.messages.WithLabelValues(resultOK).Inc()
	for i := range recs {
		r := &recs[i]
		if !r.IsAudit() {
			// kube-apiserver, guard, … sent to the same hub.
			f.m.records.WithLabelValues(resultOtherCategory).Inc()
			continue
		}
		cluster := f.cluster(r.ResourceID)
		if cluster == "" {
			f.m.records.WithLabelValues(resultUnknownCluster).Inc()
			if f.due("unknown-cluster") {
				f.log.Warn("skipping records of a resource ID the cluster map does not name and no --cluster", "resource_id", r.ResourceID)
			}
			continue
		}
		f.m.records.WithLabelValues(resultAudit).Inc()
		ev := r.Log
		// The events may alias the message body; Annotate copies. An
		// event that is not an object goes on as it is and ingest
		// rejects it, counted by reason.
		if out, err := aks.Annotate(r); err == nil {
			ev = out
		}
		if _, ok := b.events[cluster]; !ok {
			b.order = append(b.order, cluster)
		}
		b.events[cluster] = append(b.events[cluster], ev)
	}
	clear(recs)
}

// cluster names the cluster of a record's resource ID.
func (f *Forwarder) cluster(resourceID string) string {
	if c, ok := f.clusters[strings.ToLower(resourceID)]; ok {
		return c
	}
	return f.cfg.Cluster
}

// deliver ingests each cluster's events, retrying with backoff while our
// Kafka does not acknowledge them. It returns an error only when ctx ends.
func (f *Forwarder) deliver(ctx context.Context, b *batch) error {
	for _, cluster := range b.order {
		items := b.events[cluster]
		wait := f.cfg.RetryMin
		for attempt := 1; ; attempt++ {
			res, err := f.ing.IngestAnnotated(ctx, cluster, items)
			if err == nil {
				f.rejected(cluster, res)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pipeline.IsPermanent(err) {
				// A message Kafka can never take: retrying would
				// stall the hub for good.
				f.m.dropped.Add(float64(len(items) - res.Accepted))
				f.log.Error("producing events failed for good, skipping them", "cluster", cluster, "events", len(items), "err", err)
				break
			}
			f.m.retries.Inc()
			if f.due("retry") {
				f.log.Warn("producing events, will retry; event hub offsets stay uncommitted", "cluster", cluster, "events", len(items), "attempt", attempt, "wait", wait, "err", err)
			}
			// Full jitter over the upper half, so that several ingest
			// instances do not return to a restarted broker in step.
			d := wait/2 + rand.N(wait/2+1)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
			wait = min(2*wait, f.cfg.RetryMax)
		}
	}
	return nil
}

// rejected counts and logs the events ingest refused, by reason only: the
// rejection texts may quote the event.
func (f *Forwarder) rejected(cluster string, res ingest.Result) {
	if res.RejectedCount == 0 {
		return
	}
	for reason, n := range res.RejectedReasons {
		f.m.rejected.WithLabelValues(reason).Add(float64(n))
	}
	if f.due("rejected") {
		f.log.Warn("events refused by validation", "cluster", cluster, "rejected", res.RejectedCount, "reasons", res.RejectedReasons)
	}
}

// commit moves the offsets past every message of the batch. It runs even
// once ctx has ended: the batch is durable.
func (f *Forwarder) commit(ctx context.Context, recs []pipeline.Record) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := f.src.Commit(cctx, recs); err != nil {
		// The next commit covers these offsets too; until then a
		// restart reads them again, and deduplication absorbs that.
		f.m.commitEr.Inc()
		if f.due("commit") {
			f.log.Warn("committing event hub offsets, will be retried with the next batch", "messages", len(recs), "err", err)
		}
		return
	}
	f.m.commits.Inc()
}

// due reports whether a line of this kind may be logged now: at most one
// per logWindow, since these repeat per message or attempt.
func (f *Forwarder) due(kind string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.lastLog[kind]) < logWindow {
		return false
	}
	f.lastLog[kind] = now
	return true
}

// errorClass names what kind of error err is without quoting input.
func errorClass(err error) string {
	switch {
	case errors.Is(err, aks.ErrNotRecords):
		return "not_records"
	case strings.Contains(err.Error(), "cannot unmarshal"):
		return "wrong_type"
	}
	return "not_json"
}
