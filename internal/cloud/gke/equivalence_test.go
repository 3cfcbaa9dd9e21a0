package gke

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// webhookTwin is the audit event kube-apiserver's webhook would have sent
// for the request a fixture logs, written by hand from the fixture as the
// apiserver writes events (the query string kubectl sends, the groups the
// authenticators add, 201 for a create): what GKE had before it rewrote
// it. Bodies are the fixture's, without GKE's @type.
func webhookTwin(t *testing.T, entry json.RawMessage, fields map[string]any) []byte {
	t.Helper()
	var e struct {
		ProtoPayload struct {
			Request, Response map[string]any
		} `json:"protoPayload"`
	}
	if err := json.Unmarshal(entry, &e); err != nil {
		t.Fatal(err)
	}
	ev := map[string]any{"kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete"}
	if e.ProtoPayload.Request != nil {
		delete(e.ProtoPayload.Request, "@type")
		ev["requestObject"] = e.ProtoPayload.Request
	}
	if e.ProtoPayload.Response != nil {
		delete(e.ProtoPayload.Response, "@type")
		ev["responseObject"] = e.ProtoPayload.Response
	}
	for k, v := range fields {
		ev[k] = v
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// findingKeys runs the built-in detectors and the default rule pack over
// evs and returns each finding as detector/severity/resource/name/user,
// sorted: what an operator sees, without the ids (they hash the request,
// whose URI differs by the query GKE drops).
func findingKeys(t *testing.T, set *detectors.Set, pack *rules.Set, evs ...[]byte) []string {
	t.Helper()
	var keys []string
	for _, data := range evs {
		var ev pipeline.Event
		if err := ev.Decode("prod-eu1", data); err != nil {
			t.Fatalf("decoding %s: %v", data, err)
		}
		var out []pipeline.Finding
		out = set.Detect(&ev, out)
		out = pack.Detect(&ev, out)
		for _, f := range out {
			keys = append(keys, fmt.Sprintf("%s/%s/%s/%s/%s/%s", f.Detector, f.Severity, f.Resource, f.Namespace, f.Name, f.Username))
		}
	}
	slices.Sort(keys)
	return keys
}

// TestSameFindingsAsWebhook feeds the same requests to the detectors twice,
// once as the webhook delivers them and once as GKE logs them, and expects
// the same findings wherever the LogEntry carries what the detector reads.
// The README's loss table covers the rest (TestGKELosesWhatItDoesNotCarry).
func TestSameFindingsAsWebhook(t *testing.T) {
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	pack, err := rules.LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	entries := fixtures(t)
	authenticated := []string{"system:authenticated"}
	twins := []map[string]any{
		{ // pod create, RequestResponse
			"level": "RequestResponse", "auditID": "0b7f2a47-5b8e-4d3e-9a55-6f1c2d3e4a01", "verb": "create",
			"requestURI": "/api/v1/namespaces/payments/pods?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
			"user":       map[string]any{"username": "alice@acme.example", "groups": authenticated},
			"sourceIPs":  []string{"203.0.113.24"}, "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
			"objectRef":                map[string]any{"resource": "pods", "namespace": "payments", "name": "debug-shell", "apiVersion": "v1"},
			"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": 201},
			"requestReceivedTimestamp": "2026-11-30T10:15:02.117345Z", "stageTimestamp": "2026-11-30T10:15:02.139812Z",
			"annotations": map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "access granted by IAM permissions.", "pod-security.kubernetes.io/enforce-policy": "privileged:latest"},
		},
		{ // cluster-wide secret list by a service account
			"level": "Metadata", "auditID": "6c1de0f2-3a44-4b8f-8e21-7a9b0c1d2e02", "verb": "list", "requestURI": "/api/v1/secrets",
			"user": map[string]any{"username": "system:serviceaccount:ci:deployer", "uid": "7c3e9f10-2b1a-4c5d-8e6f-0a1b2c3d4e5f",
				"groups": []string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"},
				"extra": map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=1f6e2d3c-4b5a-4697-8a8b-9c0d1e2f3a4b"},
					"authentication.kubernetes.io/pod-name": {"deployer-6b7c8d9f-qwert"}, "authentication.kubernetes.io/pod-uid": {"a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"}}},
			"sourceIPs": []string{"10.128.0.41"}, "userAgent": "python-requests/2.32.3",
			"objectRef":                map[string]any{"resource": "secrets", "apiVersion": "v1"},
			"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": 200},
			"requestReceivedTimestamp": "2026-11-30T10:16:40.530912Z", "stageTimestamp": "2026-11-30T10:16:40.561002Z",
			"annotations": map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"ci-deployer\" of ClusterRole \"cluster-admin\" to ServiceAccount \"deployer/ci\""},
		},
		{ // exec
			"level": "Metadata", "auditID": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c03", "verb": "create",
			"requestURI": "/api/v1/namespaces/payments/pods/api-7d9f8c6b5-x2k4p/exec?command=sh&container=api&stdin=true&stdout=true&tty=true",
			"user":       map[string]any{"username": "bob@acme.example", "groups": authenticated},
			"sourceIPs":  []string{"198.51.100.7"}, "userAgent": "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46",
			"objectRef":                map[string]any{"resource": "pods", "namespace": "payments", "name": "api-7d9f8c6b5-x2k4p", "subresource": "exec", "apiVersion": "v1"},
			"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": 101},
			"requestReceivedTimestamp": "2026-11-30T10:17:59.004211Z", "stageTimestamp": "2026-11-30T10:18:02.912350Z",
			"annotations": map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "access granted by IAM permissions."},
		},
		{ // anonymous read of a configmap
			"level": "Metadata", "auditID": "3f2e1d0c-9b8a-4765-a432-10fedcba9804", "verb": "get",
			"requestURI": "/api/v1/namespaces/kube-system/configmaps/cluster-config",
			"user":       map[string]any{"username": "system:anonymous", "groups": []string{"system:unauthenticated"}},
			"sourceIPs":  []string{"192.0.2.66"}, "userAgent": "curl/8.5.0",
			"objectRef":                map[string]any{"resource": "configmaps", "namespace": "kube-system", "name": "cluster-config", "apiVersion": "v1"},
			"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": 200},
			"requestReceivedTimestamp": "2026-11-30T10:20:08.771902Z", "stageTimestamp": "2026-11-30T10:20:08.774120Z",
			"annotations": map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"anonymous-view\" of ClusterRole \"view\" to User \"system:anonymous\""},
		},
		{ // denied secret read
			"level": "RequestResponse", "auditID": "c4d5e6f7-0812-4a3b-9c4d-5e6f70812305", "verb": "get",
			"requestURI": "/api/v1/namespaces/kube-system/secrets/cloud-sql-credentials",
			"user":       map[string]any{"username": "mallory@contractor.example", "groups": authenticated},
			"sourceIPs":  []string{"198.51.100.200"}, "userAgent": "kubectl/v1.30.4 (linux/amd64) kubernetes/a51b3b7",
			"objectRef": map[string]any{"resource": "secrets", "namespace": "kube-system", "name": "cloud-sql-credentials", "apiVersion": "v1"},
			"responseStatus": map[string]any{"metadata": map[string]any{}, "status": "Failure", "reason": "Forbidden", "code": 403,
				"message": "secrets \"cloud-sql-credentials\" is forbidden: User \"mallory@contractor.example\" cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\": requires one of [\"container.secrets.get\"] permission(s)."},
			"requestReceivedTimestamp": "2026-11-30T10:21:27.640117Z", "stageTimestamp": "2026-11-30T10:21:27.641203Z",
			"annotations": map[string]string{"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
		},
		{ // binding of system:anonymous
			"level": "RequestResponse", "auditID": "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e606", "verb": "create",
			"requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
			"user":       map[string]any{"username": "alice@acme.example", "groups": authenticated},
			"sourceIPs":  []string{"203.0.113.24"}, "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
			"objectRef":                map[string]any{"resource": "clusterrolebindings", "name": "anonymous-view", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
			"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": 201},
			"requestReceivedTimestamp": "2026-11-30T10:19:40.310227Z", "stageTimestamp": "2026-11-30T10:19:40.322981Z",
			"annotations": map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "access granted by IAM permissions."},
		},
	}
	total := 0
	for i, fields := range twins {
		web := findingKeys(t, set, pack, webhookTwin(t, entries[i], fields))
		conv, err := Convert(entries[i])
		if err != nil {
			t.Fatal(err)
		}
		gke := findingKeys(t, set, pack, conv)
		if strings.Join(web, "\n") != strings.Join(gke, "\n") {
			t.Errorf("entry %d (%s): findings differ\nwebhook:\n  %s\ngke:\n  %s", i, fields["auditID"], strings.Join(web, "\n  "), strings.Join(gke, "\n  "))
		}
		if len(web) == 0 {
			t.Errorf("entry %d: the webhook twin raises no finding: the comparison proves nothing", i)
		}
		total += len(web)
		t.Logf("entry %d: %s", i, strings.Join(web, "; "))
	}
	t.Logf("%d findings, the same from both paths", total)
}

