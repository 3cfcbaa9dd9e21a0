package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/auditsend"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// memProducer records what was produced; it is the acknowledging end of the
// transport, standing in for Kafka where the test is about HTTP behaviour.
type memProducer struct {
	mu   sync.Mutex
	msgs []pipeline.Message
	err  error
}

func (p *memProducer) Produce(_ context.Context, msgs []pipeline.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *memProducer) snapshot() []pipeline.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pipeline.Message(nil), p.msgs...)
}

// item is one webhook EventList item as the apiserver writes it: no kind or
// apiVersion, microsecond timestamps.
func item(i int, user string, extra string) string {
	return fmt.Sprintf(`{"level":"Metadata","auditID":"6c1b6f4e-0000-4000-8000-%012d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/configmaps/app-config","verb":"get","user":{"username":%q,"groups":["system:serviceaccounts","system:authenticated"]%s},"sourceIPs":["10.244.1.17"],"userAgent":"payments-api/v1.4.2 (linux/amd64) kubernetes/v1.31.2","objectRef":{"resource":"configmaps","namespace":"payments","name":"app-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.125981Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"payments-read/payments\" of Role \"config-reader\" to ServiceAccount \"payments-api/payments\""}}`, i, user, extra)
}

func eventList(items ...string) string {
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

func newTestServer(t *testing.T, prod pipeline.Producer) *httptest.Server {
	t.Helper()
	h, err := New(Config{DefaultCluster: "fallback", MaxBodyBytes: 1 << 20}, prod, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string, header ...string) (int, Response, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Response
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r, resp.Header
}

const boundTokenExtra = `,"uid":"b6c3a2d4-1111-4222-8333-444455556666","extra":{"authentication.kubernetes.io/credential-id":["JTI=7f3e2a10-5b9c-4d8e-9f01-23456789abcd"],"authentication.kubernetes.io/node-name":["node-a-1"],"authentication.kubernetes.io/pod-name":["payments-api-7d9f8b6c5-x2x9q"],"authentication.kubernetes.io/pod-uid":["0e0f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"]}`

func TestIngestSplitsBatchIntoKeyedMessages(t *testing.T) {
	prod := &memProducer{}
	srv := newTestServer(t, prod)

	code, resp, _ := post(t, srv.URL+"/audit/prod-eu1", eventList(
		item(1, "system:serviceaccount:payments:payments-api", boundTokenExtra),
		item(2, "alice@example.com", ""),
	))
	if code != http.StatusOK || resp.Accepted != 2 {
		t.Fatalf("got %d %+v, want 200 with 2 accepted", code, resp)
	}
	msgs := prod.snapshot()
	wantKeys := []string{"prod-eu1/JTI=7f3e2a10-5b9c-4d8e-9f01-23456789abcd", "prod-eu1/alice@example.com"}
	for i, m := range msgs {
		if string(m.Key) != wantKeys[i] || m.Cluster != "prod-eu1" {
			t.Errorf("message %d: key %q cluster %q, want key %q", i, m.Key, m.Cluster, wantKeys[i])
		}
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, m.Cluster, m.Value); err != nil {
			t.Errorf("message %d does not decode: %v", i, err)
		}
	}

	// Without a cluster in the path the configured default applies.
	if code, _, _ := post(t, srv.URL+"/audit", eventList(item(3, "bob", ""))); code != http.StatusOK {
		t.Fatalf("POST /audit: %d", code)
	}
	if got := prod.snapshot()[2]; got.Cluster != "fallback" || string(got.Key) != "fallback/bob" {
		t.Fatalf("default cluster: got %q key %q", got.Cluster, got.Key)
	}
}

func TestIngestFailedAuthenticationKeyedBySourceIP(t *testing.T) {
	prod := &memProducer{}
	srv := newTestServer(t, prod)
	failed := `{"level":"Metadata","auditID":"0d4c9b8a-7f6e-4d5c-8b4a-392817160504","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/kube-system/secrets","verb":"list","user":{},"sourceIPs":["203.0.113.45"],"userAgent":"curl/8.5.0","responseStatus":{"metadata":{},"status":"Failure","message":"Authentication failed, no credentials provided","reason":"Unauthorized","code":401},"requestReceivedTimestamp":"2026-11-27T09:16:00.000001Z","stageTimestamp":"2026-11-27T09:16:00.000311Z"}`
	if code, _, _ := post(t, srv.URL+"/audit/prod-eu1", eventList(failed)); code != http.StatusOK {
		t.Fatalf("got %d", code)
	}
	if k := string(prod.snapshot()[0].Key); k != "prod-eu1/203.0.113.45" {
		t.Fatalf("key %q", k)
	}
}

func TestIngestBadInput(t *testing.T) {
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	// A gzip body that inflates far past the 1 MiB limit.
	bomb := gz(`{"kind":"EventList","items":[` + strings.Repeat(" ", 8<<20) + `]}`)

	f := func(name, path, body string, wantCode, wantAccepted int, wantErr string, header ...string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			prod := &memProducer{}
			srv := newTestServer(t, prod)
			code, resp, _ := post(t, srv.URL+path, body, header...)
			if code != wantCode {
				t.Fatalf("code %d, want %d (%+v)", code, wantCode, resp)
			}
			if resp.Accepted != wantAccepted || len(prod.snapshot()) != wantAccepted {
				t.Fatalf("accepted %d, produced %d, want %d", resp.Accepted, len(prod.snapshot()), wantAccepted)
			}
			if !strings.Contains(resp.Error, wantErr) {
				t.Fatalf("error %q does not contain %q", resp.Error, wantErr)
			}
		})
	}
	f("not json", "/audit", "hello", 400, 0, "not a JSON object")
	f("truncated json", "/audit", `{"kind":"EventList","items":[{"verb":`, 400, 0, "decoding event list")
	f("wrong apiVersion", "/audit", `{"kind":"EventList","apiVersion":"audit.k8s.io/v2","items":[]}`, 400, 0, `"audit.k8s.io/v2"`)
	f("wrong kind", "/audit", `{"kind":"PodList","apiVersion":"audit.k8s.io/v1","items":[]}`, 400, 0, `"PodList"`)
	f("empty list", "/audit", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}`, 200, 0, "")
	f("malformed item in the middle", "/audit/c1", eventList(item(1, "a", ""), `{"verb":"get","stageTimestamp":"yesterday"}`, item(3, "b", "")), 400, 2, "1 of 3 events rejected")
	f("item of the wrong kind", "/audit/c1", eventList(item(1, "a", ""), `{"kind":"Pod","apiVersion":"v1"}`), 400, 1, "1 of 2")
	f("invalid cluster in path", "/audit/bad%20name", eventList(item(1, "a", "")), 400, 0, "invalid cluster name")
	f("gzip body", "/audit/c1", gz(eventList(item(1, "a", ""))), 200, 1, "", "Content-Encoding", "gzip")
	f("gzip bomb", "/audit/c1", bomb, 413, 0, "1048576-byte limit", "Content-Encoding", "gzip")
	f("body over the limit", "/audit/c1", eventList(strings.Repeat(item(1, "a", "")+",", 2000)+item(2, "b", "")), 413, 0, "1048576-byte limit")
	f("unknown encoding", "/audit/c1", "x", 415, 0, "Content-Encoding", "Content-Encoding", "br")

	t.Run("malformed item names its index", func(t *testing.T) {
		srv := newTestServer(t, &memProducer{})
		_, resp, _ := post(t, srv.URL+"/audit", eventList(item(1, "a", ""), `{"requestReceivedTimestamp":12}`))
		if len(resp.Rejected) != 1 || resp.Rejected[0].Index != 1 || !strings.Contains(resp.Rejected[0].Error, "timestamp") {
			t.Fatalf("rejected = %+v", resp.Rejected)
		}
	})
}

func TestIngestUnavailableProducerAnswers503(t *testing.T) {
	prod := &memProducer{err: errors.New("dial tcp 127.0.0.1:9092: connect: connection refused")}
	srv := newTestServer(t, prod)
	code, resp, hdr := post(t, srv.URL+"/audit/c1", eventList(item(1, "a", "")))
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(resp.Error, "retry later") {
		t.Fatalf("got %d Retry-After=%q %+v", code, hdr.Get("Retry-After"), resp)
	}
	prod.err = pipeline.Permanent(errors.New("message too large"))
	if code, _, _ := post(t, srv.URL+"/audit/c1", eventList(item(1, "a", ""))); code != http.StatusInternalServerError {
		t.Fatalf("permanent producer error: got %d", code)
	}
}

// TestIngestRealApiserverSender drives the handler with kube-apiserver's own
// webhook backend behind its batcher, configured by a kubeconfig.
func TestIngestRealApiserverSender(t *testing.T) {
	prod := &memProducer{}
	srv := newTestServer(t, prod)
	kubeconfig := filepath.Join(t.TempDir(), "webhook.kubeconfig")
	if err := auditsend.WriteKubeconfig(kubeconfig, srv.URL+"/audit/prod-eu1", auditsend.KubeconfigOptions{}); err != nil {
		t.Fatal(err)
	}
	sender, err := auditsend.New(auditsend.Config{Kubeconfig: kubeconfig, MaxBatchWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		var ev auditv1.Event
		if err := auditjson.DecodeEvent([]byte(item(i, fmt.Sprintf("user-%d", i%7), "")), &ev); err != nil {
			t.Fatal(err)
		}
		if err := sender.Send(&ev); err != nil {
			t.Fatal(err)
		}
	}
	sender.Shutdown()
	sent, failed, dropped := sender.Stats()
	if sent != n || failed != 0 || dropped != 0 {
		t.Fatalf("sender: sent %d failed %d dropped %d, want %d sent", sent, failed, dropped, n)
	}
	msgs := prod.snapshot()
	if len(msgs) != n {
		t.Fatalf("produced %d messages, want %d", len(msgs), n)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, m.Cluster, m.Value); err != nil {
			t.Fatal(err)
		}
		seen[string(ev.AuditID)] = true
		if m.Cluster != "prod-eu1" || !strings.HasPrefix(string(m.Key), "prod-eu1/user-") {
			t.Fatalf("message cluster %q key %q", m.Cluster, m.Key)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct auditIDs, want %d", len(seen), n)
	}
}

func TestIngestAuthenticatedClusterWins(t *testing.T) {
	prod := &memProducer{}
	h, err := New(Config{DefaultCluster: "fallback"}, prod, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Stands in for the authentication middleware.
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), Identity{Method: "token", Name: "eu1-apiserver", Cluster: "prod-eu1"})))
	})
	srv := httptest.NewServer(auth)
	defer srv.Close()

	if code, _, _ := post(t, srv.URL+"/audit", eventList(item(1, "a", ""))); code != http.StatusOK {
		t.Fatalf("POST /audit: %d", code)
	}
	if code, _, _ := post(t, srv.URL+"/audit/prod-eu1", eventList(item(2, "a", ""))); code != http.StatusOK {
		t.Fatalf("POST /audit/prod-eu1: %d", code)
	}
	code, resp, _ := post(t, srv.URL+"/audit/prod-us1", eventList(item(3, "a", "")))
	if code != http.StatusForbidden || !strings.Contains(resp.Error, `may not write for cluster "prod-us1"`) {
		t.Fatalf("path naming another cluster: %d %+v", code, resp)
	}
	for _, m := range prod.snapshot() {
		if m.Cluster != "prod-eu1" {
			t.Fatalf("message for cluster %q", m.Cluster)
		}
	}
	if n := len(prod.snapshot()); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}
