package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/cloud/aks"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// syncBuffer is a log destination the test reads while ingest writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEventHubsCommand runs `ingest eventhubs` against a plain Kafka
// standing in for the hub (--plaintext; TLS and SASL are covered by
// internal/eventhubs): the AKS fixture's seven audit events reach
// auditpipe's topic under the mapped cluster, and the command stops cleanly
// on its context.
func TestEventHubsCommand(t *testing.T) {
	hub := kafkatest.Start(t, "insights-logs-kube-audit", 2)
	out := kafkatest.Start(t, "audit-events", 3)
	body, err := os.ReadFile("../../internal/cloud/aks/testdata/eventhubs-message.json")
	if err != nil {
		t.Fatal(err)
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(hub.Brokers...), Topic: hub.Topic, RequiredAcks: kafkago.RequireAll, Transport: &kafkago.Transport{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, kafkago.Message{Value: body}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w.Transport.(*kafkago.Transport).CloseIdleConnections()

	dir := t.TempDir()
	mapFile := filepath.Join(dir, "clusters.yaml")
	os.WriteFile(mapFile, []byte("clusters:\n  - resource_id: /subscriptions/6f1c2b7a-0d4e-4c8b-9a51-2e7f3d8c4b10/resourceGroups/prod-eu1-rg/providers/Microsoft.ContainerService/managedClusters/prod-eu1\n    cluster: aks-prod-eu1\n"), 0o600)
	var logs syncBuffer
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- eventHubs(runCtx, []string{
			"--plaintext", "--bootstrap", hub.Brokers[0], "--event-hub", hub.Topic,
			"--cluster-map-file", mapFile,
			"--kafka-brokers", strings.Join(out.Brokers, ","), "--topic", out.Topic,
			"--metrics-listen", "", "--batch-wait", "20ms",
		}, &logs)
	}()

	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: out.Brokers, Topic: out.Topic, GroupID: "verify"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var got []pipeline.Record
	for len(got) < 7 {
		rec, err := cons.Fetch(ctx)
		if err != nil {
			stop()
			t.Fatalf("fetching event %d: %v\n%s", len(got)+1, err, logs.String())
		}
		got = append(got, rec)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("eventhubs: %v\n%s", err, logs.String())
	}
	for _, rec := range got {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, rec.Cluster, rec.Value); err != nil {
			t.Fatal(err)
		}
		if rec.Cluster != "aks-prod-eu1" || !strings.HasPrefix(string(rec.Key), "aks-prod-eu1/") {
			t.Errorf("cluster %q key %q", rec.Cluster, rec.Key)
		}
		if !strings.HasSuffix(ev.Annotations[aks.AnnotationResourceID], "/MANAGEDCLUSTERS/PROD-EU1") {
			t.Errorf("annotations %v", ev.Annotations)
		}
	}
}

// TestEventHubsFlags: each mistake is named before anything is opened, and
// the connection string never appears in the output.
func TestEventHubsFlags(t *testing.T) {
	dir := t.TempDir()
	secret := "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0LWtleS1kby1ub3QtbG9n;EntityPath=hub"
	good := filepath.Join(dir, "conn")
	os.WriteFile(good, []byte(secret+"\n"), 0o600)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("SharedAccessKey=c2VjcmV0LWtleS1kby1ub3QtbG9n"), 0o600)
	f := func(want string, args ...string) {
		t.Helper()
		var logs syncBuffer
		err := eventHubs(context.Background(), args, &logs)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("eventhubs %v = %v, want it to mention %q", args, err, want)
		}
		if err != nil && strings.Contains(err.Error()+logs.String(), "c2VjcmV0") {
			t.Errorf("eventhubs %v printed the connection string: %v\n%s", args, err, logs.String())
		}
	}
	f("--connection-string-file is required", "--cluster", "c", "--event-hub", "h", "--bootstrap", "x:9093")
	f("no cluster", "--connection-string-file", good)
	f("Endpoint", "--connection-string-file", bad, "--cluster", "c")
	f("invalid cluster name", "--connection-string-file", good, "--cluster", "a b")
	f("no event hub", "--plaintext", "--bootstrap", "127.0.0.1:1", "--cluster", "c")
	f("unexpected arguments", "--connection-string-file", good, "--cluster", "c", "extra")
}
