package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/prom"
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
	// MetricDetectDLQ counts records sent to the dead-letter queue, by
	// reason (decode, oversized, rejected).
	MetricDetectDLQ = "auditpipe_detect_dlq_total"
	// MetricDetectPendingRecords and MetricDetectPendingBytes are the
	// backlog in hand: records fetched but not yet stored. They grow to
	// the batch and fetch-queue bounds while the sink is down.
	MetricDetectPendingRecords = "auditpipe_detect_pending_records"
	MetricDetectPendingBytes   = "auditpipe_detect_pending_bytes"
	// MetricDetectStageEvents counts decoded events by stage (none for an
	// event without one, judged as ResponseComplete) and by what the
	// StageGate decided: judged, not_judged (a stage requests are not
	// judged at) or duplicate (the request was judged from another stage,
	// or the event came twice).
	MetricDetectStageEvents = "auditpipe_detect_stage_events_total"
)

// Config bounds detect's batches and retries.
type Config struct {
	// BatchRecords flushes once this many records are pending. ClickHouse
	// wants thousands of rows per insert. Default 20000: each INSERT
	// writes one part per table and day, and the server's background
	// merges read and rewrite every part's rows again (most of its CPU
	// under load, the raw column dominating), so half as many parts as
	// at 10,000 cut the server's CPU per row by a fifth to a quarter
	// under end-to-end load. Realistic events (about 1 KiB each) fill
	// BatchRecords well before BatchBytes.
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
	// MaxRecordBytes is the largest record value detect decodes; larger
	// ones are dead-lettered unread, so one huge RequestResponse event
	// cannot exhaust memory or bloat the raw column. Default 4 MiB.
	MaxRecordBytes int
	// ExitWhenIdle makes Run return once no record arrived for this long,
	// everything fetched is committed and, for a source that can tell (a
	// Kafka consumer group), no record of the topic is left uncommitted by
	// any member (0: run until ctx is done). Used by the demo and by batch
	// jobs over a spool.
	ExitWhenIdle time.Duration
	// Stages bounds the memory of which requests were judged already; see
	// StageGate.
	Stages pipeline.StageGateConfig
	// Workers is how many goroutines decode and judge a batch; see
	// prepare for how they split it while keeping each key's events in
	// order. Default GOMAXPROCS.
	Workers int
}

// WithDefaults returns c with every unset (zero or negative) field set to
// its default.
func (c Config) WithDefaults() Config {
	if c.BatchRecords <= 0 {
		c.BatchRecords = 20000
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
	if c.MaxRecordBytes <= 0 {
		c.MaxRecordBytes = 4 << 20
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	c.Stages = c.Stages.WithDefaults()
	return c
}

// Validate reports every problem in c, each naming its key (the flag
// that sets it). Call it on c.WithDefaults(): zero means "default".
func (c Config) Validate() error {
	var errs []error
	positive := func(key string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", key, v))
		}
	}
	positive("batch_records", int64(c.BatchRecords))
	positive("batch_bytes", int64(c.BatchBytes))
	positive("max_record_bytes", int64(c.MaxRecordBytes))
	positive("workers", int64(c.Workers))
	if c.Workers > maxWorkers {
		errs = append(errs, fmt.Errorf("workers must be at most %d, got %d", maxWorkers, c.Workers))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"batch_timeout", c.BatchTimeout},
		{"retry_min", c.RetryMin},
		{"retry_max", c.RetryMax},
		{"shutdown_timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.key, d.v))
		}
	}
	if c.ExitWhenIdle < 0 {
		errs = append(errs, fmt.Errorf("exit_when_idle must not be negative, got %s", c.ExitWhenIdle))
	}
	if err := c.Stages.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("stages: %w", err))
	}
	return errors.Join(errs...)
}

type processorMetrics struct {
	records      prometheus.Counter
	decodeErrors prometheus.Counter
	findings     *prometheus.CounterVec
	batchRecords prometheus.Histogram
	flushSeconds prometheus.Histogram
	sinkRetries  prometheus.Counter
	commits      *prometheus.CounterVec
	dlq          *prometheus.CounterVec
	pendingRecs  prometheus.Gauge
	pendingBytes prometheus.Gauge
	stages       *prometheus.CounterVec
}

