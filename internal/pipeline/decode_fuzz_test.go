package pipeline

import (
	"testing"
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
			ev := Event{Event: evs[i], Cluster: "c"}
			h1, h2 := ContentHash(&ev.Event), ContentHash(&ev.Event)
			if h1 != h2 {
				t.Fatal("content hash not stable")
			}
			_ = MessageKey("c", &ev)
			_ = ev.IsAuthoritative()
		}
		if items, err := SplitEventList(data); err == nil {
			for _, item := range items {
				var ev Event
				_ = ev.Decode("c", item)
			}
		}
	})
}
