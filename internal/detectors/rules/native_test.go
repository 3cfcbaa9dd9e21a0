package rules

import (
	"fmt"
	"github.com/expr-lang/expr/vm/runtime"
	"os"
	"reflect"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// nativeDisagreement runs every condition and exception of s that has a
// native form on ev both ways, and describes the first difference: the
// native form must give the VM's verdict wherever the VM gives one, and
// must fail (so that the VM runs) wherever the VM fails. It also returns
// how many conditions ran natively to the end.
func nativeDisagreement(s *Set, ev *pipeline.Event, strict bool) (string, int) {
	st := s.pool.Get().(*state)
	defer s.pool.Put(st)
	st.reset(ev, true)
	defer st.release()
	ran := 0
	check := func(name string, native nativeCond, vmRun func() (any, error)) string {
		if native == nil {
			return ""
		}
		nb, ok := runNative(native, &st.env)
		v, err := vmRun()
		vb, isBool := v.(bool)
		switch {
		case err != nil || !isBool:
			if ok {
				return fmt.Sprintf("%s: the VM fails (%v, %T) where the native condition says %v", name, err, v, nb)
			}
		case !ok:
			// A native failure where the VM succeeds costs only speed,
			// but none is expected on realistic events.
			if strict {
				return fmt.Sprintf("%s: the native condition fails where the VM says %v", name, vb)
			}
		case nb != vb:
			return fmt.Sprintf("%s: native %v, VM %v", name, nb, vb)
		default:
			ran++
		}
		return ""
	}
	for _, r := range s.rules {
		if d := check("rule "+r.name, r.native, func() (any, error) { return st.vm.Run(r.cond, &st.env) }); d != "" {
			return d, ran
		}
		for _, ex := range r.exceptions {
			if d := check("rule "+r.name+" exception "+ex.name, ex.native, func() (any, error) { return st.vm.Run(ex.prog, &st.env) }); d != "" {
				return d, ran
			}
		}
	}
	return "", ran
}

// TestNativeMatchesVM holds the native conditions of the default pack,
// 1,000 generated user rules and the test rules to the VM's verdicts on a
// generated stream with attacks, event by event.
func TestNativeMatchesVM(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, File{Name: "gen.yaml", Data: generatedRules(1000)})
	if data, err := os.ReadFile("testdata/exec.yaml"); err == nil {
		files = append(files, File{Name: "exec.yaml", Data: data})
	}
	s, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	native, conds := 0, 0
	for _, r := range s.rules {
		conds++
		if r.native != nil {
			native++
		}
		for _, ex := range r.exceptions {
			conds++
			if ex.native != nil {
				native++
			}
		}
	}
	t.Logf("%d of %d conditions and exceptions compiled to Go", native, conds)
	if native < conds*9/10 {
		// The pack and the generated rules use nothing outside the
		// subset but any()/all() over containers and a few helpers.
		t.Errorf("only %d of %d conditions compiled to Go", native, conds)
	}
	n := 20000
	if testing.Short() {
		n = 4000
	}
	var ev pipeline.Event
	ran := 0
	for i, g := range []*gen.Generator{gen.New(gen.Config{Seed: 3, AttackRatio: 0.05}), gen.New(gen.Config{Seed: 4, AttackRatio: 1})} {
		for j := 0; j < n; j++ {
			ev.Reset()
			if err := auditjson.Decode(&ev, "prod", g.Next().JSON); err != nil {
				t.Fatal(err)
			}
			d, k := nativeDisagreement(s, &ev, true)
			if d != "" {
				t.Fatalf("stream %d event %d (%s %s): %s", i, j, ev.Verb, ev.RequestURI, d)
			}
			ran += k
		}
	}
	if ran == 0 {
		t.Fatal("no native condition ran: the comparison proves nothing")
	}
	t.Logf("%d native evaluations agreed with the VM", ran)
}