func newProcessorMetrics(reg prometheus.Registerer) (*processorMetrics, error) {
	m := &processorMetrics{
		records:      prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDetectRecords, Help: "Records fetched from the transport."}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDetectDecodeErrors, Help: "Records skipped because they could not be decoded."}),
		findings:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDetectFindings, Help: "Findings produced, by detector and severity."}, []string{"detector", "severity"}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDetectBatchRecords, Help: "Records per flushed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDetectFlushSeconds, Help: "Time to decode, detect, store and commit one batch.", Buckets: prometheus.DefBuckets}),
		sinkRetries:  prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDetectSinkRetries, Help: "Batch writes retried after a retryable sink error."}),
		commits:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDetectCommits, Help: "Offset commits, by result."}, []string{"result"}),
		dlq:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDetectDLQ, Help: "Records sent to the dead-letter queue, by reason (decode, oversized, rejected)."}, []string{"reason"}),
		pendingRecs:  prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricDetectPendingRecords, Help: "Records fetched but not yet stored: the backlog in hand."}),
		pendingBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricDetectPendingBytes, Help: "Value bytes of records fetched but not yet stored."}),
		stages:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDetectStageEvents, Help: "Decoded events by stage (none: judged as ResponseComplete) and verdict (judged, not_judged, duplicate)."}, []string{"stage", "verdict"}),
	}
	// prom.Register hands back the collector already registered under the
	// same name, so a second Processor on one registry adds to the same
	// series instead of panicking.
	err := errors.Join(
		registerInto(reg, &m.records), registerInto(reg, &m.decodeErrors),
		registerInto(reg, &m.findings), registerInto(reg, &m.batchRecords),
		registerInto(reg, &m.flushSeconds), registerInto(reg, &m.sinkRetries),
		registerInto(reg, &m.commits), registerInto(reg, &m.dlq),
		registerInto(reg, &m.pendingRecs), registerInto(reg, &m.pendingBytes),
		registerInto(reg, &m.stages),
	)
	if err != nil {
		return nil, fmt.Errorf("registering processor metrics: %w", err)
	}
	return m, nil
}

// registerInto registers *c with reg, replacing it with the collector
// already registered under the same name if there is one.
func registerInto[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	got, err := prom.Register(reg, *c)
	*c = got
	return err
}

// Processor is detect's main loop: fetch records, decode, detect, write the
// batch to the sink, and only then commit. A crash anywhere before the commit
// redelivers the batch, which the sink's deduplication absorbs.
type Processor struct {
	cfg Config
	src pipeline.Source
	// dets holds each prepare worker's detector: det for all of them,
	// unless SetDetectorFactory gave each its own.
	dets []pipeline.EventDetector
	gate *pipeline.StageGate
	sink pipeline.Sink
	log  *slog.Logger
	m    *processorMetrics

	decodeLog *throttle
	alerter   Alerter
	dlq       pipeline.DeadLetterSink
	offsets   *offsetTracker
}

// Alerter receives the findings of every batch once the sink stored it
// (alert.Notifier is the one detect uses).
// Notify must not block: alert delivery stays off the commit path.
type Alerter interface {
	Notify(fs []pipeline.Finding)
}

// SetAlerter makes p hand each stored batch's findings to a.
func (p *Processor) SetAlerter(a Alerter) { p.alerter = a }

// SetDeadLetters makes p send records it cannot store to d (and commit
// past them once d has them). Without one, such records are counted,
// logged and skipped.
func (p *Processor) SetDeadLetters(d pipeline.DeadLetterSink) { p.dlq = d }

// SetDetectorFactory gives each of the Config.Workers prepare workers its
// own detector from newDet, for detectors with unlocked scratch state
// (rules.TermsDetector): state that must be shared (detector windows, the
// first-seen tracker) should be shared by what newDet returns, since a key
// may be judged by another worker in the next batch.
func (p *Processor) SetDetectorFactory(newDet func() pipeline.EventDetector) {
	for i := range p.dets {
		p.dets[i] = newDet()
	}
}

// New wires a Processor; cfg's zero fields take their defaults.
// log and reg may be nil; two Processors on one registry share the series.
// det is called from cfg.Workers goroutines at once, so it must be safe
// for concurrent use, unless SetDetectorFactory replaces it.
func New(cfg Config, src pipeline.Source, det pipeline.EventDetector, sink pipeline.Sink, log *slog.Logger, reg prometheus.Registerer) (*Processor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating processor config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newProcessorMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Processor{
		cfg: cfg, src: src, dets: slices.Repeat([]pipeline.EventDetector{det}, cfg.Workers), sink: sink, log: log,
		gate:      pipeline.NewStageGate(cfg.Stages),
		m:         m,
		decodeLog: newThrottle(10, time.Minute),
		offsets:   newOffsetTracker(),
	}, nil
}

