// Package kafka carries audit events from ingest to detect through Kafka,
// wrapping segmentio/kafka-go: a Producer that returns only once every
// message is acknowledged by all in-sync replicas, and a group Consumer whose
// offsets move only when the caller commits processed records.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// clientID names auditpipe in broker logs, quotas and ACL audit.
const clientID = "auditpipe"

// zstdLevel is the zstd level of everything this process produces.
// kafka-go compresses with one process-wide codec per algorithm, at
// zstd's level 3 unless its Level is set, and has no per-writer setting,
// so init sets it. Level 1 (klauspost's SpeedFastest) keeps about 96 % of
// level 3's ratio on audit events (7.4x against 7.7x in 50-event
// batches of the generated stream) and encodes them in 2.35 µs an event
// instead of 2.95 (-20 %; the encoder is about a sixth of ingest's CPU
// under end-to-end load, so ingest saves about 3 %), with less memory
// per pooled encoder. Readers are unaffected: the level is the
// producer's choice alone.
const zstdLevel = 1

func init() { compress.ZstdCodec.Level = zstdLevel }

// dialTimeout bounds connecting to one broker. A broker that does not answer
// a TCP handshake in 5 s is down for our purposes.
const dialTimeout = 5 * time.Second

var _ pipeline.Producer = (*Producer)(nil)

// Producer writes pipeline messages to one topic. It is safe for concurrent
// use: concurrent Produce calls share produce requests per partition.
type Producer struct {
	topic     string
	log       *slog.Logger
	m         *producerMetrics
	transport *kafkago.Transport
	w         *kafkago.Writer

	closeOnce sync.Once
	closeErr  error
}

// NewProducer validates cfg and returns a Producer. It does not contact the
// brokers; call Ping to check they are reachable. log and reg may be nil.
func NewProducer(cfg ProducerConfig, log *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating kafka producer config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	codec, _ := parseCompression(cfg.Compression) // checked by Validate
	m, err := newProducerMetrics(reg)
	if err != nil {
		return nil, err
	}
	// A transport of our own rather than kafka-go's DefaultTransport: the
	// default is a package global whose connections and metadata
	// goroutines outlive the producer, and Close could not release them.
	transport := &kafkago.Transport{DialTimeout: dialTimeout, ClientID: clientID}
	w := &kafkago.Writer{
		Addr:  kafkago.TCP(cfg.Brokers...),
		Topic: cfg.Topic,
		// Murmur2 is the Java client's (and franz-go's) key hash, so
		// every key lands on one partition, and on the same partition
		// any other Kafka producer would pick. Consistent hashes a nil
		// key too instead of spraying it randomly.
		Balancer:     &kafkago.Murmur2Balancer{Consistent: true},
		MaxAttempts:  cfg.MaxAttempts,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   cfg.BatchBytes,
		BatchTimeout: cfg.BatchTimeout,
		ReadTimeout:  cfg.WriteTimeout,
		WriteTimeout: cfg.WriteTimeout,
		// kafka-go defaults to no acknowledgement at all; an audit
		// event is durable only once every in-sync replica has it.
		RequiredAcks: kafkago.RequireAll,
		Compression:  codec,
		Logger:       clientLogger(log, "writer"),
		ErrorLogger:  clientLogger(log, "writer"),
		Transport:    transport,
	}
	return &Producer{topic: cfg.Topic, log: log, m: m, transport: transport, w: w}, nil
}

// Produce writes msgs and returns nil only once every one of them is
// acknowledged by all in-sync replicas. On error some messages may have been
// written anyway (kafka-go cannot say which when ctx ends first), so a retry
// may duplicate them; consumers deduplicate on (auditID, stage). The error is
// pipeline.Permanent only when a message can never be written (too large);
// then it wraps a *auditjson.ItemError when the message is known.
func (p *Producer) Produce(ctx context.Context, msgs []pipeline.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	start := time.Now()
	kms := make([]kafkago.Message, len(msgs))
	var size int
	// Messages of one webhook call share a cluster, so they share one
	// header slice; kafka-go never modifies headers.
	var headers []kafkago.Header
	var headersFor string
	for i := range msgs {
		m := &msgs[i]
		if m.Cluster != "" && (headers == nil || m.Cluster != headersFor) {
			headers = []kafkago.Header{{Key: pipeline.HeaderCluster, Value: []byte(m.Cluster)}}
			headersFor = m.Cluster
		}
		kms[i] = kafkago.Message{Key: m.Key, Value: m.Value}
		if m.Cluster != "" {
			kms[i].Headers = headers
		}
		size += len(m.Key) + len(m.Value)
	}

	err := p.w.WriteMessages(ctx, kms...)
	p.m.latency.Observe(time.Since(start).Seconds())
	if err == nil {
		p.m.messages.Add(float64(len(msgs)))
		p.m.bytes.Add(float64(size))
		return nil
	}
	err = p.classify(err, kms)
	p.m.errors.WithLabelValues(reason(err)).Inc()
	return err
}

