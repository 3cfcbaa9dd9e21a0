package ingest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
)

// FuzzIngestBody posts arbitrary bodies to the webhook handler, with the
// redactor, as an attacker can: it must answer with one of the codes it
// documents, never panic, and produce only events that detect can decode,
// that pass ingest's own validation, that are keyed as pipeline.MessageKey
// keys them, and that hold nothing JWT-shaped.
func FuzzIngestBody(f *testing.F) {
	f.Add([]byte(eventList(item(1, "alice", ""), item(2, "system:serviceaccount:payments:payments-api", boundTokenExtra))))
	f.Add([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[{"metadata":{},"timestamp":"2026-11-27T09:15:01Z","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestReceivedTimestamp":"2026-11-27T09:15:01Z","stageTimestamp":"2026-11-27T09:15:01Z"}]}`))
	f.Add([]byte(`{"items":[{},{"stage":"Bogus","verb":"get"},1,"x",null]}`))
	for _, dir := range []string{"eventlists"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", dir, "*.json"))
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	red, err := redact.New(redact.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		prod := &memProducer{}
		h, err := New(Config{DisableDedup: true, MaxEventsPerRequest: 1000}, prod, red, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/audit/c1", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		for _, m := range prod.snapshot() {
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "c1", m.Value); err != nil {
				t.Fatalf("produced an event detect cannot decode: %v\n%s", err, m.Value)
			}
			if err := validateEvent(&ev.Event); err != nil {
				t.Fatalf("produced an invalid event: %v", err)
			}
			if ev.V1beta1 {
				t.Fatalf("produced a v1beta1 event: %s", m.Value)
			}
			if !bytes.Equal(m.Key, pipeline.MessageKey("c1", &ev)) {
				t.Fatalf("key %q, want %q", m.Key, pipeline.MessageKey("c1", &ev))
			}
			if credential.ContainsJWT(m.Value) {
				t.Fatalf("produced something JWT-shaped: %s", m.Value)
			}
		}
	})
}
