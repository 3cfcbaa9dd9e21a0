package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by the Processor; dashboards refer to these
// constants so that renaming a metric breaks the dashboard build.
const (
	MetricDetectRecords      = "auditpipe_detect_records_total"
	MetricDetectDecodeErrors = "auditpipe_detect_decode_errors_total"
	MetricDetectFindings     = "auditpipe_detect_findings_total"
	MetricDetectBatchRecords = "auditpipe_detect_batch_records"
	MetricDetectFlushSeconds = "auditpipe_detect_flush_duration_seconds"
	MetricDetectSinkRetries  = "auditpipe_detect_sink_retries_total"
	MetricDetectCommits      = "auditpipe_detect_commits_total"
)

// EventDetector judges one event; detectors.Set implements it.
type EventDetector interface {
	Detect(ev *Event, out []Finding) []Finding
}

// ProcessorConfig bounds detect's batches and retries.
type ProcessorConfig struct {
	// BatchRecords flushes once this many records are pending. ClickHouse
	// wants thousands of rows per insert. Default 10000.
	BatchRecords int
	// BatchBytes flushes once the pending records' values reach this size,
	// bounding memory for large RequestResponse events. Default 32 MiB.
	BatchBytes int
	// BatchTimeout flushes a non-empty batch after this long, so that a
	// quiet cluster's events still land within a second. Default 1s.
	BatchTimeout time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// attempts to write a batch the sink refused. Defaults 100ms and 30s.
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds the final flush and commit after ctx is done.
	// Default 15s.
	ShutdownTimeout time.Duration
	// ExitWhenIdle makes Run return once no record arrived for this long and
	// everything fetched is committed (0: run until ctx is done). Used by
	// the demo and by batch jobs over a spool.
	ExitWhenIdle time.Duration
}

func (c *ProcessorConfig) setDefaults() {
	if c.BatchRecords <= 0 {
		c.BatchRecords = 10000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 32 << 20
	}
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = 30 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
}

type processorMetrics struct {
	records      prometheus.Counter
	decodeErrors prometheus.Counter
	findings     *prometheus.CounterVec
	batchRecords prometheus.Histogram
	flushSeconds prometheus.Histogram
	sinkRetries  prometheus.Counter
	commits      *prometheus.CounterVec
}

func newProcessorMetrics(reg prometheus.Registerer) *processorMetrics {
	m := &processorMetrics{
		records:      prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDetectRecords, Help: "Records fetched from the transport."}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDetectDecodeErrors, Help: "Records skipped because they could not be decoded."}),
		findings:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDetectFindings, Help: "Findings produced, by detector and severity."}, []string{"detector", "severity"}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDetectBatchRecords, Help: "Records per flushed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDetectFlushSeconds, Help: "Time to decode, detect, store and commit one batch.", Buckets: prometheus.DefBuckets}),
		sinkRetries:  prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDetectSinkRetries, Help: "Batch writes retried after a retryable sink error."}),
		commits:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDetectCommits, Help: "Offset commits, by result."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.decodeErrors, m.findings, m.batchRecords, m.flushSeconds, m.sinkRetries, m.commits)
	}
	return m
}

// Processor is detect's main loop: fetch records, decode, detect, write the
// batch to the sink, and only then commit. A crash anywhere before the commit
// redelivers the batch, which the sink's deduplication absorbs.
type Processor struct {
	cfg  ProcessorConfig
	src  Source
	det  EventDetector
	sink Sink
	log  *slog.Logger
	m    *processorMetrics

	decodeLog *throttle
	notifier  Notifier
}

// Notifier receives the findings of every batch once the sink stored it.
// Notify must not block: alert delivery stays off the commit path.
type Notifier interface {
	Notify(fs []Finding)
}

// SetNotifier makes p hand each stored batch's findings to n.
func (p *Processor) SetNotifier(n Notifier) { p.notifier = n }

// NewProcessor wires a Processor. log and reg may be nil.
func NewProcessor(cfg ProcessorConfig, src Source, det EventDetector, sink Sink, log *slog.Logger, reg prometheus.Registerer) *Processor {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Processor{
		cfg: cfg, src: src, det: det, sink: sink, log: log,
		m:         newProcessorMetrics(reg),
		decodeLog: newThrottle(10, time.Minute),
	}
}

