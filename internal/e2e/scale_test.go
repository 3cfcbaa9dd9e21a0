package e2e

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/processor"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// checkExact asserts that db holds every key of s exactly once under FINAL,
// in the table and in the rollup.
func checkExact(t *testing.T, count func(query string) uint64, want uint64, what string) {
	t.Helper()
	for _, q := range []string{
		"SELECT count() FROM {db}.events FINAL",
		"SELECT uniqExact(cluster, audit_id, stage) FROM {db}.events",
		"SELECT uniqExactMerge(events) FROM {db}.events_by_minute",
	} {
		if got := count(q); got != want {
			t.Errorf("%s: %s = %d, want %d", what, q, got, want)
		}
	}
}

// TestClickHouseOutage stops ClickHouse while detect runs and more events
// arrive: detect backs off keeping its batch and committing nothing, shows
// the backlog, and once ClickHouse is back it catches up with nothing lost
// and nothing duplicated under FINAL.
func TestClickHouseOutage(t *testing.T) {
	srv := chtest.Start(t)
	kc := kafkatest.Start(t, "audit-events", 4)
	s := genStream(t, 20000, 11)
	conn := chConn(t, srv)
	db := srv.NewDatabase(t)
	count := func(q string) uint64 { return chCount(t, conn, db, q) }

	produce(t, kc, s.msgs[:10000])
	p := startDetect(t, kc, srv.DSN+db, "--group", "outage", "--batch-records", "2000", "--exit-when-idle", "20s")
	waitLong(t, "first rows", func() bool { return count("SELECT count() FROM {db}.events") > 0 })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	produce(t, kc, s.msgs[10000:])
	waitLong(t, "detect to retry and hold a backlog", func() bool {
		return p.metric(processor.MetricDetectSinkRetries) > 0 && p.metric(processor.MetricDetectPendingRecords) > 0
	})
	t.Logf("during the outage: %v sink retries, %v records and %v bytes pending", p.metric(processor.MetricDetectSinkRetries),
		p.metric(processor.MetricDetectPendingRecords), p.metric(processor.MetricDetectPendingBytes))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(5 * time.Minute); err != nil {
		t.Fatalf("detect: %v", err)
	}
	conn = chConn(t, srv) // the old pool's connections died with the server
	checkExact(t, func(q string) uint64 { return chCount(t, conn, db, q) }, uint64(len(s.keys)), "after the outage")
}

