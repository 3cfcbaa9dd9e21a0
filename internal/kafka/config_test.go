package kafka_test

import (
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

func TestProducerConfigValidate(t *testing.T) {
	f := func(cfg kafka.ProducerConfig, wantErrs ...string) {
		t.Helper()
		err := cfg.Validate()
		if len(wantErrs) == 0 {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", cfg, err)
			}
			return
		}
		if err == nil {
			t.Errorf("Validate(%+v) = nil, want errors %q", cfg, wantErrs)
			return
		}
		for _, want := range wantErrs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Validate(%+v) = %q, want it to mention %q", cfg, err, want)
			}
		}
	}
	ok := kafka.ProducerConfig{Brokers: []string{"kafka-0:9092"}, Topic: "audit-events"}
	f(ok)
	f(kafka.ProducerConfig{Brokers: []string{"kafka-0:9092", "kafka-1:9092"}, Topic: "audit.events_v2", Compression: "none", BatchTimeout: time.Millisecond})
	f(kafka.ProducerConfig{}, "kafka.brokers", "kafka.topic must be set")
	f(kafka.ProducerConfig{Brokers: []string{""}, Topic: "audit-events"}, "kafka.brokers[0] is empty")
	f(kafka.ProducerConfig{Brokers: ok.Brokers, Topic: "audit events"}, "kafka.topic \"audit events\" may only contain")
	f(kafka.ProducerConfig{Brokers: ok.Brokers, Topic: strings.Repeat("a", 250)}, "Kafka allows 249")
	f(kafka.ProducerConfig{Brokers: ok.Brokers, Topic: "audit-events", Compression: "brotli"}, "kafka.compression", "brotli")
	f(kafka.ProducerConfig{Brokers: ok.Brokers, Topic: "audit-events", BatchTimeout: -time.Second, BatchSize: -1, BatchBytes: -1, WriteTimeout: -1, MaxAttempts: -1},
		"kafka.batch_timeout", "kafka.batch_size", "kafka.batch_bytes", "kafka.write_timeout", "kafka.max_attempts")
}

func TestConsumerConfigValidate(t *testing.T) {
	f := func(cfg kafka.ConsumerConfig, wantErrs ...string) {
		t.Helper()
		err := cfg.Validate()
		if len(wantErrs) == 0 {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", cfg, err)
			}
			return
		}
		if err == nil {
			t.Errorf("Validate(%+v) = nil, want errors %q", cfg, wantErrs)
			return
		}
		for _, want := range wantErrs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Validate(%+v) = %q, want it to mention %q", cfg, err, want)
			}
		}
	}
	brokers := []string{"kafka-0:9092"}
	f(kafka.ConsumerConfig{Brokers: brokers, Topic: "audit-events"})
	f(kafka.ConsumerConfig{Brokers: brokers, Topic: "audit-events", CommitInterval: time.Second, MaxWait: time.Second})
	f(kafka.ConsumerConfig{}, "kafka.brokers", "kafka.topic")
	f(kafka.ConsumerConfig{Brokers: brokers, Topic: "audit-events", MinBytes: 2 << 20, MaxBytes: 1 << 20}, "kafka.min_bytes (2097152) must not exceed kafka.max_bytes (1048576)")
	f(kafka.ConsumerConfig{Brokers: brokers, Topic: "audit-events", MaxWait: -1, CommitInterval: -1}, "kafka.max_wait", "kafka.commit_interval")
}

func TestDeadLetterConfigValidate(t *testing.T) {
	if err := (kafka.DeadLetterConfig{Brokers: []string{"kafka-0:9092"}}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c := (kafka.DeadLetterConfig{}).WithDefaults(); c.Topic != kafka.DefaultDeadLetterTopic || c.MaxValueBytes <= 0 {
		t.Errorf("defaults: %+v", c)
	}
	err := kafka.DeadLetterConfig{Topic: "dead letters"}.Validate()
	for _, want := range []string{"kafka.brokers", "kafka.topic"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to mention %q", err, want)
		}
	}
}
