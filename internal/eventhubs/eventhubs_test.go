package eventhubs_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/auditpipe/auditpipe/internal/cloud/aks"
	"github.com/auditpipe/auditpipe/internal/eventhubs"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// TestForwardsAKSEvents sends the hub an AKS diagnostic message (seven audit
// events of kube-audit and kube-audit-admin, one kube-apiserver line), a
// message that is not JSON, one that is JSON of another shape, and an event
// whose bodies Azure replaced by "skipped-too-big-size-object": the eight
// events reach auditpipe's topic keyed and annotated with the cluster's
// resource ID, the poison messages are skipped, and every offset of the hub
// is committed.
func TestForwardsAKSEvents(t *testing.T) {
	verifyNoLeaks(t)
	h := startHub(t, 2)
	out := kafkatest.Start(t, "audit-events", 3)
	// Azure Monitor replaces a body too large for it by a string; the
	// event must still go through.
	skipped := `{"records":[{"category":"kube-audit","resourceId":"` + resourceID + `","properties":{"log":"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"RequestResponse\",\"auditID\":\"9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/namespaces/payments/configmaps\",\"verb\":\"create\",\"user\":{\"username\":\"alice@example.com\",\"groups\":[\"system:authenticated\"]},\"sourceIPs\":[\"192.168.50.23\"],\"objectRef\":{\"resource\":\"configmaps\",\"namespace\":\"payments\",\"apiVersion\":\"v1\"},\"responseStatus\":{\"metadata\":{},\"code\":201},\"requestObject\":\"skipped-too-big-size-object\",\"responseObject\":\"skipped-too-big-size-object\",\"requestReceivedTimestamp\":\"2026-12-04T08:00:00.000000Z\",\"stageTimestamp\":\"2026-12-04T08:00:00.100000Z\"}\n"}}]}`
	h.send(t, fixture(t), []byte("\x00\x01 not json at all"), []byte(`{"kind":"Event","auditID":"x"}`), []byte(skipped))

	reg := prometheus.NewRegistry()
	p := startPipeReg(t, h, out, "auditpipe-ingest", reg)
	want := append(fixtureAuditIDs(t), "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a/ResponseComplete")
	sort.Strings(want)
	got := readTopic(t, out, len(want))
	waitFor(t, "every hub offset committed", func() bool { return h.committedAll(t, "auditpipe-ingest") })
	if err := p.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	var ids []string
	for _, ev := range got.events {
		ids = append(ids, string(ev.AuditID)+"/"+string(ev.Stage))
		if ev.Cluster != testCluser {
			t.Errorf("%s: cluster %q", ev.AuditID, ev.Cluster)
		}
		if ev.Annotations[aks.AnnotationResourceID] != resourceID {
			t.Errorf("%s: resource ID annotation %q", ev.AuditID, ev.Annotations[aks.AnnotationResourceID])
		}
	}
	sort.Strings(ids)
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("produced\n%v\nwant\n%v", ids, want)
	}
	for result, n := range map[string]float64{"ok": 2, "malformed": 2} {
		if got := testutil.ToFloat64(counter(t, reg, eventhubs.MetricMessages, "result", result)); got != n {
			t.Errorf("messages{result=%s} = %v, want %v", result, got, n)
		}
	}
	for result, n := range map[string]float64{"audit": 8, "other_category": 1} {
		if got := testutil.ToFloat64(counter(t, reg, eventhubs.MetricRecords, "result", result)); got != n {
			t.Errorf("records{result=%s} = %v, want %v", result, got, n)
		}
	}
}

