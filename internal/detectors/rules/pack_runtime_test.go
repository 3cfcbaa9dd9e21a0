package rules

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/auditpipe/auditpipe/internal/gen"
)

// TestBlankExamples pins blankExamples' reading of the layout: a block
// ends at the first line, not a comment, indented no deeper than its key.
func TestBlankExamples(t *testing.T) {
	in := "rules:\n  - rule: a\n    condition: |-\n      verb == \"get\"\n    examples:\n      match:\n        - kind: Event\n\n# a comment at the margin\n          verb: get\n      nomatch: []\n    output: x\n  - rule: b\n    examples: # not blanked: not the bare key\n    condition: y"
	want := "rules:\n  - rule: a\n    condition: |-\n      verb == \"get\"\n\n\n\n\n\n\n\n    output: x\n  - rule: b\n    examples: # not blanked: not the bare key\n    condition: y"
	if got := string(blankExamples([]byte(in))); got != want {
		t.Fatalf("blankExamples:\n%s\nwant:\n%s", got, want)
	}
	if got := string(blankExamples([]byte("a: 1\n"))); got != "a: 1\n" {
		t.Fatalf("trailing newline: %q", got)
	}
}

// TestDefaultRuntimeFiles holds the pack detect loads (DefaultRuntimeFiles:
// examples blanked) to the pack as shipped: the same lines where not
// blanked, no example left, the same rules, lists and macros, and the same
// findings on generated streams, while the shipped pack still has its
// examples.
func TestDefaultRuntimeFiles(t *testing.T) {
	full, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	runtime, err := DefaultRuntimeFiles()
	if err != nil {
		t.Fatal(err)
	}
	blanked := 0
	for i := range full {
		a, b := bytes.Split(full[i].Data, []byte("\n")), bytes.Split(runtime[i].Data, []byte("\n"))
		if len(a) != len(b) {
			t.Fatalf("%s: %d lines, %d after blanking", full[i].Name, len(a), len(b))
		}
		for j := range b {
			if len(b[j]) == 0 {
				if len(bytes.TrimSpace(a[j])) > 0 {
					blanked++
				}
				continue
			}
			if !bytes.Equal(a[j], b[j]) {
				t.Fatalf("%s:%d changed: %q → %q", full[i].Name, j+1, a[j], b[j])
			}
			if bytes.Contains(b[j], []byte("examples:")) {
				t.Fatalf("%s:%d: examples left: %q", full[i].Name, j+1, b[j])
			}
		}
	}
	fullSet, err := LoadContext(context.Background(), full...)
	if err != nil {
		t.Fatal(err)
	}
	runSet, err := LoadContext(context.Background(), runtime...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fullSet.Names(), runSet.Names()) {
		t.Fatalf("rules differ:\n%v\n%v", fullSet.Names(), runSet.Names())
	}
	if a, b := fullSet.Counts(); true {
		if c, d := runSet.Counts(); a != c || b != d {
			t.Fatalf("lists and macros: %d, %d shipped; %d, %d blanked", a, b, c, d)
		}
	}
	if n := len(RunExamples(runSet)); n != 0 {
		t.Fatalf("%d examples left in the runtime pack", n)
	}
	if n := len(RunExamples(fullSet)); n < 100 || blanked == 0 {
		t.Fatalf("the shipped pack has %d examples, %d lines blanked: the comparison proves nothing", n, blanked)
	}
	found := 0
	for _, ratio := range []float64{0.05, 1} {
		g := gen.New(gen.Config{Seed: 17, AttackRatio: ratio})
		for i := range 6000 {
			a, b := decodeTwice(t, g.Next().JSON)
			want, got := fullSet.Detect(a, nil), runSet.Detect(b, nil)
			if !sameFindings(got, want) {
				t.Fatalf("ratio %v event %d: %v with the runtime pack, %v shipped", ratio, i, ids(got), ids(want))
			}
			found += len(want)
		}
	}
	if found == 0 {
		t.Fatal("no findings: the comparison proves nothing")
	}
}
