package auditjson

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// mapPtr is the identity of a map: two maps are shared when it is equal.
func mapPtr[M ~map[K]V, K comparable, V any](m M) uintptr {
	return uintptr(reflect.ValueOf(m).UnsafePointer())
}

// warmT decodes data twice, so that its maps are cached: a map is stored
// the second time its slot sees it.
func warmT(t *testing.T, data string) auditv1.Event {
	t.Helper()
	decodeT(t, data)
	return decodeT(t, data)
}

func decodeT(t *testing.T, data string) auditv1.Event {
	t.Helper()
	var ev auditv1.Event
	if err := DecodeEvent([]byte(data), &ev); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return ev
}

// TestMapCacheShares: an event whose annotations and extra repeat an
// earlier event's byte for byte gets the earlier event's maps, equal and
// shared; a map one byte apart is decoded afresh, to its own value.
func TestMapCacheShares(t *testing.T) {
	const (
		ann   = `{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"shares/test\""}`
		extra = `{"authentication.kubernetes.io/credential-id":["JTI=mapcache-shares"],"authentication.kubernetes.io/pod-name":["api-7d9f-x2x"]}`
	)
	event := func(id, ann, extra string) string {
		return `{"auditID":"` + id + `","user":{"username":"u","extra":` + extra + `},"impersonatedUser":{"username":"v","extra":` + extra + `},"annotations":` + ann + `}`
	}
	first := decodeT(t, event("first", ann, extra))
	a := decodeT(t, event("a", ann, extra))
	b := decodeT(t, event("b", ann, extra))
	if mapPtr(first.Annotations) == mapPtr(a.Annotations) || mapPtr(first.User.Extra) == mapPtr(a.User.Extra) {
		t.Error("a map seen once was stored")
	}
	if !reflect.DeepEqual(a.Annotations, b.Annotations) || !reflect.DeepEqual(a.User.Extra, b.User.Extra) {
		t.Fatalf("repeated maps decoded differently: %v %v / %v %v", a.Annotations, b.Annotations, a.User.Extra, b.User.Extra)
	}
	if a.Annotations["authorization.k8s.io/reason"] != `RBAC: allowed by RoleBinding "shares/test"` ||
		a.User.Extra["authentication.kubernetes.io/pod-name"][0] != "api-7d9f-x2x" {
		t.Fatalf("decoded %v %v", a.Annotations, a.User.Extra)
	}
	if mapPtr(a.Annotations) != mapPtr(b.Annotations) {
		t.Error("repeated annotations are not shared")
	}
	if mapPtr(a.User.Extra) != mapPtr(b.User.Extra) || mapPtr(a.User.Extra) != mapPtr(b.ImpersonatedUser.Extra) {
		t.Error("repeated extra is not shared")
	}

	// One byte apart, at the start, in the middle or at the end of a
	// value: equal up to that byte, so the lookup must compare them all.
	for _, c := range []struct{ ann, extra string }{
		{strings.Replace(ann, "allow", "allox", 1), strings.Replace(extra, "JTI=", "JTJ=", 1)},
		{strings.Replace(ann, `test\"`, `tesu\"`, 1), strings.Replace(extra, "x2x", "x2y", 1)},
		{strings.Replace(ann, `"}`, `" }`, 1), strings.Replace(extra, `"]}`, `"] }`, 1)},
	} {
		d := warmT(t, event("d", c.ann, c.extra))
		if mapPtr(d.Annotations) == mapPtr(a.Annotations) || mapPtr(d.User.Extra) == mapPtr(a.User.Extra) {
			t.Errorf("%s / %s: shared with the map one byte apart", c.ann, c.extra)
		}
		want := decodeStdT(t, event("d", c.ann, c.extra))
		if !reflect.DeepEqual(d, want) {
			t.Errorf("%s / %s: decoded %v %v, want %v %v", c.ann, c.extra, d.Annotations, d.User.Extra, want.Annotations, want.User.Extra)
		}
	}
}

func decodeStdT(t *testing.T, data string) auditv1.Event {
	t.Helper()
	var ev auditv1.Event
	if err := decodeEventStd([]byte(data), &ev); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return ev
}

