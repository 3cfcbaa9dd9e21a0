package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
)

// Producer defaults. Each one overrides a kafka-go default that is wrong for
// a webhook that answers only once its events are durable.
const (
	// DefaultBatchTimeout is how long the writer waits for more messages
	// before sending a partial batch. kafka-go's 1 s default would add a
	// second to every webhook answer; a few milliseconds still lets
	// concurrent webhook requests share a produce request.
	DefaultBatchTimeout = 2 * time.Millisecond
	// DefaultBatchSize is the most messages per partition per produce
	// request. The apiserver sends up to 400 events per POST; 1,000 lets
	// one POST (and a few concurrent ones) go out as one request per
	// partition instead of kafka-go's 100-message slices.
	DefaultBatchSize = 1000
	// DefaultBatchBytes caps a produce request per partition, uncompressed.
	// It equals the broker's default message.max.bytes (1 MiB) so a batch
	// the writer assembles is never refused for size, and a single
	// message above it is refused before it is sent.
	DefaultBatchBytes = 1 << 20
	// DefaultWriteTimeout bounds one produce request and its acks. The
	// caller's ctx usually ends sooner; this bounds the writer's
	// background retries, which do not see that ctx.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxAttempts is how often the writer tries a batch before
	// reporting failure. kafka-go's 10 attempts with back-off keep a
	// failed batch (and Close) busy for many seconds after the caller has
	// given up; the apiserver resends a failed POST anyway.
	DefaultMaxAttempts = 3
	// DefaultCompression is zstd: audit JSON compresses about 5-10x and
	// zstd is the cheapest codec per byte saved.
	DefaultCompression = "zstd"
)

// Consumer defaults.
const (
	// DefaultGroupID is the consumer group detect instances share.
	DefaultGroupID = "auditpipe-detect"
	// DefaultMinBytes makes the broker answer a fetch as soon as any record
	// is available: detect is latency-bound, not request-bound.
	DefaultMinBytes = 1
	// DefaultMaxBytes bounds one fetch per partition. It must exceed the
	// largest record batch (DefaultBatchBytes), or kafka-go cannot make
	// progress past that batch.
	DefaultMaxBytes = 10 << 20
	// DefaultMaxWait is how long the broker holds a fetch open waiting
	// for MinBytes, Kafka's own default (fetch.max.wait.ms).
	DefaultMaxWait = 500 * time.Millisecond
)

// ProducerConfig configures a Producer. Zero fields take the defaults above.
type ProducerConfig struct {
	// Brokers are bootstrap addresses, host:port.
	Brokers []string
	// Topic receives every message.
	Topic string
	// BatchTimeout is how long a partial batch waits for more messages.
	BatchTimeout time.Duration
	// BatchSize is the most messages per partition per produce request.
	BatchSize int
	// BatchBytes is the most uncompressed bytes per partition per produce
	// request; keep it at or below the topic's max.message.bytes.
	BatchBytes int64
	// WriteTimeout bounds one produce request.
	WriteTimeout time.Duration
	// MaxAttempts is how often a batch is tried before Produce fails.
	MaxAttempts int
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression string
}

// WithDefaults returns c with zero fields set to their defaults.
func (c ProducerConfig) WithDefaults() ProducerConfig {
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	return c
}

// Validate reports every problem in c (after defaults), each naming its key.
func (c ProducerConfig) Validate() error {
	c = c.WithDefaults()
	errs := []error{validateBrokers(c.Brokers), validateTopic(c.Topic)}
	if c.BatchTimeout < 0 {
		errs = append(errs, errors.New("kafka.batch_timeout must not be negative"))
	}
	if c.BatchSize < 0 {
		errs = append(errs, errors.New("kafka.batch_size must not be negative"))
	}
	if c.BatchBytes < 0 {
		errs = append(errs, errors.New("kafka.batch_bytes must not be negative"))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, errors.New("kafka.write_timeout must not be negative"))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, errors.New("kafka.max_attempts must not be negative"))
	}
	if _, err := parseCompression(c.Compression); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ConsumerConfig configures a Consumer. Zero fields take the defaults above.