// Run processes records until ctx is done (then it flushes and commits the
// batch in hand within ShutdownTimeout and returns nil), the source fails,
// the sink refuses a batch permanently, or ExitWhenIdle elapses.
func (p *Processor) Run(ctx context.Context) error {
	fetchCtx, stopFetch := context.WithCancel(ctx)
	fetched := make(chan Record, p.cfg.BatchRecords)
	var fetchErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(fetched)
		for {
			rec, err := p.src.Fetch(fetchCtx)
			if err != nil {
				if fetchCtx.Err() == nil {
					fetchErr = fmt.Errorf("fetching record: %w", err)
				}
				return
			}
			select {
			case fetched <- rec:
			case <-fetchCtx.Done():
				return
			}
		}
	})
	defer func() {
		stopFetch()
		wg.Wait()
	}()

	var (
		pending      []Record
		pendingBytes int
	)
	flushTimer := time.NewTimer(p.cfg.BatchTimeout)
	flushTimer.Stop()
	var idle <-chan time.Time
	var idleTimer *time.Timer
	if p.cfg.ExitWhenIdle > 0 {
		idleTimer = time.NewTimer(p.cfg.ExitWhenIdle)
		defer idleTimer.Stop()
		idle = idleTimer.C
	}
	flush := func(ctx context.Context) error {
		flushTimer.Stop()
		if len(pending) == 0 {
			return nil
		}
		err := p.flush(ctx, pending)
		pending, pendingBytes = pending[:0], 0
		return err
	}
	shutdownFlush := func() error {
		// The run context is done; give the batch in hand a bounded,
		// separate context so it is stored and committed rather than
		// redelivered.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ShutdownTimeout)
		defer cancel()
		return flush(sctx)
	}

	for {
		select {
		case rec, ok := <-fetched:
			if !ok {
				wg.Wait()
				if fetchErr != nil {
					return errors.Join(fetchErr, shutdownFlush())
				}
				return shutdownFlush()
			}
			if idleTimer != nil {
				idleTimer.Reset(p.cfg.ExitWhenIdle)
			}
			if len(pending) == 0 {
				flushTimer.Reset(p.cfg.BatchTimeout)
			}
			pending = append(pending, rec)
			pendingBytes += len(rec.Value)
			if len(pending) >= p.cfg.BatchRecords || pendingBytes >= p.cfg.BatchBytes {
				if err := flush(ctx); err != nil {
					return p.stopped(ctx, err)
				}
			}
		case <-flushTimer.C:
			if err := flush(ctx); err != nil {
				return p.stopped(ctx, err)
			}
		case <-idle:
			if len(pending) > 0 {
				if err := flush(ctx); err != nil {
					return p.stopped(ctx, err)
				}
				idleTimer.Reset(p.cfg.ExitWhenIdle)
				continue
			}
			p.log.Info("no records for a while, exiting", "idle", p.cfg.ExitWhenIdle)
			return nil
		case <-ctx.Done():
			stopFetch()
			return shutdownFlush()
		}
	}
}

// stopped turns a flush error into Run's result: cancellation during a
// retry loop is a clean stop, anything else is returned.
func (p *Processor) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// flush decodes and judges recs, stores them, and commits. It retries the
// sink until it accepts the batch, ctx ends, or the error is permanent.
func (p *Processor) flush(ctx context.Context, recs []Record) error {
	start := time.Now()
	p.m.records.Add(float64(len(recs)))
	p.m.batchRecords.Observe(float64(len(recs)))

	events := make([]Event, len(recs))
	batch := Batch{Events: make([]*Event, 0, len(recs))}
	for i := range recs {
		ev := &events[i]
		if err := ev.Decode(recordCluster(&recs[i]), recs[i].Value); err != nil {
			p.m.decodeErrors.Inc()
			if p.decodeLog.allow() {
				p.log.Warn("skipping undecodable record", "partition", recs[i].Partition, "offset", recs[i].Offset, "err", err)
			}
			continue
		}
		batch.Findings = p.det.Detect(ev, batch.Findings)
		batch.Events = append(batch.Events, ev)
	}
	for _, f := range batch.Findings {
		p.m.findings.WithLabelValues(f.Detector, f.Severity.String()).Inc()
	}

	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := p.sink.Write(ctx, batch)
		if err == nil {
			break
		}
		if IsPermanent(err) {
			return fmt.Errorf("writing batch of %d events: %w", len(batch.Events), err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.m.sinkRetries.Inc()
		// Full jitter keeps several detect instances from hammering a
		// recovering ClickHouse in step.
		wait := time.Duration(rand.Int64N(int64(backoff))) + p.cfg.RetryMin
		p.log.Warn("writing batch, will retry", "events", len(batch.Events), "findings", len(batch.Findings), "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
	if p.notifier != nil && len(batch.Findings) > 0 {
		p.notifier.Notify(batch.Findings)
	}
	if err := p.src.Commit(ctx, recs); err != nil {
		// Not fatal: the batch is stored, and a later commit covers these
		// offsets; a crash before then redelivers what dedup absorbs.
		p.m.commits.WithLabelValues("error").Inc()
		p.log.Warn("committing offsets", "records", len(recs), "err", err)
	} else {
		p.m.commits.WithLabelValues("ok").Inc()
	}
	p.m.flushSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// recordCluster names the record's cluster: the transport header, else the
// key's prefix (ingest keys are "<cluster>/<subject>"), else "default".
func recordCluster(r *Record) string {
	if r.Cluster != "" {
		return r.Cluster
	}
	for i, c := range r.Key {
		if c == '/' {
			if i > 0 {
				return string(r.Key[:i])
			}
			break
		}
	}
	return "default"
}

// throttle allows n events per period, so a stream of identical per-event
// errors does not flood the log.
type throttle struct {
	mu     sync.Mutex
	n      int
	period time.Duration
	start  time.Time
	count  int
}

func newThrottle(n int, period time.Duration) *throttle {
	return &throttle{n: n, period: period}
}

func (t *throttle) allow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.start) > t.period {
		t.start, t.count = now, 0
	}
	t.count++
	return t.count <= t.n
}
