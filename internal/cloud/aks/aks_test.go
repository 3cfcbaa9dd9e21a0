package aks

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

const fixtureResourceID = "/SUBSCRIPTIONS/6F1C2B7A-0D4E-4C8B-9A51-2E7F3D8C4B10/RESOURCEGROUPS/PROD-EU1-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-EU1"

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeEventHubsMessage reads an Event Hubs message body shaped as
// Azure Monitor sends AKS diagnostics: seven audit records of both
// categories and one kube-apiserver log line.
func TestDecodeEventHubsMessage(t *testing.T) {
	recs, err := Decode(readFixture(t, "eventhubs-message.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 {
		t.Fatalf("got %d records, want 8", len(recs))
	}
	var audit int
	for i, r := range recs {
		if r.ResourceID != fixtureResourceID {
			t.Errorf("record %d: resourceId %q", i, r.ResourceID)
		}
		if !r.IsAudit() {
			if r.Category != "kube-apiserver" || !bytes.HasPrefix(r.Log, []byte("I1204 ")) {
				t.Errorf("record %d: non-audit record %q %q", i, r.Category, r.Log)
			}
			continue
		}
		audit++
		if bytes.HasSuffix(r.Log, []byte("\n")) {
			t.Errorf("record %d: log keeps its trailing newline", i)
		}
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod-eu1", r.Log); err != nil {
			t.Errorf("record %d: decoding the event: %v", i, err)
		}
	}
	if audit != 7 {
		t.Errorf("got %d audit records, want 7", audit)
	}
	if recs[0].Category != CategoryAuditAdmin || recs[1].Category != CategoryAudit {
		t.Errorf("categories %q, %q", recs[0].Category, recs[1].Category)
	}
}

// TestDecodeShapes covers the wrappings and what is refused, f-test style.
func TestDecodeShapes(t *testing.T) {
	f := func(in string, wantLogs []string, wantErr error) {
		t.Helper()
		recs, err := Decode([]byte(in), nil)
		if wantErr != nil {
			if !errors.Is(err, wantErr) {
				t.Errorf("Decode(%s): err %v, want %v", in, err, wantErr)
			}
			return
		}
		if wantLogs == nil {
			if err == nil {
				t.Errorf("Decode(%s): no error", in)
			}
			if len(recs) != 0 {
				t.Errorf("Decode(%s): %d records with an error", in, len(recs))
			}
			return
		}
		if err != nil {
			t.Errorf("Decode(%s): %v", in, err)
			return
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Category+"="+string(r.Log))
		}
		if strings.Join(got, "|") != strings.Join(wantLogs, "|") {
			t.Errorf("Decode(%s) = %q, want %q", in, got, wantLogs)
		}
	}
	// The envelope, and one record a line.
	f(`{"records":[{"category":"kube-audit","properties":{"log":"{\"a\":1}\n"}},{"category":"guard","properties":{"log":"x"}}]}`,
		[]string{`kube-audit={"a":1}`, `guard=x`}, nil)
	f(`{"time":"2026-12-04T08:00:00Z","category":"kube-audit-admin","properties":{"log":"{}","stream":"stdout"}}`,
		[]string{`kube-audit-admin={}`}, nil)
	// Keys are matched as encoding/json matches them, ignoring case.
	f(`{"Records":[{"Category":"kube-audit","Properties":{"Log":"{}"}}]}`, []string{`kube-audit={}`}, nil)
	// A log given as an object is taken as it is.
	f(`{"records":[{"category":"kube-audit","properties":{"log":{"b":[1]}}}]}`, []string{`kube-audit={"b":[1]}`}, nil)
	// Empty envelopes, a record without a log.
	f(`{"records":[]}`, []string{}, nil)
	f(`{"records":[{"category":"kube-audit"}]}`, []string{`kube-audit=`}, nil)
	// Not the shape: an audit event, an array, a string.
	f(`{"kind":"Event","auditID":"x"}`, nil, ErrNotRecords)
	f(`[1,2]`, nil, ErrNotRecords)
	f(`"records"`, nil, ErrNotRecords)
	// Broken: syntax, wrong types, trailing data.
	f(`{"records":[{"category":"kube-audit"`, nil, nil)
	f(`{"records":{}}`, nil, nil)
	f(`{"records":[1]}`, nil, nil)
	f(`{"records":[{"properties":{"log":5}}]}`, nil, nil)
	f(`{"records":[]} {}`, nil, nil)
	f(``, nil, nil)
}

