// Package ingest is the HTTP endpoint kube-apiserver's audit webhook posts
// to. It splits each EventList into one message per event and answers 200
// only once the producer made every accepted event durable.
package ingest

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/prom"
)

// Metric names exported by ingest, for dashboards.
const (
	// MetricRequests counts webhook requests by response code.
	MetricRequests = "auditpipe_ingest_requests_total"
	// MetricEvents counts events by result: accepted (durable, including
	// deduplicated ones) or rejected.
	MetricEvents = "auditpipe_ingest_events_total"
	// MetricEventsRejected counts rejected events by reason: malformed,
	// too_large.
	MetricEventsRejected = "auditpipe_ingest_events_rejected_total"
	// MetricRejected counts whole requests refused before their events were
	// looked at, by reason: too_many_requests, body_too_large,
	// body_too_slow, too_many_events, malformed, unsupported_encoding,
	// forbidden. The authentication layer counts its own refusals
	// (unauthorized).
	MetricRejected = "auditpipe_ingest_rejected_total"
	// MetricTruncated counts events cut to the per-event limit.
	MetricTruncated = "auditpipe_ingest_truncated_total"
	// MetricForgedAnnotations counts events that arrived with annotations
	// under auditpipe.io/, which only auditpipe writes; they are dropped.
	MetricForgedAnnotations = "auditpipe_ingest_forged_annotations_total"
	// MetricDeduplicated counts events not produced again because they
	// were made durable within the deduplication window.
	MetricDeduplicated = "auditpipe_ingest_deduplicated_total"
	// MetricRequestBytes counts request body bytes, after decompression.
	MetricRequestBytes = "auditpipe_ingest_request_bytes_total"
	// MetricBatchEvents is the distribution of events per request.
	MetricBatchEvents = "auditpipe_ingest_batch_size_events"
	// MetricProduceDuration is the time until the producer acknowledged a
	// request's events.
	MetricProduceDuration = "auditpipe_ingest_produce_duration_seconds"
	// MetricInFlightRequests is the number of webhook requests being
	// processed: body read, not yet answered.
	MetricInFlightRequests = "auditpipe_ingest_inflight_requests"
	// MetricReadingRequests is the number of webhook requests still
	// receiving their body.
	MetricReadingRequests = "auditpipe_ingest_reading_requests"
	// MetricInFlightBytes is the bytes held by requests being served: body
	// bytes as they arrive, plus a per-event charge once a body is split.
	MetricInFlightBytes = "auditpipe_ingest_inflight_bytes"
)

// Reasons in MetricRejected and MetricEventsRejected.
const (
	ReasonTooManyRequests     = "too_many_requests"
	ReasonBodyTooLarge        = "body_too_large"
	ReasonBodyTooSlow         = "body_too_slow"
	ReasonTooManyEvents       = "too_many_events"
	ReasonMalformed           = "malformed"
	ReasonUnsupportedEncoding = "unsupported_encoding"
	ReasonForbidden           = "forbidden"
	ReasonTooLarge            = "too_large"
)