// TestWrongPassword: a connection string the hub refuses ends Run with an
// error saying so, promptly (the hang guard is the only clock), and the
// error does not carry the connection string.
func TestWrongPassword(t *testing.T) {
	verifyNoLeaks(t)
	h := startHub(t, 1)
	out := kafkatest.Start(t, "audit-events", 1)
	wrong := eventhubs.ConnectionString(strings.Replace(connString, "SharedAccessKey=q3V", "SharedAccessKey=XXX", 1))
	p := startPipeConn(t, h, out, "auditpipe-ingest", wrong)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(testTimeout):
		t.Fatal("Run kept going with a refused password")
	}
	p.cancel()
	p.cancel = nil
	_ = p.src.Close()
	_ = p.prod.Close()
	if err == nil || !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "SASL") {
		t.Fatalf("Run = %v, want a permanent SASL authentication error", err)
	}
	if strings.Contains(err.Error(), "SharedAccessKey") {
		t.Fatalf("the error carries the connection string: %v", err)
	}
}

// TestUntrustedCertificate: a hub whose certificate the configured CA does
// not sign is refused for good, not retried forever.
func TestUntrustedCertificate(t *testing.T) {
	verifyNoLeaks(t)
	h := startHub(t, 1)
	other := startHub(t, 1)
	h.caFile = other.caFile // trust another CA
	out := kafkatest.Start(t, "audit-events", 1)
	p := startPipeConn(t, h, out, "auditpipe-ingest", connString)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(testTimeout):
		t.Fatal("Run kept going against an untrusted certificate")
	}
	p.cancel()
	p.cancel = nil
	_ = p.src.Close()
	_ = p.prod.Close()
	if err == nil || !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Run = %v, want a permanent certificate error", err)
	}
}

// TestKafkaDownThenRestart: with auditpipe's Kafka down nothing is
// committed on the hub; once it is back every event arrives, and a second
// ingest instance (a restart) resumes from the committed offsets without
// producing the first round again. No (auditID, stage) is lost, and none
// is produced twice.
func TestKafkaDownThenRestart(t *testing.T) {
	verifyNoLeaks(t)
	h := startHub(t, 2)
	out := kafkatest.Start(t, "audit-events", 3, kafkatest.WithOutages())
	const group = "auditpipe-ingest"
	round1, ids1 := generated(t, 0, 20, 25)

	out.Stop()
	reg := prometheus.NewRegistry()
	p := startPipeReg(t, h, out, group, reg)
	h.send(t, round1...)
	retries := counter(t, reg, eventhubs.MetricRetries)
	waitFor(t, "the forwarder retrying against the stopped Kafka", func() bool { return testutil.ToFloat64(retries) >= 2 })
	if h.committedAny(t, group) {
		t.Fatal("hub offsets committed while auditpipe's Kafka was down")
	}
	out.Restart()
	got1 := readTopic(t, out, len(ids1))
	waitFor(t, "round 1 committed", func() bool { return h.committedAll(t, group) })
	if err := p.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Restart: a new instance, with a dedup window of its own, must start
	// after round 1, not at the beginning of the hub.
	round2, ids2 := generated(t, len(ids1), 8, 25)
	h.send(t, round2...)
	p2 := startPipeConn(t, h, out, group, connString)
	all := append(append([]string(nil), ids1...), ids2...)
	got := readTopic(t, out, len(all))
	waitFor(t, "round 2 committed", func() bool { return h.committedAll(t, group) })
	if err := p2.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, id := range all {
		if got.raw[id] == 0 {
			t.Errorf("event %s lost", id)
		}
	}
	if len(got.raw) != len(all) {
		t.Errorf("%d distinct events on the topic, want %d", len(got.raw), len(all))
	}
	// Copies beyond the first come only from a produce that was cut off
	// half acknowledged; the restart itself must add none.
	for _, id := range ids1 {
		if got.raw[id] != got1.raw[id] {
			t.Errorf("event %s of round 1 produced again after the restart (%d copies, %d before)", id, got.raw[id], got1.raw[id])
		}
	}
	t.Logf("%d events, %d copies beyond the first on the raw topic (collapsed by (auditID, stage) downstream)", len(all), got.duplicates())
}