func TestDecodeDepthBounded(t *testing.T) {
	deep := `{"records":[{"properties":{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}]}`
	if _, err := Decode([]byte(deep), nil); err == nil {
		t.Fatal("20,000 levels of nesting accepted")
	}
}

// TestAnnotate: the AKS annotations are set, a forged copy is dropped, and
// the event is otherwise untouched (cloud.Annotate's own tests cover the
// JSON surgery).
func TestAnnotate(t *testing.T) {
	r := Record{Category: CategoryAuditAdmin, ResourceID: fixtureResourceID,
		Log: []byte(`{"auditID":"a","annotations":{"auditpipe.io/aks-resource-id":"forged","authorization.k8s.io/decision":"allow"}}`)}
	out, err := Annotate(&r)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		AuditID     string            `json:"auditID"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(out, &ev); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	want := map[string]string{"auditpipe.io/source": "aks", AnnotationResourceID: fixtureResourceID,
		AnnotationCategory: CategoryAuditAdmin, "authorization.k8s.io/decision": "allow"}
	if ev.AuditID != "a" || len(ev.Annotations) != len(want) {
		t.Fatalf("got %s", out)
	}
	for k, v := range want {
		if ev.Annotations[k] != v {
			t.Errorf("%s = %q, want %q", k, ev.Annotations[k], v)
		}
	}
	if bytes.Contains(out, []byte("forged")) {
		t.Errorf("the forged annotation survived: %s", out)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a":`, `{"a":1} x`} {
		r.Log = []byte(bad)
		if _, err := Annotate(&r); err == nil {
			t.Errorf("Annotate(%q): no error", bad)
		}
	}
}

// TestAnnotateDecodes checks that the decoder detect runs reads the
// annotation, and that every other field is untouched.
func TestAnnotateDecodes(t *testing.T) {
	recs, err := Decode(readFixture(t, "eventhubs-message.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if !r.IsAudit() {
			continue
		}
		out, err := Annotate(&r)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		var before, after pipeline.Event
		if err := auditjson.Decode(&before, "c", r.Log); err != nil {
			t.Fatal(err)
		}
		if err := auditjson.Decode(&after, "c", out); err != nil {
			t.Fatalf("record %d: annotated event does not decode: %v", i, err)
		}
		if got := after.Annotations[AnnotationResourceID]; got != fixtureResourceID {
			t.Errorf("record %d: annotation %q", i, got)
		}
		if len(after.Annotations) != len(before.Annotations)+3 {
			t.Errorf("record %d: %d annotations, had %d", i, len(after.Annotations), len(before.Annotations))
		}
		for k, v := range before.Annotations {
			if after.Annotations[k] != v {
				t.Errorf("record %d: annotation %s changed", i, k)
			}
		}
		if before.Hash() != after.Hash() {
			t.Errorf("record %d: content hash changed, so dedup would not collapse kube-audit and kube-audit-admin copies", i)
		}
	}
}

func TestClusterName(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := ClusterName(in); got != want {
			t.Errorf("ClusterName(%q) = %q, want %q", in, got, want)
		}
	}
	f(fixtureResourceID, "PROD-EU1")
	f("/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/managedClusters/prod-eu1", "prod-eu1")
	f("/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/managedClusters/prod/extra", "prod")
	f("/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/x", "")
	f("", "")
}

func TestIsAuditCategory(t *testing.T) {
	for c, want := range map[string]bool{"kube-audit": true, "kube-audit-admin": true, "KUBE-AUDIT": true,
		"kube-apiserver": false, "guard": false, "": false, "kube-audit-adminx": false} {
		if got := IsAuditCategory(c); got != want {
			t.Errorf("IsAuditCategory(%q) = %v", c, got)
		}
	}
}
