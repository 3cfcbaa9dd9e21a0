package kafka_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// TestMetrics checks that the counters report what happened: acknowledged
// messages and bytes, failures by reason, fetched records and commits.
func TestMetrics(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 2)
	reg := prometheus.NewPedanticRegistry()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: c.Brokers, Topic: c.Topic, BatchBytes: 64 << 10}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	msgs := auditMessages(t, 0, 400)
	var size int
	for _, m := range msgs {
		size += len(m.Key) + len(m.Value)
	}
	produce(t, p, msgs)
	tooLarge := auditMessages(t, 400, 1)
	tooLarge[0].Value = bytes.Repeat([]byte("x"), 100<<10)
	if err := p.Produce(context.Background(), tooLarge); err == nil {
		t.Fatal("Produce of an oversized message succeeded")
	}

	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: c.Brokers, Topic: c.Topic, GroupID: "auditpipe-detect-metrics"}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cons.Close() })
	recs := fetchN(t, cons, len(msgs))
	if err := cons.Commit(context.Background(), recs); err != nil {
		t.Fatal(err)
	}

	// A second producer on the same registry shares the series.
	if p2, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: c.Brokers, Topic: c.Topic}, nil, reg); err != nil {
		t.Fatalf("second producer on one registry: %v", err)
	} else {
		_ = p2.Close()
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	f := func(name, label string, want float64) {
		t.Helper()
		if got := metricValue(mfs, name, label); got != want {
			t.Errorf("%s{%s} = %v, want %v", name, label, got, want)
		}
	}
	f("auditpipe_kafka_produce_messages_total", "", 400)
	f("auditpipe_kafka_produce_bytes_total", "", float64(size))
	f("auditpipe_kafka_produce_errors_total", "too_large", 1)
	f("auditpipe_kafka_produce_duration_seconds", "", 2) // observations
	f("auditpipe_kafka_consume_records_total", "", 400)
	f("auditpipe_kafka_consume_commits_total", "", 1)
}

// metricValue returns the counter value, or the histogram's sample count, of
// the series of name whose only label value is label ("" for none); -1 if
// there is none.
func metricValue(mfs []*dto.MetricFamily, name, label string) float64 {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if (label == "") != (len(m.Label) == 0) || (label != "" && m.Label[0].GetValue() != label) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