// FuzzNativeMatchesVM compiles arbitrary conditions and exceptions and
// holds the native form of each to the VM's verdict, or to its failure,
// on events that exercise bodies, lists and missing fields.
func FuzzNativeMatchesVM(f *testing.F) {
	for _, c := range []string{
		`verb == "create" && objectRef.resource in ["pods", "secrets"] && responseStatus.code >= 200`,
		`hasPrefix(user.username, "system:") || userAgent contains "curl" || sourceIP startsWith "10."`,
		`cidr(sourceIP, "10.0.0.0/8") && glob(requestURI, "/api/*/namespaces/*") && !("system:masters" in user.groups)`,
		`any(object("spec.containers") ?? [], {let c = #; c.securityContext?.privileged == true && !any(["a", "b"], {hasPrefix(c.image, # + ":")})})`,
		`all(concat(object("spec.initContainers") ?? [], object("spec.containers") ?? []), {#.image != nil}) && len(user.groups) > 1`,
		`none(keys(object("metadata.labels") ?? {}), {# matches "^app"}) && (object("spec.hostNetwork") ?? false)`,
		`object("spec.replicas") > 2 || object("spec.template.spec.hostPID") == true ? annotations["authorization.k8s.io/decision"] == "allow" : has("spec.volumes")`,
		`object("spec") && true`, `object("metadata.name") + "x" == "x"`, `len(object("spec.containers"))`,
		`lower(user.username) == "alice" && trimSuffix(objectRef.name, "-x") in ["a"] && request("spec.x") == response("spec.x")`,
		`objectRef.resource == "pods" ? object("spec") != nil : object("spec.template.spec") ?? {} == {}`,
	} {
		f.Add(c, "user.username", "nobody")
		f.Add(c, "object(\"spec.hostNetwork\")", "true")
	}
	var events []*pipeline.Event
	for _, js := range []string{privilegedPod, metadataPod} {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", []byte(js)); err != nil {
			f.Fatal(err)
		}
		events = append(events, &ev)
	}
	g := gen.New(gen.Config{Seed: 5, AttackRatio: 1})
	for range 30 {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", g.Next().JSON); err != nil {
			f.Fatal(err)
		}
		events = append(events, &ev)
	}
	f.Fuzz(func(t *testing.T, cond, field, value string) {
		yaml := fmt.Sprintf("rules:\n  - rule: r\n    severity: low\n    condition: %q\n    exceptions:\n      - name: e\n        fields: [%q]\n        values: [[%q]]\n", cond, field, value)
		s, err := Load(File{Name: "fuzz.yaml", Data: []byte(yaml)})
		if err != nil {
			return
		}
		for _, ev := range events {
			if d, _ := nativeDisagreement(s, ev, false); d != "" {
				t.Fatalf("%s\nevent %s %s", d, ev.Verb, ev.RequestURI)
			}
		}
	})
}

// TestFetchMatchesRuntime holds fetch, the native member read, to the VM's
// runtime.Fetch on body values and on what else a member read meets:
// the same value, or a panic from both.
func TestFetchMatchesRuntime(t *testing.T) {
	body := map[string]any{"image": "nginx", "ports": []any{80.0}, "securityContext": map[string]any{"privileged": true}, "null": nil}
	for _, tc := range []struct {
		name     string
		from, at any
	}{
		{"member", body, "image"},
		{"nested object", body, "securityContext"},
		{"null member", body, "null"},
		{"absent member", body, "command"},
		{"empty object", map[string]any{}, "x"},
		{"non-string key", body, 1},
		{"nil key", body, nil},
		{"array index", []any{"a", "b"}, 1},
		{"array index out of range", []any{"a"}, 3},
		{"string map", map[string]string{"a": "b"}, "a"},
		{"from nil", nil, "a"},
		{"from a string", "abc", 1},
		{"from a number", 1.5, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, gotPanic := fetchOrPanic(fetch, tc.from, tc.at)
			want, wantPanic := fetchOrPanic(runtime.Fetch, tc.from, tc.at)
			if gotPanic != wantPanic || !reflect.DeepEqual(got, want) {
				t.Fatalf("fetch %v (panic %v), runtime.Fetch %v (panic %v)", got, gotPanic, want, wantPanic)
			}
		})
	}
}

func fetchOrPanic(f func(from, at any) any, from, at any) (v any, panicked bool) {
	defer func() {
		if recover() != nil {
			v, panicked = nil, true
		}
	}()
	return f(from, at), false
}
