package kafka

import (
	"context"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/prom"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
)

// Metric names, exported so dashboards and alerts refer to constants.
const (
	MetricProduceMessages = "auditpipe_kafka_produce_messages_total"
	MetricProduceBytes    = "auditpipe_kafka_produce_bytes_total"
	MetricProduceErrors   = "auditpipe_kafka_produce_errors_total"
	MetricProduceDuration = "auditpipe_kafka_produce_duration_seconds"
	MetricConsumeRecords  = "auditpipe_kafka_consume_records_total"
	MetricConsumeBytes    = "auditpipe_kafka_consume_bytes_total"
	MetricConsumeErrors   = "auditpipe_kafka_consume_errors_total"
	MetricConsumeCommits  = "auditpipe_kafka_consume_commits_total"
	// MetricConsumeLag is the records behind the high watermark per
	// partition, as of the last record fetched from it.
	MetricConsumeLag = "auditpipe_kafka_consume_lag_records"
	// MetricDeadLetters counts records written to the dead-letter topic.
	MetricDeadLetters = "auditpipe_kafka_dead_letters_total"
)

// latencyBuckets span a produce acknowledged in a millisecond by a local
// broker to one stuck behind retries until the webhook gives up.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// producerMetrics are counted by Produce itself rather than read from
// Writer.Stats(): Stats returns deltas since its last call, so a second
// reader anywhere would silently halve the numbers.
type producerMetrics struct {
	messages prometheus.Counter
	bytes    prometheus.Counter
	errors   *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newProducerMetrics(reg prometheus.Registerer) (*producerMetrics, error) {
	m := &producerMetrics{
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricProduceMessages,
			Help: "Messages acknowledged by all in-sync replicas.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricProduceBytes,
			Help: "Uncompressed key and value bytes of acknowledged messages.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricProduceErrors,
			Help: "Produce calls that failed, by reason (timeout, canceled, too_large, broker, network, closed, other).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricProduceDuration,
			Help:    "Time from Produce to every message acknowledged or the call failing.",
			Buckets: latencyBuckets,
		}),
	}
	var err error
	if m.messages, err = prom.Register(reg, m.messages); err != nil {
		return nil, err
	}
	if m.bytes, err = prom.Register(reg, m.bytes); err != nil {
		return nil, err
	}
	if m.errors, err = prom.Register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.latency, err = prom.Register(reg, m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

type consumerMetrics struct {
	records prometheus.Counter
	bytes   prometheus.Counter
	errors  *prometheus.CounterVec
	commits prometheus.Counter
	lag     *prometheus.GaugeVec
}

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	m := &consumerMetrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricConsumeRecords,
			Help: "Records fetched from Kafka.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricConsumeBytes,
			Help: "Key and value bytes of fetched records.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricConsumeErrors,
			Help: "Failed fetches and commits, by operation.",
		}, []string{"op"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricConsumeCommits,
			Help: "Successful offset commits.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricConsumeLag,
			Help: "Records behind the partition's high watermark as of the last fetched record.",
		}, []string{"partition"}),
	}
	var err error
	if m.records, err = prom.Register(reg, m.records); err != nil {
		return nil, err
	}
	if m.bytes, err = prom.Register(reg, m.bytes); err != nil {
		return nil, err
	}
	if m.errors, err = prom.Register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.commits, err = prom.Register(reg, m.commits); err != nil {
		return nil, err
	}
	if m.lag, err = prom.Register(reg, m.lag); err != nil {
		return nil, err
	}
	return m, nil
}

// clientLogger routes kafka-go's printf-style logs to slog at debug level:
// kafka-go logs every retry attempt, and failures reach the caller as errors
// anyway, so at info level an outage would flood the log.
func clientLogger(log *slog.Logger, component string) kafkago.LoggerFunc {
	return func(format string, args ...any) {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("kafka client", "component", component, "detail", fmt.Sprintf(format, args...))
		}
	}
}
