package auditjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestDecodeStringsOwnTheirBytes: the decoder's strings (cached or not)
// must never alias the input, which detect scan's reader reuses for the
// next chunk: overwriting the input after the decode changes no field.
// Only the raw bodies and Raw alias it, as documented.
func TestDecodeStringsOwnTheirBytes(t *testing.T) {
	data := []byte(testEventJSON)
	var ev pipeline.Event
	if err := Decode(&ev, "prod", data); err != nil {
		t.Fatal(err)
	}
	var want pipeline.Event
	if err := Decode(&want, "prod", []byte(testEventJSON)); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'x'
	}
	ev.Raw, want.Raw = nil, nil
	ev.RequestObject, ev.ResponseObject = nil, nil
	want.RequestObject, want.ResponseObject = nil, nil
	if got, exp := marshal(t, &ev.Event), marshal(t, &want.Event); got != exp {
		t.Fatalf("fields changed with the input:\n got %s\nwant %s", got, exp)
	}
	if ev.User.Username != "system:serviceaccount:kube-system:replicaset-controller" || ev.UserAgent == "" ||
		!strings.HasPrefix(ev.Annotations[pipeline.AnnotationReason], "RBAC: allowed") {
		t.Fatalf("fields: %+v", ev.Event)
	}
}

// TestDecodeSlicesDoNotShareCapacity: the []string members share one
// allocation, but appending to one must not overwrite the next.
func TestDecodeSlicesDoNotShareCapacity(t *testing.T) {
	var ev auditv1.Event
	data := `{"user":{"groups":["a","b"],"extra":{"k1":["v1"],"k2":["v2"]}},"sourceIPs":["10.0.0.1"]}`
	if err := DecodeEvent([]byte(data), &ev); err != nil {
		t.Fatal(err)
	}
	_ = append(ev.User.Groups, "g")
	_ = append(ev.User.Extra["k1"], "x")
	_ = append(ev.User.Extra["k2"], "y")
	_ = append(ev.SourceIPs, "10.0.0.2")
	if got := fmt.Sprint(ev.User.Groups, ev.User.Extra["k1"], ev.User.Extra["k2"], ev.SourceIPs); got != "[a b] [v1] [v2] [10.0.0.1]" {
		t.Fatalf("after appends: %s", got)
	}
}

// TestCached: the cache returns the string asked for, whatever else
// shares its slot, and a repeated string costs no allocation.
func TestCached(t *testing.T) {
	// More distinct strings than slots, so that slots are shared and
	// replaced.
	for round := range 2 {
		for i := range 3 * cacheSlots {
			b := fmt.Appendf(nil, "user-%d", i)
			if got := cached(b); got != string(b) {
				t.Fatalf("round %d: cached(%q) = %q", round, b, got)
			}
		}
	}
	long := bytes.Repeat([]byte("a"), maxCached+1)
	if cached(long) != string(long) || cached(nil) != "" {
		t.Fatal("uncached lengths")
	}
	ua := []byte("kubelet/v1.34.1 (linux/amd64) kubernetes/93248f9")
	cached(ua)
	if n := testing.AllocsPerRun(100, func() { _ = cached(ua) }); n != 0 {
		t.Fatalf("a repeated string allocated %v times", n)
	}
	// Escaped content is unquoted before the lookup.
	if got := cachedContent([]byte(`a\u0026b`), true); got != "a&b" {
		t.Fatalf("cachedContent = %q", got)
	}
}

// TestDecodeConcurrent decodes the same events from several goroutines, as
// detect's workers do; run with -race it checks the shared cache.
func TestDecodeConcurrent(t *testing.T) {
	events := make([][]byte, 50)
	for i := range events {
		events[i] = []byte(strings.ReplaceAll(testEventJSON, "payments-api", fmt.Sprintf("api-%d", i%7)))
	}
	var want []string
	for _, data := range events {
		var ev auditv1.Event
		if err := DecodeEvent(data, &ev); err != nil {
			t.Fatal(err)
		}
		want = append(want, marshal(t, &ev))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for round := range 20 {
				for i, data := range events {
					var ev auditv1.Event
					if err := DecodeEvent(data, &ev); err != nil {
						t.Error(err)
						return
					}
					if got := marshal(t, &ev); got != want[i] {
						t.Errorf("round %d event %d decoded differently", round, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func marshal(t testing.TB, ev *auditv1.Event) string {
	b, err := json.Marshal(ev)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}
