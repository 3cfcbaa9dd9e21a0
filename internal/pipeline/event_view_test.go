package pipeline

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

type testViewKey struct{}

type otherViewKey struct{}

// TestBodyViewBuiltOncePerBody shows a view built once per body and key,
// and rebuilt when the event carries another body: a stale view would
// judge one event by another's body.
func TestBodyViewBuiltOncePerBody(t *testing.T) {
	var ev Event
	ev.RequestObject = &runtime.Unknown{Raw: []byte(`{"a":1}`)}
	builds := 0
	build := func(body any) any {
		builds++
		return body.(map[string]any)["a"]
	}
	for range 3 {
		if v := ev.BodyView(FromRequest, testViewKey{}, build); v != 1.0 {
			t.Fatalf("view %v, want 1", v)
		}
	}
	if builds != 1 || ev.BodyDecodes() != 1 {
		t.Fatalf("%d builds, %d decodes; want 1 and 1", builds, ev.BodyDecodes())
	}
	// Another key is another view of the same decoded body.
	ev.BodyView(FromRequest, otherViewKey{}, func(any) any { builds++; return nil })
	if builds != 2 || ev.BodyDecodes() != 1 {
		t.Fatalf("%d builds, %d decodes; want 2 and 1", builds, ev.BodyDecodes())
	}
	// The response is another body.
	if v := ev.BodyView(FromResponse, testViewKey{}, func(body any) any { return body }); v != nil {
		t.Fatalf("response view %v of no response", v)
	}
	// A new body, as a reused Event gets, is read again.
	ev.RequestObject = &runtime.Unknown{Raw: []byte(`{"a":2}`)}
	if v := ev.BodyView(FromRequest, testViewKey{}, build); v != 2.0 || builds != 3 {
		t.Fatalf("view %v after %d builds, want 2 after 3", v, builds)
	}
	ev.Decoded("c", nil, false, nil)
	if v := ev.BodyView(FromRequest, testViewKey{}, build); v != 2.0 || builds != 4 {
		t.Fatalf("view %v after %d builds, want 2 after 4 (Decoded clears views)", v, builds)
	}
}
