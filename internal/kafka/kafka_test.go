package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// TestProduceConsume sends a stream of audit events through acks=all + zstd
// and reads it back through a consumer group: every event arrives once and
// byte for byte, with its cluster, every key stays on one partition in the
// order produced, and the commits land at the end of each partition.
func TestProduceConsume(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 6)
	p := newProducer(t, c)

	const total, perCall = 1000, 400 // the apiserver's webhook batch size
	msgs := auditMessages(t, 0, total)
	for i := 0; i < total; i += perCall {
		produce(t, p, msgs[i:min(i+perCall, total)])
	}

	const group = "auditpipe-detect-roundtrip"
	cons := newConsumer(t, c, group)
	recs := fetchN(t, cons, total)

	want := make(map[string]int, total) // value -> index produced
	for i, m := range msgs {
		want[string(m.Value)] = i
	}
	partitionOf := map[string]int{} // key -> partition
	lastIndex := map[string]int{}   // key -> last produced index seen
	lastOffset := map[int]int64{}   // partition -> last offset seen
	highest := map[int]int64{}      // partition -> highest offset
	for _, r := range recs {
		i, ok := want[string(r.Value)]
		if !ok {
			t.Fatalf("record at %d/%d is no produced event or a duplicate: %.80s", r.Partition, r.Offset, r.Value)
		}
		delete(want, string(r.Value))
		if !bytes.Equal(r.Key, msgs[i].Key) {
			t.Errorf("event %d: key %q, want %q", i, r.Key, msgs[i].Key)
		}
		if r.Cluster != testCluster {
			t.Errorf("event %d: cluster %q, want %q", i, r.Cluster, testCluster)
		}
		key := string(r.Key)
		if p, seen := partitionOf[key]; seen && p != r.Partition {
			t.Errorf("key %s on partitions %d and %d", key, p, r.Partition)
		}
		partitionOf[key] = r.Partition
		if last, seen := lastIndex[key]; seen && i < last {
			t.Errorf("key %s: event %d delivered after event %d", key, i, last)
		}
		lastIndex[key] = i
		if last, seen := lastOffset[r.Partition]; seen && r.Offset <= last {
			t.Errorf("partition %d: offset %d after %d", r.Partition, r.Offset, last)
		}
		lastOffset[r.Partition] = r.Offset
		highest[r.Partition] = max(highest[r.Partition], r.Offset)
	}
	if len(want) != 0 {
		t.Fatalf("%d events never delivered", len(want))
	}
	if len(partitionOf) != len(subjects) {
		t.Errorf("%d distinct keys, want %d", len(partitionOf), len(subjects))
	}
	if len(highest) < 2 {
		t.Errorf("all keys on %d partition(s): the balancer is not hashing", len(highest))
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := cons.Commit(ctx, recs); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	got := committedOffsets(t, c, group)
	for partition, off := range highest {
		if got[partition] != off+1 {
			t.Errorf("partition %d: committed %d, want %d (after the highest offset %d)", partition, got[partition], off+1, off)
		}
	}
}

// TestProduceConcurrent has webhook handlers produce at the same time
// through one producer: every call returns only when its own messages are
// acknowledged, and all of them arrive.
func TestProduceConcurrent(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 6)
	p := newProducer(t, c)

	const callers, perCall = 8, 150
	msgs := auditMessages(t, 0, callers*perCall)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			errs[i] = p.Produce(ctx, msgs[i*perCall:(i+1)*perCall])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Produce: %v", err)
	}

	want := map[string]bool{}
	for _, m := range msgs {
		want[string(m.Value)] = true
	}
	for _, r := range fetchN(t, newConsumer(t, c, "auditpipe-detect-concurrent"), len(msgs)) {
		if !want[string(r.Value)] {
			t.Fatalf("unexpected or duplicate record at %d/%d", r.Partition, r.Offset)
		}
		delete(want, string(r.Value))
	}
}

