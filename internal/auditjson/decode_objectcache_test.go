package auditjson

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestUserCache: an event whose user repeats an earlier event's byte for
// byte decodes to the same user, with its own groups slice; users one
// byte apart, users a repeated member merges into, and users beyond the
// cache's bounds decode as encoding/json has them every time.
func TestUserCache(t *testing.T) {
	const user = `{"username":"system:serviceaccount:shop:api","uid":"5e1c","groups":["system:serviceaccounts","system:serviceaccounts:shop","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=usercache"],"authentication.kubernetes.io/pod-name":["api-7d9f-x2x"]}}`
	event := func(user string) string { return `{"auditID":"a","user":` + user + `,"impersonatedUser":` + user + `}` }

	cases := []string{
		user,
		strings.Replace(user, "JTI=", "JTJ=", 1),
		strings.Replace(user, `x2x"]}}`, `x2y"]}}`, 1),
		strings.Replace(user, `"]}}`, `"] }}`, 1),
		strings.Replace(user, `"uid":"5e1c"`, `"uid":"5e1c","username":"other"`, 1), // repeated member
		`{"username":"}","groups":["a"]}`,                                           // a '}' in a string
		`{"username":"u","groups":[]}`,                                              // empty, not absent
		`{"username":"u","groups":null,"extra":null}`,
		`{}`,
		`{"username":"` + strings.Repeat("l", maxCachedObject) + `","groups":["x"]}`, // past the bound
	}
	for _, u := range cases {
		data := event(u)
		want := decodeStdT(t, data)
		first := decodeT(t, data)
		second, third := decodeT(t, data), decodeT(t, data)
		for i, got := range []auditv1.Event{first, second, third} {
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%.60s: decode %d got %#v, want %#v", u, i+1, got.User, want.User)
			}
		}
		if len(second.User.Groups) > 0 && &second.User.Groups[0] == &third.User.Groups[0] {
			t.Errorf("%.60s: two events share one groups slice", u)
		}
	}

	// The cached user is served to an event whose user is empty only: a
	// second user member merges into the first, as with encoding/json.
	warmT(t, event(user))
	merged := `{"user":{"username":"first","groups":["g"]},"user":` + user + `}`
	if got, want := decodeT(t, merged), decodeStdT(t, merged); !reflect.DeepEqual(got, want) {
		t.Errorf("merged user %#v, want %#v", got.User, want.User)
	}
	partial := `{"user":{"uid":"keep"},"user":{"username":"u2"}}`
	warmT(t, `{"user":{"username":"u2"}}`)
	if got := decodeT(t, partial); got.User.UID != "keep" || got.User.Username != "u2" {
		t.Errorf("merged user %#v, want uid keep and username u2", got.User)
	}

	// The event's groups come from its own slots (pipeline.DecodeSlots),
	// as when decoded afresh, and a cache hit writes none of the cached
	// entry's strings.
	var ev pipeline.Event
	for range 3 {
		if err := Decode(&ev, "prod", []byte(event(user))); err != nil {
			t.Fatal(err)
		}
	}
	ev.User.Groups[0] = "overwritten"
	if err := Decode(&ev, "prod", []byte(event(user))); err != nil {
		t.Fatal(err)
	}
	if ev.User.Groups[0] != "system:serviceaccounts" || ev.ImpersonatedUser.Groups[0] != "system:serviceaccounts" {
		t.Errorf("groups after a write to an earlier event's: %v / %v", ev.User.Groups, ev.ImpersonatedUser.Groups)
	}
}

