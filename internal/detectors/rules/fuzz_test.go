package rules

import (
	"os"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// FuzzRuleCompile feeds arbitrary bytes to the loader: it must return a set
// or errors, never panic, and a set it returns must judge events without
// panicking.
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
	var events []*pipeline.Event
	for _, js := range []string{privilegedPod, metadataPod} {
		var ev pipeline.Event
		if err := ev.Decode("prod", []byte(js)); err != nil {
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
			s.Detect(ev, nil)
		}
		RunExamples(s)
	})
}
