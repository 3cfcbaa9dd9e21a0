package kafka

import (
	"context"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/prom"
	"log/slog"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// DefaultDeadLetterTopic receives records detect cannot store.
const DefaultDeadLetterTopic = "audit-events-dlq"

// Headers of a dead-lettered message, besides the original ones (the
// cluster header is kept). An operator replays a fixed record by producing
// its key and value back to the source topic.
const (
	HeaderDLQReason          = "auditpipe-dlq-reason"
	HeaderDLQError           = "auditpipe-dlq-error"
	HeaderDLQSourceTopic     = "auditpipe-dlq-source-topic"
	HeaderDLQSourcePartition = "auditpipe-dlq-source-partition"
	HeaderDLQSourceOffset    = "auditpipe-dlq-source-offset"
	// HeaderDLQTruncated is "true" when the value was cut to fit the
	// dead-letter topic; the full record stays at its source offset until
	// the source topic's retention removes it.
	HeaderDLQTruncated = "auditpipe-dlq-truncated"
)

// maxDLQErrorBytes bounds the error header: a decode error can quote
// input, and headers count against the message size.
const maxDLQErrorBytes = 1 << 10

// DeadLetterConfig configures a DeadLetters writer.
type DeadLetterConfig struct {
	// Brokers are bootstrap addresses, host:port.
	Brokers []string
	// Topic receives dead letters; default DefaultDeadLetterTopic.
	Topic string
	// SourceTopic is the topic the records were consumed from, recorded
	// in a header.
	SourceTopic string
	// MaxValueBytes truncates longer values (an oversized record would
	// not fit the topic either). Default DefaultBatchBytes minus room for
	// key and headers.
	MaxValueBytes int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c DeadLetterConfig) WithDefaults() DeadLetterConfig {
	if c.Topic == "" {
		c.Topic = DefaultDeadLetterTopic
	}
	if c.MaxValueBytes <= 0 {
		c.MaxValueBytes = DefaultBatchBytes - 16<<10
	}
	return c
}

// Validate reports every problem in c (after defaults), each naming its key.
func (c DeadLetterConfig) Validate() error {
	c = c.WithDefaults()
	return errors.Join(validateBrokers(c.Brokers), validateTopic(c.Topic))
}

// DeadLetters produces records detect gives up on to a dead-letter topic:
// original key and value, the original headers' cluster, and headers
// naming the reason, the error and the source position.
type DeadLetters struct {
	cfg   DeadLetterConfig
	w     *kafkago.Writer
	trans *kafkago.Transport
	count *prometheus.CounterVec

	closeOnce sync.Once
	closeErr  error
}

var _ pipeline.DeadLetterSink = (*DeadLetters)(nil)

// NewDeadLetters validates cfg and returns a writer; it does not contact
// the brokers. log and reg may be nil.
func NewDeadLetters(cfg DeadLetterConfig, log *slog.Logger, reg prometheus.Registerer) (*DeadLetters, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating dead-letter config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	count, err := prom.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricDeadLetters,
		Help: "Records written to the dead-letter topic, by reason.",
	}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	trans := &kafkago.Transport{DialTimeout: dialTimeout, ClientID: clientID}
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafkago.Murmur2Balancer{Consistent: true},
		MaxAttempts:  DefaultMaxAttempts,
		BatchSize:    DefaultBatchSize,
		BatchBytes:   DefaultBatchBytes,
		BatchTimeout: DefaultBatchTimeout,
		ReadTimeout:  DefaultWriteTimeout,
		WriteTimeout: DefaultWriteTimeout,
		RequiredAcks: kafkago.RequireAll,
		Compression:  kafkago.Zstd,
		Logger:       clientLogger(log, "dlq-writer"),
		ErrorLogger:  clientLogger(log, "dlq-writer"),
		Transport:    trans,
	}
	return &DeadLetters{cfg: cfg, w: w, trans: trans, count: count}, nil
}

// WriteDeadLetters produces dls and returns once all are acknowledged.
func (d *DeadLetters) WriteDeadLetters(ctx context.Context, dls []pipeline.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	msgs := make([]kafkago.Message, len(dls))
	for i, dl := range dls {
		msgs[i] = d.message(dl)
	}
	if err := d.w.WriteMessages(ctx, msgs...); err != nil {
		err = fmt.Errorf("producing %d dead letters to %s: %w", len(dls), d.cfg.Topic, err)
		if isPermanentKafkaError(err) {
			return pipeline.Permanent(err)
		}
		return err
	}
	for _, dl := range dls {
		d.count.WithLabelValues(dl.Reason).Inc()
	}
	return nil
}

func (d *DeadLetters) message(dl pipeline.DeadLetter) kafkago.Message {
	r := dl.Record
	errText := ""
	if dl.Err != nil {
		errText = dl.Err.Error()
	}
	if len(errText) > maxDLQErrorBytes {
		errText = errText[:maxDLQErrorBytes]
	}
	h := []kafkago.Header{
		{Key: HeaderDLQReason, Value: []byte(dl.Reason)},
		{Key: HeaderDLQError, Value: []byte(errText)},
		{Key: HeaderDLQSourceTopic, Value: []byte(d.cfg.SourceTopic)},
		{Key: HeaderDLQSourcePartition, Value: []byte(strconv.Itoa(r.Partition))},
		{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
	}
	if r.Cluster != "" {
		h = append(h, kafkago.Header{Key: pipeline.HeaderCluster, Value: []byte(r.Cluster)})
	}
	value := r.Value
	if len(value) > d.cfg.MaxValueBytes {
		value = value[:d.cfg.MaxValueBytes]
		h = append(h, kafkago.Header{Key: HeaderDLQTruncated, Value: []byte("true")})
	}
	return kafkago.Message{Key: r.Key, Value: value, Headers: h}
}

// Close flushes and closes the writer; calling it again returns the first
// result.
func (d *DeadLetters) Close() error {
	d.closeOnce.Do(func() {
		if err := d.w.Close(); err != nil {
			d.closeErr = fmt.Errorf("closing dead-letter writer: %w", err)
		}
		d.trans.CloseIdleConnections()
	})
	return d.closeErr
}