// TestConsumerResumesAfterCommit closes a consumer that committed only part
// of what it fetched; a new member of the group gets exactly the uncommitted
// records: none lost, none of the committed ones again.
func TestConsumerResumesAfterCommit(t *testing.T) {
	verifyNoLeaks(t)
	const total = 400
	c := filledTopic(t, total)
	const group = "auditpipe-detect-resume"
	first := closableConsumer(t, c, group)
	fetched := fetchN(t, first, total)
	// Fetching alone commits nothing (kafka-go's ReadMessage would).
	for partition, off := range committedOffsets(t, c, group) {
		if off >= 0 {
			t.Fatalf("partition %d has committed offset %d before any Commit", partition, off)
		}
	}
	// Commit the first half of what was fetched; the rest was "processed"
	// but its sink write never succeeded.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := first.Commit(ctx, fetched[:total/2]); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	committed := map[int]int64{} // partition -> highest committed offset
	for _, r := range fetched[:total/2] {
		if off, ok := committed[r.Partition]; !ok || r.Offset > off {
			committed[r.Partition] = r.Offset
		}
	}
	wantRedelivered := map[string]bool{}
	for _, r := range fetched {
		if off, ok := committed[r.Partition]; !ok || r.Offset > off {
			wantRedelivered[string(r.Value)] = true
		}
	}
	if len(wantRedelivered) == 0 || len(wantRedelivered) == total {
		t.Fatalf("%d of %d records uncommitted: the test needs a partial commit", len(wantRedelivered), total)
	}

	second := newConsumer(t, c, group)
	got := fetchN(t, second, len(wantRedelivered))
	for _, r := range got {
		if !wantRedelivered[string(r.Value)] {
			t.Errorf("partition %d offset %d redelivered although committed (or twice)", r.Partition, r.Offset)
		}
		delete(wantRedelivered, string(r.Value))
	}
	if len(wantRedelivered) != 0 {
		t.Errorf("%d uncommitted records not redelivered", len(wantRedelivered))
	}
}

// TestConsumerBacklog checks the group's backlog against the records
// produced and committed: all of them before any commit, the uncommitted
// ones after a partial commit (counting partitions this member no longer
// holds, since it has left the group), none once everything is committed.
func TestConsumerBacklog(t *testing.T) {
	verifyNoLeaks(t)
	const total = 300
	c := filledTopic(t, total)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const group = "auditpipe-detect-backlog"
	first := closableConsumer(t, c, group)
	if got, err := first.Backlog(ctx); err != nil || got != total {
		t.Fatalf("Backlog before any commit = %d, %v; want %d", got, err, total)
	}
	fetched := fetchN(t, first, total)
	// Fetching is not consuming: the backlog counts commits only.
	if got, err := first.Backlog(ctx); err != nil || got != total {
		t.Fatalf("Backlog after fetching, before any commit = %d, %v; want %d", got, err, total)
	}
	if err := first.Commit(ctx, fetched[:total/3]); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	committed := map[int]int64{}
	for _, r := range fetched[:total/3] {
		committed[r.Partition] = max(committed[r.Partition], r.Offset+1)
	}
	var want int64
	for _, r := range fetched {
		if r.Offset >= committed[r.Partition] {
			want++
		}
	}
	if want == 0 || want == total {
		t.Fatalf("%d of %d records uncommitted: the test needs a partial commit", want, total)
	}
	second := newConsumer(t, c, group)
	if got, err := second.Backlog(ctx); err != nil || got != want {
		t.Fatalf("Backlog after a partial commit = %d, %v; want %d", got, err, want)
	}
	rest := fetchN(t, second, int(want))
	if err := second.Commit(ctx, rest); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got, err := second.Backlog(ctx); err != nil || got != 0 {
		t.Fatalf("Backlog after committing everything = %d, %v; want 0", got, err)
	}
}

// TestProduceBrokerDown stops the brokers: Produce must give up with a
// retryable error when its context ends rather than hang, readiness must
// fail, and producing must work again once the brokers are back.
func TestProduceBrokerDown(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 3, kafkatest.WithOutages())
	p := newProducer(t, c)
	produce(t, p, auditMessages(t, 0, 400))

	c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := p.Produce(ctx, auditMessages(t, 400, 400))
	cancel()
	if err == nil {
		t.Fatal("Produce succeeded with every broker down")
	}
	if pipeline.IsPermanent(err) {
		t.Fatalf("Produce error with brokers down is permanent, want retryable: %v", err)
	}
	t.Logf("Produce with brokers down: %v", err)
	ctx, cancel = context.WithTimeout(context.Background(), testTimeout)
	err = p.Ping(ctx)
	cancel()
	if err == nil {
		t.Fatal("Ping succeeded with every broker down")
	}

	c.Restart()
	// The producer reconnects on its own; the first attempts after the
	// restart may still fail while the brokers load their state.
	deadline := time.Now().Add(testTimeout)
	after := auditMessages(t, 800, 400)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.Produce(ctx, after)
		cancel()
		if err == nil {
			break
		}
		if pipeline.IsPermanent(err) {
			t.Fatalf("Produce after restart: permanent error: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Produce still failing after restart: %v", err)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}

	// What was acknowledged before the outage survived it, and what was
	// acknowledged after is there too. Nothing from the failed call was
	// acknowledged, so it may or may not appear.
	cons := newConsumer(t, c, "auditpipe-detect-outage")
	want := map[string]bool{}
	for _, m := range append(auditMessages(t, 0, 400), after...) {
		want[string(m.Value)] = true
	}
	for len(want) > 0 {
		rec, err := cons.Fetch(ctx)
		if err != nil {
			t.Fatalf("fetching after restart, %d acknowledged events missing: %v", len(want), err)
		}
		delete(want, string(rec.Value))
	}
}

