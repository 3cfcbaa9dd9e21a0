package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

var _ pipeline.Source = (*Consumer)(nil)

// Waits between two fetch attempts while the brokers are unreachable.
// kafka-go's reader retries underneath on its own (it dials again with its
// own backoff) and reports an error to FetchMessage only after its fourth
// failure in a row, so Fetch only has to wait a little and ask again; the
// cap keeps a returning broker noticed within seconds. There is no limit on
// how long: a rolling restart of a cluster takes minutes, and readiness
// (Ping) tells the orchestrator meanwhile.
const (
	fetchRetryMin = 500 * time.Millisecond
	fetchRetryMax = 10 * time.Second
)

// fetchLogWindow is how often an outage is logged while it lasts: the first
// failure, then one line per window with the attempts so far.
const fetchLogWindow = 30 * time.Second

// Consumer reads a topic as a member of a consumer group. Offsets move only
// through Commit, so a record fetched but not committed before a crash or a
// rebalance is delivered again: at-least-once.
type Consumer struct {
	topic   string
	group   string
	brokers []string
	tls     *tls.Config
	sasl    sasl.Mechanism
	r       *kafkago.Reader
	m       *consumerMetrics
	log     *slog.Logger

	// The outage in progress, seen by Fetch alone (one goroutine): when
	// it began, how many attempts failed, when it was last logged.
	downSince time.Time
	attempts  int
	lastLog   time.Time

	// lagGauges caches one gauge per partition so Fetch does not format
	// and look up a label on every record.
	mu        sync.Mutex
	lagGauges map[int]prometheus.Gauge

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// NewConsumer validates cfg and joins the consumer group in the background;
// Fetch blocks until partitions are assigned. log and reg may be nil.
func NewConsumer(cfg ConsumerConfig, log *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating kafka consumer config: %w", err)
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newConsumerMetrics(reg)
	if err != nil {
		return nil, err
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:  cfg.Brokers,
		GroupID:  cfg.GroupID,
		Topic:    cfg.Topic,
		Dialer:   &kafkago.Dialer{ClientID: clientID, Timeout: dialTimeout, DualStack: true, TLS: cfg.TLS, SASLMechanism: cfg.SASL},
		MinBytes: cfg.MinBytes,
		MaxBytes: cfg.MaxBytes,
		MaxWait:  cfg.MaxWait,
		// A group without committed offsets starts at the oldest
		// retained record: a new detect deployment must see the
		// backlog, not skip it.
		StartOffset:    kafkago.FirstOffset,
		CommitInterval: cfg.CommitInterval,
		SessionTimeout: cfg.SessionTimeout,
		QueueCapacity:  cfg.QueueCapacity,
		// The lag reader is for readers without a group; with one it
		// only logs errors.
		ReadLagInterval: -1,
		Logger:          clientLogger(log, "reader"),
		ErrorLogger:     clientLogger(log, "reader"),
	})
	return &Consumer{topic: cfg.Topic, group: cfg.GroupID, brokers: cfg.Brokers, tls: cfg.TLS, sasl: cfg.SASL, r: r, m: m, log: log, lagGauges: map[int]prometheus.Gauge{}}, nil
}

// Ping asks the brokers for the topic's metadata: it fails while no broker
// answers or the topic does not exist, for /readyz.
func (c *Consumer) Ping(ctx context.Context) error {
	transport := &kafkago.Transport{DialTimeout: dialTimeout, ClientID: clientID, MetadataTopics: []string{c.topic}, TLS: c.tls, SASL: c.sasl}
	return pingWith(ctx, transport, kafkago.TCP(c.brokers...), c.topic)
}