// Defaults for Config. Each limit bounds memory or time a sender can claim.
const (
	// DefaultMaxBodyBytes caps a request body, after gzip decoding. The
	// apiserver sends at most 400 events a batch; 64 MiB leaves room for
	// large RequestResponse events.
	DefaultMaxBodyBytes = 64 << 20
	// DefaultMaxEventBytes is the size above which an event loses its
	// bodies, as the apiserver's own truncate backend would cut it. It
	// matches the Kafka producer's default per-message bound (1 MiB) and
	// the broker's default message.max.bytes.
	DefaultMaxEventBytes = 1 << 20
	// DefaultMaxEventsPerRequest caps the events of one request. The
	// apiserver's webhook batches at most 400 by default
	// (--audit-webhook-batch-max-size) out of a buffer of 10,000
	// (--audit-webhook-batch-buffer-size), so 10,000 leaves room for large
	// configured batches and for replays. Each event costs ingest about
	// perEventBytes however small it is, and a 3 MB EventList can hold a
	// million `{}` items: without this cap such a body took 1.2 GB.
	DefaultMaxEventsPerRequest = 10_000
	// DefaultMaxInFlightRequests bounds webhook requests being processed
	// (split, redacted, produced) at once. A 400-event batch is produced
	// in milliseconds, so a few dozen cover every apiserver of several
	// clusters; beyond that requests only queue on the producer and the
	// answer is 429. A request takes its slot only once its body is in, so
	// slow senders do not hold these.
	DefaultMaxInFlightRequests = 64
	// DefaultMaxReadingRequests bounds requests still receiving their
	// body. Such a request holds no processing slot and only the body bytes
	// that have arrived, so the bound can be much larger than
	// DefaultMaxInFlightRequests: a few stalled or slow senders take a few
	// of many slots, and the minimum body rate frees them within seconds.
	// Each costs a goroutine and connection buffers, some 20 KiB, so 1024
	// of them cost about 20 MiB beyond their bytes.
	DefaultMaxReadingRequests = 16 * DefaultMaxInFlightRequests
	// DefaultMaxInFlightBytes bounds the bytes requests hold at once (body
	// bytes and per-event charges): four maximal bodies.
	DefaultMaxInFlightBytes = 4 * DefaultMaxBodyBytes
	// DefaultMinBodyRate and DefaultBodyRateGrace: once the first 5 s have
	// passed, a body must arrive at 64 KiB/s on average or is cut off with
	// 408. The apiserver writes a batch from memory in one go at network
	// speed, a few MB in well under a second, so the floor only catches a
	// sender that stalled or trickles, and frees its slot in seconds
	// rather than after read-timeout. The grace covers connection set-up,
	// TCP slow start and a small body on a bad link; every 64 KiB that
	// arrives buys another second.
	DefaultMinBodyRate   = 64 << 10
	DefaultBodyRateGrace = 5 * time.Second
	// DefaultRetryAfter is what a 429 or 503 tells the sender to wait.
	DefaultRetryAfter = 5 * time.Second
	// DefaultDedupWindow is how long an accepted event is remembered. The
	// apiserver retries a batch up to 5 times with backoff from 10 s, all
	// well within 10 minutes.
	DefaultDedupWindow = 10 * time.Minute
	// DefaultDedupEntries bounds the window: about 40 MB, a few minutes of
	// a busy control plane.
	DefaultDedupEntries = 1_000_000
	// Server timeouts for NewServer. The apiserver's webhook client times
	// out after 30 s; a client that trickles its headers is cut off well
	// before it can hold a connection for long, and ReadTimeout bounds a
	// body however steadily it comes (the minimum body rate cuts off a
	// stalled one sooner).
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// perEventBytes is what ingest holds per event beyond the body's bytes,
// charged against max-inflight-bytes once a body is split: the item's
// slice, the message, its key in the batch's arena (cluster and subject),
// the dedup key and the batch's seen-set entry, a few hundred bytes, with
// the slack of slices grown by append and the decoder's garbage on top.
// Measured: a body of 1,000,000 `{}` items once peaked at 1.18 GB of RSS,
// about 1.2 KB per item, however small the item; charging body bytes alone
// let a 3 MB body claim a gigabyte. Copies that grow with the event's size
// are charged apart, as the body's size once more (see chargeItems).
const perEventBytes = 1 << 10

// MaxRejectionsListed bounds the rejections a Result keeps and an answer
// lists; the rest are counted (Result.RejectedCount, the answer's
// rejected_count, and per reason in MetricEventsRejected). Listing all of
// them made a 37 MB answer for 300,000 bad items; the first hundred are
// plenty to see what is wrong with a sender.
const MaxRejectionsListed = 100

// maxRejectionErrorBytes cuts each listed error, so that an error quoting
// its input cannot make the answer large: 100 of them stay within about
// 40 KiB.
const maxRejectionErrorBytes = 256

// Config configures the webhook handler. Zero fields take the defaults
// above; negative ones are refused by Validate.
type Config struct {
	// DefaultCluster names events posted to /audit without a cluster in the
	// path. Default "default".
	DefaultCluster string
	// MaxBodyBytes caps a request body, after gzip decoding (413 beyond).
	MaxBodyBytes int64
	// MaxEventBytes is the size above which an event is truncated.
	MaxEventBytes int64
	// MaxEventsPerRequest caps the events of one request (413 beyond).
	MaxEventsPerRequest int
	// MaxInFlightRequests bounds the requests being processed, once their
	// body is in; MaxReadingRequests the requests still receiving theirs;
	// MaxInFlightBytes the body bytes and per-event charges they hold.
	// Beyond any of them the answer is 429.
	MaxInFlightRequests int
	MaxReadingRequests  int
	MaxInFlightBytes    int64
	// MinBodyRate is the average rate in bytes per second a request body
	// must keep once BodyRateGrace has passed; a slower one is cut off
	// with 408.
	MinBodyRate   int64
	BodyRateGrace time.Duration
	// RetryAfter is what a 429 or 503 tells the sender to wait.
	RetryAfter time.Duration
	// DedupWindow and DedupEntries bound the deduplication window.
	DedupWindow  time.Duration
	DedupEntries int
	// DisableDedup produces every event received, resends included.
	DisableDedup bool
	// Timeouts and header limit of the http.Server NewServer builds.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	setDefault(&c.DefaultCluster, "default")
	setDefault(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&c.MaxEventBytes, min(DefaultMaxEventBytes, c.MaxBodyBytes))
	setDefault(&c.MaxEventsPerRequest, DefaultMaxEventsPerRequest)
	setDefault(&c.MaxInFlightRequests, DefaultMaxInFlightRequests)
	setDefault(&c.MaxReadingRequests, DefaultMaxReadingRequests)
	setDefault(&c.MaxInFlightBytes, max(DefaultMaxInFlightBytes, 4*c.MaxBodyBytes, c.requestMaxBytes()))
	setDefault(&c.MinBodyRate, DefaultMinBodyRate)
	setDefault(&c.BodyRateGrace, DefaultBodyRateGrace)
	setDefault(&c.RetryAfter, DefaultRetryAfter)
	setDefault(&c.DedupWindow, DefaultDedupWindow)
	setDefault(&c.DedupEntries, DefaultDedupEntries)
	setDefault(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	return c
}

// requestMaxBytes is what one request within every limit can hold of the
// byte budget: a maximal body, its decoded copy and the charge for a
// maximal count of events.
func (c Config) requestMaxBytes() int64 {
	return 2*c.MaxBodyBytes + int64(c.MaxEventsPerRequest)*perEventBytes
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// ValidateCluster reports whether name can be used as a cluster name. It is
// pipeline.ValidateCluster, where the partition key is built too; new code
// should call that.
func ValidateCluster(name string) error { return pipeline.ValidateCluster(name) }

// Validate checks c after defaults, naming each bad setting by its flag.
func (c Config) Validate() error {
	var errs []error
	if err := ValidateCluster(c.DefaultCluster); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	}
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, v))
		}
	}
	positive("max-body-bytes", c.MaxBodyBytes)
	positive("max-event-bytes", c.MaxEventBytes)
	positive("max-events-per-request", int64(c.MaxEventsPerRequest))
	positive("max-inflight-requests", int64(c.MaxInFlightRequests))
	positive("max-reading-requests", int64(c.MaxReadingRequests))
	positive("max-inflight-bytes", c.MaxInFlightBytes)
	positive("min-body-rate", c.MinBodyRate)
	positive("body-rate-grace", int64(c.BodyRateGrace))
	positive("retry-after", int64(c.RetryAfter))
	positive("dedup-window", int64(c.DedupWindow))
	positive("dedup-entries", int64(c.DedupEntries))
	positive("read-header-timeout", int64(c.ReadHeaderTimeout))
	positive("read-timeout", int64(c.ReadTimeout))
	positive("write-timeout", int64(c.WriteTimeout))
	positive("idle-timeout", int64(c.IdleTimeout))
	positive("max-header-bytes", int64(c.MaxHeaderBytes))
	if c.MaxEventBytes > c.MaxBodyBytes && c.MaxBodyBytes > 0 {
		errs = append(errs, fmt.Errorf("max-event-bytes (%d) must not exceed max-body-bytes (%d)", c.MaxEventBytes, c.MaxBodyBytes))
	}
	if need := c.requestMaxBytes(); c.MaxInFlightBytes < need && c.MaxInFlightBytes > 0 && c.MaxBodyBytes > 0 && c.MaxEventsPerRequest > 0 {
		// Otherwise a request within max-body-bytes and
		// max-events-per-request could never be admitted and its sender
		// would be told to retry forever.
		errs = append(errs, fmt.Errorf("max-inflight-bytes (%d) must be at least twice max-body-bytes (%d: the body and its decoded copy) plus max-events-per-request (%d) × %d bytes per event, %d in all: one request at both limits must fit",
			c.MaxInFlightBytes, c.MaxBodyBytes, c.MaxEventsPerRequest, perEventBytes, need))
	}
	if c.BodyRateGrace >= c.ReadTimeout && c.ReadTimeout > 0 {
		errs = append(errs, fmt.Errorf("body-rate-grace (%s) must be shorter than read-timeout (%s), or min-body-rate never applies", c.BodyRateGrace, c.ReadTimeout))
	}
	if c.RetryAfter > 0 && c.RetryAfter < time.Second {
		errs = append(errs, fmt.Errorf("retry-after must be at least 1s (Retry-After counts whole seconds), got %s", c.RetryAfter))
	}
	return errors.Join(errs...)
}

