package rules

import (
	"fmt"
	"math/bits"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func load(t testing.TB, files ...string) *Set {
	t.Helper()
	var fs []File
	for i, f := range files {
		fs = append(fs, File{Name: fmt.Sprintf("f%d.yaml", i+1), Data: []byte(f)})
	}
	s, err := Load(fs...)
	if err != nil {
		t.Fatalf("loading: %v", err)
	}
	return s
}

// decode builds an event from JSON written in a test table.
func decode(t testing.TB, js string) *pipeline.Event {
	t.Helper()
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, "prod", []byte(js)); err != nil {
		t.Fatalf("decoding %s: %v", js, err)
	}
	return &ev
}

func fired(s *Set, ev *pipeline.Event) []string {
	var ids []string
	for _, f := range s.Detect(ev, nil) {
		ids = append(ids, f.Detector)
	}
	return ids
}

func TestLoadErrors(t *testing.T) {
	f := func(name, yaml, want string) {
		t.Helper()
		_, err := Load(File{Name: "user.yaml", Data: []byte(yaml)})
		if err == nil {
			t.Fatalf("%s: loaded; want error %q", name, want)
		}
		var msgs []string
		for _, e := range Errors(err) {
			msgs = append(msgs, e.Error())
		}
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("%s: errors\n  %s\nwant one containing %q", name, strings.Join(msgs, "\n  "), want)
		}
	}
	f("unknown field", `
rules:
  - rule: r
    severity: low
    condition: verb == "get" && user.nme == "x"
`, `user.yaml:5:38: rule r: type rules.UserEnv has no field nme`)
	f("unknown top-level field", `
rules:
  - rule: r
    severity: low
    condition: vreb == "get"
`, `user.yaml:5:16: rule r: unknown name vreb`)
	f("type error", `
rules:
  - rule: r
    severity: low
    condition: responseStatus.code == "403"
`, `user.yaml:5:36: rule r: invalid operation: == (mismatched types int and string)`)
	f("not bool", `
rules:
  - rule: r
    severity: low
    condition: user.username
`, `user.yaml:5:16: rule r: expected bool, but got string`)
	f("unknown macro", `
rules:
  - rule: r
    severity: low
    condition: |-
      verb == "get"
        && is_shell
`, `user.yaml:7:12: rule r: unknown name is_shell`)
	f("macro cycle", `
macros:
  - macro: a
    condition: b && verb == "get"
  - macro: b
    condition: verb == "list" || a
`, `user.yaml:6:16: macro cycle: b -> a -> b`)
	f("bad severity", `
rules:
  - rule: r
    severity: urgent
    condition: verb == "get"
`, `user.yaml:4:15: rule "r": unknown severity "urgent"`)
	f("unknown key", `
rules:
  - rule: r
    severity: low
    priority: high
    condition: verb == "get"
`, `user.yaml:5:5: unknown key "priority" in rule`)
	f("unknown top key", `
rule:
  - rule: r
`, `user.yaml:2:1: unknown key "rule"`)
	f("duplicate rule", `
rules:
  - rule: r
    severity: low
    condition: verb == "get"
  - rule: r
    severity: low
    condition: verb == "list"
`, `user.yaml:6:5: rule "r" is already defined at user.yaml:3:5: set override: append or replace`)
	f("override of nothing", `
rules:
  - rule: r
    override: append
    condition: verb == "list"
`, `user.yaml:3:5: rule "r": override of a rule that is not defined in an earlier file`)
	f("missing condition", `
rules:
  - rule: r
    severity: low
`, `user.yaml:3:5: rule "r" has no condition`)
	f("bad body path", `
rules:
  - rule: r
    severity: low
    condition: has("spec.containers[x]")
`, `user.yaml:5:16: path "spec.containers[x]": want [N], [*] or ["key"], got [x]`)
	f("non-literal body path", `
rules:
  - rule: r
    severity: low
    condition: has(verb)
`, `user.yaml:5:16: has() takes a path literal`)
	f("syntax error", `
rules:
  - rule: r
    severity: low
    condition: verb == "get" &&
`, `user.yaml:5:`)
	f("template field", `
rules:
  - rule: r
    severity: low
    condition: verb == "get"
    output: "{{ user.username }} read {{ objectRef.nam }}"
`, `user.yaml:6:52: rule r output: type rules.ObjectRefEnv has no field nam`)
	f("unclosed template", `
rules:
  - rule: r
    severity: low
    condition: verb == "get"
    output: "{{ user.username"
`, `output: unclosed {{`)
	f("macro shadows field", `
macros:
  - macro: verb
    condition: "true"
`, `user.yaml:3:5: macro name "verb" is an event field`)
	f("exception field", `
rules:
  - rule: r
    severity: low
    condition: verb == "get"
    exceptions:
      - name: e
        fields: [user.name]
        values: [[x]]
`, `user.yaml:8:23: exception e: type rules.UserEnv has no field name`)
	f("exception arity", `
rules:
  - rule: r
    severity: low
    condition: verb == "get"
    exceptions:
      - name: e
        fields: [user.username, verb]
        values: [[x]]
`, `user.yaml:9:19: exception "e": value 1 has 1 items for 2 fields`)
	f("yaml syntax", "rules:\n  - rule: r\n   severity: [\n", `parsing YAML: line`)
	f("bad example", `
rules:
  - rule: r
    severity: low
    condition: verb == "get"
    examples:
      match:
        - {verb: get, requestReceivedTimestamp: yesterday}
`, `user.yaml:8:11: rule "r": example: decoding event`)
}

