package eventhubs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"

	"github.com/auditpipe/auditpipe/internal/cloud/aks"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// findingsOfBothPaths delivers the fixture's audit events through the hub
// and, as an EventList, through the webhook handler, each to a topic of its
// own, and returns the findings of the built-in detectors and default rules
// on each topic, one line per finding.
func findingsOfBothPaths(t *testing.T) (viaHub, viaWebhook []string) {
	t.Helper()
	want := fixtureAuditIDs(t)

	// Through Event Hubs.
	h := startHub(t, 2)
	outHub := kafkatest.Start(t, "audit-events-hub", 3)
	h.send(t, fixture(t))
	p := startPipeReg(t, h, outHub, "auditpipe-ingest", nil)
	hubEvents := readTopic(t, outHub, len(want))
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}

	// Through the webhook: the same events as the apiserver's webhook
	// backend would POST them.
	recs, err := aks.Decode(fixture(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var items []json.RawMessage
	for _, r := range recs {
		if r.IsAudit() {
			items = append(items, json.RawMessage(r.Log))
		}
	}
	body, err := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": map[string]any{}, "items": items})
	if err != nil {
		t.Fatal(err)
	}
	outHook := kafkatest.Start(t, "audit-events-webhook", 3)
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: outHook.Brokers, Topic: outHook.Topic}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	handler, err := ingest.New(ingest.Config{DefaultCluster: testCluser}, prod, red, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	resp, err := http.Post(srv.URL+"/audit", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}
	hookEvents := readTopic(t, outHook, len(want))
	return findings(t, hubEvents.events), findings(t, hookEvents.events)
}

// findings runs a fresh detector set over events in a fixed order (the
// topics' partition interleaving differs between runs).
func findings(t *testing.T, events []pipeline.Event) []string {
	t.Helper()
	sort.Slice(events, func(i, j int) bool {
		a, b := &events[i], &events[j]
		if !a.StageTimestamp.Equal(&b.StageTimestamp) {
			return a.StageTimestamp.Before(&b.StageTimestamp)
		}
		return string(a.AuditID)+string(a.Stage) < string(b.AuditID)+string(b.Stage)
	})
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var fs []pipeline.Finding
	for i := range events {
		fs = set.Detect(&events[i], fs[:0])
		for _, f := range fs {
			out = append(out, fmt.Sprintf("%s %s %s %s %s: %s", f.ID, f.Detector, f.Severity, f.AuditID, f.Stage, f.Summary))
		}
	}
	sort.Strings(out)
	return out
}