// Redactor replaces secrets in one event's JSON before it leaves ingest.
type Redactor interface {
	Event(raw []byte) (out []byte, changed bool, err error)
}

// Pinger tells whether the producer's backend is reachable, for /readyz.
type Pinger interface {
	Ping(ctx context.Context) error
}

type metrics struct {
	requests          *prometheus.CounterVec
	events            *prometheus.CounterVec
	eventsRejected    *prometheus.CounterVec
	rejected          *prometheus.CounterVec
	truncated         prometheus.Counter
	forgedAnnotations prometheus.Counter
	deduplicated      prometheus.Counter
	requestBytes      prometheus.Counter
	batchEvents       prometheus.Histogram
	produceDuration   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, lim *limiter) (*metrics, error) {
	m := &metrics{
		requests:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests, Help: "Webhook requests by response code."}, []string{"code"}),
		events:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricEvents, Help: "Audit events by result (accepted, rejected)."}, []string{"result"}),
		eventsRejected:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricEventsRejected, Help: "Audit events rejected, by reason."}, []string{"reason"}),
		rejected:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRejected, Help: "Webhook requests refused as a whole, by reason."}, []string{"reason"}),
		truncated:         prometheus.NewCounter(prometheus.CounterOpts{Name: MetricTruncated, Help: "Audit events whose bodies were dropped to fit the per-event limit."}),
		forgedAnnotations: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricForgedAnnotations, Help: "Audit events that arrived with auditpipe.io/ annotations, which only auditpipe writes: they were dropped and the event kept."}),
		deduplicated:      prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDeduplicated, Help: "Audit events not produced again because they were already durable."}),
		requestBytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRequestBytes, Help: "Request body bytes read, after decompression."}),
		batchEvents:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricBatchEvents, Help: "Events per webhook request.", Buckets: []float64{1, 10, 50, 100, 200, 300, 400, 1000}}),
		produceDuration:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricProduceDuration, Help: "Time until the producer acknowledged a request's events.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	// Pre-create the label values dashboards expect, so that they read 0
	// rather than "no data".
	for _, r := range []string{"accepted", "rejected"} {
		m.events.WithLabelValues(r)
	}
	for _, r := range []string{ReasonTooManyRequests, ReasonBodyTooLarge, ReasonBodyTooSlow, ReasonTooManyEvents, ReasonMalformed} {
		m.rejected.WithLabelValues(r)
	}
	// prom.Register hands back the collector already registered under the
	// same name, so a second Handler on one registry adds to the same
	// counters instead of panicking. The in-flight gauges read the limiter
	// of the first Handler registered: they are the process's only when
	// one Handler serves, as in cmd/ingest.
	err := errors.Join(
		registerInto(reg, &m.requests), registerInto(reg, &m.events),
		registerInto(reg, &m.eventsRejected), registerInto(reg, &m.rejected),
		registerInto(reg, &m.truncated), registerInto(reg, &m.deduplicated),
		registerInto(reg, &m.forgedAnnotations),
		registerInto(reg, &m.requestBytes), registerInto(reg, &m.batchEvents),
		registerInto(reg, &m.produceDuration),
		registerGauge(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricInFlightRequests, Help: "Webhook requests being processed (body read, not yet answered)."},
			func() float64 { return float64(lim.requests.Load()) })),
		registerGauge(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricReadingRequests, Help: "Webhook requests still receiving their body."},
			func() float64 { return float64(lim.readers.Load()) })),
		registerGauge(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricInFlightBytes, Help: "Bytes held by requests being served: body bytes and per-event charges."},
			func() float64 { return float64(lim.bytes.Load()) })),
	)
	if err != nil {
		return nil, fmt.Errorf("registering ingest metrics: %w", err)
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

// registerGauge registers g with reg unless an equal gauge is registered.
func registerGauge(reg prometheus.Registerer, g prometheus.GaugeFunc) error {
	_, err := prom.Register(reg, g)
	return err
}

// Handler serves the webhook.
type Handler struct {
	cfg    Config
	prod   pipeline.Producer
	redact Redactor
	ping   Pinger
	log    *slog.Logger
	m      *metrics
	lim    *limiter
	window *window // nil when deduplication is off
	mux    *http.ServeMux
	pool   sync.Pool // *batchState
	fh     *firehoseMetrics
	// pubsubMessages counts Pub/Sub push messages (pubsub.go).
	pubsubMessages *prometheus.CounterVec
}

// New builds the handler. redact and ping may be nil; log and reg too.
func New(cfg Config, prod pipeline.Producer, redact Redactor, ping Pinger, log *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating ingest config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lim := &limiter{maxReaders: int64(cfg.MaxReadingRequests), maxRequests: int64(cfg.MaxInFlightRequests), maxBytes: cfg.MaxInFlightBytes}
	m, err := newMetrics(reg, lim)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, prod: prod, redact: redact, ping: ping, log: log, m: m, lim: lim, mux: http.NewServeMux()}
	if !cfg.DisableDedup {
		h.window = newWindow(cfg.DedupWindow, cfg.DedupEntries, nil)
	}
	h.mux.HandleFunc("POST /audit", h.serveAudit)
	h.mux.HandleFunc("POST /audit/{cluster}", h.serveAudit)
	if h.fh, err = newFirehoseMetrics(reg); err != nil {
		return nil, err
	}
	h.mux.HandleFunc("POST /firehose", h.serveFirehose)
	h.mux.HandleFunc("POST /firehose/{cluster}", h.serveFirehose)
	if err := h.registerPubSub(reg); err != nil {
		return nil, err
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("GET /readyz", h.serveReady)
	return h, nil
}

// NewServer returns an http.Server for handler with cfg's timeouts, so that
// a client trickling its headers or body cannot hold a connection (and an
// in-flight slot) for long. The caller sets Addr or calls Serve.
func NewServer(cfg Config, handler http.Handler) *http.Server {
	cfg = cfg.WithDefaults()
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
	}
}