// TestErrorsAllReported checks that one load reports every problem, not
// the first.
func TestErrorsAllReported(t *testing.T) {
	_, err := Load(File{Name: "a.yaml", Data: []byte(`
rules:
  - rule: one
    severity: low
    condition: nope == 1
  - rule: two
    severity: bad
    condition: verb == "get"
`)}, File{Name: "b.yaml", Data: []byte("lists: 3\n")})
	got := Errors(err)
	if len(got) != 3 {
		t.Fatalf("got %d errors, want 3: %v", len(got), err)
	}
}

func TestOverrides(t *testing.T) {
	base := `
lists:
  - list: shells
    items: [exec]
macros:
  - macro: is_shell
    condition: objectRef.subresource in shells
rules:
  - rule: shell
    severity: high
    tags: [execution]
    condition: is_shell && verb == "create"
    exceptions:
      - name: ci
        fields: [user.username]
        values: [[ci-bot]]
`
	const exec = `{"verb":"create","stage":"ResponseStarted","user":{"username":"%s"},"objectRef":{"resource":"pods","subresource":"%s","namespace":"prod","name":"p"},"responseStatus":{"code":101}}`
	f := func(name, user string, want bool, overlay ...string) {
		t.Helper()
		s := load(t, append([]string{base}, overlay...)...)
		for _, sub := range []string{"exec"} {
			got := len(fired(s, decode(t, fmt.Sprintf(exec, user, sub)))) > 0
			if got != want {
				t.Errorf("%s: user %s: fired=%v, want %v", name, user, got, want)
			}
		}
	}
	f("base fires", "alice", true)
	f("base exception", "ci-bot", false)
	f("rule append ANDs", "breakglass-bob", false, `
rules:
  - rule: shell
    override: append
    condition: not (user.username startsWith "breakglass-")
`)
	f("rule append keeps old condition", "alice", true, `
rules:
  - rule: shell
    override: append
    condition: not (user.username startsWith "breakglass-")
`)
	f("rule append adds exception values", "deployer", false, `
rules:
  - rule: shell
    override: append
    exceptions:
      - name: ci
        fields: [user.username]
        values: [[deployer]]
`)
	f("rule replace condition", "alice", false, `
rules:
  - rule: shell
    override: replace
    condition: verb == "delete"
`)
	f("rule disabled", "alice", false, `
rules:
  - rule: shell
    override: replace
    enabled: false
`)
	f("list replace", "alice", false, `
lists:
  - list: shells
    items: [attach]
    override: replace
`)
	f("macro replace", "alice", false, `
macros:
  - macro: is_shell
    condition: objectRef.subresource == "attach"
    override: replace
`)

	// Appending to a list or macro widens what the rule matches.
	attach := decode(t, fmt.Sprintf(exec, "alice", "attach"))
	for _, overlay := range []string{`
lists:
  - list: shells
    items: [attach]
    override: append
`, `
macros:
  - macro: is_shell
    condition: objectRef.subresource == "attach"
    override: append
`} {
		if got := fired(load(t, base), attach); len(got) != 0 {
			t.Fatalf("base fired on attach: %v", got)
		}
		if got := fired(load(t, base, overlay), attach); !slices.Equal(got, []string{"rule:shell"}) {
			t.Errorf("after %s: fired %v, want rule:shell", overlay, got)
		}
	}
}

