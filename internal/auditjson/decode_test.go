package auditjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

const testEventJSON = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"3f1e9a77-2c4b-4d1e-9a0b-5c6d7e8f9012","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/pods","verb":"create","user":{"username":"system:serviceaccount:kube-system:replicaset-controller","uid":"5d2c1b0a-9f8e-4d7c-b6a5-948372615041","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"]}},"sourceIPs":["172.18.0.2"],"userAgent":"kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:replicaset-controller","objectRef":{"resource":"pods","namespace":"payments","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"payments-api-7d9f8b6c5-"},"spec":{"containers":[{"name":"api","image":"registry.internal.example.com/payments/api:1.4.2"}]}},"responseObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"payments-api-7d9f8b6c5-x2x9q","namespace":"payments"}},"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.131987Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:controller:replicaset-controller\" of ClusterRole \"system:controller:replicaset-controller\" to ServiceAccount \"replicaset-controller/kube-system\""}}`

func TestDecodeEventFields(t *testing.T) {
	var ev pipeline.Event
	if err := Decode(&ev, "prod-eu1", []byte(testEventJSON)); err != nil {
		t.Fatal(err)
	}
	if ev.Verb != "create" || ev.ObjectRef.Resource != "pods" || ev.Code() != 201 || ev.Decision() != "allow" {
		t.Fatalf("fields: %+v", ev.Event)
	}
	if ev.CredentialID() != "JTI=1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d" || ev.SourceIP() != "172.18.0.2" {
		t.Fatalf("identity: %q %q", ev.CredentialID(), ev.SourceIP())
	}
	want := time.Date(2026, 11, 27, 9, 15, 1, 131987000, time.UTC)
	if !ev.StageTimestamp.Time.Equal(want) {
		t.Fatalf("stageTimestamp %v, want %v", ev.StageTimestamp.Time, want)
	}
	// Bodies stay raw until asked for.
	if ev.RequestObject == nil || !strings.Contains(string(ev.RequestObject.Raw), `"image":"registry.internal.example.com/payments/api:1.4.2"`) {
		t.Fatalf("requestObject: %+v", ev.RequestObject)
	}
	if ev.Hash() == 0 || !ev.IsAuthoritative() {
		t.Fatalf("hash %d authoritative %v", ev.Hash(), ev.IsAuthoritative())
	}
}

// The decoder must agree with encoding/json into the apiserver's own type
// wherever the latter accepts the input.
func TestDecodeEventMatchesEncodingJSON(t *testing.T) {
	var want auditv1.Event
	if err := json.Unmarshal([]byte(testEventJSON), &want); err != nil {
		t.Fatal(err)
	}
	var got auditv1.Event
	if err := DecodeEvent([]byte(testEventJSON), &got); err != nil {
		t.Fatal(err)
	}
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(got)
	if string(wj) != string(gj) {
		t.Fatalf("decoded differently:\n got %s\nwant %s", gj, wj)
	}
}

func TestDecodeTimestamps(t *testing.T) {
	f := func(in string, want time.Time) {
		t.Helper()
		var ev auditv1.Event
		err := DecodeEvent([]byte(`{"stageTimestamp":"`+in+`"}`), &ev)
		if want.IsZero() {
			if err == nil {
				t.Fatalf("%q: want an error", in)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !ev.StageTimestamp.Time.Equal(want) {
			t.Fatalf("%q: got %v, want %v", in, ev.StageTimestamp.Time, want)
		}
	}
	base := time.Date(2026, 11, 27, 9, 15, 1, 0, time.UTC)
	f("2026-11-27T09:15:01Z", base)
	f("2026-11-27T09:15:01.1Z", base.Add(100*time.Millisecond))
	f("2026-11-27T09:15:01.123Z", base.Add(123*time.Millisecond))
	f("2026-11-27T09:15:01.123456Z", base.Add(123456*time.Microsecond))
	f("2026-11-27T09:15:01.123456789Z", base.Add(123456789))
	f("2026-11-27T10:15:01.5+01:00", base.Add(500*time.Millisecond))
	f("27/11/2026 09:15", time.Time{})
	// Log shippers: no fraction, and a space instead of the T.
	f("2026-11-27 09:15:01Z", base)
	f("2026-11-27 09:15:01.123456Z", base.Add(123456*time.Microsecond))
	f("2026-11-27 10:15:01+01:00", base)
	// Still RFC 3339 otherwise: a zone is required, one separator only.
	f("2026-11-27 09:15:01", time.Time{})
	f("2026-11-27  09:15:01Z", time.Time{})
	f("2026-11-27_09:15:01Z", time.Time{})
}

func TestDecodeEventsListAndSingle(t *testing.T) {
	item := strings.Replace(testEventJSON, `"kind":"Event","apiVersion":"audit.k8s.io/v1",`, "", 1)
	f := func(name, in string, wantN int, wantErr string) {
		t.Helper()
		evs, err := DecodeEvents([]byte(in))
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%s: err %v, want %q", name, err, wantErr)
			}
			if !pipeline.IsPermanent(err) {
				t.Fatalf("%s: decode errors must be permanent", name)
			}
			return
		}
		if err != nil || len(evs) != wantN {
			t.Fatalf("%s: %d events, err %v; want %d", name, len(evs), err, wantN)
		}
	}
	f("single event", testEventJSON, 1, "")
	f("list, items without kind", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`+item+`,`+item+`]}`, 2, "")
	f("list with unknown fields", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","future":{"x":1},"items":[{"verb":"get","newField":[1,2]}]}`, 1, "")
	f("list without kind", `{"items":[`+item+`]}`, 1, "")
	f("empty list", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`, 0, "")
	f("v1beta1", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[{"metadata":{"creationTimestamp":null},"timestamp":"2026-11-27T09:15:01Z","verb":"get"}]}`, 1, "")
	f("v2", `{"kind":"EventList","apiVersion":"audit.k8s.io/v2","items":[]}`, 0, `unsupported apiVersion "audit.k8s.io/v2"`)
	f("wrong kind", `{"kind":"Pod","apiVersion":"v1"}`, 0, `unsupported apiVersion "v1"`)
	f("list kind, wrong item kind", `{"kind":"EventList","items":[{"kind":"Pod"}]}`, 0, `item 0: decoding event: unexpected kind "Pod"`)
	f("bad item", `{"kind":"EventList","items":[`+item+`,{"verb":7}]}`, 0, "item 1")
	f("array", `[`+item+`]`, 0, "not a JSON object")
	f("empty", ``, 0, "not a JSON object")
	f("unrelated object", `{"hello":"world"}`, 0, "not an audit EventList")

	_, err := DecodeEvents([]byte(`{"kind":"EventList","items":[{"verb":7}]}`))
	var ie *ItemError
	if !errors.As(err, &ie) || ie.Index != 0 {
		t.Fatalf("want *ItemError for item 0, got %v", err)
	}
}