// ServeHTTP routes requests.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) serveReady(w http.ResponseWriter, r *http.Request) {
	if h.ping != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.ping.Ping(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = io.WriteString(w, "ok\n")
}

// Rejection names one item of a batch that was not accepted.
type Rejection struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// rejectionError is err's text for a Rejection, cut to
// maxRejectionErrorBytes at a character boundary.
func rejectionError(err error) string {
	s := err.Error()
	if len(s) <= maxRejectionErrorBytes {
		return s
	}
	cut := maxRejectionErrorBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Response is the JSON body of every webhook answer.
type Response struct {
	Accepted int `json:"accepted"`
	// Rejected lists the first MaxRejectionsListed events refused;
	// RejectedCount counts them all.
	Rejected      []Rejection `json:"rejected,omitempty"`
	RejectedCount int         `json:"rejected_count,omitempty"`
	Error         string      `json:"error,omitempty"`
}

func (h *Handler) reply(w http.ResponseWriter, code int, resp Response) {
	h.m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	switch code {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter/time.Second)))
	case http.StatusRequestTimeout:
		// The rest of the body is still on its way, or never comes: the
		// connection cannot carry another request.
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}

// refuse answers a request refused as a whole and counts why.
func (h *Handler) refuse(w http.ResponseWriter, code int, reason string, err error) {
	h.m.rejected.WithLabelValues(reason).Inc()
	h.reply(w, code, Response{Error: err.Error()})
}

