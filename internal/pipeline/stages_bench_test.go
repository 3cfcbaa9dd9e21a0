package pipeline

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// BenchmarkStageGate admits a stream of distinct short requests, each
// remembered until the LRU bound evicts it: the steady state of a busy
// detect.
func BenchmarkStageGate(b *testing.B) {
	ev := stagedEvent(b, "stale-token.json", "prod", "ResponseComplete", nil)
	g := NewStageGate(StageGateConfig{})
	base := ev.StageTimestamp.Time
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.AuditID = "req"
		ev.RequestReceivedTimestamp.Time = base.Add(time.Duration(i) * time.Microsecond)
		ev.StageTimestamp.Time = ev.RequestReceivedTimestamp.Time
		if g.Admit(ev) != StageJudged {
			b.Fatal("not judged")
		}
	}
}

// BenchmarkStageGateFill admits 75,000 distinct requests to a new gate,
// as the 150,000 events of the realistic generated stream do in a scan:
// the gate and its maps grow with the requests.
func BenchmarkStageGateFill(b *testing.B) {
	ev := stagedEvent(b, "stale-token.json", "prod", "ResponseComplete", nil)
	base := ev.StageTimestamp.Time
	b.ReportAllocs()
	for b.Loop() {
		g := NewStageGate(StageGateConfig{})
		for i := range 75000 {
			ev.RequestReceivedTimestamp.Time = base.Add(time.Duration(i) * time.Microsecond)
			ev.StageTimestamp.Time = ev.RequestReceivedTimestamp.Time
			if g.Admit(ev) != StageJudged {
				b.Fatal("not judged")
			}
		}
	}
}

// TestStageGateMemory checks the per-entry cost the constants' comment
// states (about 70 bytes), so the documented bound stays true.
func TestStageGateMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	const n = 100000
	var ev Event
	ev.Stage = auditv1.StageResponseComplete
	ev.Cluster = "prod"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := NewStageGate(StageGateConfig{DoneRequests: n})
	for i := range n {
		ev.AuditID = "x"
		ev.RequestURI = strconv.Itoa(i)
		g.Admit(&ev)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per remembered request", per)
	if per > 150 {
		t.Fatalf("%.0f bytes per remembered request; the documented bound assumes about 70", per)
	}
	runtime.KeepAlive(g)
}
