package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/clickhouse"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// TestReadyz checks detect's readiness against a real ClickHouse and a
// Kafka-protocol broker: ready while both answer, not ready naming the one
// that stopped, ready again once it is back.
func TestReadyz(t *testing.T) {
	srv := chtest.Start(t)
	kc := kafkatest.Start(t, "audit-events", 1, kafkatest.WithOutages())
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: kc.Brokers, Topic: kc.Topic, GroupID: "readyz"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	store, err := clickhouse.New(context.Background(), clickhouse.Config{DSN: srv.DSN, Database: srv.NewDatabase(t)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ts := httptest.NewServer(readyHandler([]readyCheck{{"kafka", cons.Ping}, {"clickhouse", store.Ping}}))
	defer ts.Close()

	f := func(step string, wantCode int, wantBody string) {
		t.Helper()
		resp, err := http.Get(ts.URL)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantCode || !strings.HasPrefix(string(body), wantBody) {
			t.Fatalf("%s: %d %q, want %d %q…", step, resp.StatusCode, body, wantCode, wantBody)
		}
	}
	f("both up", http.StatusOK, "ok")
	kc.Stop()
	f("kafka down", http.StatusServiceUnavailable, "kafka unreachable")
	kc.Restart()
	f("kafka back", http.StatusOK, "ok")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	f("clickhouse down", http.StatusServiceUnavailable, "clickhouse unreachable")
}

// TestReadyzEmbedded: with no checks (spool mode) detect is always ready.
func TestReadyzEmbedded(t *testing.T) {
	rec := httptest.NewRecorder()
	readyHandler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("embedded /readyz: %d %s", rec.Code, rec.Body)
	}
}
