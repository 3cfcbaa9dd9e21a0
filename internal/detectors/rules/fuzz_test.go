package rules

import (
	"os"
	"reflect"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// FuzzRuleCompile feeds arbitrary bytes to the loader: it must return a set
// or errors, never panic or hang (MaxExpandedNodes and MaxSetNodes bound
// the work), and a set it returns must judge events without panicking,
// finding the same with its index as without.
func FuzzRuleCompile(f *testing.F) {
	if data, err := os.ReadFile("testdata/exec.yaml"); err == nil {
		f.Add(data)
	}
	if files, err := DefaultFiles(); err == nil && len(files) > 0 {
		f.Add(files[0].Data)
	}
	f.Add(generatedRules(5))
	f.Add([]byte("macros:\n  - macro: a\n    condition: b\n  - macro: b\n    condition: a\nrules:\n  - rule: r\n    severity: low\n    condition: a\n"))
	f.Add([]byte("rules:\n  - rule: r\n    severity: low\n    condition: has(\"a[*].b[\\\"c]\\\"]\")\n    output: \"{{ object(\\\"x[0]\\\") }}{{\"\n"))
	f.Add([]byte("lists: &a [*a]\n"))
	// Macro expansion bombs, refused by MaxExpandedNodes before anything
	// is inlined, and a doubling within the bound for the fuzzer to grow.
	f.Add(macroDoubling(40))
	f.Add(macroDoubling(8))
	f.Add(macroChain(1000, 30))
	f.Add([]byte("lists:\n  - list: l\n    items: [a, b, c, d, e, f, g, h]\nmacros:\n  - macro: a\n    condition: verb in l\n  - macro: b\n    condition: a or a or a\n  - macro: c\n    condition: b and b and b\nrules:\n  - rule: r\n    severity: low\n    condition: c or c\n    output: \"{{ c and b }}\"\n"))
	// A first-seen rule: key, normalised fields, durations, a baseline.
	f.Add([]byte("rules:\n  - rule: n\n    severity: low\n    condition: verb != \"\"\n    new_terms:\n      key: [user.username, 'user.extra[\"a\"]']\n      fields: [{field: sourceIP, normalize: network}, {field: userAgent, normalize: ua_family, name: client}, {field: objectRef.name, normalize: owner}]\n      history: 2d\n      learning: 1h\n      key_learning: 0s\n    examples:\n      baseline: [{verb: get, sourceIPs: [10.0.0.1]}]\n      match: [{verb: get, sourceIPs: [10.9.0.1]}]\n"))
	var events []*pipeline.Event
	for _, js := range []string{privilegedPod, metadataPod} {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", []byte(js)); err != nil {
			f.Fatal(err)
		}
		events = append(events, &ev)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Load(File{Name: "fuzz.yaml", Data: data})
		if err != nil {
			for _, e := range Errors(err) {
				if e.Message == "" {
					t.Fatalf("empty error message in %v", err)
				}
			}
			return
		}
		for _, ev := range events {
			// The index only skips rules that cannot fire.
			if fast, slow := s.detect(ev, nil, false), s.detect(ev, nil, true); !reflect.DeepEqual(fast, slow) {
				t.Fatalf("indexed %v, every rule %v", ids(fast), ids(slow))
			}
		}
		RunExamples(s)
		tr, err := firstseen.New(firstseen.Config{MaxKeys: 4, MaxTermsPerKey: 2})
		if err != nil {
			t.Fatal(err)
		}
		det := NewTermsDetector(func() *Set { return s }, tr)
		for _, ev := range events {
			det.Detect(ev, nil)
		}
	})
}
