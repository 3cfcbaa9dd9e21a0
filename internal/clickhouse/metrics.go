package clickhouse

import (
	"github.com/auditpipe/auditpipe/internal/prom"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, exported so dashboards and alerts refer to constants.
const (
	// MetricRowsInserted counts rows the server acknowledged, by table.
	MetricRowsInserted = "auditpipe_clickhouse_rows_inserted_total"
	// MetricInsertDuration is the time of one batch insert into one table.
	MetricInsertDuration = "auditpipe_clickhouse_insert_duration_seconds"
	// MetricInsertErrors counts failed inserts by table and kind.
	MetricInsertErrors = "auditpipe_clickhouse_insert_errors_total"
	// MetricRetentionDropped counts partitions dropped by retention.
	MetricRetentionDropped = "auditpipe_clickhouse_retention_partitions_dropped_total"
)

// metrics are the sink's collectors. They work unregistered when the
// Registerer is nil.
type metrics struct {
	rows     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	dropped  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRowsInserted,
			Help: "Rows the server acknowledged, by table. Redelivered rows count again.",
		}, []string{"table"}),
		// Buckets from 5 ms (a small batch on a local server) to 30 s
		// (close to DefaultWriteTimeout: a struggling server).
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricInsertDuration,
			Help:    "Time to insert one batch into one table, including failed attempts.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"table"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricInsertErrors,
			Help: "Failed batch inserts by table and kind: retryable (server or network) or permanent (the data cannot be stored).",
		}, []string{"table", "kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRetentionDropped,
			Help: "Day partitions dropped because they are older than the table's retention, by table.",
		}, []string{"table"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.rows, err = prom.Register(reg, m.rows); err != nil {
		return nil, err
	}
	if m.duration, err = prom.Register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.errors, err = prom.Register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.dropped, err = prom.Register(reg, m.dropped); err != nil {
		return nil, err
	}
	return m, nil
}