// Run processes records until ctx is done (then it flushes and commits the
// batch in hand within ShutdownTimeout and returns nil), the source fails,
// the dead-letter sink refuses records permanently, or ExitWhenIdle
// elapses.
func (p *Processor) Run(ctx context.Context) error {
	fetchCtx, stopFetch := context.WithCancel(ctx)
	fetched := make(chan pipeline.Record, min(p.cfg.BatchRecords, fetchAhead))
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
			p.m.pendingRecs.Inc()
			p.m.pendingBytes.Add(float64(len(rec.Value)))
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

	// Two stages: this loop collects, decodes and judges a batch while the
	// store stage writes the previous one to the sink, dead-letters and
	// commits. Detection stays in fetch order (stateful detectors need
	// that) and commits stay in batch order, while ClickHouse's insert
	// time overlaps the next batch's CPU work. The hand-over is
	// unbuffered: a prepared batch waits in this loop, not in a queue,
	// until the store stage takes it, and meanwhile only fetchAhead
	// records are fetched ahead. Memory stays bounded to about two
	// batches and their events (one being stored, one prepared or being
	// prepared) instead of four: at 10,000 records a batch each one is
	// tens of MiB of values and decoded events, and detect's RSS under
	// end-to-end load had reached 625-723 MiB.
	//
	// The store stage outlives ctx by up to ShutdownTimeout, so that on
	// SIGTERM the batches in hand are stored and committed rather than
	// redelivered.
	storeCtx, cancelStore := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStore()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(p.cfg.ShutdownTimeout, cancelStore) })
	defer stopGrace()
	toStore := make(chan prepared)
	storeFailed := make(chan struct{}) // closed when the store stage gives up
	storeDone := make(chan struct{})   // closed when it has returned
	var storeErr error
	go func() {
		defer close(storeDone)
		for b := range toStore {
			if err := p.finish(storeCtx, b); err != nil {
				storeErr = err
				close(storeFailed)
				// Drain without storing: nothing after a failed batch may
				// be committed, and Run is returning.
				for range toStore {
				}
				return
			}
		}
	}()
	// stopStore hands over the last batch (if any) and waits for the store
	// stage to finish everything it was given.
	stopStore := func() error {
		close(toStore)
		<-storeDone
		return p.stopped(ctx, storeErr)
	}

	var (
		pending      []pipeline.Record
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
	// flush prepares the batch in hand and passes it to the store stage.
	// It reports false when the store stage has failed.
	flush := func() bool {
		flushTimer.Stop()
		if len(pending) == 0 {
			return true
		}
		b := p.prepare(pending)
		// A fresh slice per batch: the prepared events alias the records'
		// values until the store stage is done with them.
		pending, pendingBytes = nil, 0
		select {
		case toStore <- b:
			return true
		case <-storeFailed:
			return false
		}
	}

	for {
		select {
		case rec, ok := <-fetched:
			if !ok {
				wg.Wait()
				flush()
				return errors.Join(fetchErr, stopStore())
			}
			if idleTimer != nil {
				idleTimer.Reset(p.cfg.ExitWhenIdle)
			}
			if len(pending) == 0 {
				flushTimer.Reset(p.cfg.BatchTimeout)
			}
			p.offsets.fetched(&rec)
			pending = append(pending, rec)
			pendingBytes += len(rec.Value)
			if len(pending) >= p.cfg.BatchRecords || pendingBytes >= p.cfg.BatchBytes {
				if !flush() {
					return stopStore()
				}
			}
		case <-flushTimer.C:
			if !flush() {
				return stopStore()
			}
		case <-storeFailed:
			return stopStore()
		case <-idle:
			if len(fetched) > 0 {
				// Records arrived while this loop was busy preparing a
				// batch for longer than the idle time: the timer fired
				// late, not for want of records.
				idleTimer.Reset(p.cfg.ExitWhenIdle)
				continue
			}
			if len(pending) > 0 {
				if !flush() {
					return stopStore()
				}
				idleTimer.Reset(p.cfg.ExitWhenIdle)
				continue
			}
			if left, err := p.backlog(ctx); err != nil || left > 0 {
				if err != nil {
					p.log.Warn("idle, but cannot tell whether records are left; waiting", "idle", p.cfg.ExitWhenIdle, "err", err)
				} else {
					p.log.Info("idle, but the group has records left (a rebalance, or a batch being committed); waiting", "idle", p.cfg.ExitWhenIdle, "backlog", left)
				}
				idleTimer.Reset(p.cfg.ExitWhenIdle)
				continue
			}
			p.log.Info("no records for a while, exiting", "idle", p.cfg.ExitWhenIdle)
			return stopStore()
		case <-ctx.Done():
			stopFetch()
			flush()
			return stopStore()
		}
	}
}