type ConsumerConfig struct {
	// Brokers are bootstrap addresses, host:port.
	Brokers []string
	// Topic is read through the consumer group.
	Topic string
	// GroupID names the consumer group whose offsets are committed.
	GroupID string
	// MinBytes is the least data the broker waits for before answering.
	MinBytes int
	// MaxBytes is the most data per partition per fetch.
	MaxBytes int
	// MaxWait is how long the broker holds a fetch waiting for MinBytes.
	MaxWait time.Duration
	// CommitInterval, when positive, makes Commit asynchronous: offsets
	// are flushed at this interval and a crash may redeliver up to one
	// interval of records. Zero (the default) commits synchronously, so
	// Commit returns only once the broker stored the offsets.
	CommitInterval time.Duration
	// SessionTimeout is how long the group waits for a silent member
	// (crashed, partitioned) before giving its partitions to the others.
	// Zero keeps kafka-go's 30 s. Lower means faster takeover after a
	// SIGKILL and more spurious rebalances on a GC pause.
	SessionTimeout time.Duration
	// QueueCapacity is how many fetched records the reader holds ahead
	// of Fetch. Zero keeps kafka-go's 100; a source of large records
	// (Event Hubs bodies up to 1 MB) lowers it to bound memory.
	QueueCapacity int
	// TLS, when set, dials the brokers over TLS (Event Hubs' Kafka
	// endpoint); nil dials plain TCP.
	TLS *tls.Config
	// SASL, when set, authenticates every connection with this mechanism
	// (Event Hubs: PLAIN, user $ConnectionString). It holds a secret:
	// never log it.
	SASL sasl.Mechanism
}

// WithDefaults returns c with zero fields set to their defaults.
func (c ConsumerConfig) WithDefaults() ConsumerConfig {
	if c.GroupID == "" {
		c.GroupID = DefaultGroupID
	}
	if c.MinBytes == 0 {
		c.MinBytes = DefaultMinBytes
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	return c
}

// Validate reports every problem in c (after defaults), each naming its key.
func (c ConsumerConfig) Validate() error {
	c = c.WithDefaults()
	errs := []error{validateBrokers(c.Brokers), validateTopic(c.Topic)}
	if c.MinBytes < 0 {
		errs = append(errs, errors.New("kafka.min_bytes must not be negative"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, errors.New("kafka.max_bytes must not be negative"))
	}
	if c.MinBytes > c.MaxBytes {
		errs = append(errs, fmt.Errorf("kafka.min_bytes (%d) must not exceed kafka.max_bytes (%d)", c.MinBytes, c.MaxBytes))
	}
	if c.MaxWait < 0 {
		errs = append(errs, errors.New("kafka.max_wait must not be negative"))
	}
	if c.CommitInterval < 0 {
		errs = append(errs, errors.New("kafka.commit_interval must not be negative"))
	}
	if c.SessionTimeout < 0 {
		errs = append(errs, errors.New("kafka.session_timeout must not be negative"))
	}
	if c.QueueCapacity < 0 {
		errs = append(errs, errors.New("kafka.queue_capacity must not be negative"))
	}
	return errors.Join(errs...)
}

func validateBrokers(brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("kafka.brokers must list at least one host:port")
	}
	for i, b := range brokers {
		if strings.TrimSpace(b) == "" {
			return fmt.Errorf("kafka.brokers[%d] is empty", i)
		}
	}
	return nil
}

// validateTopic applies Kafka's own topic name rules, so a typo is reported
// at start-up rather than as an error on the first produce.
func validateTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("kafka.topic must be set")
	case topic == "." || topic == "..":
		return fmt.Errorf("kafka.topic %q is not a valid topic name", topic)
	case len(topic) > 249:
		return fmt.Errorf("kafka.topic is %d characters long: Kafka allows 249", len(topic))
	}
	for _, r := range topic {
		ok := r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("kafka.topic %q may only contain letters, digits, '.', '_' and '-'", topic)
		}
	}
	return nil
}

func parseCompression(s string) (kafkago.Compression, error) {
	var c kafkago.Compression
	if err := c.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("kafka.compression: %w", err)
	}
	return c, nil
}
