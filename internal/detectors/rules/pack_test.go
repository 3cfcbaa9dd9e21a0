package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// TestDefaultPackExamples runs every example of every shipped rule through
// the engine, as the pipeline would: a match example must make its rule
// fire, a nomatch example must not. It also requires each enabled rule to
// have at least one example of each kind, so a rule cannot ship untested.
func TestDefaultPackExamples(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatalf("loading the default pack:\n%v", err)
	}
	results := RunExamples(s)
	type count struct{ match, nomatch int }
	counts := map[string]*count{}
	for _, r := range results {
		if !r.Pass {
			t.Error(r)
		}
		if r.Skipped {
			continue
		}
		c := counts[r.Rule]
		if c == nil {
			c = &count{}
			counts[r.Rule] = c
		}
		if r.Match {
			c.match++
		} else {
			c.nomatch++
		}
	}
	for _, def := range packRules(t) {
		if !def.enabled() {
			continue
		}
		c := counts[def.Rule]
		if c == nil || c.match == 0 || c.nomatch == 0 {
			t.Errorf("rule %s (%s): want at least one match and one nomatch example that ran, got %+v", def.Rule, def.file, c)
		}
	}
	t.Logf("%d examples of %d rules", len(results), len(counts))
}

// packRule is the part of a shipped rule the pack's own conventions cover;
// it is decoded here, not through the engine, so these checks hold
// whatever the engine keeps.
type packRule struct {
	Rule        string   `yaml:"rule"`
	Description string   `yaml:"description"`
	Severity    string   `yaml:"severity"`
	Tags        []string `yaml:"tags"`
	MITRE       string   `yaml:"mitre"`
	Output      string   `yaml:"output"`
	Enabled     *bool    `yaml:"enabled"`
	Examples    struct {
		Match   []yaml.Node `yaml:"match"`
		Nomatch []yaml.Node `yaml:"nomatch"`
	} `yaml:"examples"`
	file string
}

func (r packRule) enabled() bool { return r.Enabled == nil || *r.Enabled }

func packRules(t *testing.T) []packRule {
	t.Helper()
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("the default pack has no files")
	}
	var out []packRule
	for _, f := range files {
		var doc struct {
			Rules []packRule `yaml:"rules"`
		}
		if err := yaml.Unmarshal(f.Data, &doc); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		for _, r := range doc.Rules {
			r.file = f.Name
			out = append(out, r)
		}
	}
	return out
}

var (
	mitreID = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)
	// The apiserver writes metav1.MicroTime: RFC 3339 with six fractional digits.
	microTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
)

// TestDefaultPackConventions checks what the examples cannot: every rule is
// documented, graded and mapped (to a Falco rule or marked as a gap), and
// every example is an audit event as the apiserver writes it.
func TestDefaultPackConventions(t *testing.T) {
	rules := packRules(t)
	readme, err := os.ReadFile("default/README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rules {
		where := r.file + ": rule " + r.Rule
		if seen[r.Rule] {
			t.Errorf("%s: defined twice", where)
		}
		seen[r.Rule] = true
		if len(strings.Fields(r.Description)) < 8 {
			t.Errorf("%s: the description should say what happened and why it matters", where)
		}
		if !slices.Contains([]string{"info", "low", "medium", "high", "critical"}, r.Severity) {
			t.Errorf("%s: severity %q", where, r.Severity)
		}
		if !mitreID.MatchString(r.MITRE) {
			t.Errorf("%s: mitre %q is not a technique id", where, r.MITRE)
		}
		if slices.Contains(r.Tags, "falco") == slices.Contains(r.Tags, "gap") {
			t.Errorf("%s: tags %v: want exactly one of falco (has a Falco counterpart) or gap", where, r.Tags)
		}
		if !strings.Contains(r.Output, "{{ user.username }}") && !strings.Contains(r.Output, "{{ sourceIP }}") {
			t.Errorf("%s: the output should name who did it", where)
		}
		if !bytes.Contains(readme, []byte("| `"+r.Rule+"` |")) {
			t.Errorf("%s: missing from default/README.md", where)
		}
		for kind, exs := range map[string][]yaml.Node{"match": r.Examples.Match, "nomatch": r.Examples.Nomatch} {
			for i := range exs {
				checkExampleShape(t, where, kind, i, &exs[i])
			}
		}
	}
}

// checkExampleShape requires an example to be a complete audit.k8s.io/v1
// event with no unknown field, written at its authoritative stage (the
// engine would otherwise fill the stage in), with the apiserver's
// timestamps, identity and authorization decision.
func checkExampleShape(t *testing.T, where, kind string, i int, n *yaml.Node) {
	t.Helper()
	at := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s[%d] (line %d): "+format, append([]any{where, kind, i, n.Line}, args...)...)
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		at("%v", err)
		return
	}
	data, err := json.Marshal(m)
	if err != nil {
		at("%v", err)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ev auditv1.Event
	if err := dec.Decode(&ev); err != nil {
		at("not an audit event: %v", err)
		return
	}
	if ev.Kind != "Event" || ev.APIVersion != "audit.k8s.io/v1" {
		at("kind/apiVersion %q/%q", ev.Kind, ev.APIVersion)
	}
	if ev.AuditID == "" || ev.Stage == "" || ev.Level == "" || ev.Verb == "" || ev.RequestURI == "" {
		at("auditID, stage, level, verb and requestURI must all be written")
	}
	if ev.User.Username == "" || len(ev.SourceIPs) == 0 || ev.UserAgent == "" || ev.ResponseStatus == nil {
		at("user, sourceIPs, userAgent and responseStatus must all be written")
	}
	for _, ts := range []string{"requestReceivedTimestamp", "stageTimestamp"} {
		if s, _ := m[ts].(string); !microTime.MatchString(s) {
			at("%s %q is not RFC 3339 with microseconds", ts, s)
		}
	}
	if d := ev.Annotations["authorization.k8s.io/decision"]; d != "allow" && d != "forbid" {
		at("authorization.k8s.io/decision %q", d)
	}
	if (ev.RequestObject != nil && ev.Level == auditv1.LevelMetadata) || (ev.ResponseObject != nil && ev.Level != auditv1.LevelRequestResponse) {
		at("level %s cannot carry the bodies it has", ev.Level)
	}
}
