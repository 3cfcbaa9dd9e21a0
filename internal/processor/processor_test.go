package processor_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/processor"
)

// memSource delivers a fixed list of records and remembers commits.
type memSource struct {
	mu      sync.Mutex
	recs    []pipeline.Record
	next    int
	commits []pipeline.Record
}

func (s *memSource) Fetch(ctx context.Context) (pipeline.Record, error) {
	s.mu.Lock()
	if s.next < len(s.recs) {
		r := s.recs[s.next]
		s.next++
		s.mu.Unlock()
		return r, nil
	}
	s.mu.Unlock()
	<-ctx.Done()
	return pipeline.Record{}, ctx.Err()
}

func (s *memSource) Commit(_ context.Context, recs []pipeline.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits = append(s.commits, recs...)
	return nil
}

func (s *memSource) committed() map[int]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int64{}
	for _, r := range s.commits {
		out[r.Partition] = max(out[r.Partition], r.Offset)
	}
	return out
}

// poisonSink refuses, permanently, any batch holding an event whose
// auditID/stage is in poison, and fails retryably while down is set: a fake of
// ClickHouse's classified errors.
type poisonSink struct {
	mu     sync.Mutex
	poison map[string]bool
	down   int // fail this many more writes retryably
	stored map[string]int
	writes int
}

func (s *poisonSink) Write(_ context.Context, b pipeline.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.down > 0 {
		s.down--
		return errors.New("connection refused")
	}
	for _, ev := range b.Events {
		if s.poison[string(ev.AuditID)+"/"+string(ev.Stage)] {
			return pipeline.Permanent(errors.New("code: 53, Type mismatch"))
		}
	}
	for _, ev := range b.Events {
		s.stored[string(ev.AuditID)+"/"+string(ev.Stage)]++
	}
	return nil
}

type memDLQ struct {
	mu   sync.Mutex
	dls  []pipeline.DeadLetter
	down int
}

func (d *memDLQ) WriteDeadLetters(_ context.Context, dls []pipeline.DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down > 0 {
		d.down--
		return errors.New("broker not available")
	}
	d.dls = append(d.dls, dls...)
	return nil
}

type noDetect struct{}

func (noDetect) Detect(_ *pipeline.Event, out []pipeline.Finding) []pipeline.Finding { return out }