// TestGKELosesWhatItDoesNotCarry pins two losses the README's table
// states: token-replay needs user.extra's credential-id, which GKE does not
// log, and broad-selector reads selectors from the query string, which GKE
// does not log either, so a narrowed list looks unnarrowed.
func TestGKELosesWhatItDoesNotCarry(t *testing.T) {
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	pack, err := rules.LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// One service-account token used from two addresses.
	sa := func(id, ip, ts string) (webhook, gke []byte) {
		webhook = []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"` + id + `","stage":"ResponseComplete",` +
			`"requestURI":"/api/v1/namespaces/ci/configmaps/settings","verb":"get","user":{"username":"system:serviceaccount:ci:deployer",` +
			`"uid":"7c3e9f10-2b1a-4c5d-8e6f-0a1b2c3d4e5f","groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"],` +
			`"extra":{"authentication.kubernetes.io/credential-id":["JTI=1f6e2d3c-4b5a-4697-8a8b-9c0d1e2f3a4b"],"authentication.kubernetes.io/pod-name":["deployer-6b7c8d9f-qwert"],` +
			`"authentication.kubernetes.io/pod-uid":["a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"],"authentication.kubernetes.io/node-name":["gke-prod-eu1-pool-1-abcd"]}},` +
			`"sourceIPs":["` + ip + `"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46","objectRef":{"resource":"configmaps","namespace":"ci","name":"settings","apiVersion":"v1"},` +
			`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"` + ts + `","stageTimestamp":"` + ts + `","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`)
		entry := []byte(`{"insertId":"` + id + `","logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Fdata_access","timestamp":"` + ts + `",` +
			`"operation":{"id":"` + id + `","producer":"k8s.io","first":true,"last":true},"labels":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""},` +
			`"resource":{"type":"k8s_cluster","labels":{"cluster_name":"prod-eu1","location":"europe-west1","project_id":"acme-prod"}},` +
			`"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"io.k8s.core.v1.configmaps.get",` +
			`"resourceName":"core/v1/namespaces/ci/configmaps/settings","authenticationInfo":{"principalEmail":"system:serviceaccount:ci:deployer"},` +
			`"requestMetadata":{"callerIp":"` + ip + `","callerSuppliedUserAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"},"status":{}}}`)
		conv, err := Convert(entry)
		if err != nil {
			t.Fatal(err)
		}
		return webhook, conv
	}
	w1, g1 := sa("11111111-1111-4111-8111-111111111111", "10.128.0.41", "2026-11-30T10:30:00.000000Z")
	w2, g2 := sa("22222222-2222-4222-8222-222222222222", "185.220.101.9", "2026-11-30T10:31:00.000000Z")
	web := findingKeys(t, set, pack, w1, w2)
	gke := findingKeys(t, set, pack, g1, g2)
	if !slices.ContainsFunc(web, func(k string) bool { return strings.HasPrefix(k, "token-replay/") }) {
		t.Errorf("webhook path: no token-replay finding: %v", web)
	}
	if slices.ContainsFunc(gke, func(k string) bool { return strings.HasPrefix(k, "token-replay/") }) {
		t.Errorf("gke path found token-replay without a credential-id: %v", gke)
	}

	// A list narrowed by a field selector: quiet from the webhook, flagged
	// from GKE, which keeps no query string.
	narrowed := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"33333333-3333-4333-8333-333333333333","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/secrets?fieldSelector=metadata.name%3Dci-token","verb":"list","user":{"username":"system:serviceaccount:ci:deployer","groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"]},` +
		`"sourceIPs":["10.128.0.41"],"objectRef":{"resource":"secrets","name":"ci-token","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},` +
		`"requestReceivedTimestamp":"2026-11-30T10:32:00.000000Z","stageTimestamp":"2026-11-30T10:32:00.000000Z","annotations":{"authorization.k8s.io/decision":"allow"}}`)
	if got := findingKeys(t, set, pack, narrowed); slices.ContainsFunc(got, func(k string) bool { return strings.HasPrefix(k, "broad-selector/") }) {
		t.Errorf("webhook path flags a narrowed list: %v", got)
	}
	entries := fixtures(t)
	conv, err := Convert(entries[1]) // the same list as GKE logs any list of secrets
	if err != nil {
		t.Fatal(err)
	}
	if got := findingKeys(t, set, pack, conv); !slices.ContainsFunc(got, func(k string) bool { return strings.HasPrefix(k, "broad-selector/") }) {
		t.Errorf("gke path: expected the selector-less list to be flagged: %v", got)
	}
}
