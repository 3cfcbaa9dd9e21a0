package kafka_test

import (
	"context"
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// BenchmarkProduce measures one webhook call's worth of events (400, the
// apiserver's batch size) produced with acks=all and zstd against the
// in-process broker, sequentially and from concurrent callers. The broker
// shares the CPU, so the numbers are a floor for a real cluster's client
// cost, not a prediction of its throughput.
func BenchmarkProduce(b *testing.B) {
	const batch = 400
	msgs := auditMessages(b, 0, batch)
	var size int64
	for _, m := range msgs {
		size += int64(len(m.Key) + len(m.Value))
	}
	for _, bc := range []struct {
		name        string
		compression string
		parallel    bool
	}{
		{"zstd", "zstd", false},
		{"none", "none", false},
		{"zstd-parallel", "zstd", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := kafkatest.Start(b, "audit-events", 6)
			p := newProducer(b, c, func(cfg *kafka.ProducerConfig) { cfg.Compression = bc.compression })
			ctx := context.Background()
			if err := p.Produce(ctx, msgs); err != nil { // warm up metadata and connections
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			if bc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := p.Produce(ctx, msgs); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := p.Produce(ctx, msgs); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