// backlogger is a Source that can count the records its consumer group has
// not committed yet, its own and other members' (Kafka). Without it an idle
// spell is taken as the end of the input.
type backlogger interface {
	Backlog(ctx context.Context) (int64, error)
}

// backlog asks the source how many records are left before Run exits for
// idleness. "No record for a while" alone is not the end of a topic: a
// member that joins while another's partitions wait out its session
// timeout, or any rebalance, receives nothing for as long as the group
// takes to settle, which under load has exceeded the idle time (a batch
// job then exited with a tenth of the topic unread).
func (p *Processor) backlog(ctx context.Context) (int64, error) {
	b, ok := p.src.(backlogger)
	if !ok {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, max(p.cfg.ExitWhenIdle, 5*time.Second))
	defer cancel()
	return b.Backlog(ctx)
}

// stopped turns a flush error into Run's result: cancellation during a
// retry loop is a clean stop, anything else is returned.
func (p *Processor) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// item is one decoded record and the findings detected while judging it.
type item struct {
	rec      *pipeline.Record
	ev       *pipeline.Event
	findings []pipeline.Finding
}

// prepared is a batch decoded and judged, waiting to be stored.
type prepared struct {
	recs  []pipeline.Record
	items []item
	dead  []pipeline.DeadLetter
	start time.Time
}

// fetchAhead bounds the records fetched while the loop prepares a batch or
// waits for the store stage: enough to keep Fetch (kafka-go reading and
// decompressing) busy during a prepare, not a second batch in memory. The
// source keeps reading ahead on its own (kafka-go's queue).
const fetchAhead = 2048

// maxWorkers bounds Config.Workers: more goroutines than this only add
// scheduling and lock contention on any machine detect runs on.
const maxWorkers = 256

// prepare decodes and judges recs, on cfg.Workers goroutines when the batch
// is large enough to be worth splitting. Records that can never be stored
// (oversized, undecodable) become dead letters, in record order.
//
// Why the split keeps every stateful detector correct: each record goes to
// the worker shardOf picks from its Kafka key, and each worker takes its
// records in fetch order. Ingest keys every record by pipeline.MessageKey
// ("<cluster>/<subject>"), and Kafka maps a key to one partition, whose
// messages kafka-go's consumer-group Reader hands out in offset order (one
// reader goroutine per assigned partition feeding the Reader's single
// queue), so the fetch order of one key's records is its produce order; the key hash
// keeps them on one worker, and the next batch is not started before this
// one is done (prepare returns after every worker), so no record of a key
// overtakes an earlier one. The built-in detectors' windows
// (token-replay, stale-token, denied-burst, ...), the StageGate (every
// stage of a request shares its subject) and first-seen rules key their
// state by subject or coarser, and are locked, so they see each key's
// events in the order a single worker would. Records of different keys
// are judged concurrently, as records of different partitions already
// were in whatever order the consumer interleaved them.
//
// Batches still reach the store stage whole and in fetch order, so a
// ClickHouse insert mixes partitions and commits stay contiguous (see
// offsetTracker).
func (p *Processor) prepare(recs []pipeline.Record) prepared {
	b := prepared{recs: recs, start: time.Now()}
	p.m.records.Add(float64(len(recs)))
	p.m.batchRecords.Observe(float64(len(recs)))

	events := make([]pipeline.Event, len(recs))
	results := make([]judged, len(recs))
	workers := min(p.cfg.Workers, len(recs)/minShardRecords)
	if workers <= 1 {
		p.judge(p.dets[0], recs, events, results, nil)
	} else {
		shards := make([][]int32, workers)
		for i := range recs {
			w := shardOf(&recs[i], workers)
			shards[w] = append(shards[w], int32(i))
		}
		// One goroutine per shard, owned and waited for here: they live
		// for one batch, so nothing outlives Run and a shard's cost is
		// tens of microseconds per record against a goroutine's start of
		// about one.
		var wg sync.WaitGroup
		for w, idx := range shards {
			if w == 0 || len(idx) == 0 {
				continue // shard 0 is judged inline; nil would mean every record
			}
			wg.Go(func() { p.judge(p.dets[w], recs, events, results, idx) })
		}
		if len(shards[0]) > 0 {
			p.judge(p.dets[0], recs, events, results, shards[0])
		}
		wg.Wait()
	}
	b.items = make([]item, 0, len(recs))
	for i := range recs {
		r := &results[i]
		if r.dead != nil {
			b.dead = append(b.dead, *r.dead)
			continue
		}
		b.items = append(b.items, item{rec: &recs[i], ev: &events[i], findings: r.findings})
	}
	return b
}

