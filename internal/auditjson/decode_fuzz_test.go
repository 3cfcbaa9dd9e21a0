package auditjson

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// FuzzDecodeEvents feeds arbitrary bytes to the decoders ingest and detect
// use: they may reject input, never panic, and whatever they accept must
// have a stable content hash and partition key.
func FuzzDecodeEvents(f *testing.F) {
	f.Add([]byte(testEventJSON))
	f.Add([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"stage":"ResponseStarted","user":{},"responseStatus":{"code":401}}]}`))
	f.Add([]byte(`{"items":[{"stageTimestamp":"2026-11-27T09:15:01Z","objectRef":{"subresource":"exec"}}]}`))
	f.Add([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1"}`))
	f.Add([]byte(`{"requestObject":null,"responseObject":{"a":[1,{"b":null}]},"user":{"extra":{"k":["v"]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := DecodeEvents(data)
		if err != nil {
			return
		}
		for i := range evs {
			ev := pipeline.Event{Event: evs[i], Cluster: "c"}
			h1, h2 := pipeline.ContentHash(&ev.Event), pipeline.ContentHash(&ev.Event)
			if h1 != h2 {
				t.Fatal("content hash not stable")
			}
			_ = pipeline.MessageKey("c", &ev)
			_ = ev.IsAuthoritative()
		}
		if items, err := SplitEventList(data); err == nil {
			for _, item := range items {
				var ev pipeline.Event
				_ = Decode(&ev, "c", item)
			}
		}
	})
}