func (h *Handler) serveAudit(w http.ResponseWriter, r *http.Request) {
	cluster, code, err := resolveCluster(r, h.cfg.DefaultCluster)
	if err != nil {
		reason := ReasonMalformed
		if code == http.StatusForbidden {
			reason = ReasonForbidden
		}
		h.refuse(w, code, reason, err)
		return
	}
	body, release, ok := h.receive(w, r, func(code int, reason string, err error) { h.refuse(w, code, reason, err) })
	if !ok {
		return
	}
	defer release()

	st := h.getState()
	defer h.putState(st)
	items, err := h.split(body, st)
	if err != nil {
		if errors.Is(err, errTooManyEvents) {
			h.refuse(w, http.StatusRequestEntityTooLarge, ReasonTooManyEvents, err)
			return
		}
		h.refuse(w, http.StatusBadRequest, ReasonMalformed, err)
		return
	}
	// The event cap and the per-event charge come before any per-item
	// work: a small body of many tiny items costs far more than its bytes.
	if err := h.checkItems(len(items)); err != nil {
		h.refuse(w, http.StatusRequestEntityTooLarge, ReasonTooManyEvents, err)
		return
	}
	charged, err := h.chargeItems(len(items), len(body))
	if err != nil {
		h.refuse(w, http.StatusTooManyRequests, ReasonTooManyRequests, err)
		return
	}
	defer h.lim.releaseBytes(charged)

	res, err := h.ingestBatch(r.Context(), cluster, items, st)
	if err != nil {
		if pipeline.IsPermanent(err) {
			h.log.Error("producing events", "cluster", cluster, "events", len(items), "err", err)
			h.reply(w, http.StatusInternalServerError, Response{Rejected: res.Rejected, RejectedCount: res.RejectedCount, Error: "producing events: " + err.Error()})
			return
		}
		h.log.Warn("producing events, sender will retry", "cluster", cluster, "events", len(items), "err", err)
		h.reply(w, http.StatusServiceUnavailable, Response{Rejected: res.Rejected, RejectedCount: res.RejectedCount, Error: "event store unavailable, retry later: " + err.Error()})
		return
	}
	if res.RejectedCount > 0 {
		// The good events are durable; the answer names the bad ones, the
		// first MaxRejectionsListed of them. The apiserver resends the
		// whole list on any non-2xx: the deduplication window keeps the
		// good ones from being produced twice, and the bad ones fail the
		// same way each time.
		msg := fmt.Sprintf("%d of %d events rejected", res.RejectedCount, len(items))
		if res.RejectedCount > len(res.Rejected) {
			msg += fmt.Sprintf("; first %d listed", len(res.Rejected))
		}
		h.log.Warn("rejecting events", "cluster", cluster, "rejected", res.RejectedCount, "accepted", res.Accepted, "first", res.Rejected[0].Error)
		h.reply(w, http.StatusBadRequest, Response{Accepted: res.Accepted, Rejected: res.Rejected, RejectedCount: res.RejectedCount, Error: msg})
		return
	}
	h.reply(w, http.StatusOK, Response{Accepted: res.Accepted})
}

