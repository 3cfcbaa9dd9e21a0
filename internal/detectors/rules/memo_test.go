package rules

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestSharedValuesOncePerEvent: two rules reading the containers through
// one macro share its value, computed by the first and read by the second
// from the memo (the second sees what the memo holds); a value reading a
// predicate's item from around it is not shared, and the next event
// computes the shared value anew.
func TestSharedValuesOncePerEvent(t *testing.T) {
	const pack = `
macros:
  - macro: containers
    condition: |-
      objectRef.subresource == "ephemeralcontainers" ? object("spec.ephemeralContainers")
      : concat(object("spec.initContainers") ?? [], object("spec.containers") ?? [])
rules:
  - rule: privileged
    severity: high
    condition: |-
      any(containers, {#.securityContext?.privileged == true})
  - rule: named
    severity: low
    condition: |-
      len(containers) > 0 && any(containers, {object("metadata.name") != #.name})
`
	s, err := Load(File{Name: "memo.yaml", Data: []byte(pack)})
	if err != nil {
		t.Fatal(err)
	}
	// The macro's value, its parts, and object("metadata.name"); nothing
	// that reads #, whose value is the predicate's item.
	slot, macro := -1, `interface {} (objectRef.subresource == "ephemeralcontainers" ? `
	for key, i := range s.memoSlots {
		if strings.Contains(key, "#") {
			t.Errorf("%q shared: it reads a predicate's item", key)
		}
		if strings.HasPrefix(key, macro) {
			slot = i
		}
	}
	if _, ok := s.memoSlots[`interface {} object("metadata.name")`]; !ok || slot < 0 {
		t.Fatalf("the macro's value or metadata.name not shared: %v", s.memoSlots)
	}
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, "prod", []byte(privilegedPod)); err != nil {
		t.Fatal(err)
	}
	st := s.pool.Get().(*state)
	defer s.pool.Put(st)
	st.reset(&ev, true)
	var out []pipeline.Finding
	if out = s.judge(st, 0, &ev, out); len(out) != 1 {
		t.Fatalf("%d findings on the privileged pod, want 1", len(out))
	}
	first := st.env.memo[slot]
	if st.env.memoAt[slot] != st.env.memoGen || reflect.ValueOf(first).Len() == 0 {
		t.Fatalf("containers not kept for the event: %v", first)
	}
	// The second rule reads the containers from the memo: emptied there,
	// it finds none.
	st.env.memo[slot] = []any{}
	if out = s.judge(st, 1, &ev, out[:0]); len(out) != 0 {
		t.Fatalf("the second rule computed the containers again: %v", out)
	}
	st.env.memo[slot] = first
	if out = s.judge(st, 1, &ev, out[:0]); len(out) != 1 {
		t.Fatalf("%d findings of the second rule, want 1", len(out))
	}
	st.release()
	var other pipeline.Event
	if err := auditjson.Decode(&other, "prod", []byte(metadataPod)); err != nil {
		t.Fatal(err)
	}
	st.reset(&other, true)
	if st.env.memoAt[slot] == st.env.memoGen {
		t.Fatal("the previous event's containers are still valid")
	}
	if out = s.judge(st, 0, &other, out[:0]); len(out) != 0 || st.env.memoAt[slot] != st.env.memoGen {
		t.Fatalf("the metadata-only pod: %v, containers kept %v", out, st.env.memoAt[slot] == st.env.memoGen)
	}
	st.release()
}

// TestSharedValuesChangeNothing: the default pack and 1,000 generated
// rules raise the same findings on generated streams with their values
// shared and without.
func TestSharedValuesChangeNothing(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, File{Name: "gen.yaml", Data: generatedRules(1000)})
	shared, err := loadWithCache(context.Background(), newParseCache(), true, files...)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := loadWithCache(context.Background(), newParseCache(), false, files...)
	if err != nil {
		t.Fatal(err)
	}
	if len(shared.memoSlots) == 0 || len(alone.memoSlots) != 0 {
		t.Fatalf("%d and %d shared values: the comparison proves nothing", len(shared.memoSlots), len(alone.memoSlots))
	}
	n := 20000
	if testing.Short() {
		n = 4000
	}
	var a, b pipeline.Event
	found := 0
	for _, g := range []*gen.Generator{gen.New(gen.Config{Seed: 11, AttackRatio: 0.05}), gen.New(gen.Config{Seed: 12, AttackRatio: 1})} {
		for range n {
			data := g.Next().JSON
			a.Reset()
			b.Reset()
			if err := auditjson.Decode(&a, "prod", data); err != nil {
				t.Fatal(err)
			}
			if err := auditjson.Decode(&b, "prod", data); err != nil {
				t.Fatal(err)
			}
			got, want := shared.Detect(&a, nil), alone.Detect(&b, nil)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s: shared %v, alone %v", a.Verb, a.RequestURI, got, want)
			}
			found += len(got)
		}
	}
	if found == 0 {
		t.Fatal("no finding: the comparison proves nothing")
	}
	t.Logf("%d findings alike", found)
}

// TestSharedValuesBounded: a condition nesting body reads a thousand deep
// (a rule file's author chooses its shape) shares only its small
// expressions, so that finding and naming them stays linear in the
// condition: without the bounds each of the thousand nested ?? would be
// printed whole into a key.
func TestSharedValuesBounded(t *testing.T) {
	const depth = 1000
	cond := strings.Repeat(`(object("spec.a") ?? `, depth) + "nil" + strings.Repeat(")", depth) + ` == "x"`
	yaml := fmt.Sprintf("rules:\n  - rule: deep\n    severity: low\n    condition: %q\n", cond)
	s, err := Load(File{Name: "deep.yaml", Data: []byte(yaml)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.memoSlots); n == 0 || n > 100 {
		t.Fatalf("%d shared values, want between 1 and 100", n)
	}
	for key := range s.memoSlots {
		if len(key) > 4096 {
			t.Fatalf("a key of %d bytes", len(key))
		}
	}
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, "prod", []byte(privilegedPod)); err != nil {
		t.Fatal(err)
	}
	if d, _ := nativeDisagreement(s, &ev, true); d != "" {
		t.Fatal(d)
	}
}
