package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// outage is how long TestConsumerRidesOutBrokerOutage keeps the broker away:
// longer than kafka-go's reader takes to hand its fourth failed dial to
// FetchMessage (a few seconds), after which detect used to exit.
const outage = 12 * time.Second

// TestConsumerRidesOutBrokerOutage stops the broker under a consumer blocked
// in Fetch: Fetch keeps waiting instead of failing, Ping reports the outage,
// the broker keeps the offsets committed before it, and once the broker is
// back every record produced after it arrives, none of the committed ones
// again.
//
// A record produced after the outage may arrive twice: when the group
// settles in more than one generation after the restart (the broker waits
// out the old member's session), the later generation starts again from the
// committed offset, and the test commits nothing after the outage. That is
// the consumer's at-least-once contract, which the sink's deduplication
// absorbs; the test reports such redeliveries instead of failing on them.
func TestConsumerRidesOutBrokerOutage(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 3, kafkatest.WithOutages())
	p := newProducer(t, c)
	const n = 300
	const group = "auditpipe-detect-outage"
	produce(t, p, auditMessages(t, 0, n))
	// A short session, as the crash tests use: after the restart the
	// broker waits out the old session before the group settles.
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: c.Brokers, Topic: c.Topic, GroupID: group, SessionTimeout: 6 * time.Second}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cons.Close() })
	before := fetchN(t, cons, n)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	if err := cons.Commit(ctx, before); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	cancel()
	wantCommitted := map[int]int64{}
	for _, r := range before {
		wantCommitted[r.Partition] = max(wantCommitted[r.Partition], r.Offset+1)
	}
	if got := committedOffsets(t, c, group); !maps.Equal(got, wantCommitted) {
		t.Fatalf("committed offsets before the outage: %v, want %v", got, wantCommitted)
	}
	after := auditMessages(t, n, n)
	want := map[string]bool{}
	for _, m := range after {
		want[string(m.Value)] = true
	}
	committed := map[string]bool{}
	for _, r := range before {
		committed[string(r.Value)] = true
	}

	c.Stop()
	type fetched struct {
		recs []pipeline.Record
		err  error
	}
	done := make(chan fetched, 1)
	fctx, fcancel := context.WithTimeout(context.Background(), outage+3*testTimeout)
	defer fcancel()
	go func() {
		var f fetched
		seen := map[string]bool{}
		for len(seen) < n {
			rec, err := cons.Fetch(fctx)
			if err != nil {
				f.err = err
				break
			}
			f.recs = append(f.recs, rec)
			if want[string(rec.Value)] {
				seen[string(rec.Value)] = true
			}
		}
		done <- f
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	if err := cons.Ping(ctx); err == nil {
		t.Error("Ping succeeded with the broker down")
	}
	cancel()
	select {
	case f := <-done:
		t.Fatalf("Fetch returned during the outage: %d records, err %v", len(f.recs), f.err)
	case <-time.After(outage):
	}

	c.Restart()
	deadline := time.Now().Add(testTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.Produce(ctx, after)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Produce after restart: %v", err)
		}
	}
	f := <-done
	if f.err != nil {
		t.Fatalf("Fetch after the broker came back: %v (after %d records)", f.err, len(f.recs))
	}
	delivered := map[string]int{}
	var again []string
	for _, r := range f.recs {
		switch {
		case committed[string(r.Value)]:
			t.Errorf("partition %d offset %d: committed before the outage, delivered again", r.Partition, r.Offset)
		case !want[string(r.Value)]:
			t.Errorf("partition %d offset %d: a record the test never produced", r.Partition, r.Offset)
		default:
			delivered[string(r.Value)]++
			if delivered[string(r.Value)] == 2 {
				again = append(again, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
			}
		}
	}
	if len(delivered) != n {
		t.Errorf("%d of the %d records produced after the outage arrived", len(delivered), n)
	}
	if len(again) > 0 {
		t.Logf("%d uncommitted records redelivered after a rebalance (partition/offset): %v", len(again), again)
	}
	if got := committedOffsets(t, c, group); !maps.Equal(got, wantCommitted) {
		t.Errorf("committed offsets after the restart: %v, want those committed before it, %v", got, wantCommitted)
	}
	ctx, cancel = context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := cons.Ping(ctx); err != nil {
		t.Errorf("Ping after the broker came back: %v", err)
	}
}