// Fetch returns the next record of any assigned partition, in offset order
// per partition. It does not commit. While the brokers are unreachable it
// waits and tries again, logging once per fetchLogWindow; it returns an
// error only when ctx ends, after Close (wrapping io.EOF), or for an error
// that no retry fixes (bad credentials, a forbidden topic or group, a
// protocol version the broker refuses), marked pipeline.Permanent. Call it
// from one goroutine.
func (c *Consumer) Fetch(ctx context.Context) (pipeline.Record, error) {
	var msg kafkago.Message
	backoff := fetchRetryMin
	for {
		// kafka-go keeps handing out records already buffered when it
		// was closed; they belong to a group membership that has ended.
		if c.closed.Load() {
			return pipeline.Record{}, fmt.Errorf("fetching from %s: consumer closed: %w", c.topic, io.EOF)
		}
		// FetchMessage, never ReadMessage: ReadMessage commits the
		// offset before the caller has stored the record.
		var err error
		msg, err = c.r.FetchMessage(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil || c.closed.Load() {
			return pipeline.Record{}, fmt.Errorf("fetching from %s: %w", c.topic, err)
		}
		c.m.errors.WithLabelValues("fetch").Inc()
		if fatalFetchError(err) {
			return pipeline.Record{}, pipeline.Permanent(fmt.Errorf("fetching from %s: %w", c.topic, err))
		}
		c.unreachable(err)
		// Full jitter, so that the members of a group do not return to
		// a restarted broker in step.
		wait := fetchRetryMin + time.Duration(rand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return pipeline.Record{}, fmt.Errorf("fetching from %s: %w", c.topic, err)
		case <-time.After(wait):
		}
		backoff = min(2*backoff, fetchRetryMax)
	}
	if !c.downSince.IsZero() {
		c.log.Info("fetching from kafka again", "topic", c.topic, "down_for", time.Since(c.downSince).Round(time.Second), "attempts", c.attempts)
		c.downSince, c.attempts = time.Time{}, 0
	}
	rec := pipeline.Record{
		Message:   pipeline.Message{Key: msg.Key, Value: msg.Value},
		Partition: msg.Partition,
		Offset:    msg.Offset,
	}
	for _, h := range msg.Headers {
		if h.Key == pipeline.HeaderCluster {
			rec.Cluster = string(h.Value)
			break
		}
	}
	c.m.records.Inc()
	c.m.bytes.Add(float64(len(msg.Key) + len(msg.Value)))
	if msg.HighWaterMark > 0 {
		c.lagGauge(msg.Partition).Set(float64(msg.HighWaterMark - msg.Offset - 1))
	}
	return rec, nil
}

// unreachable records a failed fetch of an outage and logs it if it is the
// first or the window since the last line has passed.
func (c *Consumer) unreachable(err error) {
	now := time.Now()
	if c.downSince.IsZero() {
		c.downSince, c.lastLog = now, time.Time{}
	}
	c.attempts++
	if now.Sub(c.lastLog) < fetchLogWindow {
		return
	}
	c.lastLog = now
	c.log.Warn("fetching from kafka, will retry", "topic", c.topic, "attempts", c.attempts, "down_for", now.Sub(c.downSince).Round(time.Second), "err", err)
}

// fatalFetchError reports the errors retrying cannot fix: the broker refuses
// who we are or what we ask for. Everything else (connections refused or
// reset, leaders moving, coordinators loading, a group rebalancing) passes
// once the brokers are back.
func fatalFetchError(err error) bool {
	// A certificate the configured CAs do not vouch for stays so until an
	// operator changes them.
	var cverr *tls.CertificateVerificationError
	if errors.As(err, &cverr) {
		return true
	}
	var kerr kafkago.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr {
	case kafkago.SASLAuthenticationFailed, kafkago.UnsupportedSASLMechanism, kafkago.IllegalSASLState,
		kafkago.TopicAuthorizationFailed, kafkago.GroupAuthorizationFailed, kafkago.ClusterAuthorizationFailed,
		kafkago.InvalidTopic, kafkago.InvalidGroupId, kafkago.UnsupportedVersion:
		return true
	}
	return false
}

func (c *Consumer) lagGauge(partition int) prometheus.Gauge {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.lagGauges[partition]
	if !ok {
		g = c.m.lag.WithLabelValues(strconv.Itoa(partition))
		c.lagGauges[partition] = g
	}
	return g
}

// Backlog returns how many records of the topic the consumer group has not
// committed yet: per partition, its end offset less the group's committed
// offset (or, where the group has committed nothing, less the partition's
// first retained offset). It asks the brokers, not this member, so it also
// counts partitions held by other members, and those waiting to be
// reassigned while the group rebalances after a member died: that is what
// lets a batch job tell "nothing left" from "nothing handed to me yet".
//
// A topic written by transactional producers ends in a commit marker no
// consumer receives, so its backlog stays at least 1; auditpipe's ingest
// does not write transactions.
func (c *Consumer) Backlog(ctx context.Context) (int64, error) {
	transport := &kafkago.Transport{DialTimeout: dialTimeout, ClientID: clientID, MetadataTopics: []string{c.topic}, TLS: c.tls, SASL: c.sasl}
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(c.brokers...), Transport: transport}
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{c.topic}})
	if err != nil {
		return 0, fmt.Errorf("reading metadata of %s: %w", c.topic, err)
	}
	var partitions []int
	for _, t := range meta.Topics {
		if t.Name != c.topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("reading metadata of %s: %w", c.topic, t.Error)
		}
		for _, p := range t.Partitions {
			partitions = append(partitions, p.ID)
		}
	}
	if len(partitions) == 0 {
		return 0, fmt.Errorf("reading metadata of %s: %w", c.topic, kafkago.UnknownTopicOrPartition)
	}
	committed, err := fetchCommitted(ctx, client, c.group, c.topic, partitions)
	if err != nil {
		return 0, fmt.Errorf("fetching offsets of group %s: %w", c.group, err)
	}
	reqs := make([]kafkago.OffsetRequest, 0, 2*len(partitions))
	for _, p := range partitions {
		reqs = append(reqs, kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	ends, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{c.topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", c.topic, err)
	}
	at := make(map[int]int64, len(partitions))
	for _, p := range committed.Topics[c.topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("fetching offset of group %s, partition %d: %w", c.group, p.Partition, p.Error)
		}
		at[p.Partition] = p.CommittedOffset
	}
	var backlog int64
	seen := 0
	for _, p := range ends.Topics[c.topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("listing offsets of %s, partition %d: %w", c.topic, p.Partition, p.Error)
		}
		seen++
		from, ok := at[p.Partition]
		// A group that never committed starts at the oldest retained
		// record (StartOffset is FirstOffset); so does one whose offset
		// retention expired or fell behind the log's start.
		if !ok || from < p.FirstOffset {
			from = p.FirstOffset
		}
		backlog += max(0, p.LastOffset-from)
	}
	if seen != len(partitions) {
		return 0, fmt.Errorf("listing offsets of %s: %d of %d partitions answered", c.topic, seen, len(partitions))
	}
	return backlog, nil
}

