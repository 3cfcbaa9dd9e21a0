package alert

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/prom"
)

// Metric names, labelled by receiver. Dashboards refer to these constants.
const (
	MetricSent    = "auditpipe_alert_sent_total"
	MetricFailed  = "auditpipe_alert_failed_total"
	MetricRetried = "auditpipe_alert_retried_total"
	MetricDropped = "auditpipe_alert_dropped_total"
	MetricLatency = "auditpipe_alert_delivery_duration_seconds"
)

// intakeReceiver is the receiver label of findings dropped before routing
// (the Notify queue was full, or the notifier was stopped).
const intakeReceiver = "_intake"

type metrics struct {
	sent, failed, retried, dropped *prometheus.CounterVec
	latency                        *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	l := []string{"receiver"}
	m := &metrics{
		sent:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSent, Help: "Alert messages delivered."}, l),
		failed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricFailed, Help: "Alert messages given up: refused permanently (4xx other than 429) or retried past retry.max_elapsed."}, l),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRetried, Help: "Delivery attempts retried after 429, 5xx or a network error."}, l),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDropped, Help: "Findings or messages dropped because a queue was full (receiver _intake: before routing)."}, l),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricLatency, Help: "Duration of one delivery attempt.", Buckets: prometheus.DefBuckets}, l),
	}
	// prom.Register hands back the collector already registered under the
	// same name, so a second Notifier on one registry adds to the same
	// series instead of panicking.
	err := errors.Join(
		registerInto(reg, &m.sent), registerInto(reg, &m.failed),
		registerInto(reg, &m.retried), registerInto(reg, &m.dropped),
		registerInto(reg, &m.latency),
	)
	if err != nil {
		return nil, fmt.Errorf("registering alert metrics: %w", err)
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