// TestProcessorPoison runs a generated stream over two partitions with a
// malformed, a truncated, an oversized and a sink-rejected record in the
// middle: each is dead-lettered with its reason, every other event is
// stored exactly once, and both partitions are committed to their end.
func TestProcessorPoison(t *testing.T) {
	g := gen.New(gen.Config{Seed: 7, Cluster: "prod-eu-1"})
	var recs []pipeline.Record
	offs := map[int]int64{}
	want := map[string]bool{}
	add := func(part int, value []byte) {
		recs = append(recs, pipeline.Record{Message: pipeline.Message{Key: []byte("prod-eu-1/x"), Value: value}, Partition: part, Offset: offs[part]})
		offs[part]++
	}
	var rejectedID string
	for i := range 400 {
		ev := g.Next()
		add(i%2, ev.JSON)
		if i == 201 {
			rejectedID = ev.AuditID + "/" + string(ev.Stage)
			continue
		}
		want[ev.AuditID+"/"+string(ev.Stage)] = true
		switch i {
		case 100:
			add(0, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":`))
		case 150:
			add(1, []byte("\x00\x01not json"))
		case 300:
			add(0, append([]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"big","requestURI":"`), strings.Repeat("a", 70<<10)+`"}`...))
		}
	}
	src := &memSource{recs: recs}
	sink := &poisonSink{poison: map[string]bool{rejectedID: true}, stored: map[string]int{}, down: 2}
	dlq := &memDLQ{down: 1}
	reg := prometheus.NewPedanticRegistry()
	p, err := processor.New(processor.Config{
		BatchRecords: 128, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		MaxRecordBytes: 64 << 10, ExitWhenIdle: 200 * time.Millisecond,
	}, src, noDetect{}, sink, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	p.SetDeadLetters(dlq)
	if err := p.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}

	var reasons []string
	for _, dl := range dlq.dls {
		reasons = append(reasons, dl.Reason)
		if dl.Err == nil {
			t.Errorf("dead letter at %d/%d has no error", dl.Record.Partition, dl.Record.Offset)
		}
	}
	slices.Sort(reasons)
	if wantReasons := []string{"decode", "decode", "oversized", "rejected"}; !slices.Equal(reasons, wantReasons) {
		t.Errorf("dead-letter reasons = %v, want %v", reasons, wantReasons)
	}
	for k := range want {
		if sink.stored[k] != 1 {
			t.Errorf("event %s stored %d times, want 1", k, sink.stored[k])
		}
	}
	if len(sink.stored) != len(want) {
		t.Errorf("stored %d distinct events, want %d", len(sink.stored), len(want))
	}
	got := src.committed()
	for part, n := range offs {
		if got[part] != n-1 {
			t.Errorf("partition %d committed through %d, want %d", part, got[part], n-1)
		}
	}
	if v := counterSum(t, reg, processor.MetricDetectDLQ); v != 4 {
		t.Errorf("%s = %v, want 4", processor.MetricDetectDLQ, v)
	}
	if v := gaugeValue(t, reg, processor.MetricDetectPendingRecords); v != 0 {
		t.Errorf("%s = %v after draining, want 0", processor.MetricDetectPendingRecords, v)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func counterSum(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// execDetect fires on every exec it is shown: a stand-in for detectors.Suite.
type execDetect struct{}

func (execDetect) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	if ev.ObjectRef != nil && ev.ObjectRef.Subresource == "exec" && ev.IsAuthoritative() {
		out = append(out, pipeline.NewFinding("exec", ev, ""))
	}
	return out
}

// findingSink keeps every finding written.
type findingSink struct {
	mu       sync.Mutex
	findings []pipeline.Finding
	events   int
}

func (s *findingSink) Write(_ context.Context, b pipeline.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.findings = append(s.findings, b.Findings...)
	s.events += len(b.Events)
	return nil
}

// TestProcessorStages: an exec is judged once, from whichever of its
// authoritative stages arrives first, whether the cluster sends every
// stage, omits ResponseStarted, sends them out of order, or drops the
// stage member altogether; every event is stored either way.
func TestProcessorStages(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/events/exec-response-started.json")
	if err != nil {
		t.Fatal(err)
	}
	stage := func(s string) []byte {
		out := string(raw)
		switch s {
		case "":
			out = strings.Replace(out, `"stage":"ResponseStarted",`, "", 1)
		case "RequestReceived":
			out = strings.Replace(out, `"stage":"ResponseStarted"`, `"stage":"RequestReceived"`, 1)
			out = strings.Replace(out, `"responseStatus":{"metadata":{},"code":101},`, "", 1)
		default:
			out = strings.Replace(out, `"stage":"ResponseStarted"`, `"stage":"`+s+`"`, 1)
			out = strings.Replace(out, `"stageTimestamp":"2026-11-27T09:01:12.462980Z"`, `"stageTimestamp":"2026-11-27T09:14:40.118304Z"`, 1)
		}
		return []byte(out)
	}
	f := func(name string, stages []string, wantStage string, wantMetric map[string]float64) {
		t.Helper()
		var recs []pipeline.Record
		for i, s := range stages {
			recs = append(recs, pipeline.Record{Message: pipeline.Message{Key: []byte("prod/alice"), Value: stage(s)}, Offset: int64(i)})
		}
		sink := &findingSink{}
		reg := prometheus.NewPedanticRegistry()
		p, err := processor.New(processor.Config{BatchRecords: 2, ExitWhenIdle: 100 * time.Millisecond}, &memSource{recs: recs}, execDetect{}, sink, nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Run(context.Background()); err != nil {
			t.Fatalf("%s: Run: %v", name, err)
		}
		if len(sink.findings) != 1 || sink.findings[0].Stage != wantStage {
			t.Fatalf("%s: findings %+v, want one at %s", name, sink.findings, wantStage)
		}
		if sink.events != len(stages) {
			t.Errorf("%s: stored %d events, want %d", name, sink.events, len(stages))
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != processor.MetricDetectStageEvents {
				continue
			}
			for _, m := range mf.GetMetric() {
				var l []string
				for _, lp := range m.GetLabel() {
					l = append(l, lp.GetValue())
				}
				got[strings.Join(l, "/")] = m.GetCounter().GetValue()
			}
		}
		if !maps.Equal(got, wantMetric) {
			t.Errorf("%s: %s = %v, want %v", name, processor.MetricDetectStageEvents, got, wantMetric)
		}
	}
	f("every stage", []string{"RequestReceived", "ResponseStarted", "ResponseComplete"}, "ResponseStarted",
		map[string]float64{"RequestReceived/not_judged": 1, "ResponseStarted/judged": 1, "ResponseComplete/duplicate": 1})
	f("omitStages: [ResponseStarted]", []string{"RequestReceived", "ResponseComplete"}, "ResponseComplete",
		map[string]float64{"RequestReceived/not_judged": 1, "ResponseComplete/judged": 1})
	f("out of order", []string{"ResponseComplete", "RequestReceived", "ResponseStarted"}, "ResponseComplete",
		map[string]float64{"RequestReceived/not_judged": 1, "ResponseComplete/judged": 1, "ResponseStarted/duplicate": 1})
	f("panicked", []string{"RequestReceived", "Panic"}, "Panic",
		map[string]float64{"RequestReceived/not_judged": 1, "Panic/judged": 1})
	f("no stage", []string{""}, "ResponseComplete",
		map[string]float64{"none/judged": 1})
	f("redelivered", []string{"ResponseStarted", "ResponseStarted", "ResponseComplete", "ResponseComplete"}, "ResponseStarted",
		map[string]float64{"ResponseStarted/judged": 1, "ResponseStarted/duplicate": 1, "ResponseComplete/duplicate": 2})
}

// TestProcessorsShareRegistry runs two Processors registered on one
// registry (as two detect pipelines in one process would be): both build,
// and the shared series count both one's and the other's records.
func TestProcessorsShareRegistry(t *testing.T) {
	g := gen.New(gen.Config{Seed: 11, Cluster: "prod-eu-1"})
	reg := prometheus.NewPedanticRegistry()
	total := 0
	for n := range 2 {
		var recs []pipeline.Record
		for i := range 10 + n {
			recs = append(recs, pipeline.Record{Message: pipeline.Message{Key: []byte("prod-eu-1/x"), Value: g.Next().JSON}, Offset: int64(i)})
		}
		total += len(recs)
		p, err := processor.New(processor.Config{ExitWhenIdle: 100 * time.Millisecond},
			&memSource{recs: recs}, noDetect{}, &poisonSink{stored: map[string]int{}}, nil, reg)
		if err != nil {
			t.Fatalf("processor %d: %v", n, err)
		}
		if err := p.Run(context.Background()); err != nil {
			t.Fatalf("processor %d: Run: %v", n, err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == processor.MetricDetectRecords {
			got = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if got != float64(total) {
		t.Fatalf("%s = %v, want %d (both processors' records)", processor.MetricDetectRecords, got, total)
	}
}

// rebalancingSource holds its records back, as a Kafka member does while
// its group rebalances, until Backlog has been asked three times; Backlog
// counts the records not committed yet, failing once as a broker can.
type rebalancingSource struct {
	memSource
	release  chan struct{}
	asked    int
	released bool
}

func (s *rebalancingSource) Fetch(ctx context.Context) (pipeline.Record, error) {
	select {
	case <-s.release:
		return s.memSource.Fetch(ctx)
	case <-ctx.Done():
		return pipeline.Record{}, ctx.Err()
	}
}

func (s *rebalancingSource) Backlog(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	if s.asked == 2 {
		return 0, errors.New("coordinator not available")
	}
	if s.asked == 3 && !s.released {
		s.released = true
		close(s.release)
	}
	next := int64(0) // one partition, offsets 0..n-1
	for _, r := range s.commits {
		next = max(next, r.Offset+1)
	}
	return int64(len(s.recs)) - next, nil
}

// TestExitWhenIdleWaitsForBacklog: an idle spell while the group still has
// records (a rebalance after a member died) or while the backlog cannot be
// read is not the end of the input; Run exits only once everything is
// stored and committed.
func TestExitWhenIdleWaitsForBacklog(t *testing.T) {
	g := gen.New(gen.Config{Seed: 12, Cluster: "prod-eu-1"})
	var recs []pipeline.Record
	for i := range 20 {
		recs = append(recs, pipeline.Record{Message: pipeline.Message{Key: []byte("prod-eu-1/x"), Value: g.Next().JSON}, Offset: int64(i)})
	}
	src := &rebalancingSource{memSource: memSource{recs: recs}, release: make(chan struct{})}
	sink := &poisonSink{stored: map[string]int{}}
	p, err := processor.New(processor.Config{BatchRecords: 8, ExitWhenIdle: 50 * time.Millisecond}, src, noDetect{}, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only when its context ended, not for idleness")
	}
	if got := len(sink.stored); got != len(recs) {
		t.Errorf("stored %d events, want %d", got, len(recs))
	}
	if got := src.committed()[0]; got != int64(len(recs)-1) {
		t.Errorf("committed up to offset %d, want %d", got, len(recs)-1)
	}
	if src.asked < 4 {
		t.Errorf("Backlog asked %d times, want at least 4 (held back twice, one failure, then 0)", src.asked)
	}
}

// TestConfigValidate checks that every problem is reported at
// once, each under its key, and that the defaults are valid.
func TestConfigValidate(t *testing.T) {
	if err := (processor.Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c := processor.Config{}.WithDefaults()
	c.BatchRecords, c.ExitWhenIdle, c.Stages.DoneTTL, c.Workers = -1, -time.Second, -time.Second, 0
	err := c.Validate()
	if err == nil {
		t.Fatal("an invalid config passed")
	}
	for _, key := range []string{"batch_records", "exit_when_idle", "stages: done_ttl", "workers"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	if c := (processor.Config{}).WithDefaults(); c.Workers != runtime.GOMAXPROCS(0) {
		t.Errorf("default workers = %d, want GOMAXPROCS %d", c.Workers, runtime.GOMAXPROCS(0))
	}
	if _, err := processor.New(processor.Config{Workers: 1000}, &memSource{}, noDetect{}, &poisonSink{}, nil, nil); err == nil {
		t.Error("New accepted 1000 workers")
	}
	if _, err := processor.New(processor.Config{ExitWhenIdle: -time.Second}, &memSource{}, noDetect{}, &poisonSink{}, nil, nil); err == nil {
		t.Fatal("New accepted a negative exit_when_idle")
	}
}