// TestPoisonToDeadLetterTopic puts a malformed, a truncated and an oversized
// record in the middle of a partition: each ends up on the dead-letter topic
// with its reason, error and source position, and every event around them
// is stored.
func TestPoisonToDeadLetterTopic(t *testing.T) {
	srv := chtest.Start(t)
	kc := kafkatest.Start(t, "audit-events", 2)
	s := genStream(t, 4000, 13)
	conn := chConn(t, srv)
	db := srv.NewDatabase(t)

	big := bytes.Replace(s.msgs[3000].Value, []byte(`"requestURI":"`), []byte(`"requestURI":"/`+strings.Repeat("x", 100<<10)), 1)
	poison := map[int]struct {
		value  []byte
		reason string
	}{
		1000: {[]byte("\x00\x01 this is not JSON"), pipeline.ReasonDecode},
		2000: {s.msgs[2000].Value[:len(s.msgs[2000].Value)/2], pipeline.ReasonDecode},
		3000: {big, pipeline.ReasonOversized},
	}
	var msgs []pipeline.Message
	for i, m := range s.msgs {
		msgs = append(msgs, m)
		if pz, ok := poison[i]; ok {
			// The neighbour's key puts it in the same partition, between
			// stored events.
			msgs = append(msgs, pipeline.Message{Key: m.Key, Value: pz.value, Cluster: cluster})
		}
	}
	produce(t, kc, msgs)
	const dlqTopic = "audit-events-dlq"
	p := startDetect(t, kc, srv.DSN+db, "--group", "poison", "--max-record-bytes", "65536", "--dlq-topic", dlqTopic, "--exit-when-idle", "10s")
	if err := p.wait(5 * time.Minute); err != nil {
		t.Fatalf("detect: %v", err)
	}
	checkExact(t, func(q string) uint64 { return chCount(t, conn, db, q) }, uint64(len(s.keys)), "around the poison")

	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: kc.Brokers, Topic: dlqTopic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var reasons []string
	for range len(poison) {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading dead letters (got %v): %v", reasons, err)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		reasons = append(reasons, h[kafka.HeaderDLQReason])
		if h[kafka.HeaderDLQError] == "" || h[kafka.HeaderDLQSourceTopic] != kc.Topic || h[pipeline.HeaderCluster] != cluster {
			t.Errorf("dead letter headers %v: want an error, source topic %s and cluster %s", h, kc.Topic, cluster)
		}
		if _, err := strconv.Atoi(h[kafka.HeaderDLQSourcePartition]); err != nil {
			t.Errorf("source partition header %q", h[kafka.HeaderDLQSourcePartition])
		}
		if _, err := strconv.ParseInt(h[kafka.HeaderDLQSourceOffset], 10, 64); err != nil {
			t.Errorf("source offset header %q", h[kafka.HeaderDLQSourceOffset])
		}
		if h[kafka.HeaderDLQReason] == pipeline.ReasonDecode {
			found := false
			for _, pz := range poison {
				found = found || bytes.Equal(pz.value, m.Value)
			}
			if !found {
				t.Errorf("dead letter value %.40q is not one of the poison records", m.Value)
			}
		}
		t.Logf("dead letter: reason %s, error %.100q, from %s/%s@%s", h[kafka.HeaderDLQReason], h[kafka.HeaderDLQError],
			h[kafka.HeaderDLQSourceTopic], h[kafka.HeaderDLQSourcePartition], h[kafka.HeaderDLQSourceOffset])
	}
	slices.Sort(reasons)
	if want := []string{pipeline.ReasonDecode, pipeline.ReasonDecode, pipeline.ReasonOversized}; !slices.Equal(reasons, want) {
		t.Errorf("dead-letter reasons %v, want %v", reasons, want)
	}
}

// TestScaleTwoConsumers runs two detect processes in one group over eight
// partitions and SIGKILLs one midway: the survivor takes its partitions
// over, and the totals are exact.
func TestScaleTwoConsumers(t *testing.T) {
	srv := chtest.Start(t)
	kc := kafkatest.Start(t, "audit-events", 8)
	s := genStream(t, 30000, 17)
	conn := chConn(t, srv)
	db := srv.NewDatabase(t)
	want := uint64(len(s.keys))

	args := []string{"--group", "scale", "--kafka-session-timeout", "6s", "--batch-records", "2000"}
	a := startDetect(t, kc, srv.DSN+db, args...)
	b := startDetect(t, kc, srv.DSN+db, append(args, "--exit-when-idle", "20s")...)
	// Produce while both join, a chunk at a time, until each instance has
	// stored records from its own partitions. With the whole stream
	// produced up front, the first member to join could drain every
	// partition before the group rebalanced, and the second would never
	// get a record.
	const chunk = 1000
	sent := 0
	deadline := time.Now().Add(3 * time.Minute)
	for !(a.metric(processor.MetricDetectRecords) > 0 && b.metric(processor.MetricDetectRecords) > 0 && sent >= len(s.msgs)/3) {
		if time.Now().After(deadline) {
			t.Fatalf("after %d of %d events, instance a processed %v and b %v records", sent, len(s.msgs), a.metric(processor.MetricDetectRecords), b.metric(processor.MetricDetectRecords))
		}
		if sent < len(s.msgs)*2/3 {
			produce(t, kc, s.msgs[sent:sent+chunk])
			sent += chunk
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("killing a after it processed %v records (b: %v), %d of %d events produced", a.metric(processor.MetricDetectRecords), b.metric(processor.MetricDetectRecords), sent, len(s.msgs))
	a.kill()
	produce(t, kc, s.msgs[sent:])
	if err := b.wait(5 * time.Minute); err != nil {
		t.Fatalf("surviving detect: %v", err)
	}
	checkExact(t, func(q string) uint64 { return chCount(t, conn, db, q) }, want, "after losing one of two instances")
}
