package ingest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/redact/redacttest"
	"github.com/auditpipe/auditpipe/internal/spool"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// secretEvents returns audit events that carry credentials the way real
// apiserver output does, and the secret strings none of which may leave
// ingest: raw JWTs, Secret values (plain and base64) and their
// last-applied-configuration copies.
func secretEvents(t *testing.T) (items []string, secrets []string) {
	t.Helper()
	key := redacttest.RSAKey(t)
	now := time.Date(2026, 11, 27, 9, 15, 0, 0, time.UTC)
	reviewed := key.Token(t, redacttest.PodClaims(now))
	minted := key.Token(t, redacttest.TokenRequestClaims(now, time.Hour))
	planted := redacttest.Unsigned(t, redacttest.LegacyClaims())
	password := "hunter2-correct-horse-battery"
	apiKey := "sk_live_51HcQm2eZvKYlo2C0a9f8e7d6"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	// The first five appear verbatim in what the apiserver sends; the rest
	// are decoded forms that must not appear either.
	secrets = []string{reviewed, minted, apiKey, b64(password), b64(planted), planted, password, b64(apiKey)}

	const meta = `"sourceIPs":["10.0.4.7"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46","requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.131987Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}`
	tokenReview := fmt.Sprintf(`{"level":"Request","auditID":"a1b2c3d4-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/apis/authentication.k8s.io/v1/tokenreviews","verb":"create","user":{"username":"system:serviceaccount:kube-system:metrics-server","groups":["system:serviceaccounts","system:authenticated"]},"objectRef":{"resource":"tokenreviews","apiGroup":"authentication.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":%q}},%s}`, reviewed, meta)
	tokenRequest := fmt.Sprintf(`{"level":"RequestResponse","auditID":"a1b2c3d4-0000-4000-8000-000000000002","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/serviceaccounts/payments-api/token","verb":"create","user":{"username":"alice@example.com","groups":["system:authenticated"]},"objectRef":{"resource":"serviceaccounts","namespace":"payments","name":"payments-api","apiVersion":"v1","subresource":"token"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600}},"responseObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600},"status":{"token":%q,"expirationTimestamp":"2026-11-27T10:15:01Z"}},%s}`, minted, meta)
	lastApplied := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"payments-db","namespace":"payments"},"stringData":{"api-key":%q},"data":{"password":%q,"token":%q}}`, apiKey, b64(password), b64(planted))
	secretBody := fmt.Sprintf(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":"payments-db","namespace":"payments","annotations":{"kubectl.kubernetes.io/last-applied-configuration":%q}},"type":"Opaque","stringData":{"api-key":%q},"data":{"password":%q,"token":%q}}`, lastApplied, apiKey, b64(password), b64(planted))
	secretCreate := fmt.Sprintf(`{"level":"RequestResponse","auditID":"a1b2c3d4-0000-4000-8000-000000000003","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/secrets?fieldManager=kubectl-client-side-apply","verb":"create","user":{"username":"alice@example.com","groups":["system:authenticated"]},"objectRef":{"resource":"secrets","namespace":"payments","name":"payments-db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":%s,"responseObject":%s,%s}`, secretBody, secretBody, meta)
	return []string{tokenReview, tokenRequest, secretCreate}, secrets
}

// assertNoSecret fails when any secret appears in data.
func assertNoSecret(t *testing.T, where string, data []byte, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("a secret value (%d bytes, starting %.6q) reached %s", len(s), s, where)
		}
	}
	if credential.ContainsJWT(data) {
		t.Errorf("something JWT-shaped reached %s", where)
	}
}

// TestNoSecretLeavesIngest sends events carrying tokens and Secret values
// through the webhook into the spool and into Kafka, with debug logging, and
// finds none of the secret strings in what was written or logged.
func TestNoSecretLeavesIngest(t *testing.T) {
	items, secrets := secretEvents(t)
	// The control: the secrets really are in what the apiserver sent.
	body := eventList(items...)
	for _, s := range secrets[:5] {
		if !strings.Contains(body, s) {
			t.Fatalf("fixture lacks secret %.6q", s)
		}
	}
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	send := func(t *testing.T, prod pipeline.Producer, logs *bytes.Buffer) {
		t.Helper()
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		h, err := New(Config{}, prod, red, nil, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		code, resp, _ := post(t, srv.URL+"/audit/prod-eu1", body)
		if code != http.StatusOK || resp.Accepted != len(items) {
			t.Fatalf("got %d %+v", code, resp)
		}
		// A malformed item makes the handler log; its error must not
		// quote a secret either.
		post(t, srv.URL+"/audit/prod-eu1", eventList(items[0], `{"verb":7,"requestObject":{"spec":{"token":"`+secrets[0]+`"}}}`))
	}

	t.Run("spool", func(t *testing.T) {
		dir := t.TempDir()
		w, err := spool.NewWriter(spool.WriterConfig{Dir: dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		send(t, w, &logs)
		w.Close()
		segs, _ := filepath.Glob(filepath.Join(dir, "segment-*"))
		var all []byte
		for _, s := range segs {
			data, err := os.ReadFile(s)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, data...)
		}
		if n := bytes.Count(all, []byte("\n")); n < len(items) {
			t.Fatalf("spool holds %d lines, want at least %d", n, len(items))
		}
		assertNoSecret(t, "the spool", all, secrets)
		assertNoSecret(t, "the logs", logs.Bytes(), secrets)
	})

	t.Run("kafka", func(t *testing.T) {
		kc := kafkatest.Start(t, "audit-events", 2)
		prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: kc.Brokers, Topic: kc.Topic}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		var logs bytes.Buffer
		send(t, prod, &logs)
		cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: kc.Brokers, Topic: kc.Topic, GroupID: "secrets-test"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// The first post's events (the second's well-formed item is the
		// same event again, which the dedup window holds back).
		for i := 0; i < len(items); i++ {
			rec, err := cons.Fetch(ctx)
			if err != nil {
				t.Fatalf("fetching message %d: %v", i, err)
			}
			assertNoSecret(t, "Kafka (value)", rec.Value, secrets)
			assertNoSecret(t, "Kafka (key)", rec.Key, secrets)
		}
		assertNoSecret(t, "the logs", logs.Bytes(), secrets)
	})
}
