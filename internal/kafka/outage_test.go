package kafka_test

import (
	"context"
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
// and once the broker is back every record produced after it arrives
// exactly once, none of the committed ones again.
func TestConsumerRidesOutBrokerOutage(t *testing.T) {
	verifyNoLeaks(t)
	c := kafkatest.Start(t, "audit-events", 3, kafkatest.WithOutages())
	p := newProducer(t, c)
	const n = 300
	produce(t, p, auditMessages(t, 0, n))
	// A short session, as the crash tests use: after the restart the
	// broker waits out the old session before the group settles.
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: c.Brokers, Topic: c.Topic, GroupID: "auditpipe-detect-outage", SessionTimeout: 6 * time.Second}, nil, nil)
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
		for len(f.recs) < n {
			rec, err := cons.Fetch(fctx)
			if err != nil {
				f.err = err
				break
			}
			f.recs = append(f.recs, rec)
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
	after := auditMessages(t, n, n)
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
	want := map[string]bool{}
	for _, m := range after {
		want[string(m.Value)] = true
	}
	for _, r := range f.recs {
		if !want[string(r.Value)] {
			t.Errorf("partition %d offset %d: committed before the outage, or delivered twice", r.Partition, r.Offset)
		}
		delete(want, string(r.Value))
	}
	ctx, cancel = context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := cons.Ping(ctx); err != nil {
		t.Errorf("Ping after the broker came back: %v", err)
	}
}
