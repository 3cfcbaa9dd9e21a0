package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// userRuleTemplates are the shapes of rules a security team writes on top
// of the default pack: scoped to a team's namespace, identity, client or
// network, a few reading the request body. %[1]d numbers the rule, so
// every generated rule is distinct and no two share a compiled program.
var userRuleTemplates = []string{
	`verb in ["delete", "deletecollection"] && objectRef.resource == "configmaps" && objectRef.namespace == "team-%[1]d"`,
	`objectRef.resource == "secrets" && verb in ["get", "list", "watch"] && user.username == "system:serviceaccount:team-%[1]d:app"`,
	`requestURI startsWith "/apis/apps/v1/namespaces/team-%[1]d/" && not (user.username startsWith "system:")`,
	`objectRef.resource == "pods" && objectRef.subresource in ["exec", "attach"] && objectRef.namespace == "team-%[1]d"`,
	`sourceIP != "" && cidr(sourceIP, "203.0.%[2]d.0/24") && verb != "get"`,
	`userAgent contains "deploy-tool-%[1]d/" && objectRef.resource in ["deployments", "statefulsets"]`,
	`decision == "forbid" && user.username == "user-%[1]d@example.com"`,
	`objectRef.resource == "pods" && verb == "create" && objectRef.namespace == "team-%[1]d" && has("spec.hostNetwork")`,
}

// userRules generates n rules in one file.
func userRules(n int) rules.File {
	var sb strings.Builder
	sb.WriteString("rules:\n")
	for i := range n {
		cond := fmt.Sprintf(userRuleTemplates[i%len(userRuleTemplates)], i, i%256)
		fmt.Fprintf(&sb, "  - rule: user-rule-%d\n", i)
		fmt.Fprintf(&sb, "    description: Generated user rule %d.\n", i)
		fmt.Fprintf(&sb, "    severity: %s\n", []string{"low", "medium", "high"}[i%3])
		fmt.Fprintf(&sb, "    condition: %s\n", yamlQuote(cond))
		sb.WriteString("    output: \"{{ user.username }} {{ verb }} {{ objectRef.resource }}\"\n")
	}
	return rules.File{Name: fmt.Sprintf("user-%d.yaml", n), Data: []byte(sb.String())}
}

func yamlQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// ruleSet loads the default pack plus n generated user rules.
func ruleSet(b testing.TB, n int) *rules.Set {
	b.Helper()
	files, err := rules.DefaultFiles()
	if err != nil {
		b.Fatal(err)
	}
	if n > 0 {
		files = append(files, userRules(n))
	}
	set, err := rules.Load(files...)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// benchDetectRules is decode, the built-ins, then a rule set.
func benchDetectRules(b *testing.B, userRules int) {
	events, bytes := realisticStream(b)
	builtins, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	set := ruleSet(b, userRules)
	report(b, events, bytes)
	var ev pipeline.Event
	var out []pipeline.Finding
	for i := 0; b.Loop(); i++ {
		if err := auditjson.Decode(&ev, "prod", events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
		out = builtins.Detect(&ev, out[:0])
		out = set.Detect(&ev, out)
	}
}

// BenchmarkDecodeDetectDefaultRules is detect with the built-ins and the
// default rule pack: the out-of-the-box configuration.
func BenchmarkDecodeDetectDefaultRules(b *testing.B) { benchDetectRules(b, 0) }

// BenchmarkDecodeDetectUserRules100 adds 100 generated user rules.
func BenchmarkDecodeDetectUserRules100(b *testing.B) { benchDetectRules(b, 100) }

// BenchmarkDecodeDetectUserRules1000 adds 1,000 generated user rules.
func BenchmarkDecodeDetectUserRules1000(b *testing.B) { benchDetectRules(b, 1000) }

// BenchmarkDecodeDetectFindings is what detect scan does per event on an
// incident's slice of logs (every request the generator makes belongs to
// an attack; about half of the judged events produce a finding), on one
// goroutine and without reading the file: decode, the built-ins, the
// default pack including its first-seen rules, and every finding printed
// as a JSON line into a reused buffer.
func BenchmarkDecodeDetectFindings(b *testing.B) {
	events, bytes := findingHeavyStream(b)
	builtins, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	set := ruleSet(b, 0)
	tracker, err := firstseen.New(firstseen.Config{})
	if err != nil {
		b.Fatal(err)
	}
	terms := rules.NewTermsDetector(func() *rules.Set { return set }, tracker)
	report(b, events, bytes)
	var ev pipeline.Event
	var out []pipeline.Finding
	var line []byte
	found := 0
	for i := 0; b.Loop(); i++ {
		if err := auditjson.Decode(&ev, "prod", events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
		out = builtins.Detect(&ev, out[:0])
		out = set.Detect(&ev, out)
		out = terms.Detect(&ev, out)
		found += len(out)
		for j := range out {
			if line, err = out[j].AppendJSON(line[:0], false); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(found)/float64(b.N), "findings/event")
}

// TestUserRulesLoad keeps the generated rules loadable: a template the rule
// compiler refuses would otherwise only show up as a failed benchmark.
func TestUserRulesLoad(t *testing.T) {
	set := ruleSet(t, 1000)
	def := ruleSet(t, 0)
	if set.Len() != def.Len()+1000 {
		t.Fatalf("%d rules, want the default pack's %d + 1000", set.Len(), def.Len())
	}
}