// classify wraps a WriteMessages error, marking it permanent only when no
// retry can succeed.
func (p *Producer) classify(err error, kms []kafkago.Message) error {
	if tooLarge, ok := errors.AsType[kafkago.MessageTooLargeError](err); ok {
		// kafka-go checks sizes before sending anything, so nothing of
		// this call was written.
		cause := fmt.Errorf("message of %d bytes exceeds kafka batch_bytes: %w", len(tooLarge.Message.Key)+len(tooLarge.Message.Value), kafkago.MessageSizeTooLarge)
		if i := indexOf(kms, tooLarge.Message); i >= 0 {
			cause = &auditjson.ItemError{Index: i, Err: cause}
		}
		return pipeline.Permanent(fmt.Errorf("producing %d messages to %s: %w", len(kms), p.topic, cause))
	}
	if werrs, ok := errors.AsType[kafkago.WriteErrors](err); ok {
		// WriteErrors.Error lists every message's error: hundreds of
		// copies of the same text. Report the count and the first one.
		var first error
		failed, permanent := 0, true
		acked := make([]bool, len(werrs))
		for i, e := range werrs {
			if e == nil {
				acked[i] = true
				continue
			}
			if first == nil {
				first = e
			}
			failed++
			permanent = permanent && isPermanentKafkaError(e)
		}
		err = &PartialError{err: fmt.Errorf("producing %d messages to %s: %d not acknowledged: %w", len(kms), p.topic, failed, first), acked: acked}
		if permanent {
			return pipeline.Permanent(err)
		}
		return err
	}
	// The context ended, the writer is closed, or the metadata lookup
	// failed: nothing says the messages cannot be written later.
	return fmt.Errorf("producing %d messages to %s: %w", len(kms), p.topic, err)
}

// PartialError is returned by Produce when some messages were acknowledged
// and others were not, so that a caller can resend only the rest instead of
// duplicating the acknowledged ones.
type PartialError struct {
	err   error
	acked []bool
}

func (e *PartialError) Error() string { return e.err.Error() }
func (e *PartialError) Unwrap() error { return e.err }

// Acknowledged reports, for each message of the Produce call in order,
// whether all in-sync replicas acknowledged it.
func (e *PartialError) Acknowledged() []bool { return e.acked }

// indexOf finds the message kafka-go reported by the identity of its value.
func indexOf(kms []kafkago.Message, m kafkago.Message) int {
	for i := range kms {
		if len(m.Value) > 0 && len(kms[i].Value) == len(m.Value) && &kms[i].Value[0] == &m.Value[0] {
			return i
		}
	}
	return -1
}

// Ping reports whether a broker answers and knows the topic, for /readyz.
// It opens fresh connections each time: the producer's own transport keeps
// serving its cached metadata while every broker is down.
func (p *Producer) Ping(ctx context.Context) error {
	return ping(ctx, p.w.Addr, p.topic)
}

func ping(ctx context.Context, addr net.Addr, topic string) error {
	transport := &kafkago.Transport{DialTimeout: dialTimeout, ClientID: clientID, MetadataTopics: []string{topic}}
	return pingWith(ctx, transport, addr, topic)
}

// pingWith is ping through transport, which it closes.
func pingWith(ctx context.Context, transport *kafkago.Transport, addr net.Addr, topic string) error {
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: addr, Transport: transport}
	resp, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("pinging kafka: %w", err)
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return fmt.Errorf("pinging kafka: topic %s: %w", topic, t.Error)
		}
		if len(t.Partitions) == 0 {
			return fmt.Errorf("pinging kafka: topic %s has no partitions", topic)
		}
		return nil
	}
	return fmt.Errorf("pinging kafka: topic %s: %w", topic, kafkago.UnknownTopicOrPartition)
}

// Close sends pending batches, waits for every in-flight produce (including
// the writer's retries, bounded by max_attempts and write_timeout) and
// closes connections. Produce fails after Close. Calling Close again returns
// the first result.
func (p *Producer) Close() error {
	p.closeOnce.Do(func() {
		if err := p.w.Close(); err != nil {
			p.closeErr = fmt.Errorf("closing kafka writer: %w", err)
		}
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}