// A pod created with a privileged container and a hostPath volume, the
// body at RequestResponse level: the request as sent, the response as
// stored (after defaulting, so the response also carries a field the
// request lacks).
const privilegedPod = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"4d1c7f7e-2f5a-4b6e-9d0e-1f2a3b4c5d6e","stage":"ResponseComplete",
"requestURI":"/api/v1/namespaces/payments/pods?fieldManager=kubectl-client-side-apply","verb":"create",
"user":{"username":"mallory@example.com","groups":["devs","system:authenticated"]},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.31.0",
"objectRef":{"resource":"pods","namespace":"payments","name":"debug","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},
"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"debug","namespace":"payments","labels":{"app":"debug","pod-security.kubernetes.io/enforce":"privileged"}},
 "spec":{"hostPID":true,"containers":[{"name":"app","image":"nginx:1.27"},{"name":"shell","image":"busybox","securityContext":{"privileged":true}}],
 "volumes":[{"name":"root","hostPath":{"path":"/"}}]}},
"responseObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"debug","namespace":"payments","uid":"u-1","labels":{"app":"debug","pod-security.kubernetes.io/enforce":"privileged"}},
 "spec":{"hostPID":true,"serviceAccountName":"default","containers":[{"name":"app","image":"nginx:1.27"},{"name":"shell","image":"busybox","securityContext":{"privileged":true}}],
 "volumes":[{"name":"root","hostPath":{"path":"/","type":""}}]}},
"requestReceivedTimestamp":"2026-11-27T09:00:00.000000Z","stageTimestamp":"2026-11-27T09:00:00.020000Z",
"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"devs\""}}`

// The same pod at Metadata level: no bodies at all.
const metadataPod = `{"level":"Metadata","auditID":"a2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/pods","verb":"create",
"user":{"username":"mallory@example.com"},"objectRef":{"resource":"pods","namespace":"payments","name":"debug","apiVersion":"v1"},"responseStatus":{"code":201}}`

func TestBodyPaths(t *testing.T) {
	f := func(cond string, want bool) {
		t.Helper()
		s := load(t, fmt.Sprintf("rules:\n  - rule: r\n    severity: high\n    condition: %q\n", cond))
		if got := len(fired(s, decode(t, privilegedPod))) > 0; got != want {
			t.Errorf("%s: fired=%v on the privileged pod, want %v", cond, got, want)
		}
		if got := fired(s, decode(t, metadataPod)); len(got) > 0 && strings.Contains(cond, "(") && !strings.HasPrefix(cond, "not") {
			t.Errorf("%s: fired on a bodiless event", cond)
		}
	}
	f(`true in request("spec.containers[*].securityContext.privileged")`, true)
	f(`any(object("spec.containers[*].securityContext.privileged"), # == true)`, true)
	f(`"/" in object("spec.volumes[*].hostPath.path")`, true)
	f(`has("spec.volumes[*].hostPath")`, true)
	f(`has("spec.volumes[*].emptyDir")`, false)
	f(`object("spec.hostPID") == true`, true)
	f(`request("spec.serviceAccountName") == nil && response("spec.serviceAccountName") == "default"`, true)
	f(`object("metadata.labels[\"pod-security.kubernetes.io/enforce\"]") == "privileged"`, true)
	f(`object("spec.containers[1].image") == "busybox"`, true)
	f(`object("spec.containers[7].image") == "busybox"`, false)
	f(`len(object("spec.containers[*].name")) == 2`, true)
	f(`has("spec.volumes[*].hostPath.type")`, true) // response only
	f(`has("metadata.uid") && !has("metadata.nope")`, true)
}

