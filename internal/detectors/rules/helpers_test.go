package rules

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

var (
	genVerbs     = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	genResources = []string{"pods", "secrets", "configmaps", "deployments", "services", "nodes", "namespaces",
		"leases", "events", "serviceaccounts", "clusterrolebindings", "rolebindings", "endpointslices", "jobs"}
)

// generatedRules writes n rules in the shapes user rules take, over the
// vocabulary of the generator's stream: most constrain verb and resource
// (and go into index buckets), one in five constrains neither (always
// evaluated), some read bodies. Some fire on the stream.
func generatedRules(n int) []byte {
	var b bytes.Buffer
	b.WriteString("lists:\n  - list: gen_system_namespaces\n    items: [kube-system, kube-public]\nrules:\n")
	for i := range n {
		v, v2 := genVerbs[i%len(genVerbs)], genVerbs[(i/3+1)%len(genVerbs)]
		r, r2 := genResources[i%len(genResources)], genResources[(i/5+2)%len(genResources)]
		var cond string
		switch i % 5 {
		case 0:
			cond = fmt.Sprintf(`verb == %q && objectRef.resource == %q && user.username startsWith "system:serviceaccount:"`, v, r)
		case 1:
			cond = fmt.Sprintf(`verb in [%q, %q] && objectRef.resource in [%q, %q] && responseStatus.code >= 400`, v, v2, r, r2)
		case 2:
			cond = fmt.Sprintf(`objectRef.resource == %q && hasPrefix(userAgent, "kubectl") && !(objectRef.namespace in gen_system_namespaces)`, r)
		case 3:
			cond = fmt.Sprintf(`(userAgent contains "curl" || user.username == "system:anonymous") && sourceIP startsWith "%d."`, 198+i%10)
		case 4:
			cond = fmt.Sprintf(`verb == "create" && objectRef.resource == %q && object("metadata.labels[\"app\"]") != nil && len(user.groups) > %d`, r, i%3)
		}
		fmt.Fprintf(&b, "  - rule: gen-%04d\n    severity: low\n    condition: '%s'\n    output: \"{{ user.username }} {{ verb }} {{ objectRef.resource }}\"\n", i, cond)
	}
	return b.Bytes()
}

func runtimeGosched() { runtime.Gosched() }

// macroDoubling writes n macros, each ORing the previous one with itself,
// and a rule using the last: inlined, macro k has 2^(k+1)-1 nodes, so the
// file is a few kilobytes and its expansion exponential.
func macroDoubling(n int) []byte {
	var b bytes.Buffer
	b.WriteString("macros:\n  - macro: m1\n    condition: verb == \"get\"\n")
	for i := 2; i <= n; i++ {
		fmt.Fprintf(&b, "  - macro: m%d\n    condition: m%d or m%d\n", i, i-1, i-1)
	}
	fmt.Fprintf(&b, "rules:\n  - rule: bomb\n    severity: low\n    condition: m%d\n", n)
	return b.Bytes()
}

// macroChain writes n macros, each ORing the previous one with a test of a
// list of items items, and a rule using the last: the expansion grows by
// the same amount per macro, so it is linear in n.
func macroChain(n, items int) []byte {
	var b bytes.Buffer
	b.WriteString("lists:\n  - list: team_namespaces\n    items: [")
	for i := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "team-%d", i)
	}
	b.WriteString("]\nmacros:\n  - macro: c1\n    condition: verb == \"get\"\n")
	for i := 2; i <= n; i++ {
		fmt.Fprintf(&b, "  - macro: c%d\n    condition: c%d or objectRef.namespace in team_namespaces\n", i, i-1)
	}
	fmt.Fprintf(&b, "rules:\n  - rule: chain\n    severity: low\n    condition: c%d\n", n)
	return b.Bytes()
}