// receive admits a request and reads its body within every limit: the
// body size (after gzip), the processing and reader slots, the in-flight
// byte budget and the minimum body rate. It is the admission of every
// endpoint that takes a batch (the webhook, Firehose); each answers a
// refusal in its own format through refuse. When ok, the request holds a
// processing slot and its body's bytes until the caller calls release.
func (h *Handler) receive(w http.ResponseWriter, r *http.Request, refuse func(code int, reason string, err error)) (body []byte, release func(), ok bool) {
	// Admission first, before a byte of the body is read. A declared
	// length beyond the limit cannot succeed however often it is sent, so
	// it is refused unread. A saturated ingest answers at once, and the
	// apiserver retries later, instead of requests queueing without bound
	// in front of the producer; this is only a look at the processing
	// slots, which are taken once the body is in.
	if r.ContentLength > h.cfg.MaxBodyBytes {
		refuse(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, h.bodyTooLarge())
		return nil, nil, false
	}
	if h.lim.requestsFull() {
		refuse(http.StatusTooManyRequests, ReasonTooManyRequests, h.requestsSaturated())
		return nil, nil, false
	}
	// While its body arrives a request holds a reader slot, of which there
	// are many, and the bytes that arrived; the minimum body rate frees the
	// slot of a sender that stalls.
	if !h.lim.acquireReader() {
		refuse(http.StatusTooManyRequests, ReasonTooManyRequests, fmt.Errorf(
			"ingest saturated: %d requests sending their bodies (max-reading-requests); retry after %s, or add ingest replicas",
			h.cfg.MaxReadingRequests, h.cfg.RetryAfter))
		return nil, nil, false
	}
	body, held, code, reason, err := h.readBody(w, r)
	h.lim.releaseReader()
	if err != nil {
		h.lim.releaseBytes(held)
		refuse(code, reason, err)
		return nil, nil, false
	}
	// Only now the processing slot: a sender trickling its body never held
	// one. Another request may have taken the last since the look above.
	if !h.lim.acquireRequest() {
		h.lim.releaseBytes(held)
		refuse(http.StatusTooManyRequests, ReasonTooManyRequests, h.requestsSaturated())
		return nil, nil, false
	}
	return body, func() {
		h.lim.releaseRequest()
		h.lim.releaseBytes(held)
	}, true
}