func TestOutputAndEvidence(t *testing.T) {
	s := load(t, `
rules:
  - rule: privileged-pod
    description: A privileged container was created.
    severity: critical
    mitre: T1610
    tags: [privilege-escalation, pod]
    condition: verb == "create" && objectRef.resource == "pods" && true in object("spec.containers[*].securityContext.privileged") && cidr(sourceIP, "203.0.113.0/24")
    output: "{{ user.username }} created privileged pod {{ objectRef.namespace }}/{{ objectRef.name }} ({{ object(\"spec.containers[*].image\") }}) from {{ sourceIP }}\nnext line"
`)
	got := s.Detect(decode(t, privilegedPod), nil)
	if len(got) != 1 {
		t.Fatalf("got %d findings, want 1", len(got))
	}
	f := got[0]
	if f.Detector != "rule:privileged-pod" || f.Severity != pipeline.SeverityCritical || f.MITRE != "T1610" || f.Namespace != "payments" {
		t.Errorf("finding %+v", f)
	}
	wantSummary := `mallory@example.com created privileged pod payments/debug (["nginx:1.27","busybox"]) from 203.0.113.7 next line`
	if f.Summary != wantSummary {
		t.Errorf("summary %q\nwant    %q", f.Summary, wantSummary)
	}
	want := []pipeline.Evidence{
		{Field: "verb", Value: "create", Source: pipeline.FromEvent},
		{Field: "objectRef.resource", Value: "pods", Source: pipeline.FromEvent},
		{Field: "spec.containers[*].securityContext.privileged", Value: "[true]", Source: pipeline.FromResponse},
		{Field: "sourceIP", Value: "203.0.113.7", Source: pipeline.FromEvent},
		{Field: "tags", Value: "privilege-escalation,pod", Source: SourceRule},
	}
	if !slices.Equal(f.Evidence, want) {
		t.Errorf("evidence\n %v\nwant\n %v", f.Evidence, want)
	}
	// The finding id is stable: a redelivered event yields the same one.
	if again := s.Detect(decode(t, privilegedPod), nil); again[0].ID != f.ID {
		t.Errorf("finding id changed on redelivery")
	}
}

func TestHelpers(t *testing.T) {
	g := func(s, p string, want bool) {
		t.Helper()
		if got := glob(s, p); got != want {
			t.Errorf("glob(%q, %q) = %v", s, p, got)
		}
	}
	g("system:serviceaccount:kube-system:x", "system:serviceaccount:*:x", true)
	g("system:serviceaccount:kube-system:x", "system:serviceaccount:*", true)
	g("abc", "a?c", true)
	g("abc", "a*b", false)
	g("", "*", true)
	g("aaa", "a*a*a", true)
	g("/api/v1/secrets", "/api/*/secrets", true)
	c := func(ip, p string, want bool) {
		t.Helper()
		if got := cidr(ip, p); got != want {
			t.Errorf("cidr(%q, %q) = %v", ip, p, got)
		}
	}
	c("10.1.2.3", "10.0.0.0/8", true)
	c("11.1.2.3", "10.0.0.0/8", false)
	c("::ffff:10.1.2.3", "10.0.0.0/8", true)
	c("10.1.2.3", "10.1.2.3", true)
	c("bogus", "10.0.0.0/8", false)
	c("10.1.2.3", "bogus", false)

	s := load(t, `
rules:
  - rule: selector
    severity: low
    condition: selectors.labelSelector == "app in (a,b)" && path == "/api/v1/pods" && glob(user.username, "system:node:*")
`)
	ev := decode(t, `{"verb":"list","stage":"ResponseComplete","requestURI":"/api/v1/pods?labelSelector=app+in+%28a%2Cb%29&limit=500","user":{"username":"system:node:n1"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200}}`)
	if got := fired(s, ev); len(got) != 1 {
		t.Errorf("selector rule did not fire")
	}
}

