package rules

import (
	"github.com/auditpipe/auditpipe/internal/prom"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by the rules engine.
const (
	// MetricEvalErrors counts rule evaluations that failed at run time
	// (an index out of range, a type mismatch on a body value), by rule.
	// The rule is treated as not matching; the event is not lost.
	MetricEvalErrors = "auditpipe_rules_eval_errors_total"
	// MetricReloads counts rule reloads by result: ok, or invalid when the
	// new files did not load and the previous set kept running.
	MetricReloads = "auditpipe_rules_reload_total"
)

// Metrics are the rules engine's collectors. A nil *Metrics counts nothing.
type Metrics struct {
	evalErrors *prometheus.CounterVec
	reloads    *prometheus.CounterVec
}

// NewMetrics builds the collectors and registers them with reg, which may
// be nil. Registering twice with one registry reuses the first collectors,
// so several sets and watchers can share them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		evalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEvalErrors,
			Help: "Rule evaluations that failed at run time, by rule; the rule did not fire.",
		}, []string{"rule"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricReloads,
			Help: "Rule file reloads by result: ok (the new set is live) or invalid (the old set keeps running).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.evalErrors, err = prom.Register(reg, m.evalErrors); err != nil {
		return nil, err
	}
	if m.reloads, err = prom.Register(reg, m.reloads); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) evalError(rule string) {
	if m != nil {
		m.evalErrors.WithLabelValues(rule).Inc()
	}
}

func (m *Metrics) reload(result string) {
	if m != nil {
		m.reloads.WithLabelValues(result).Inc()
	}
}
