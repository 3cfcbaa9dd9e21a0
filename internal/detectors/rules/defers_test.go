package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// deletePolicy is a ValidatingAdmissionPolicy deleted by a person, as the
// apiserver logs it at Metadata level.
const deletePolicy = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5d0c2a7e-3f1b-4c8d-9e6a-1b2c3d4e5f60","stage":"ResponseComplete","requestURI":"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/require-signed-images","verb":"delete","user":{"username":"mallory@example.com","groups":["system:authenticated"]},"sourceIPs":["192.168.50.41"],"userAgent":"kubectl/v1.33.3 (linux/amd64) kubernetes/80779bd","objectRef":{"resource":"validatingadmissionpolicies","name":"require-signed-images","apiGroup":"admissionregistration.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T10:40:01.000000Z","stageTimestamp":"2026-11-27T10:40:01.010000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`

const deferringRule = `
rules:
  - rule: policy-deleted
    severity: high
    defers_to: [admission-policy-change]
    condition: objectRef.resource == "validatingadmissionpolicies" && verb == "delete"
`

func detectorsOf(fs []pipeline.Finding) []string {
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.Detector)
	}
	return ids
}

// TestDefersTo: a rule that defers to a detector stays quiet on an event
// that detector reported, and fires when it did not (the detector disabled,
// or its finding about another request earlier in the batch).
func TestDefersTo(t *testing.T) {
	s := load(t, deferringRule)
	ev := decode(t, deletePolicy)

	if got := detectorsOf(s.Detect(ev, nil)); !slices.Equal(got, []string{"rule:policy-deleted"}) {
		t.Fatalf("alone: got %v, want the rule's finding", got)
	}

	builtin := pipeline.NewFinding("admission-policy-change", ev, "")
	if got := detectorsOf(s.Detect(ev, []pipeline.Finding{builtin})); !slices.Equal(got, []string{"admission-policy-change"}) {
		t.Errorf("after the detector: got %v, want only the detector's finding", got)
	}

	other := pipeline.NewFinding("broad-selector", ev, "")
	if got := detectorsOf(s.Detect(ev, []pipeline.Finding{other})); !slices.Equal(got, []string{"broad-selector", "rule:policy-deleted"}) {
		t.Errorf("after an unrelated detector: got %v, want both", got)
	}

	// The detector's finding is about an earlier request of the batch.
	earlier := decode(t, strings.Replace(deletePolicy, "5d0c2a7e-3f1b", "0000aaaa-3f1b", 1))
	prev := pipeline.NewFinding("admission-policy-change", earlier, "")
	if got := detectorsOf(s.Detect(ev, []pipeline.Finding{prev})); !slices.Equal(got, []string{"admission-policy-change", "rule:policy-deleted"}) {
		t.Errorf("after another request's finding: got %v, want both", got)
	}

	// A detector may follow its finding about this event with one about an
	// earlier, correlated request.
	if got := detectorsOf(s.Detect(ev, []pipeline.Finding{builtin, prev})); len(got) != 2 {
		t.Errorf("behind a correlated finding: got %v, want the rule deferred", got)
	}
}

// TestDefersToOverride: append adds detector ids, replace swaps them, and a
// malformed id is refused at load time.
func TestDefersToOverride(t *testing.T) {
	ev := decode(t, deletePolicy)
	builtin := pipeline.NewFinding("admission-policy-change", ev, "")

	s := load(t, deferringRule, `
rules:
  - rule: policy-deleted
    defers_to: []
    override: replace
`)
	if got := detectorsOf(s.Detect(ev, []pipeline.Finding{builtin})); len(got) != 2 {
		t.Errorf("replaced with none: got %v, want the detector's and the rule's", got)
	}

	s = load(t, `
rules:
  - rule: policy-deleted
    severity: high
    condition: objectRef.resource == "validatingadmissionpolicies" && verb == "delete"
`, `
rules:
  - rule: policy-deleted
    defers_to: admission-policy-change
    override: append
`)
	if got := detectorsOf(s.Detect(ev, []pipeline.Finding{builtin})); len(got) != 1 {
		t.Errorf("appended: got %v, want only the detector's", got)
	}

	_, err := Load(File{Name: "user.yaml", Data: []byte(`
rules:
  - rule: r
    severity: low
    defers_to: ["bad id!"]
    condition: verb == "get"
`)})
	if err == nil || !strings.Contains(err.Error(), `user.yaml:5:17: defers_to[0] "bad id!" is not a detector id`) {
		t.Errorf("bad id: got %v", err)
	}
}