// TestEvalErrorsCounted makes a rule fail at run time and checks the event
// is still judged by the other rules and the error is counted.
func TestEvalErrorsCounted(t *testing.T) {
	s := load(t, `
rules:
  - rule: bad
    severity: low
    condition: user.groups[5] == "x"
  - rule: good
    severity: low
    condition: verb == "create"
`)
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Instrument(nil, m)
	if got := fired(s, decode(t, metadataPod)); !slices.Equal(got, []string{"rule:good"}) {
		t.Errorf("fired %v, want rule:good", got)
	}
	if n := counterValue(t, m.evalErrors.WithLabelValues("bad")); n != 1 {
		t.Errorf("eval errors = %v, want 1", n)
	}
}

// TestIndexedMatchesBruteForce runs the default pack and generated rules
// over the generator's stream, with and without the index: the findings
// must be the same, event for event.
func TestIndexedMatchesBruteForce(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, File{Name: "gen.yaml", Data: generatedRules(100)})
	s, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	n := 20000
	if testing.Short() {
		n = 5000
	}
	g := gen.New(gen.Config{Seed: 11, AttackRatio: 0.05})
	var ev pipeline.Event
	var fast, slow []pipeline.Finding
	var total, skipped int
	for i := 0; i < n; i++ {
		if err := auditjson.Decode(&ev, "prod", g.Next().JSON); err != nil {
			t.Fatal(err)
		}
		fast = s.detect(&ev, fast[:0], false)
		slow = s.detect(&ev, slow[:0], true)
		if !slices.EqualFunc(fast, slow, func(a, b pipeline.Finding) bool { return a.ID == b.ID && a.Summary == b.Summary }) {
			t.Fatalf("event %d (%s %s): indexed %v, brute force %v", i, ev.Verb, ev.RequestURI, ids(fast), ids(slow))
		}
		total += len(slow)
		if ev.IsAuthoritative() {
			skipped += s.Len() - evaluated(s, &ev)
		}
	}
	if total == 0 {
		t.Fatal("no rule fired on the whole stream: the comparison proves nothing")
	}
	t.Logf("%d events, %d findings, %d rule evaluations skipped by the index", n, total, skipped)
}

func ids(fs []pipeline.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Detector)
	}
	return out
}

// evaluated counts the rules the index lets through to evaluation on ev:
// filed under one of its values, every requirement met.
func evaluated(s *Set, ev *pipeline.Event) int {
	st := s.pool.Get().(*state)
	defer s.pool.Put(st)
	st.reset(ev, true)
	defer st.release()
	values := eventValues{env: &st.env}
	s.index.candidates(&values, st.candidates)
	n := 0
	for w, left := range st.candidates {
		for left != 0 {
			i := w*64 + bits.TrailingZeros64(left)
			left &= left - 1
			if allRequirementsHold(s.rules[i].reqs, &values) {
				n++
			}
		}
	}
	return n
}

func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("testdata/exec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(File{Name: "testdata/exec.yaml", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	res := RunExamples(s)
	if len(res) != 3 {
		t.Fatalf("%d results, want 3", len(res))
	}
	want := []string{
		"PASS shell-into-pod match[0] (testdata/exec.yaml:21:11): fired: alice@example.com opened exec into prod/web-0",
		"PASS shell-into-pod nomatch[0] (testdata/exec.yaml:28:11): did not fire: suppressed by exception ci_debug",
		"PASS shell-into-pod nomatch[1] (testdata/exec.yaml:32:11): did not fire: the condition is false",
	}
	for i, r := range res {
		if r.String() != want[i] {
			t.Errorf("result %d:\n got %s\nwant %s", i, r, want[i])
		}
	}
}
