package ingest

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// A webhook caller must not be able to set auditpipe.io/ annotations:
// broad-selector trusts auditpipe.io/gke-inferred to stay quiet on GKE
// events whose query string was lost, so a forged pair would silence it.
func TestWebhookDropsForgedAnnotations(t *testing.T) {
	// A broad secrets list, the event broad-selector exists for.
	list := func(id int, annotations string) string {
		ev := item(id, "alice@example.com", "")
		ev = strings.Replace(ev, `"requestURI":"/api/v1/namespaces/payments/configmaps/app-config","verb":"get"`, `"requestURI":"/api/v1/secrets","verb":"list"`, 1)
		ev = strings.Replace(ev, `"objectRef":{"resource":"configmaps","namespace":"payments","name":"app-config","apiVersion":"v1"}`, `"objectRef":{"resource":"secrets","apiVersion":"v1"}`, 1)
		return strings.Replace(ev, `"annotations":{`, annotations, 1)
	}
	cases := []struct {
		name  string
		event string
	}{
		{"plain", list(1, `"annotations":{"auditpipe.io/source":"gke","auditpipe.io/gke-inferred":"request-uri",`)},
		{"escaped key", list(2, `"annotations":{"auditpipe.io\/source":"gke","auditpipe\u002eio/gke-inferred":"request-uri",`)},
		// encoding/json, and so the decoder, matches member names
		// ignoring case and merges repeated members into one map.
		{"folded member name", list(3, `"Annotations":{"auditpipe.io/source":"gke","auditpipe.io/gke-inferred":"request-uri"},"annotations":{`)},
		{"long s", list(4, `"annotation\u017f":{"auditpipe.io/source":"gke","auditpipe.io/gke-inferred":"request-uri"},"annotations":{`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before pipeline.Event
			if err := auditjson.Decode(&before, "c", []byte(c.event)); err != nil {
				t.Fatal(err)
			}
			if before.Annotations["auditpipe.io/gke-inferred"] != "request-uri" {
				t.Fatalf("fixture does not carry the forged annotation as the decoder reads it: %v", before.Annotations)
			}
			prod := &memProducer{}
			srv := newTestServer(t, prod)
			code, resp, _ := post(t, srv.URL+"/audit/prod-eu1", eventList(c.event))
			if code != http.StatusOK || resp.Accepted != 1 {
				t.Fatalf("got %d %+v, want 200 with the event accepted", code, resp)
			}
			msgs := prod.snapshot()
			if len(msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(msgs))
			}
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "prod-eu1", msgs[0].Value); err != nil {
				t.Fatal(err)
			}
			for k := range ev.Annotations {
				if strings.HasPrefix(k, "auditpipe.io/") {
					t.Errorf("forged annotation %q reached Kafka: %s", k, msgs[0].Value)
				}
			}
			if ev.Annotations["authorization.k8s.io/decision"] != "allow" {
				t.Errorf("the apiserver's own annotations were lost: %v", ev.Annotations)
			}
		})
	}
}

// Provider paths hand over events they annotated themselves; those
// annotations are kept.
func TestIngestAnnotatedKeepsOwnAnnotations(t *testing.T) {
	h, err := New(Config{DefaultCluster: "fallback", MaxBodyBytes: 1 << 20}, &memProducer{}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	prod := h.prod.(*memProducer)
	ev := strings.Replace(item(1, "alice@example.com", ""), `"annotations":{`, `"annotations":{"auditpipe.io/source":"gke",`, 1)
	if _, err := h.IngestAnnotated(context.Background(), "prod-eu1", [][]byte{[]byte(ev)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Ingest(context.Background(), "prod-eu1", [][]byte{[]byte(strings.Replace(ev, "000000000001", "000000000002", 1))}); err != nil {
		t.Fatal(err)
	}
	msgs := prod.snapshot()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	if !strings.Contains(string(msgs[0].Value), `"auditpipe.io/source":"gke"`) {
		t.Errorf("IngestAnnotated dropped auditpipe's own annotation: %s", msgs[0].Value)
	}
	if strings.Contains(string(msgs[1].Value), `auditpipe.io/`) {
		t.Errorf("Ingest kept an auditpipe.io/ annotation: %s", msgs[1].Value)
	}
}
