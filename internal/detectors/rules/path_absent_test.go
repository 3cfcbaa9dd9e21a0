package rules

import (
	"slices"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestPathAbsentIn(t *testing.T) {
	tests := []struct {
		path, raw string
		absent    bool
	}{
		{"spec.hostNetwork", `{"spec":{"hostPID":true}}`, true},
		{"spec.hostNetwork", `{"spec":{"hostNetwork":true}}`, false},
		// The quoted key as a value: the test only looks at bytes.
		{"spec.hostNetwork", `{"spec":{"note":"hostNetwork"}}`, false},
		{"spec.hostNetwork", `{"spec":{"note":"\"hostNetwork\""}}`, true},
		// \u may write any character of the key.
		{"spec.hostNetwork", `{"spec":{"host\u004eetwork":true}}`, false},
		{"spec.hostNetwork", `{"spec":{"a":"\u00e9"}}`, false},
		// Other escapes write no letter: managedFields' keys are full of \".
		{"spec.hostNetwork", `{"metadata":{"managedFields":[{"fieldsV1":{"k:{\"uid\":\"x\"}":{}}}]}}`, true},
		// \/ writes '/', which this key holds.
		{`metadata.annotations["kubernetes.io/config.mirror"]`, `{"metadata":{"annotations":{"kubernetes.io\/config.mirror":"x"}}}`, false},
		{`metadata.annotations["kubernetes.io/config.mirror"]`, `{"metadata":{"annotations":{"a":"b\/c"}}}`, false},
		{`metadata.annotations["kubernetes.io/config.mirror"]`, `{"metadata":{"annotations":{"a":"b"}}}`, true},
		{"spec.containers[*].image", `{"spec":{"containers":[{"name":"a"}]}}`, true},
		{"spec.containers[0]", `{"spec":{"initContainers":[]}}`, true},
		{"spec.containers[0]", `{"spec":{"containers":[]}}`, false},
		// Any key of the path missing will do, not only the last: a pod
		// has a "type" somewhere, seldom a seccompProfile.
		{"spec.securityContext.seccompProfile.type", `{"spec":{"securityContext":{},"volumes":[{"hostPath":{"type":"Directory"}}]}}`, true},
		{"spec.securityContext.seccompProfile.type", `{"spec":{"securityContext":{"seccompProfile":{"type":"Unconfined"}}}}`, false},
		{"spec.securityContext.seccompProfile.type", `{"spec":{"seccompProfile":{"type":"Unconfined"}}}`, true},
		{"spec.securityContext.seccompProfile.type", `{"spec":{"a":"\u00e9","type":1}}`, false},
		{`metadata.annotations["a/b"].x`, `{"metadata":{"annotations":{"a\/b":{"x":1}}}}`, false},
		{`metadata.annotations["a/b"].x`, `{"metadata":{"annotations":{"c":{"x":1}}}}`, true},
		// Only the last maxAbsentKeys keys are searched for: a missing
		// first key of a longer path leaves the decode to decide.
		{"a.b.c.d.e.f", `{"b":{"c":{"d":{"e":{"f":1}}}}}`, false},
		{"a.b.c.d.e.f", `{"a":{"b":{"c":{"d":{"e":{}}}}}}`, true},
		{"[0]", `[1]`, false}, // no key to look for
		{"spec.hostNetwork", ``, false},
	}
	for _, tt := range tests {
		p, err := parseBodyPath(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.absentIn([]byte(tt.raw)); got != tt.absent {
			t.Errorf("%s in %s: absent %v, want %v", tt.path, tt.raw, got, tt.absent)
		}
		// absentIn may only say what eval confirms.
		if p.absentIn([]byte(tt.raw)) {
			var ev pipeline.Event
			if v, ok := p.eval(ev.RequestBody()); ok {
				t.Errorf("%s: absent, but eval found %v", tt.path, v)
			}
		}
	}
}

// TestPathAbsentMatchesDecode holds the rules with the raw-bytes test to
// the rules that decode every body they read, on generated streams:
// identical findings, fewer decodes.
func TestPathAbsentMatchesDecode(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range slow.paths {
		p.keys, p.slash = nil, nil
	}
	n := 20000
	if testing.Short() {
		n = 4000
	}
	found, fastDecodes, slowDecodes := 0, 0, 0
	for _, ratio := range []float64{0.05, 1} {
		g := gen.New(gen.Config{Seed: 13, AttackRatio: ratio})
		for i := 0; i < n; i++ {
			a, b := decodeTwice(t, g.Next().JSON)
			got, want := fast.Detect(a, nil), slow.Detect(b, nil)
			if !sameFindings(got, want) {
				t.Fatalf("ratio %v event %d (%s %s): %v with the raw test, %v decoding", ratio, i, a.Verb, a.RequestURI, ids(got), ids(want))
			}
			found += len(want)
			fastDecodes += a.BodyDecodes()
			slowDecodes += b.BodyDecodes()
		}
	}
	if found == 0 || fastDecodes >= slowDecodes {
		t.Fatalf("%d findings, %d body decodes against %d: the comparison proves nothing", found, fastDecodes, slowDecodes)
	}
	t.Logf("%d findings; %d body decodes, %d without the raw test", found, fastDecodes, slowDecodes)
}

// decodeTwice decodes data into two events, for two rule sets to judge
// apart.
func decodeTwice(t *testing.T, data []byte) (a, b *pipeline.Event) {
	t.Helper()
	a, b = new(pipeline.Event), new(pipeline.Event)
	if err := auditjson.Decode(a, "prod", data); err != nil {
		t.Fatal(err)
	}
	if err := auditjson.Decode(b, "prod", data); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// sameFindings compares what two rule sets found: ids, summaries,
// severities and evidence.
func sameFindings(got, want []pipeline.Finding) bool {
	return slices.EqualFunc(got, want, func(x, y pipeline.Finding) bool {
		return x.ID == y.ID && x.Summary == y.Summary && x.Severity == y.Severity && slices.Equal(x.Evidence, y.Evidence)
	})
}
