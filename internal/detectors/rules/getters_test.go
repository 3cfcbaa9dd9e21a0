package rules

import (
	"testing"

	"github.com/expr-lang/expr/vm"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestFieldGettersMatchPrograms: what a rule's evidence and output show of
// a plain field, read through its accessor without a program, is what the
// field's compiled program yields, for every field on every event of a
// stream; and only a plain field read is taken out of the VM.
func TestFieldGettersMatchPrograms(t *testing.T) {
	c := &compiler{cfgBool: newConfig(true), cfgAny: newConfig(false), paths: map[string]*bodyPath{}}
	progs := map[string]*vm.Program{}
	for _, d := range accessorDefs {
		tree, ok := c.parse(condPart{text: d.path}, d.path, 0, false)
		if !ok {
			t.Fatalf("%s does not parse", d.path)
		}
		p, err := c.program(tree.Node, d.path, c.cfgAny)
		if err != nil {
			t.Fatal(err)
		}
		progs[d.path] = p
	}
	var st state
	st.init(nil)
	for i, ev := range stream(t, 3, 2000) {
		st.reset(&ev, true)
		for _, d := range accessorDefs {
			want, err := st.vm.Run(progs[d.path], &st.env)
			if err != nil {
				t.Fatal(err)
			}
			if got := formatValue(accessors[d.path](&st.env)); got != formatValue(want) {
				t.Fatalf("event %d, %s: getter shows %q, program %q", i, d.path, got, formatValue(want))
			}
		}
		st.release()
	}

	s, err := Load(File{Name: "o.yaml", Data: []byte(`rules:
  - rule: o
    severity: low
    condition: verb == "get" && objectRef.resource + "x" != ""
    output: "{{ user.username }} {{ verb + \"!\" }} {{ objectRef.resource }}"
  - rule: n
    severity: low
    condition: verb == "get"
    new_terms:
      fields: [verb, 'objectRef.resource + "/" + objectRef.subresource']
`)})
	if err != nil {
		t.Fatal(err)
	}
	r := s.rules[0]
	var gets []bool
	for _, p := range r.output {
		if p.prog != nil || p.get != nil {
			gets = append(gets, p.get != nil)
		}
		if p.prog != nil && p.get != nil {
			t.Errorf("output part %q has both a program and an accessor", p.text)
		}
	}
	if len(gets) != 3 || !gets[0] || gets[1] || !gets[2] {
		t.Errorf("output parts read directly: %v, want [true false true]", gets)
	}
	for _, e := range r.evidence {
		if e.get == nil || e.prog != nil {
			t.Errorf("evidence %s runs or compiles a program", e.field)
		}
	}
	n := s.rules[1].terms
	if n.key[0].get == nil || n.fields[0].get == nil || n.fields[1].get != nil {
		t.Errorf("first-seen key and fields read directly: %v %v %v, want true true false", n.key[0].get != nil, n.fields[0].get != nil, n.fields[1].get != nil)
	}
}

// TestEvidenceSharesBoxedFields: a fired rule's evidence of three string
// fields allocates only its slice; the values are the boxes its condition
// made, not a fresh interface per field.
func TestEvidenceSharesBoxedFields(t *testing.T) {
	s, err := Load(File{Name: "e.yaml", Data: []byte(`rules:
  - rule: e
    severity: low
    condition: verb == "get" && objectRef.resource == "pods" && user.username != ""
`)})
	if err != nil {
		t.Fatal(err)
	}
	ev := &pipeline.Event{}
	ev.Verb, ev.Stage, ev.User.Username = "get", "ResponseComplete", "alice"
	ev.ObjectRef = &auditv1.ObjectReference{Resource: "pods"}
	st := s.pool.Get().(*state)
	st.reset(ev, true)
	r := s.rules[0]
	if fired, _, err := s.match(st, r); !fired || err != nil {
		t.Fatalf("did not fire: %v", err)
	}
	if got := len(s.evidence(st, r)); got != 3 {
		t.Fatalf("%d pieces of evidence, want 3", got)
	}
	if n := testing.AllocsPerRun(100, func() { s.evidence(st, r) }); n != 1 {
		t.Errorf("evidence allocates %v times, want 1 (its slice)", n)
	}
}