// errTooManyEvents marks a request over max-events-per-request, so that it
// is answered 413 wherever the count is checked.
var errTooManyEvents = errors.New("too many events")

// checkItems refuses a request of more than max-events-per-request events.
// It is cheap, so a splitter can call it with its running count and stop
// early; serveAudit answers 413 to an error wrapping errTooManyEvents.
func (h *Handler) checkItems(n int) error {
	if n > h.cfg.MaxEventsPerRequest {
		return fmt.Errorf("%w: more than %d in one request (max-events-per-request): send smaller batches (kube-apiserver --audit-webhook-batch-max-size)",
			errTooManyEvents, h.cfg.MaxEventsPerRequest)
	}
	return nil
}

// chargeItems charges what n events split from a body of bodyLen bytes
// cost beyond the body to the in-flight budget: perEventBytes each, and
// their decoded copies (redacted, truncated, converted from v1beta1), held
// until produced, which add up to about the body's size again: a record
// replacing a secret is at most a few hundred bytes, and an event larger
// than max-event-bytes is cut. The caller releases charged.
func (h *Handler) chargeItems(n, bodyLen int) (charged int64, err error) {
	charged = int64(n)*perEventBytes + int64(bodyLen)
	if !h.lim.acquireBytes(charged) {
		return 0, h.bytesSaturated()
	}
	return charged, nil
}

// errNotObject reports an event that is valid JSON but not an object.
var errNotObject = errors.New("event is not a JSON object")

