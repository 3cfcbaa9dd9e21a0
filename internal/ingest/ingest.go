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
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/pipeline"
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
	// looked at, by reason: too_many_requests, brtoo_large, malformed,
	// unsupported_encoding, forbidden. The authentication layer counts its
	// own refusals (unauthorized).
	MetricRejected = "auditpipe_ingest_rejected_total"
	// MetricTruncated counts events cut to the per-event limit.
	MetricTruncated = "auditpipe_ingest_truncated_total"
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
	// MetricInFlightRequests is the number of webhook requests being served.
	MetricInFlightRequests = "auditpipe_ingest_inflight_requests"
	// MetricInFlightBytes is the body bytes held by requests being served.
	MetricInFlightBytes = "auditpipe_ingest_inflight_bytes"
)

// Reasons in MetricRejected and MetricEventsRejected.
const (
	ReasonTooManyRequests     = "too_many_requests"
	ReasonBodyTooLarge        = "brtoo_large"
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
	// DefaultMaxInFlightRequests bounds concurrent webhook requests. A
	// 400-event batch is produced in milliseconds, so a few dozen cover
	// every apiserver of several clusters; beyond that requests only queue
	// on the producer and the answer is 429.
	DefaultMaxInFlightRequests = 64
	// DefaultMaxInFlightBytes bounds request bodies held at once: four
	// maximal bodies.
	DefaultMaxInFlightBytes = 4 * DefaultMaxBodyBytes
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
	// out after 30 s; a client that trickles its headers or body is cut off
	// well before it can hold a connection for long.
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

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
	// MaxInFlightRequests and MaxInFlightBytes bound the requests and body
	// bytes being served; beyond them the answer is 429.
	MaxInFlightRequests int
	MaxInFlightBytes    int64
	// RetryAfter is what a 429 or 503 tells the sender to wait.
	RetryAfter time.Duration
	// DedupWindow and DedupEntries bound the deduplication window.
	DedupWindow  time.Duration
	DedupEntries int
	// DisableDedup produces every event received, resends included.
	DisableDedup bool
	// FullDecode decodes every item fully instead of taking the fast path
	// (which falls back to the full decoder for anything unusual).
	FullDecode bool
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
	setDefault(&c.MaxInFlightRequests, DefaultMaxInFlightRequests)
	setDefault(&c.MaxInFlightBytes, max(DefaultMaxInFlightBytes, 4*c.MaxBodyBytes))
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

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// clusterName keeps cluster names to what fits a Kafka header, a ClickHouse
// filter and a Grafana variable without quoting surprises.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateCluster reports whether name can be used as a cluster name.
func ValidateCluster(name string) error {
	if !clusterName.MatchString(name) {
		return fmt.Errorf("invalid cluster name %q: use 1-63 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

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
	positive("max-inflight-requests", int64(c.MaxInFlightRequests))
	positive("max-inflight-bytes", c.MaxInFlightBytes)
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
	if c.MaxInFlightBytes < c.MaxBodyBytes && c.MaxInFlightBytes > 0 {
		// Otherwise a body within max-body-bytes could never be admitted
		// and its sender would be told to retry forever.
		errs = append(errs, fmt.Errorf("max-inflight-bytes (%d) must be at least max-body-bytes (%d)", c.MaxInFlightBytes, c.MaxBodyBytes))
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
	requests        *prometheus.CounterVec
	events          *prometheus.CounterVec
	eventsRejected  *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	truncated       prometheus.Counter
	deduplicated    prometheus.Counter
	requestBytes    prometheus.Counter
	batchEvents     prometheus.Histogram
	produceDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, lim *limiter) *metrics {
	m := &metrics{
		requests:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests, Help: "Webhook requests by response code."}, []string{"code"}),
		events:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricEvents, Help: "Audit events by result (accepted, rejected)."}, []string{"result"}),
		eventsRejected:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricEventsRejected, Help: "Audit events rejected, by reason."}, []string{"reason"}),
		rejected:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRejected, Help: "Webhook requests refused as a whole, by reason."}, []string{"reason"}),
		truncated:       prometheus.NewCounter(prometheus.CounterOpts{Name: MetricTruncated, Help: "Audit events whose bodies were dropped to fit the per-event limit."}),
		deduplicated:    prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDeduplicated, Help: "Audit events not produced again because they were already durable."}),
		requestBytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRequestBytes, Help: "Request body bytes read, after decompression."}),
		batchEvents:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricBatchEvents, Help: "Events per webhook request.", Buckets: []float64{1, 10, 50, 100, 200, 300, 400, 1000}}),
		produceDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricProduceDuration, Help: "Time until the producer acknowledged a request's events.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	// Pre-create the label values dashboards expect, so that they read 0
	// rather than "no data".
	for _, r := range []string{"accepted", "rejected"} {
		m.events.WithLabelValues(r)
	}
	for _, r := range []string{ReasonTooManyRequests, ReasonBodyTooLarge, ReasonMalformed} {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.events, m.eventsRejected, m.rejected, m.truncated, m.deduplicated,
			m.requestBytes, m.batchEvents, m.produceDuration,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricInFlightRequests, Help: "Webhook requests being served."},
				func() float64 { return float64(lim.requests.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricInFlightBytes, Help: "Request body bytes held by requests being served."},
				func() float64 { return float64(lim.bytes.Load()) }),
		)
	}
	return m
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
	lim := &limiter{maxRequests: int64(cfg.MaxInFlightRequests), maxBytes: cfg.MaxInFlightBytes}
	h := &Handler{cfg: cfg, prod: prod, redact: redact, ping: ping, log: log, m: newMetrics(reg, lim), lim: lim, mux: http.NewServeMux()}
	if !cfg.DisableDedup {
		h.window = newWindow(cfg.DedupWindow, cfg.DedupEntries, nil)
	}
	h.mux.HandleFunc("POST /audit", h.serveAudit)
	h.mux.HandleFunc("POST /audit/{cluster}", h.serveAudit)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
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
	io.WriteString(w, "ok\n")
}

