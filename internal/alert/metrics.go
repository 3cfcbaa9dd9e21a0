package alert

import "github.com/prometheus/client_golang/prometheus"

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

func newMetrics(reg prometheus.Registerer) *metrics {
	l := []string{"receiver"}
	m := &metrics{
		sent:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSent, Help: "Alert messages delivered."}, l),
		failed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricFailed, Help: "Alert messages given up: refused permanently (4xx other than 429) or retried past retry.max_elapsed."}, l),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRetried, Help: "Delivery attempts retried after 429, 5xx or a network error."}, l),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDropped, Help: "Findings or messages dropped because a queue was full (receiver _intake: before routing)."}, l),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricLatency, Help: "Duration of one delivery attempt.", Buckets: prometheus.DefBuckets}, l),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.retried, m.dropped, m.latency)
	}
	return m
}