// minShardRecords is the fewest records worth a worker of their own: a
// batch of a few events (a quiet cluster's timeout flush) is judged
// inline.
const minShardRecords = 64

// judged is one record's outcome in prepare: a dead letter, or the
// findings its event produced.
type judged struct {
	dead     *pipeline.DeadLetter
	findings []pipeline.Finding
}

// shardOf picks the prepare worker for r by its key, so that one key's
// records are judged by one worker in fetch order. Records without a key
// (the spool keeps ingest's key; other sources may not) go by partition,
// whose order the source keeps.
func shardOf(r *pipeline.Record, workers int) int {
	if len(r.Key) == 0 {
		return r.Partition % workers
	}
	return int(xxhash.Sum64(r.Key) % uint64(workers))
}

// judge decodes and judges, with det, recs[i] for each i in idx (every
// record when idx is nil), in that order, writing events[i] and results[i].
func (p *Processor) judge(det pipeline.EventDetector, recs []pipeline.Record, events []pipeline.Event, results []judged, idx []int32) {
	var findings []pipeline.Finding
	one := func(i int) {
		rec := &recs[i]
		if len(rec.Value) > p.cfg.MaxRecordBytes {
			results[i].dead = &pipeline.DeadLetter{Record: *rec, Reason: pipeline.ReasonOversized,
				Err: fmt.Errorf("record of %d bytes exceeds max_record_bytes %d", len(rec.Value), p.cfg.MaxRecordBytes)}
			return
		}
		ev := &events[i]
		if err := auditjson.Decode(ev, recordCluster(rec), rec.Value); err != nil {
			p.m.decodeErrors.Inc()
			results[i].dead = &pipeline.DeadLetter{Record: *rec, Reason: pipeline.ReasonDecode, Err: fmt.Errorf("decoding audit event: %w", err)}
			return
		}
		// Each request is judged once, from the first of its
		// authoritative stages; every event is stored either way.
		stage := pipeline.StageLabel(ev)
		verdict := p.gate.Admit(ev)
		p.m.stages.WithLabelValues(stage, verdict.String()).Inc()
		n := len(findings)
		if verdict == pipeline.StageJudged {
			findings = det.Detect(ev, findings)
		}
		results[i].findings = findings[n:len(findings):len(findings)]
	}
	if idx == nil {
		for i := range recs {
			one(i)
		}
		return
	}
	for _, i := range idx {
		one(int(i))
	}
}

// finish stores a prepared batch, dead-letters what can never be stored,
// notifies, and commits. Retryable failures (sink or dead-letter queue
// down) are retried with backoff until ctx ends, keeping the batch and
// committing nothing; a permanent sink error is narrowed down to the
// records causing it, so one poison record never blocks its partition.
func (p *Processor) finish(ctx context.Context, b prepared) error {
	stored, rejected, err := p.store(ctx, b.items)
	if err != nil {
		return err
	}
	dead := append(b.dead, rejected...)
	for _, f := range stored.Findings {
		p.m.findings.WithLabelValues(f.Detector, f.Severity.String()).Inc()
	}
	if err := p.deadLetter(ctx, dead); err != nil {
		return err
	}
	if p.alerter != nil && len(stored.Findings) > 0 {
		p.alerter.Notify(stored.Findings)
	}
	p.offsets.finished(b.recs)
	p.m.pendingRecs.Sub(float64(len(b.recs)))
	var bytes int
	for i := range b.recs {
		bytes += len(b.recs[i].Value)
	}
	p.m.pendingBytes.Sub(float64(bytes))
	p.commit(ctx)
	p.m.flushSeconds.Observe(time.Since(b.start).Seconds())
	return nil
}