// Rejection names one item of a batch that was not accepted.
type Rejection struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// Response is the JSON body of every webhook answer.
type Response struct {
	Accepted int         `json:"accepted"`
	Rejected []Rejection `json:"rejected,omitempty"`
	Error    string      `json:"error,omitempty"`
}

func (h *Handler) reply(w http.ResponseWriter, code int, resp Response) {
	h.m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter/time.Second)))
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
	// Admission first, before a byte of the body is read: a saturated
	// ingest answers at once, and the apiserver retries later, instead of
	// requests queueing without bound in front of the producer.
	if !h.lim.acquireRequest() {
		h.refuse(w, http.StatusTooManyRequests, ReasonTooManyRequests, fmt.Errorf(
			"ingest saturated: %d requests in flight (max-inflight-requests); retry after %s, or add ingest replicas",
			h.cfg.MaxInFlightRequests, h.cfg.RetryAfter))
		return
	}
	defer h.lim.releaseRequest()

	body, held, code, reason, err := h.readBody(w, r)
	defer h.lim.releaseBytes(held)
	if err != nil {
		h.refuse(w, code, reason, err)
		return
	}
	st := h.getState()
	defer h.putState(st)
	items, err := h.split(body, st)
	if err != nil {
		h.refuse(w, http.StatusBadRequest, ReasonMalformed, err)
		return
	}
	res, err := h.ingest(r.Context(), cluster, items, st)
	if err != nil {
		if pipeline.IsPermanent(err) {
			h.log.Error("producing events", "cluster", cluster, "events", len(items), "err", err)
			h.reply(w, http.StatusInternalServerError, Response{Rejected: res.Rejected, Error: "producing events: " + err.Error()})
			return
		}
		h.log.Warn("producing events, sender will retry", "cluster", cluster, "events", len(items), "err", err)
		h.reply(w, http.StatusServiceUnavailable, Response{Rejected: res.Rejected, Error: "event store unavailable, retry later: " + err.Error()})
		return
	}
	if len(res.Rejected) > 0 {
		// The good events are durable; the answer names the bad ones. The
		// apiserver resends the whole list on any non-2xx: the
		// deduplication window keeps the good ones from being produced
		// twice, and the bad ones fail the same way each time.
		h.log.Warn("rejecting events", "cluster", cluster, "rejected", len(res.Rejected), "accepted", res.Accepted, "first", res.Rejected[0].Error)
		h.reply(w, http.StatusBadRequest, Response{Accepted: res.Accepted, Rejected: res.Rejected, Error: fmt.Sprintf("%d of %d events rejected", len(res.Rejected), len(items))})
		return
	}
	h.reply(w, http.StatusOK, Response{Accepted: res.Accepted})
}

// errNotObject reports an event that is valid JSON but not an object.
var errNotObject = errors.New("event is not a JSON object")

// readBody reads the (optionally gzip-encoded) body within MaxBodyBytes and
// the in-flight byte budget. held is what the caller must release.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (body []byte, held int64, code int, reason string, err error) {
	limit := h.cfg.MaxBodyBytes
	tooLarge := fmt.Errorf("request body larger than the %d-byte limit (max-body-bytes): send smaller batches", limit)
	// A declared length beyond the limit is refused without reading any
	// of it.
	if r.ContentLength > limit {
		return nil, 0, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, tooLarge
	}
	br := &budgetReader{lim: h.lim}
	// Reserve the declared length up front, so that concurrent requests
	// are admitted whole or not at all rather than each holding part of
	// the budget.
	encoding := r.Header.Get("Content-Encoding")
	if r.ContentLength > 0 && (encoding == "" || encoding == "identity") {
		if !h.lim.acquireBytes(r.ContentLength) {
			return nil, 0, http.StatusTooManyRequests, ReasonTooManyRequests, h.bytesSaturated()
		}
		br.reserved = r.ContentLength
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch encoding {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, br.reserved, http.StatusBadRequest, ReasonMalformed, fmt.Errorf("reading gzip body: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, br.reserved, http.StatusUnsupportedMediaType, ReasonUnsupportedEncoding, fmt.Errorf("unsupported Content-Encoding %q: send identity or gzip", encoding)
	}
	// The limit applies after decompression too, so a gzip bomb stops at
	// MaxBodyBytes of output.
	br.r = io.LimitReader(src, limit+1)
	body, err = io.ReadAll(br)
	h.m.requestBytes.Add(float64(len(body)))
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, errBudget):
		return nil, br.reserved, http.StatusTooManyRequests, ReasonTooManyRequests, h.bytesSaturated()
	case errors.As(err, &maxErr) || int64(len(body)) > limit:
		return nil, br.reserved, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, tooLarge
	case err != nil:
		return nil, br.reserved, http.StatusBadRequest, ReasonMalformed, fmt.Errorf("reading body: %w", err)
	}
	return body, br.reserved, 0, "", nil
}

func (h *Handler) bytesSaturated() error {
	return fmt.Errorf("ingest saturated: %d body bytes in flight (max-inflight-bytes); retry after %s, or add ingest replicas",
		h.cfg.MaxInFlightBytes, h.cfg.RetryAfter)
}

// split returns an EventList's items, on the fast path when it can.
func (h *Handler) split(body []byte, st *batchState) ([][]byte, error) {
	if !h.cfg.FullDecode {
		if items, ok := splitFast(body, st.items[:0], &st.pre); ok {
			st.items = items
			return items, nil
		}
	}
	return pipeline.SplitEventList(body)
}
