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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Metric names exported by ingest, for dashboards.
const (
	MetricRequests        = "auditpipe_ingest_requests_total"
	MetricEvents          = "auditpipe_ingest_events_total"
	MetricRequestBytes    = "auditpipe_ingest_request_bytes_total"
	MetricProduceDuration = "auditpipe_ingest_produce_duration_seconds"
)

// Config configures the webhook handler.
type Config struct {
	// DefaultCluster names events posted to /audit without a cluster in the
	// path. Default "default".
	DefaultCluster string
	// MaxBodyBytes caps a request body, after gzip decoding. The apiserver
	// sends at most 400 events a batch; 64 MiB leaves room for large
	// RequestResponse events. Default 64 MiB.
	MaxBodyBytes int64
	// RetryAfter is what a 503 tells the sender to wait. Default 5s.
	RetryAfter time.Duration
}

func (c *Config) setDefaults() {
	if c.DefaultCluster == "" {
		c.DefaultCluster = "default"
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 20
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5 * time.Second
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

// Validate checks c.
func (c Config) Validate() error {
	return ValidateCluster(c.DefaultCluster)
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
	requestBytes    prometheus.Counter
	produceDuration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests, Help: "Webhook requests by response code."}, []string{"code"}),
		events:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricEvents, Help: "Audit events by result (accepted, rejected)."}, []string{"result"}),
		requestBytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRequestBytes, Help: "Request body bytes read, after decompression."}),
		produceDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricProduceDuration, Help: "Time until the producer acknowledged a request's events.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.events, m.requestBytes, m.produceDuration)
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
	mux    *http.ServeMux
}

// New builds the handler. redact and ping may be nil; log and reg too.
func New(cfg Config, prod pipeline.Producer, redact Redactor, ping Pinger, log *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, prod: prod, redact: redact, ping: ping, log: log, m: newMetrics(reg), mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /audit", h.serveAudit)
	h.mux.HandleFunc("POST /audit/{cluster}", h.serveAudit)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	h.mux.HandleFunc("GET /readyz", h.serveReady)
	return h, nil
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
	Index int    `json:"index"`
	Error string `json:"error"`
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

func (h *Handler) serveAudit(w http.ResponseWriter, r *http.Request) {
	cluster, code, err := resolveCluster(r, h.cfg.DefaultCluster)
	if err != nil {
		h.reply(w, code, Response{Error: err.Error()})
		return
	}

	body, code, err := h.readBody(w, r)
	if err != nil {
		h.reply(w, code, Response{Error: err.Error()})
		return
	}
	items, err := pipeline.SplitEventList(body)
	if err != nil {
		h.reply(w, http.StatusBadRequest, Response{Error: err.Error()})
		return
	}

	msgs := make([]pipeline.Message, 0, len(items))
	var rejected []Rejection
	var ev pipeline.Event
	for i, item := range items {
		if h.redact != nil {
			out, _, err := h.redact.Event(item)
			if err != nil {
				rejected = append(rejected, Rejection{Index: i, Error: fmt.Sprintf("redacting event: %v", err)})
				continue
			}
			item = out
		}
		if err := ev.Decode(cluster, item); err != nil {
			rejected = append(rejected, Rejection{Index: i, Error: err.Error()})
			continue
		}
		msgs = append(msgs, pipeline.Message{Key: pipeline.MessageKey(cluster, &ev), Value: item, Cluster: cluster})
	}
	h.m.events.WithLabelValues("rejected").Add(float64(len(rejected)))

	if len(msgs) > 0 {
		start := time.Now()
		err := h.prod.Produce(r.Context(), msgs)
		h.m.produceDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			if pipeline.IsPermanent(err) {
				h.log.Error("producing events", "cluster", cluster, "events", len(msgs), "err", err)
				h.reply(w, http.StatusInternalServerError, Response{Rejected: rejected, Error: "producing events: " + err.Error()})
				return
			}
			h.log.Warn("producing events, sender will retry", "cluster", cluster, "events", len(msgs), "err", err)
			h.reply(w, http.StatusServiceUnavailable, Response{Rejected: rejected, Error: "event store unavailable, retry later: " + err.Error()})
			return
		}
		h.m.events.WithLabelValues("accepted").Add(float64(len(msgs)))
	}
	if len(rejected) > 0 {
		// The good events are durable; the answer names the bad ones. A 4xx
		// is not retried by the apiserver, which is right: resending the
		// same malformed item cannot succeed.
		h.log.Warn("rejecting malformed events", "cluster", cluster, "rejected", len(rejected), "accepted", len(msgs), "first", rejected[0].Error)
		h.reply(w, http.StatusBadRequest, Response{Accepted: len(msgs), Rejected: rejected, Error: fmt.Sprintf("%d of %d events rejected", len(rejected), len(items))})
		return
	}
	h.reply(w, http.StatusOK, Response{Accepted: len(msgs)})
}

// readBody reads the (optionally gzip-encoded) body within MaxBodyBytes.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	limit := h.cfg.MaxBodyBytes
	var src io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("reading gzip body: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q: send identity or gzip", r.Header.Get("Content-Encoding"))
	}
	// The limit applies after decompression too, so a gzip bomb stops at
	// MaxBodyBytes of output.
	body, err := io.ReadAll(io.LimitReader(src, limit+1))
	h.m.requestBytes.Add(float64(len(body)))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than the %d-byte limit: send smaller batches", limit)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading body: %w", err)
	}
	return body, 0, nil
}