// commit commits the highest contiguous finished offset per partition.
func (p *Processor) commit(ctx context.Context) {
	commits := p.offsets.commits()
	if len(commits) == 0 {
		return
	}
	if err := p.src.Commit(ctx, commits); err != nil {
		// Not fatal: the batch is stored, and a later commit covers these
		// offsets; a crash before then redelivers what dedup absorbs.
		// After a rebalance the partition is someone else's; see
		// kafka.Consumer.Commit for why a late commit is harmless.
		p.m.commits.WithLabelValues("error").Inc()
		p.log.Warn("committing offsets", "partitions", len(commits), "err", err)
		return
	}
	p.offsets.committed(commits)
	p.m.commits.WithLabelValues("ok").Inc()
}

// store writes items as one batch. When the sink refuses it permanently, it
// bisects: each half is written on its own, down to single records, which
// are returned as dead letters with the sink's error. The common case is one
// insert per table; a poison record costs about 2·log2(n) more.
func (p *Processor) store(ctx context.Context, items []item) (stored pipeline.Batch, rejected []pipeline.DeadLetter, err error) {
	if len(items) == 0 {
		return pipeline.Batch{}, nil, nil
	}
	b := pipeline.Batch{Events: make([]*pipeline.Event, len(items))}
	for i := range items {
		b.Events[i] = items[i].ev
		b.Findings = append(b.Findings, items[i].findings...)
	}
	err = p.retry(ctx, "writing batch", func() error { return p.sink.Write(ctx, b) })
	if err == nil {
		return b, nil, nil
	}
	if !pipeline.IsPermanent(err) {
		return pipeline.Batch{}, nil, err
	}
	if len(items) == 1 {
		return pipeline.Batch{}, []pipeline.DeadLetter{{Record: *items[0].rec, Reason: pipeline.ReasonRejected, Err: err}}, nil
	}
	p.log.Warn("sink refused batch, bisecting to isolate the bad records", "events", len(items), "err", err)
	mid := len(items) / 2
	left, rejL, err := p.store(ctx, items[:mid])
	if err != nil {
		return pipeline.Batch{}, nil, err
	}
	right, rejR, err := p.store(ctx, items[mid:])
	if err != nil {
		return pipeline.Batch{}, nil, err
	}
	left.Events = append(left.Events, right.Events...)
	left.Findings = append(left.Findings, right.Findings...)
	return left, append(rejL, rejR...), nil
}

// deadLetter hands dead to the dead-letter sink (retrying while it is
// unavailable) and counts them.
func (p *Processor) deadLetter(ctx context.Context, dead []pipeline.DeadLetter) error {
	if len(dead) == 0 {
		return nil
	}
	for _, dl := range dead {
		if p.decodeLog.allow() {
			p.log.Warn("dead-lettering record", "reason", dl.Reason, "partition", dl.Record.Partition, "offset", dl.Record.Offset, "err", dl.Err)
		}
	}
	if p.dlq != nil {
		err := p.retry(ctx, "writing dead letters", func() error { return p.dlq.WriteDeadLetters(ctx, dead) })
		if err != nil {
			return fmt.Errorf("writing %d dead letters: %w", len(dead), err)
		}
	}
	for _, dl := range dead {
		p.m.dlq.WithLabelValues(dl.Reason).Inc()
	}
	return nil
}

// retry calls fn until it succeeds, fails permanently, or ctx ends,
// backing off with full jitter between attempts.
func (p *Processor) retry(ctx context.Context, what string, fn func() error) error {
	backoff := p.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || pipeline.IsPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.m.sinkRetries.Inc()
		// Full jitter keeps several detect instances from hammering a
		// recovering ClickHouse in step.
		wait := time.Duration(rand.Int64N(int64(backoff))) + p.cfg.RetryMin
		p.log.Warn("writing downstream, will retry", "op", what, "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}

// recordCluster names the record's cluster: the transport header, else the
// key's prefix (ingest keys are "<cluster>/<subject>"), else "default".
func recordCluster(r *pipeline.Record) string {
	if r.Cluster != "" {
		return r.Cluster
	}
	if c, ok := pipeline.KeyCluster(r.Key); ok {
		return c
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