func TestAuthoritativeStage(t *testing.T) {
	f := func(stage, verb, sub string, code int32, user string, want bool) {
		t.Helper()
		ev := pipeline.Event{}
		ev.Stage = auditv1.Stage(stage)
		ev.Verb = verb
		ev.User.Username = user
		if sub != "" {
			ev.ObjectRef = &auditv1.ObjectReference{Resource: "pods", Subresource: sub}
		}
		if code != 0 {
			ev.ResponseStatus = &metav1.Status{Code: code}
		}
		if got := ev.IsAuthoritative(); got != want {
			t.Fatalf("%s %s %s %d %q: got %v", stage, verb, sub, code, user, got)
		}
	}
	f("RequestReceived", "get", "", 0, "alice", false)
	f("RequestReceived", "create", "exec", 0, "alice", false)
	f("ResponseComplete", "get", "", 200, "alice", true)
	f("ResponseStarted", "get", "", 200, "alice", false)
	f("ResponseStarted", "watch", "", 200, "alice", true)
	// Long-running requests may be judged from either stage (a cluster
	// may omit ResponseStarted); StageGate keeps one.
	f("ResponseComplete", "watch", "", 200, "alice", true)
	f("ResponseStarted", "create", "exec", 101, "alice", true)
	f("ResponseComplete", "create", "exec", 101, "alice", true)
	f("ResponseStarted", "list", "", 401, "", true)
	f("Panic", "get", "", 500, "alice", true)
	f("Panic", "create", "exec", 500, "alice", true)
	// No stage at all (some log exports): judged as ResponseComplete.
	f("", "get", "", 200, "alice", true)
	f("", "create", "exec", 101, "alice", true)
	f("Bogus", "get", "", 200, "alice", false)
}

