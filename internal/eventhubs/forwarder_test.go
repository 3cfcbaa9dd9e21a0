package eventhubs_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/auditpipe/auditpipe/internal/eventhubs"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// captureProducer keeps what the handler produces.
type captureProducer struct {
	mu   sync.Mutex
	msgs []pipeline.Message
}

func (p *captureProducer) Produce(_ context.Context, msgs []pipeline.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		m.Value = bytes.Clone(m.Value)
		p.msgs = append(p.msgs, m)
	}
	return nil
}

// TestHostileMessages runs one batch of messages a hub should never carry
// but an attacker-influenced log might: one above max-message-bytes, one
// nested past the scanner's depth bound, records of a cluster the map does
// not name, and an audit record whose log is not an event. Each is counted
// under its own result, nothing stalls, and the good event between them is
// produced under the mapped cluster; the whole batch is committed.
func TestHostileMessages(t *testing.T) {
	verifyNoLeaks(t)
	known := "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/managedClusters/prod-eu1"
	good := `{"records":[{"category":"kube-audit","resourceId":"` + strings.ToUpper(known) + `","properties":{"log":"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"Metadata\",\"auditID\":\"a1\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/namespaces/payments/pods\",\"verb\":\"list\",\"user\":{\"username\":\"alice@example.com\"},\"sourceIPs\":[\"192.168.50.23\"],\"requestReceivedTimestamp\":\"2026-12-04T08:00:00.000000Z\",\"stageTimestamp\":\"2026-12-04T08:00:00.010000Z\"}\n"}},` +
		`{"category":"kube-audit","resourceId":"/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/managedClusters/someone-else","properties":{"log":"{}"}},` +
		`{"category":"kube-audit-admin","resourceId":"` + known + `","properties":{"log":"I1204 08:00:00.000000 1 not an event"}}]}`
	huge := `{"records":[{"category":"kube-audit","properties":{"log":"` + strings.Repeat("x", 2<<20) + `"}}]}`
	deep := `{"records":[{"properties":{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}]}`
	src := &memSource{recs: []pipeline.Record{
		{Partition: 0, Offset: 10, Message: pipeline.Message{Value: []byte(huge)}},
		{Partition: 1, Offset: 20, Message: pipeline.Message{Value: []byte(deep)}},
		{Partition: 0, Offset: 11, Message: pipeline.Message{Value: []byte(good)}},
	}}
	prod := &captureProducer{}
	h, err := ingest.New(ingest.Config{DefaultCluster: "default"}, prod, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	fwd, err := eventhubs.New(eventhubs.Config{Clusters: map[string]string{known: "prod-eu1"}, MaxMessageBytes: 1 << 20}, src, h, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	src.onEmpty = cancel
	if err := fwd.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(prod.msgs) != 1 || prod.msgs[0].Cluster != "prod-eu1" || !bytes.Contains(prod.msgs[0].Value, []byte(`"auditID":"a1"`)) {
		t.Fatalf("produced %d messages: %+v", len(prod.msgs), prod.msgs)
	}
	var offs []int64
	for _, r := range src.committed {
		offs = append(offs, r.Offset)
	}
	if len(offs) != 3 {
		t.Fatalf("committed offsets %v, want the whole batch", offs)
	}
	for metric, want := range map[string]float64{
		eventhubs.MetricMessages + "/too_large":      1,
		eventhubs.MetricMessages + "/malformed":      1,
		eventhubs.MetricMessages + "/ok":             1,
		eventhubs.MetricRecords + "/audit":           2,
		eventhubs.MetricRecords + "/unknown_cluster": 1,
		eventhubs.MetricRejected + "/malformed":      1,
	} {
		name, value, _ := strings.Cut(metric, "/")
		label := "result"
		if name == eventhubs.MetricRejected {
			label = "reason"
		}
		if got := testutil.ToFloat64(counter(t, reg, name, label, value)); got != want {
			t.Errorf("%s{%s=%q} = %v, want %v", name, label, value, got, want)
		}
	}
}
