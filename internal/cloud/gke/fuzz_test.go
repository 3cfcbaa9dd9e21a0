package gke

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/cloud"
)

// FuzzConvert feeds arbitrary LogEntries to Convert: it must never panic,
// and whatever it accepts must be an audit event ingest would accept (an
// auditID, a known stage and level, both timestamps), converting the same
// way twice.
func FuzzConvert(f *testing.F) {
	for _, e := range fixtures(f) {
		f.Add([]byte(e))
	}
	f.Add([]byte(`{"insertId":"i","timestamp":"2026-11-30T10:00:00Z","protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.get","resourceName":"/healthz"}}`))
	f.Add([]byte(`{"insertId":"i","timestamp":"2026-11-30T10:00:00Z","operation":{"id":"o","producer":"k8s.io","first":"true"},"protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.namespaces.finalize.update","resourceName":"core/v1/namespaces/x/finalize","response":{"kind":"Status","code":"x"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Convert(data)
		if err != nil {
			return
		}
		var ev auditv1.Event
		if err := json.Unmarshal(out, &ev); err != nil {
			t.Fatalf("converted event does not decode: %v\n%s", err, out)
		}
		if ev.AuditID == "" || ev.RequestReceivedTimestamp.IsZero() || ev.StageTimestamp.IsZero() {
			t.Fatalf("converted event lacks required fields: %s", out)
		}
		switch ev.Stage {
		case auditv1.StageResponseStarted, auditv1.StageResponseComplete:
		default:
			t.Fatalf("stage %q", ev.Stage)
		}
		switch ev.Level {
		case auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse:
		default:
			t.Fatalf("level %q", ev.Level)
		}
		if ev.Annotations[cloud.AnnotationSource] != Source {
			t.Fatalf("source annotation %q", ev.Annotations[cloud.AnnotationSource])
		}
		again, err := Convert(data)
		if err != nil || string(again) != string(out) {
			t.Fatalf("second conversion differs: %v\n%s\n%s", err, out, again)
		}
	})
}

// FuzzDecodePush feeds arbitrary push bodies to DecodePush, and the data it
// yields to Convert. An input starting with 'w' is wrapped in a
// well-formed envelope first, so that arbitrary message data is fuzzed
// too.
func FuzzDecodePush(f *testing.F) {
	for _, e := range fixtures(f) {
		f.Add([]byte(`{"message":{"data":"` + base64.StdEncoding.EncodeToString(e) + `","messageId":"1","publishTime":"2026-11-30T10:00:00Z"},"subscription":"projects/p/subscriptions/s"}`))
		f.Add(append([]byte("w"), e...))
	}
	f.Add([]byte(`{"message":{"data":"e30=","message_id":"1"},"subscription":"s","deliveryAttempt":3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 0 && body[0] == 'w' {
			body = []byte(`{"message":{"data":"` + base64.StdEncoding.EncodeToString(body[1:]) + `","messageId":"1"},"subscription":"s"}`)
		}
		_, data, err := DecodePush(body)
		if err != nil {
			return
		}
		if len(data) > len(body) {
			t.Fatalf("%d bytes of data from a %d-byte body", len(data), len(body))
		}
		_, _ = Convert(data)
	})
}