// TestProduceTooLarge: an event larger than a produce request can ever be
// is a permanent error naming the event, and nothing of the call is written.
func TestProduceTooLarge(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 1)
	p := newProducer(t, c, func(cfg *kafka.ProducerConfig) { cfg.BatchBytes = 64 << 10 })

	msgs := auditMessages(t, 0, 4)
	// A RequestResponse-level event carrying a big ConfigMap.
	huge := append(bytes.TrimSuffix(bytes.Clone(msgs[2].Value), []byte("}")), []byte(`,"requestObject":{"kind":"ConfigMap","apiVersion":"v1","data":{"bundle.pem":"`)...)
	huge = append(huge, bytes.Repeat([]byte("A"), 100<<10)...)
	huge = append(huge, []byte(`"}}}`)...)
	msgs[2].Value = huge

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := p.Produce(ctx, msgs)
	if !pipeline.IsPermanent(err) {
		t.Fatalf("Produce of a 100 KiB event with batch_bytes 64 KiB: %v, want a permanent error", err)
	}
	var item *auditjson.ItemError
	if !errors.As(err, &item) || item.Index != 2 {
		t.Fatalf("error %v does not name message 2", err)
	}
	if !errors.Is(err, kafkago.MessageSizeTooLarge) {
		t.Errorf("error %v does not wrap MessageSizeTooLarge", err)
	}

	// The producer stays usable for the events that fit.
	produce(t, p, append(msgs[:2:2], msgs[3]))
}

// TestPing checks readiness against a known and an unknown topic.
func TestPing(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 1)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	if err := newProducer(t, c).Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	missing := newProducer(t, c, func(cfg *kafka.ProducerConfig) { cfg.Topic = c.Topic + "-missing" })
	if err := missing.Ping(ctx); !errors.Is(err, kafkago.UnknownTopicOrPartition) {
		t.Fatalf("Ping of a missing topic: %v, want UnknownTopicOrPartition", err)
	}
}

// TestEnsureTopic creates a missing topic with the requested partitions and
// leaves an existing one alone.
func TestEnsureTopic(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 1)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	topic := c.Topic + "-ensured"
	if c.Real() {
		t.Cleanup(func() { deleteTopic(t, c, topic) })
	}
	if err := kafka.EnsureTopic(ctx, c.Brokers, topic, 5); err != nil {
		t.Fatalf("EnsureTopic: %v", err)
	}
	if n := partitions(t, c, topic); n != 5 {
		t.Fatalf("created topic has %d partitions, want 5", n)
	}
	// Existing topics are kept as they are, even with another count.
	if err := kafka.EnsureTopic(ctx, c.Brokers, topic, 8); err != nil {
		t.Fatalf("EnsureTopic on an existing topic: %v", err)
	}
	if err := kafka.EnsureTopic(ctx, c.Brokers, c.Topic, 3); err != nil {
		t.Fatalf("EnsureTopic on the seeded topic: %v", err)
	}
	if n := partitions(t, c, c.Topic); n != 1 {
		t.Fatalf("existing topic changed to %d partitions", n)
	}
	p := newProducer(t, c, func(cfg *kafka.ProducerConfig) { cfg.Topic = topic })
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping of the ensured topic: %v", err)
	}
}

func partitions(t testing.TB, c *kafkatest.Cluster, topic string) int {
	t.Helper()
	transport := &kafkago.Transport{}
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Transport: transport}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	md, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("reading metadata of %s: %v %+v", topic, err, md)
	}
	return len(md.Topics[0].Partitions)
}

func deleteTopic(t testing.TB, c *kafkatest.Cluster, topic string) {
	transport := &kafkago.Transport{}
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Transport: transport}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{topic}}); err != nil {
		t.Logf("deleting topic %s: %v", topic, err)
	}
}

// TestClose: closing twice is fine, and a closed producer or consumer fails
// further calls with a retryable error instead of blocking.
func TestClose(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 2)
	p := newProducer(t, c)
	produce(t, p, auditMessages(t, 0, 10))
	cons := newConsumer(t, c, "auditpipe-detect-close")
	fetchN(t, cons, 1)

	for i := range 2 {
		if err := p.Close(); err != nil {
			t.Fatalf("Producer.Close #%d: %v", i+1, err)
		}
		if err := cons.Close(); err != nil {
			t.Fatalf("Consumer.Close #%d: %v", i+1, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := p.Produce(ctx, auditMessages(t, 10, 1))
	if err == nil || pipeline.IsPermanent(err) {
		t.Errorf("Produce after Close: %v, want a retryable error", err)
	}
	if _, err := cons.Fetch(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Fetch after Close: %v, want io.EOF", err)
	}
}
