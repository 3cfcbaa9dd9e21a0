package rules

import (
	"reflect"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestNormalizers(t *testing.T) {
	f := func(fn func(string) string, in, want string) {
		t.Helper()
		if got := fn(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	f(Network, "10.244.3.17", "10.244.3.0/24")
	f(Network, "::ffff:10.244.3.17", "10.244.3.0/24")
	f(Network, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64")
	f(Network, "not-an-ip", "not-an-ip")
	f(Network, "", "")
	f(UserAgentFamily, "kubectl/v1.34.0 (darwin/arm64) kubernetes/f28b4c9", "kubectl")
	f(UserAgentFamily, "kube-controller-manager/v1.34.1 (linux/amd64) kubernetes/93248f9/leader-election", "kube-controller-manager")
	f(UserAgentFamily, "Go-http-client/2.0", "go-http-client")
	f(UserAgentFamily, "curl/8.5.0", "curl")
	f(UserAgentFamily, "Helm/3.15.4", "helm")
	f(UserAgentFamily, "kubectl-1.2", "kubectl")
	f(UserAgentFamily, "Mozilla/5.0 (X11; Linux x86_64)", "mozilla")
	f(UserAgentFamily, strings.Repeat("a", 1000), strings.Repeat("a", maxFamily))
	f(PodOwner, "web-7d4b9c8f6-x2k9p", "web")
	f(PodOwner, "ledger-worker-6b7f9c5d8-q4zxw", "ledger-worker")
	f(PodOwner, "node-exporter-x2k9p", "node-exporter")
	f(PodOwner, "db-0", "db")
	f(PodOwner, "etcd-prod-cp-1", "etcd-prod-cp")
	f(PodOwner, "api", "api")
	f(PodOwner, "my-app", "my-app") // "app" has vowels: not a generated suffix
	f(PodOwner, "-", "-")
}

func TestNewTermsErrors(t *testing.T) {
	f := func(rule, want string) {
		t.Helper()
		_, err := Load(File{Name: "t.yaml", Data: []byte("rules:\n  - rule: r\n    severity: low\n    condition: verb != \"\"\n" + rule)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", rule, err, want)
		}
	}
	f("    new_terms: {key: [user.username]}\n", "new_terms has no fields")
	f("    new_terms: {fields: [sourceIP], history: 2w}\n", "want a duration such as 14d")
	f("    new_terms: {fields: [{field: sourceIP, normalize: cidr}]}\n", `unknown normalize "cidr"`)
	f("    new_terms: {fields: [nosuchfield]}\n", "unknown name nosuchfield")
	f("    new_terms: {fields: [sourceIP], window: 1d}\n", `unknown key "window" in new_terms`)
	f("    new_terms: {fields: [{name: x}]}\n", "item without field")
	f("    examples: {baseline: [{verb: get}]}\n", "baseline examples are for new_terms rules")
	f("    new_terms: {fields: [sourceIP], history: 0s}\n", "history must be positive")
}

// TestNewTermsOverride changes only the keys an override gives.
func TestNewTermsOverride(t *testing.T) {
	s, err := Load(
		File{Name: "a.yaml", Data: []byte("rules:\n  - rule: r\n    severity: low\n    condition: verb != \"\"\n    new_terms: {fields: [sourceIP], history: 3d, key_learning: 1h}\n")},
		File{Name: "b.yaml", Data: []byte("rules:\n  - {rule: r, override: append, new_terms: {learning: 1d}}\n")},
	)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := s.TermPolicy("r")
	want := firstseen.Policy{History: 72 * time.Hour, Learning: 24 * time.Hour, KeyLearning: time.Hour}
	if !ok || p != want {
		t.Fatalf("policy %+v, want %+v", p, want)
	}
	if s.MaxTermHistory() != 72*time.Hour {
		t.Fatalf("max history %v", s.MaxTermHistory())
	}
}

// TestTermsDetector follows one service account through a baseline, a pod
// restart on the same node and a token used from outside, and checks what
// a first-seen finding carries. A per-event Detect never reports a
// first-seen rule.
func TestTermsDetector(t *testing.T) {
	s, err := Load(File{Name: "t.yaml", Data: []byte(`rules:
  - rule: sa-net
    severity: high
    condition: hasPrefix(user.username, "system:serviceaccount:")
    output: "{{ user.username }} from {{ sourceIP }}"
    new_terms:
      key: [user.username]
      fields: [{field: sourceIP, normalize: network}]
      history: 14d
      learning: 1h
`)})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := firstseen.New(firstseen.Config{})
	if err != nil {
		t.Fatal(err)
	}
	det := NewTermsDetector(func() *Set { return s }, tr)
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	judge := func(id, ip string, at time.Duration) []pipeline.Finding {
		ev := saEvent(t, id, ip, t0.Add(at))
		if fs := s.Detect(ev, nil); len(fs) != 0 {
			t.Fatalf("Detect reported a first-seen rule: %+v", fs)
		}
		return det.Detect(ev, nil)
	}
	if fs := judge("a1", "10.244.3.17", 0); len(fs) != 0 {
		t.Fatalf("learning: %+v", fs)
	}
	if fs := judge("a2", "10.244.3.90", 2*time.Hour); len(fs) != 0 {
		t.Fatalf("same /24: %+v", fs)
	}
	fs := judge("a3", "203.0.113.50", 3*time.Hour)
	if len(fs) != 1 {
		t.Fatalf("new network: %d findings", len(fs))
	}
	f := fs[0]
	ev := map[string]string{}
	for _, e := range f.Evidence {
		ev[e.Field] = e.Value
	}
	if f.Detector != "rule:sa-net" || f.Severity != pipeline.SeverityHigh || ev[EvidenceTerm] != "203.0.113.0/24" ||
		ev[EvidenceTermKey] != "system:serviceaccount:payments:api" || ev[EvidenceKeyFirstSeen] != "2026-11-27T09:00:00Z" ||
		ev[EvidenceDistinctTerms] != "2" || ev[EvidenceTermHistory] != "14d" {
		t.Fatalf("finding %+v", f)
	}
	if !strings.Contains(f.Summary, `system:serviceaccount:payments:api from 203.0.113.50: new sourceIP (network) "203.0.113.0/24"`) {
		t.Fatalf("summary %q", f.Summary)
	}
	// The id is the term's, not the event's: the same term seen first by
	// another instance from another request has the same id.
	other := NewTermsDetector(func() *Set { return s }, mustTracker(t))
	other.Detect(saEvent(t, "b1", "10.244.3.17", t0), nil)
	if fs2 := other.Detect(saEvent(t, "b2", "203.0.113.51", t0.Add(4*time.Hour)), nil); len(fs2) != 1 || fs2[0].ID != f.ID {
		t.Fatalf("another instance: %+v, want id %s", fs2, f.ID)
	}
}

func mustTracker(t *testing.T) *firstseen.Tracker {
	tr, err := firstseen.New(firstseen.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func saEvent(t *testing.T, id, ip string, at time.Time) *pipeline.Event {
	t.Helper()
	js := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"` + id + `","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/namespaces/payments/configmaps/api-config","verb":"get",` +
		`"user":{"username":"system:serviceaccount:payments:api","groups":["system:serviceaccounts","system:authenticated"]},` +
		`"sourceIPs":["` + ip + `"],"userAgent":"api/1.4.2","objectRef":{"resource":"configmaps","namespace":"payments","name":"api-config","apiVersion":"v1"},` +
		`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"` + at.Format(time.RFC3339Nano) + `","stageTimestamp":"` + at.Format(time.RFC3339Nano) + `"}`
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, "prod", []byte(js)); err != nil {
		t.Fatal(err)
	}
	return &ev
}

// TestTermLine: termLine is oneLine(x, maxTermBytes) for terms that need
// nothing done, control characters (ASCII or not), invalid UTF-8 and
// terms to cut, at the bound and past it.
func TestTermLine(t *testing.T) {
	long := strings.Repeat("é", maxTermBytes) // cut inside a character
	for _, x := range []string{
		"", "10.244.3.0/24", "kubectl", "get | pods/exec", "tab\there", "nl\n", "del\x7f", "\x00",
		"c1 \u0085 \u009f", "bad \xff\xfe", "日本 🙂", strings.Repeat("a", maxTermBytes), strings.Repeat("a", maxTermBytes+1),
		long, long[:maxTermBytes-1] + "\n", strings.Repeat("\x01", maxTermBytes+3),
	} {
		if got, want := termLine(x), oneLine(x, maxTermBytes); got != want {
			t.Errorf("termLine(%q) = %q, want %q", x, got, want)
		}
	}
}

// TestTermStringFields: a key or term that reads a string field directly
// (termField.str) reads what the expression's accessor reads, for every
// string field, on an event that sets them all.
func TestTermStringFields(t *testing.T) {
	ev := saEvent(t, "a1", "10.0.0.1", time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC))
	ev.RequestURI += "?labelSelector=app%3Dweb&fieldSelector=x"
	ev.ImpersonatedUser = &authnv1.UserInfo{Username: "imp"}
	ev.User.UID = "uid-1"
	ev.ObjectRef.Subresource, ev.ObjectRef.APIGroup = "status", "apps"
	ev.ResponseStatus.Reason = "Forbidden"
	var e evaluator
	e.reset(ev, true)
	seen := 0
	for p, str := range stringFields {
		get := accessors[p]
		if get == nil {
			t.Errorf("%s: no accessor", p)
			continue
		}
		if got, want := str(&e.env), get(&e.env); got != want {
			t.Errorf("%s: direct read %q, accessor %v", p, got, want)
		}
		if got := str(&e.env); got != "" {
			seen++
		}
	}
	if seen < len(stringFields)-2 {
		t.Errorf("only %d of %d string fields set; the test compares empty strings", seen, len(stringFields))
	}
}

// TestDetectTermsMatchesSeparateCalls holds DetectTerms, which reads an
// event into the rules' state once for both, to Detect followed by Terms,
// each reading it anew, on generated streams where first-seen rules and
// ordinary rules both match (an attack-only stream) and rarely (a
// realistic one).
func TestDetectTermsMatchesSeparateCalls(t *testing.T) {
	s, err := LoadDefault(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.termRules) == 0 {
		t.Fatal("the default pack has no first-seen rule: the comparison proves nothing")
	}
	findings, matches := 0, 0
	for i, g := range []*gen.Generator{gen.New(gen.Config{Seed: 11, AttackRatio: 1}), gen.New(gen.Config{Seed: 12})} {
		var ev pipeline.Event
		for j := range 3000 {
			ev.Reset()
			if err := auditjson.Decode(&ev, "prod", g.Next().JSON); err != nil {
				t.Fatal(err)
			}
			wantOut := s.Detect(&ev, nil)
			wantTerms := s.Terms(&ev, nil)
			gotOut, gotTerms := s.DetectTerms(&ev, nil, nil)
			if !reflect.DeepEqual(gotOut, wantOut) {
				t.Fatalf("stream %d event %d (%s %s): findings\n  %+v\nwant\n  %+v", i, j, ev.Verb, ev.RequestURI, gotOut, wantOut)
			}
			if !reflect.DeepEqual(gotTerms, wantTerms) {
				t.Fatalf("stream %d event %d (%s %s): first-seen matches\n  %+v\nwant\n  %+v", i, j, ev.Verb, ev.RequestURI, gotTerms, wantTerms)
			}
			findings += len(wantOut)
			matches += len(wantTerms)
		}
	}
	if findings == 0 || matches == 0 {
		t.Fatalf("%d findings, %d first-seen matches: the comparison proves little", findings, matches)
	}
	t.Logf("%d findings and %d first-seen matches agreed", findings, matches)
}