// TestUserCacheBounds: more distinct users than slots evict each other and
// every one still decodes to itself; no entry exceeds the bound.
func TestUserCacheBounds(t *testing.T) {
	for round := range 2 {
		for i := range 3 * objectCacheSlots {
			u := `{"username":"u` + strings.Repeat("x", i%7) + `","uid":"` + itoa(i) + `","groups":["g` + itoa(i) + `"]}`
			data := `{"user":` + u + `}`
			ev := decodeT(t, data)
			if i%2 == 0 {
				ev = warmT(t, data)
			}
			if ev.User.UID != itoa(i) || len(ev.User.Groups) != 1 || ev.User.Groups[0] != "g"+itoa(i) {
				t.Fatalf("round %d user %d: %#v", round, i, ev.User)
			}
		}
	}
	n := 0
	for i := range userCache.slots {
		if e := userCache.slots[i].Load(); e != nil {
			n++
			if len(e.raw) > maxCachedObject || e.raw[0] != '{' {
				t.Errorf("slot %d holds %.40s", i, e.raw)
			}
		}
	}
	if n == 0 {
		t.Error("no user cached")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestObjectRefCache: a repeated objectRef decodes to the same reference
// into the event's own slot; references one byte apart, references a
// repeated member merges into, and ones with a type error decode as
// encoding/json has them every time.
func TestObjectRefCache(t *testing.T) {
	const ref = `{"resource":"leases","namespace":"kube-system","name":"kube-scheduler","apiGroup":"coordination.k8s.io","apiVersion":"v1"}`
	for _, r := range []string{
		ref,
		strings.Replace(ref, "kube-scheduler", "kube-schedulex", 1),
		strings.Replace(ref, `"v1"}`, `"v1" }`, 1),
		strings.Replace(ref, `"name":"kube-scheduler"`, `"name":"kube-scheduler","name":"other"`, 1),
		`{"resource":"pods","name":"}"}`,
		`{"resource":"pods","name":7}`,
		`{}`,
	} {
		// equivalent decodes three times (a miss, a store, a hit) against
		// the encoding/json reference, errors included.
		data := `{"verb":"update","objectRef":` + r + `}`
		if d := equivalent([]byte(data)); d != "" {
			t.Errorf("%s: %s", r, d)
		}
	}
	merged := `{"objectRef":{"resource":"pods","name":"first"},"objectRef":` + ref + `}`
	warmT(t, `{"objectRef":`+ref+`}`)
	if got, want := decodeT(t, merged), decodeStdT(t, merged); !reflect.DeepEqual(got, want) {
		t.Errorf("merged objectRef %#v, want %#v", got.ObjectRef, want.ObjectRef)
	}
	partial := `{"objectRef":{"subresource":"keep"},"objectRef":{"resource":"pods"}}`
	warmT(t, `{"objectRef":{"resource":"pods"}}`)
	if got := decodeT(t, partial); got.ObjectRef.Subresource != "keep" || got.ObjectRef.Resource != "pods" {
		t.Errorf("merged objectRef %#v, want subresource keep and resource pods", got.ObjectRef)
	}

	// A hit fills the event's own slot: writing to one event's reference
	// changes no other event's.
	var a, b pipeline.Event
	for range 3 {
		if err := Decode(&a, "prod", []byte(`{"objectRef":`+ref+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Decode(&b, "prod", []byte(`{"objectRef":`+ref+`}`)); err != nil {
		t.Fatal(err)
	}
	a.ObjectRef.Name = "overwritten"
	if b.ObjectRef == a.ObjectRef || b.ObjectRef.Name != "kube-scheduler" {
		t.Errorf("objectRef shared between events: %#v", b.ObjectRef)
	}
}

// TestVocabulary: the event's kind, apiVersion, level, stage and verb decode
// as encoding/json has them whether or not they are one of the words
// internTable knows, spelt plainly or escaped.
func TestVocabulary(t *testing.T) {
	words := []string{"Event", "audit.k8s.io/v1", "Metadata", "Request", "RequestResponse", "None",
		"ResponseComplete", "RequestReceived", "ResponseStarted", "Panic",
		"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
		"Get", "gets", "ge", "", "impersonate", `ge\u0074`, `audit.k8s.io\/v1`, "événement"}
	for _, w := range words {
		for _, field := range []string{"kind", "apiVersion", "level", "stage", "verb"} {
			data := `{"` + field + `":"` + w + `","auditID":"v"}`
			if field == "kind" || field == "apiVersion" {
				// DecodeEvent refuses any other kind or version, as the
				// apiserver's decoder does; the reference must agree.
				data = `{"` + field + `":"` + w + `"}`
			}
			if d := equivalent([]byte(data)); d != "" {
				t.Errorf("%s: %s", data, d)
			}
		}
	}
}