func TestDecodeReason(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		var ev pipeline.Event
		err := Decode(&ev, "c", []byte(in))
		if err == nil {
			t.Fatalf("%s: decoded", in)
		}
		if got := DecodeReason(err); got != want {
			t.Fatalf("%s: reason %s (%v), want %s", in, got, err, want)
		}
	}
	f(`not json`, DecodeReasonNotJSON)
	f(`[1]`, DecodeReasonWrongType)
	f(`{"verb":"get"`, DecodeReasonTruncated)
	f(`{"verb":"get"}}`, DecodeReasonNotJSON)
	f(`{"verb":7}`, DecodeReasonWrongType)
	f(`{"stageTimestamp":7}`, DecodeReasonWrongType)
	f(`{"stageTimestamp":"27/11/2026 09:15"}`, DecodeReasonBadTimestamp)
	f(`{"kind":"EventList","items":[]}`, DecodeReasonNotAuditEvent)
	f(`{"apiVersion":"audit.k8s.io/v1alpha1"}`, DecodeReasonNotAuditEvent)
}

// TestDecodeFillsSlots shows Decode pointing an event's objectRef,
// responseStatus and bodies into the Event itself, which it can reuse,
// while DecodeEvent into an auditv1.Event allocates them.
func TestDecodeFillsSlots(t *testing.T) {
	var ev pipeline.Event
	if _, inUse := ev.Slots(); inUse {
		t.Fatal("a zero Event's slots in use")
	}
	if err := Decode(&ev, "c", []byte(testEventJSON)); err != nil {
		t.Fatal(err)
	}
	slots, inUse := ev.Slots()
	if !inUse || ev.ObjectRef != &slots.ObjectRef || ev.ResponseStatus != &slots.Status ||
		ev.RequestObject != &slots.Request || ev.ResponseObject != &slots.Response {
		t.Fatal("Decode did not fill the Event's slots")
	}
	if &ev.User.Groups[0] != &slots.Strings[0] || &ev.SourceIPs[0] != &slots.Strings[len(ev.User.Groups)] {
		t.Fatal("Decode did not carve groups and sourceIPs from the Event's slots")
	}
	other := pipeline.Event{}
	if err := DecodeEvent([]byte(testEventJSON), &other.Event); err != nil {
		t.Fatal(err)
	}
	if _, inUse := other.Slots(); inUse {
		t.Fatal("DecodeEvent used the slots of the Event around its argument")
	}
}

// TestDecodeSlotsNotShared shows that the maps the decoder caches and
// shares between events (decode_mapcache.go) take nothing from an
// Event's slots: zeroing the Event to decode the next one, as the scan
// does, must leave a cached user.extra map as it was.
func TestDecodeSlotsNotShared(t *testing.T) {
	const a = `{"user":{"username":"a","groups":["g1"],"extra":{"k":["v1","v2"]}},"sourceIPs":["10.0.0.1"]}`
	const b = `{"user":{"username":"b","groups":["x1","x2","x3","x4","x5","x6","x7"]},"sourceIPs":["10.9.9.9"]}`
	var ev pipeline.Event
	// The second decode stores the map, the third returns it shared.
	for range 3 {
		ev = pipeline.Event{}
		if err := Decode(&ev, "c", []byte(a)); err != nil {
			t.Fatal(err)
		}
	}
	shared := ev.User.Extra
	ev = pipeline.Event{}
	if err := Decode(&ev, "c", []byte(b)); err != nil {
		t.Fatal(err)
	}
	if want := (map[string]authnv1.ExtraValue{"k": {"v1", "v2"}}); !reflect.DeepEqual(shared, want) {
		t.Fatalf("cached extra map is %v after the Event was reused, want %v", shared, want)
	}
	var again pipeline.Event
	if err := Decode(&again, "c", []byte(a)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1", "v2"}; !reflect.DeepEqual([]string(again.User.Extra["k"]), want) {
		t.Fatalf("extra decoded from the cache is %v, want %v", again.User.Extra["k"], want)
	}
}