// readBody reads the (optionally gzip-encoded) body within MaxBodyBytes,
// the in-flight byte budget and the minimum body rate. held is what the
// caller must release, also on error.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (body []byte, held int64, code int, reason string, err error) {
	limit := h.cfg.MaxBodyBytes
	encoding := r.Header.Get("Content-Encoding")
	switch encoding {
	case "", "identity", "gzip":
	default:
		return nil, 0, http.StatusUnsupportedMediaType, ReasonUnsupportedEncoding, fmt.Errorf("unsupported Content-Encoding %q: send identity or gzip", encoding)
	}
	// The rate is that of the bytes on the wire; the budget counts the
	// decoded bytes, which are what is held in memory.
	rr := newRateReader(w, r.Body, h.cfg)
	defer rr.finish()
	if rr.off && h.lim.noDeadlines.CompareAndSwap(false, true) {
		h.log.Warn("cannot set read deadlines on webhook requests; slow bodies are cut off only by read-timeout", "read_timeout", h.cfg.ReadTimeout)
	}
	br := &budgetReader{lim: h.lim, max: limit}
	var src io.Reader = http.MaxBytesReader(w, rr, limit)
	if encoding == "gzip" {
		zr, err := gzip.NewReader(src)
		if err != nil {
			code, reason, err := h.bodyError(err, "reading gzip body")
			return nil, br.reserved, code, reason, err
		}
		defer zr.Close()
		src = zr
	}
	// The limit applies after decompression too, so a gzip bomb stops at
	// MaxBodyBytes of output.
	br.r = io.LimitReader(src, limit+1)
	body, err = io.ReadAll(br)
	h.m.requestBytes.Add(float64(len(body)))
	if err != nil {
		code, reason, err := h.bodyError(err, "reading body")
		return nil, br.reserved, code, reason, err
	}
	if int64(len(body)) > limit {
		return nil, br.reserved, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, h.bodyTooLarge()
	}
	return body, br.reserved, 0, "", nil
}

// bodyError classifies an error reading a body; doing names the step for
// any other error, which the sender is told as a malformed body.
func (h *Handler) bodyError(err error, doing string) (int, string, error) {
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, errBudget):
		return http.StatusTooManyRequests, ReasonTooManyRequests, h.bytesSaturated()
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, h.bodyTooLarge()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, ReasonBodyTooSlow, fmt.Errorf(
			"request body arrived slower than %d bytes/s after the first %s (min-body-rate, body-rate-grace) or took longer than %s (read-timeout): send from a faster link, or smaller batches",
			h.cfg.MinBodyRate, h.cfg.BodyRateGrace, h.cfg.ReadTimeout)
	default:
		return http.StatusBadRequest, ReasonMalformed, fmt.Errorf("%s: %w", doing, err)
	}
}

func (h *Handler) bodyTooLarge() error {
	return fmt.Errorf("request body larger than the %d-byte limit (max-body-bytes): send smaller batches", h.cfg.MaxBodyBytes)
}

func (h *Handler) requestsSaturated() error {
	return fmt.Errorf("ingest saturated: %d requests in flight (max-inflight-requests); retry after %s, or add ingest replicas",
		h.cfg.MaxInFlightRequests, h.cfg.RetryAfter)
}

func (h *Handler) bytesSaturated() error {
	return fmt.Errorf("ingest saturated: %d bytes of request bodies and events in flight (max-inflight-bytes); retry after %s, or add ingest replicas",
		h.cfg.MaxInFlightBytes, h.cfg.RetryAfter)
}

// split returns an EventList's items, stopping at the first item beyond
// max-events-per-request, and notes whether the list is v1beta1.
func (h *Handler) split(body []byte, st *batchState) ([][]byte, error) {
	items, apiVersion, err := auditjson.SplitEventListVersion(body, st.items[:0], h.cfg.MaxEventsPerRequest)
	if errors.Is(err, auditjson.ErrTooManyItems) {
		return nil, h.checkItems(h.cfg.MaxEventsPerRequest + 1)
	}
	if err != nil {
		return nil, err
	}
	st.items = items
	st.v1beta1 = apiVersion == auditjson.AuditAPIVersionV1beta1
	return items, nil
}
