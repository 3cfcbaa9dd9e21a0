package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestOneFindingPerSignal runs the built-in detectors and the default pack
// as detect run and detect scan chain them, and checks that where a
// detector and a rule report the same thing, an event raises one finding
// for it (the rule declares defers_to), at each level the event arrives
// with.
func TestOneFindingPerSignal(t *testing.T) {
	chain, err := loadAll("", nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile("../../testdata/events/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	f := func(name, js string, signal []string, want string) {
		t.Helper()
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", []byte(js)); err != nil {
			t.Fatalf("%s: decoding: %v", name, err)
		}
		var got []string
		for _, fd := range chain.Detect(&ev, nil) {
			if slices.Contains(signal, fd.Detector) {
				got = append(got, fd.Detector)
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: findings for the signal %v: %v; want [%s]", name, signal, got, want)
		}
	}
	level := func(js, lvl string) string {
		return strings.Replace(js, `"level":"RequestResponse"`, `"level":"`+lvl+`"`, 1)
	}

	policy := []string{"admission-policy-change", "rule:admission-policy-deleted"}
	del := read("admission-policy-delete.json")
	f("policy deleted, RequestResponse", del, policy, "admission-policy-change")
	f("policy deleted, Metadata", level(del, "Metadata"), policy, "admission-policy-change")

	secrets := []string{"broad-selector", "rule:secret-watch-by-human", "rule:secret-read-by-human", "rule:secret-access-denied"}
	watch := read("broad-selector-watch-secrets.json")
	f("cluster-wide secret watch", watch, secrets, "broad-selector")
	list := strings.NewReplacer(`"stage":"ResponseStarted"`, `"stage":"ResponseComplete"`,
		`"verb":"watch"`, `"verb":"list"`, `?resourceVersion=48220117\u0026watch=true`, ``).Replace(watch)
	f("cluster-wide secret list", list, secrets, "broad-selector")
	refused := strings.NewReplacer(`"code":200`, `"code":403`, `"decision":"allow"`, `"decision":"forbid"`).Replace(list)
	f("cluster-wide secret list refused", refused, secrets, "broad-selector")
	noDecision := strings.NewReplacer(`"code":200`, `"code":403`, `"authorization.k8s.io/decision":"allow",`, ``).Replace(list)
	f("cluster-wide secret list refused, no decision annotation", noDecision, secrets, "broad-selector")
	// One named secret is not a broad read: the rule reports it.
	get := strings.NewReplacer(`"verb":"list"`, `"verb":"get"`, `/api/v1/secrets`, `/api/v1/namespaces/payments/secrets/db`,
		`"resource":"secrets",`, `"resource":"secrets","namespace":"payments","name":"db",`).Replace(list)
	f("one secret read", get, secrets, "rule:secret-read-by-human")

	psa := []string{"admission-policy-change", "rule:pod-security-enforce-weakened"}
	patch := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments?fieldManager=kubectl-label","verb":"patch","user":{"username":"bob@example.com","groups":["developers","system:authenticated"]},"sourceIPs":["192.168.50.41"],"userAgent":"kubectl/v1.33.3 (linux/amd64) kubernetes/80779bd","objectRef":{"resource":"namespaces","name":"payments","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}},"responseObject":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"payments","uid":"1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9","resourceVersion":"48300111","creationTimestamp":"2026-01-10T08:00:00Z","labels":{"kubernetes.io/metadata.name":"payments","pod-security.kubernetes.io/enforce":"privileged"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}},"requestReceivedTimestamp":"2026-11-27T10:12:00.000100Z","stageTimestamp":"2026-11-27T10:12:00.010100Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"ns-admins\" of ClusterRole \"namespace-admin\" to Group \"developers\""}}`
	f("pod security label weakened, RequestResponse", patch, psa, "admission-policy-change")
	reqOnly := strings.Replace(level(patch, "Request"), patch[strings.Index(patch, `"responseObject"`):strings.Index(patch, `"requestReceivedTimestamp"`)], ``, 1)
	f("pod security label weakened, Request", reqOnly, psa, "admission-policy-change")
}