// TestSameFindingsAsWebhook sends the fixture's events once through the
// webhook (an EventList POSTed to the handler) and once through the hub:
// the built-in detectors find the same findings on both topics.
func TestSameFindingsAsWebhook(t *testing.T) {
	verifyNoLeaks(t)
	viaHub, viaWebhook := findingsOfBothPaths(t)
	if len(viaHub) == 0 {
		t.Fatal("no findings at all: the comparison would prove nothing")
	}
	if strings.Join(viaHub, "\n") != strings.Join(viaWebhook, "\n") {
		t.Fatalf("findings differ\nvia event hubs:\n%s\nvia the webhook:\n%s", strings.Join(viaHub, "\n"), strings.Join(viaWebhook, "\n"))
	}
	t.Logf("%d findings on both paths", len(viaHub))
}

// TestConfigValidate names each mistake.
func TestConfigValidate(t *testing.T) {
	f := func(cfg eventhubs.Config, want string) {
		t.Helper()
		err := cfg.Validate()
		if want == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v", cfg, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want it to mention %q", cfg, err, want)
		}
	}
	f(eventhubs.Config{Cluster: "prod-eu1"}, "")
	f(eventhubs.Config{}, "no cluster")
	f(eventhubs.Config{Cluster: "prod eu1"}, "invalid cluster name")
	f(eventhubs.Config{Clusters: map[string]string{"/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/managedClusters/a": "a"}}, "")
	f(eventhubs.Config{Clusters: map[string]string{"/subscriptions/s/storageAccounts/a": "a"}}, "not an AKS resource ID")
	f(eventhubs.Config{Clusters: map[string]string{
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/managedClusters/a": "a",
		"/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/A": "b"}}, "same resource ID")
	f(eventhubs.Config{Cluster: "c", RetryMin: time.Minute, RetryMax: time.Second}, "retry-min")
	f(eventhubs.Config{Cluster: "c", MaxBatchMessages: -1}, "max-batch-messages")
}

func TestConnectionString(t *testing.T) {
	host, hub, err := eventhubs.ConnectionString(connString).Parse()
	if err != nil || host != "auditpipe-test.servicebus.windows.net" || hub != hubName {
		t.Fatalf("Parse = %q, %q, %v", host, hub, err)
	}
	for _, bad := range []string{"", "SharedAccessKey=abc", "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=n", "Endpoint=::;SharedAccessKey=k"} {
		_, _, err := eventhubs.ConnectionString(bad).Parse()
		if err == nil {
			t.Errorf("Parse(%q): no error", bad)
			continue
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("Parse error quotes the string: %v", err)
		}
	}
	s := eventhubs.ConnectionString(connString)
	for _, formatted := range []string{s.String(), s.GoString()} {
		if strings.Contains(formatted, "SharedAccessKey") {
			t.Errorf("formatting shows the key: %s", formatted)
		}
	}
	cfg := eventhubs.SourceConfig{ConnectionString: s}.WithDefaults()
	if cfg.Bootstrap != "auditpipe-test.servicebus.windows.net:9093" || cfg.EventHub != hubName {
		t.Errorf("defaults from the connection string: %q %q", cfg.Bootstrap, cfg.EventHub)
	}
}

// TestPermanentProduceErrorSkips: a batch the producer can never take is
// dropped and counted rather than retried forever, and the hub moves on.
func TestPermanentProduceErrorSkips(t *testing.T) {
	verifyNoLeaks(t)
	src := &memSource{recs: []pipeline.Record{{Partition: 0, Offset: 0, Message: pipeline.Message{Value: fixture(t)}}}}
	ing := ingestFunc(func(ctx context.Context, cluster string, items [][]byte) (ingest.Result, error) {
		return ingest.Result{}, pipeline.Permanent(errors.New("message too large"))
	})
	reg := prometheus.NewRegistry()
	fwd, err := eventhubs.New(eventhubs.Config{Cluster: testCluser}, src, ing, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	src.onEmpty = cancel
	if err := fwd.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(src.committed) != 1 || src.committed[0].Offset != 0 {
		t.Fatalf("committed %v, want offset 0", src.committed)
	}
	if got := testutil.ToFloat64(counter(t, reg, eventhubs.MetricDropped)); got != 7 {
		t.Fatalf("dropped %v events, want 7", got)
	}
}
