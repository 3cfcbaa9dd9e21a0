package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/cloud"
	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
)

// FuzzFirehoseBody posts arbitrary Firehose requests to the handler, with
// the redactor: the body as it comes, and one record (as it comes, and
// gzip-compressed as CloudWatch Logs sends it) in a well-formed body. Every
// answer must be one the Firehose path documents, in Firehose's format, and
// every event produced one detect can decode, valid, keyed as
// pipeline.MessageKey keys it, marked as from EKS, and free of anything
// JWT-shaped.
func FuzzFirehoseBody(f *testing.F) {
	ev := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{"username":"alice"},"requestReceivedTimestamp":"2026-12-04T07:12:40.118342Z","stageTimestamp":"2026-12-04T07:12:40.163907Z"}`
	f.Add(firehoseBody("r1", gz(dataMessage(testLogStream, eksIAMSecretList, ev)), gz(controlMessage())), dataMessage(testLogStream, ev))
	f.Add([]byte(`{"requestId":"r","records":[{"data":"eyJhIjoxfQ=="}]}`), []byte(ev+"\n"+ev))
	f.Add([]byte(`{"requestId":"r","timestamp":1,"records":[]}`), []byte(`{"messageType":"DATA_MESSAGE","logStream":"kube-apiserver-audit-1","logEvents":[{"message":"{}"}]}`))
	red, err := redact.New(redact.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, record []byte) {
		prod := &memProducer{}
		h, err := New(Config{DisableDedup: true, MaxEventsPerRequest: 100, MaxBodyBytes: 1 << 20}, prod, red, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{body, firehoseBody("r2", record), firehoseBody("r3", gz(record))} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/firehose/c1", bytes.NewReader(b)))
			switch rec.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
			default:
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var fr FirehoseResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &fr); err != nil || fr.Timestamp == 0 || len(fr.ErrorMessage) > 8192 {
				t.Fatalf("answer %d not in Firehose's format: %v %s", rec.Code, err, rec.Body)
			}
		}
		for _, m := range prod.snapshot() {
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "c1", m.Value); err != nil {
				t.Fatalf("produced an event detect cannot decode: %v\n%s", err, m.Value)
			}
			if err := validateEvent(&ev.Event); err != nil {
				t.Fatalf("produced an invalid event: %v", err)
			}
			if !bytes.Equal(m.Key, pipeline.MessageKey("c1", &ev)) {
				t.Fatalf("key %q, want %q", m.Key, pipeline.MessageKey("c1", &ev))
			}
			if ev.Annotations[cloud.AnnotationSource] != "eks" {
				t.Fatalf("produced an event not marked as from EKS: %s", m.Value)
			}
			if credential.ContainsJWT(m.Value) {
				t.Fatalf("produced something JWT-shaped: %s", m.Value)
			}
		}
	})
}