// fetchCommitted reads the group's committed offsets. The group's
// coordinator can be briefly unknown or loading (a group the cluster has
// not seen yet, a coordinator moving): those answers are retried until
// ctx ends, as a consumer's own join retries them. A group the coordinator
// does not know (its first member's join still in flight, or no member
// ever) has committed nothing: Apache Kafka answers with no offsets,
// other brokers (kfake, some Kafka-compatible services) with
// GROUP_ID_NOT_FOUND.
func fetchCommitted(ctx context.Context, client *kafkago.Client, group, topic string, partitions []int) (*kafkago.OffsetFetchResponse, error) {
	backoff := 100 * time.Millisecond
	for {
		resp, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
		if err == nil {
			err = resp.Error
		}
		switch {
		case err == nil, errors.Is(err, kafkago.GroupIdNotFound):
			return resp, nil
		case !errors.Is(err, kafkago.NotCoordinatorForGroup) && !errors.Is(err, kafkago.GroupCoordinatorNotAvailable) && !errors.Is(err, kafkago.GroupLoadInProgress):
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (retried until %w)", err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Commit marks recs, and every earlier record of their partitions, as
// processed: it commits the highest offset per partition among recs. Kafka
// stores whatever offset it is given, so committing records older than an
// earlier commit moves the group back: commit in fetch order. With
// synchronous commits (commit_interval 0) it returns once the broker stored
// them.
//
// Rebalances: kafka-go queues commit requests on one channel shared by all
// generations. A request sent while the group rebalances is either flushed
// by the ending generation's commit loop (the broker answers
// REBALANCE_IN_PROGRESS or ILLEGAL_GENERATION: Commit fails, the records are
// redelivered to the new owner) or picked up by the next generation's loop
// and sent with the new generation id. The broker checks only generation and
// member, not assignment, so that late commit of a revoked partition is
// accepted. It is harmless here because the caller commits only offsets
// whose records (and every earlier one) are stored: the commit can move the
// group's offset back behind the new owner's (a redelivery that the sink's
// deduplication absorbs) but never ahead of unstored records.
func (c *Consumer) Commit(ctx context.Context, recs []pipeline.Record) error {
	if len(recs) == 0 {
		return nil
	}
	highest := make(map[int]int64, 8)
	for i := range recs {
		if off, ok := highest[recs[i].Partition]; !ok || recs[i].Offset > off {
			highest[recs[i].Partition] = recs[i].Offset
		}
	}
	msgs := make([]kafkago.Message, 0, len(highest))
	for partition, offset := range highest {
		msgs = append(msgs, kafkago.Message{Topic: c.topic, Partition: partition, Offset: offset})
	}
	if err := c.r.CommitMessages(ctx, msgs...); err != nil {
		c.m.errors.WithLabelValues("commit").Inc()
		return fmt.Errorf("committing %d partitions of %s: %w", len(msgs), c.topic, err)
	}
	c.m.commits.Inc()
	return nil
}

// Close leaves the consumer group, after a final commit of offsets already
// passed to Commit, and closes connections. Calling it again is a no-op
// returning the first result.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if err := c.r.Close(); err != nil {
			c.closeErr = fmt.Errorf("closing kafka reader: %w", err)
		}
	})
	return c.closeErr
}