// TestMapCacheBounds: maps beyond the cache's bounds (too long, too many
// members) decode correctly every time and are never shared, maps with a
// '}' inside a string are shared like any other; more distinct maps than
// slots evict each other and still decode to themselves.
func TestMapCacheBounds(t *testing.T) {
	long := `{"k":"` + strings.Repeat("x", maxCachedObject) + `"}`
	var many strings.Builder
	many.WriteString("{")
	for i := range maxMapMembers + 1 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `"k%d":"v"`, i)
	}
	many.WriteString("}")
	atLimit := `{"k":"` + strings.Repeat("y", maxCachedObject-len(`{"k":""}`)) + `"}`
	for _, c := range []struct {
		m      string
		shared bool
	}{
		{long, false},
		{many.String(), false},
		{`{"a":"}","b":"c"}`, true},
		{`{"a}":"b"}`, true},
		{atLimit, true},
		{`{}`, true},
		{`{"a":null}`, true},
	} {
		data := `{"annotations":` + c.m + `}`
		first, second := warmT(t, data), decodeT(t, data)
		want := decodeStdT(t, data)
		if !reflect.DeepEqual(first, want) || !reflect.DeepEqual(second, want) {
			t.Errorf("%.40s: decoded %v then %v, want %v", c.m, first.Annotations, second.Annotations, want.Annotations)
		}
		if got := mapPtr(first.Annotations) == mapPtr(second.Annotations); got != c.shared {
			t.Errorf("%.40s: shared %v, want %v", c.m, got, c.shared)
		}
	}
	if len(atLimit) != maxCachedObject {
		t.Fatalf("atLimit is %d bytes", len(atLimit))
	}

	// Three times as many distinct maps as slots, twice over: slots are
	// shared and replaced, and every map still decodes to its own value.
	for round := range 2 {
		for i := range 3 * objectCacheSlots {
			data := fmt.Sprintf(`{"user":{"extra":{"k":["%d"]}},"annotations":{"r":"%d"}}`, i, i)
			ev := decodeT(t, data)
			if i%2 == 0 {
				ev = warmT(t, data)
			}
			if ev.Annotations["r"] != fmt.Sprint(i) || len(ev.Annotations) != 1 ||
				len(ev.User.Extra) != 1 || fmt.Sprint(ev.User.Extra["k"]) != fmt.Sprintf("[%d]", i) {
				t.Fatalf("round %d map %d: %v %v", round, i, ev.Annotations, ev.User.Extra)
			}
		}
	}
	n := 0
	for i := range annotationCache.slots {
		if e := annotationCache.slots[i].Load(); e != nil {
			n++
			if len(e.raw) > maxCachedObject || len(e.v) > maxMapMembers {
				t.Errorf("slot %d holds %.40s (%d members)", i, e.raw, len(e.v))
			}
		}
	}
	if n == 0 || n > objectCacheSlots {
		t.Errorf("%d annotation maps cached", n)
	}
}

// TestMapCacheMerge: a repeated annotations or extra member merges into
// what the first left, as encoding/json does, without writing to the
// cached map the first may have come from.
func TestMapCacheMerge(t *testing.T) {
	const (
		ann   = `{"merge.test/a":"1"}`
		extra = `{"merge.test/k":["1"]}`
	)
	cached := warmT(t, `{"user":{"extra":`+extra+`},"annotations":`+ann+`}`)
	for _, data := range []string{
		`{"user":{"extra":` + extra + `,"extra":{"merge.test/k2":["2"]}},"annotations":` + ann + `,"annotations":{"merge.test/b":"2","merge.test/a":"3"}}`,
		`{"user":{"extra":` + extra + `},"user":{"extra":{"merge.test/k2":["2"]}},"Annotations":` + ann + `,"ANNOTATIONS":{"merge.test/b":"2"}}`,
	} {
		got, want := decodeT(t, data), decodeStdT(t, data)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %v %v, want %v %v", data, got.Annotations, got.User.Extra, want.Annotations, want.User.Extra)
		}
		again := decodeT(t, `{"user":{"extra":`+extra+`},"annotations":`+ann+`}`)
		if !reflect.DeepEqual(again.Annotations, map[string]string{"merge.test/a": "1"}) ||
			!reflect.DeepEqual(again.User.Extra, cached.User.Extra) || len(again.User.Extra) != 1 {
			t.Fatalf("%s: the cached maps changed: %v %v", data, again.Annotations, again.User.Extra)
		}
		if mapPtr(again.Annotations) != mapPtr(cached.Annotations) {
			t.Errorf("%s: annotations no longer shared", data)
		}
	}
}

// TestMapCacheAllocs: a repeated map costs no allocation.
func TestMapCacheAllocs(t *testing.T) {
	data := []byte(`{"user":{"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=allocs"]}},"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`)
	ev := warmT(t, string(data))
	if n := testing.AllocsPerRun(100, func() { _ = DecodeEvent(data, &ev) }); n != 0 {
		t.Fatalf("decoding repeated maps allocated %v times", n)
	}
}
