package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// TestBacklogOfUnknownGroup asks for the backlog of a group the broker has
// never seen, as detect does when its first health check runs before its
// join completes. Apache Kafka answers with no offsets, kfake with
// GROUP_ID_NOT_FOUND; either way nothing is committed and every record is
// behind. The consumer is built without a reader so no join can race the
// request.
func TestBacklogOfUnknownGroup(t *testing.T) {
	const total = 40
	cl := kafkatest.Start(t, "audit-events", 4)
	p, err := NewProducer(ProducerConfig{Brokers: cl.Brokers, Topic: cl.Topic}, nil, nil)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing producer: %v", err)
		}
	}()
	msgs := make([]pipeline.Message, total)
	for i := range msgs {
		msgs[i] = pipeline.Message{Key: fmt.Appendf(nil, "prod/user-%d", i), Value: fmt.Appendf(nil, `{"auditID":"%d"}`, i), Cluster: "prod"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Produce(ctx, msgs); err != nil {
		t.Fatalf("producing: %v", err)
	}
	never := &Consumer{topic: cl.Topic, group: "auditpipe-never-joined", brokers: cl.Brokers}
	if got, err := never.Backlog(ctx); err != nil || got != total {
		t.Fatalf("Backlog of a group that never joined = %d, %v; want %d", got, err, total)
	}
}
