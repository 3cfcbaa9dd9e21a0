package gke

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/cloud"
)

// fixtures returns the LogEntries of testdata/gcloud-logging-read.json, as
// `gcloud logging read --format=json` prints them, each compacted to one
// line as a Logging sink publishes it to Pub/Sub.
func fixtures(t testing.TB) []json.RawMessage {
	t.Helper()
	data, err := os.ReadFile("testdata/gcloud-logging-read.json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(data, &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

func convertFixture(t testing.TB, entry []byte) *auditv1.Event {
	t.Helper()
	out, err := Convert(entry)
	if err != nil {
		t.Fatalf("converting: %v", err)
	}
	var ev auditv1.Event
	if err := json.Unmarshal(out, &ev); err != nil {
		t.Fatalf("decoding converted event: %v\n%s", err, out)
	}
	return &ev
}

func TestConvertFixtures(t *testing.T) {
	entries := fixtures(t)
	type want struct {
		auditID, verb, uri, user, level, ua, ip string
		groups                                  []string
		ref                                     auditv1.ObjectReference
		code                                    int32
		decision, log                           string
		stage                                   auditv1.Stage
	}
	wants := []want{
		{
			auditID: "0b7f2a47-5b8e-4d3e-9a55-6f1c2d3e4a01", verb: "create", uri: "/api/v1/namespaces/payments/pods",
			user: "alice@acme.example", level: "RequestResponse", ua: "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46", ip: "203.0.113.24",
			ref:  auditv1.ObjectReference{Resource: "pods", Namespace: "payments", Name: "debug-shell", APIVersion: "v1"},
			code: 201, decision: "allow", log: "activity", stage: auditv1.StageResponseComplete,
		},
		{
			auditID: "6c1de0f2-3a44-4b8f-8e21-7a9b0c1d2e02", verb: "list", uri: "/api/v1/secrets",
			user: "system:serviceaccount:ci:deployer", level: "Metadata", ua: "python-requests/2.32.3", ip: "10.128.0.41",
			groups: []string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"},
			ref:    auditv1.ObjectReference{Resource: "secrets", APIVersion: "v1"},
			code:   200, decision: "allow", log: "data_access", stage: auditv1.StageResponseComplete,
		},
		{
			auditID: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c03", verb: "create", uri: "/api/v1/namespaces/payments/pods/api-7d9f8c6b5-x2k4p/exec",
			user: "bob@acme.example", level: "Metadata", ua: "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46", ip: "198.51.100.7",
			ref:  auditv1.ObjectReference{Resource: "pods", Namespace: "payments", Name: "api-7d9f8c6b5-x2k4p", Subresource: "exec", APIVersion: "v1"},
			code: 101, decision: "allow", log: "activity", stage: auditv1.StageResponseComplete,
		},
		{
			auditID: "3f2e1d0c-9b8a-4765-a432-10fedcba9804", verb: "get", uri: "/api/v1/namespaces/kube-system/configmaps/cluster-config",
			user: "system:anonymous", level: "Metadata", ua: "curl/8.5.0", ip: "192.0.2.66", groups: []string{"system:unauthenticated"},
			ref:  auditv1.ObjectReference{Resource: "configmaps", Namespace: "kube-system", Name: "cluster-config", APIVersion: "v1"},
			code: 200, decision: "allow", log: "data_access", stage: auditv1.StageResponseComplete,
		},
		{
			auditID: "c4d5e6f7-0812-4a3b-9c4d-5e6f70812305", verb: "get", uri: "/api/v1/namespaces/kube-system/secrets/cloud-sql-credentials",
			user: "mallory@contractor.example", level: "RequestResponse", ua: "kubectl/v1.30.4 (linux/amd64) kubernetes/a51b3b7", ip: "198.51.100.200",
			ref:  auditv1.ObjectReference{Resource: "secrets", Namespace: "kube-system", Name: "cloud-sql-credentials", APIVersion: "v1"},
			code: 403, decision: "forbid", log: "data_access", stage: auditv1.StageResponseComplete,
		},
		{
			auditID: "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e606", verb: "create", uri: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
			user: "alice@acme.example", level: "RequestResponse", ua: "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46", ip: "203.0.113.24",
			ref:  auditv1.ObjectReference{Resource: "clusterrolebindings", Name: "anonymous-view", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1"},
			code: 201, decision: "allow", log: "activity", stage: auditv1.StageResponseComplete,
		},
	}
	if len(entries) != len(wants) {
		t.Fatalf("%d fixtures, %d expectations", len(entries), len(wants))
	}
	for i, w := range wants {
		ev := convertFixture(t, entries[i])
		got := want{
			auditID: string(ev.AuditID), verb: ev.Verb, uri: ev.RequestURI, user: ev.User.Username, level: string(ev.Level),
			ua: ev.UserAgent, groups: ev.User.Groups, code: ev.ResponseStatus.Code, decision: ev.Annotations["authorization.k8s.io/decision"],
			log: ev.Annotations[AnnotationLog], stage: ev.Stage,
		}
		if len(ev.SourceIPs) == 1 {
			got.ip = ev.SourceIPs[0]
		}
		if ev.ObjectRef != nil {
			got.ref = *ev.ObjectRef
		}
		if gj, wj := mustJSON(got), mustJSON(w); gj != wj {
			t.Errorf("entry %d:\n got %s\nwant %s", i, gj, wj)
		}
		if ev.Annotations[AnnotationClusterName] != "prod-eu1" || ev.Annotations[AnnotationProjectID] != "acme-prod" ||
			ev.Annotations[AnnotationLocation] != "europe-west1" || ev.Annotations[cloud.AnnotationSource] != Source {
			t.Errorf("entry %d: provider annotations %v", i, ev.Annotations)
		}
		if ev.RequestReceivedTimestamp.IsZero() || !ev.StageTimestamp.Equal(&ev.RequestReceivedTimestamp) {
			t.Errorf("entry %d: timestamps %v %v", i, ev.RequestReceivedTimestamp, ev.StageTimestamp)
		}
		for _, b := range []string{rawOf(ev.RequestObject), rawOf(ev.ResponseObject)} {
			if strings.Contains(b, "@type") {
				t.Errorf("entry %d: body keeps GKE's @type: %s", i, b)
			}
		}
	}
	// The pod's bodies are the objects the apiserver logged.
	ev := convertFixture(t, entries[0])
	if !strings.Contains(rawOf(ev.RequestObject), `"appArmorProfile":{"type":"Unconfined"}`) || !strings.Contains(rawOf(ev.ResponseObject), `"uid":"5d2f4c1e-8a7b-4b4e-9d0e-2f6a1b3c4d5e"`) {
		t.Errorf("pod bodies lost: %s / %s", rawOf(ev.RequestObject), rawOf(ev.ResponseObject))
	}
	// The denied request's Status says why.
	ev = convertFixture(t, entries[4])
	if ev.ResponseStatus.Reason != "Forbidden" || !strings.Contains(ev.ResponseStatus.Message, "cannot get resource") {
		t.Errorf("denied status: %+v", ev.ResponseStatus)
	}
}

func rawOf(u *runtime.Unknown) string {
	if u == nil {
		return ""
	}
	return string(u.Raw)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestConvertIsDeterministic(t *testing.T) {
	for i, e := range fixtures(t) {
		a, err := Convert(e)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Convert(e)
		if string(a) != string(b) {
			t.Errorf("entry %d converts differently twice:\n%s\n%s", i, a, b)
		}
	}
}

func TestParseMethodAndURI(t *testing.T) {
	f := func(methodName, resourceName, wantVerb, wantURI, wantRef string) {
		t.Helper()
		m, err := parseMethod(methodName)
		if err != nil {
			t.Fatalf("%s: %v", methodName, err)
		}
		ref, path, err := parseResource(resourceName, m)
		if err != nil {
			t.Fatalf("%s %s: %v", methodName, resourceName, err)
		}
		if m.verb != wantVerb {
			t.Errorf("%s: verb %q, want %q", methodName, m.verb, wantVerb)
		}
		if got := requestURI(ref, path, m.verb); got != wantURI {
			t.Errorf("%s %s: uri %q, want %q", methodName, resourceName, got, wantURI)
		}
		gotRef := ""
		if ref != nil {
			gotRef = strings.Join([]string{ref.APIGroup, ref.APIVersion, ref.Namespace, ref.Resource, ref.Name, ref.Subresource}, "|")
		}
		if gotRef != wantRef {
			t.Errorf("%s %s: ref %q, want %q", methodName, resourceName, gotRef, wantRef)
		}
	}
	f("io.k8s.core.v1.pods.create", "core/v1/namespaces/ns/pods/p", "create", "/api/v1/namespaces/ns/pods", "|v1|ns|pods|p|")
	f("io.k8s.core.v1.pods.get", "core/v1/namespaces/ns/pods/p", "get", "/api/v1/namespaces/ns/pods/p", "|v1|ns|pods|p|")
	f("io.k8s.core.v1.pods.list", "core/v1/namespaces/ns/pods", "list", "/api/v1/namespaces/ns/pods", "|v1|ns|pods||")
	f("io.k8s.core.v1.pods.watch", "core/v1/pods", "watch", "/api/v1/pods", "|v1||pods||")
	f("io.k8s.core.v1.pods.deletecollection", "core/v1/namespaces/ns/pods", "deletecollection", "/api/v1/namespaces/ns/pods", "|v1|ns|pods||")
	f("io.k8s.core.v1.pods.exec.create", "core/v1/namespaces/ns/pods/p/exec", "create", "/api/v1/namespaces/ns/pods/p/exec", "|v1|ns|pods|p|exec")
	f("io.k8s.core.v1.pods.status.patch", "core/v1/namespaces/ns/pods/p/status", "patch", "/api/v1/namespaces/ns/pods/p/status", "|v1|ns|pods|p|status")
	f("io.k8s.core.v1.serviceaccounts.token.create", "core/v1/namespaces/ns/serviceaccounts/sa/token", "create", "/api/v1/namespaces/ns/serviceaccounts/sa/token", "|v1|ns|serviceaccounts|sa|token")
	f("io.k8s.core.v1.namespaces.get", "core/v1/namespaces/kube-system", "get", "/api/v1/namespaces/kube-system", "|v1||namespaces|kube-system|")
	f("io.k8s.core.v1.namespaces.finalize.update", "core/v1/namespaces/gone/finalize", "update", "/api/v1/namespaces/gone/finalize", "|v1||namespaces|gone|finalize")
	f("io.k8s.apps.v1.deployments.patch", "apps/v1/namespaces/web/deployments/front", "patch", "/apis/apps/v1/namespaces/web/deployments/front", "apps|v1|web|deployments|front|")
	f("io.k8s.authorization.rbac.v1.clusterrolebindings.delete", "rbac.authorization.k8s.io/v1/clusterrolebindings/x", "delete", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x", "rbac.authorization.k8s.io|v1||clusterrolebindings|x|")
	f("io.k8s.admissionregistration.v1beta1.mutatingadmissionpolicies.create", "admissionregistration.k8s.io/v1beta1/mutatingadmissionpolicies/p", "create", "/apis/admissionregistration.k8s.io/v1beta1/mutatingadmissionpolicies", "admissionregistration.k8s.io|v1beta1||mutatingadmissionpolicies|p|")
	f("io.k8s.get", "/version", "get", "/version", "")
	f("io.k8s.get", "healthz", "get", "/healthz", "")
}

func TestConvertStagesAndStatus(t *testing.T) {
	base := func(op, status, principal, response string) string {
		return `{"insertId":"i-1","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","timestamp":"2026-11-30T10:00:00.5Z",` +
			`"operation":` + op + `,"resource":{"type":"k8s_cluster","labels":{"cluster_name":"c"}},` +
			`"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.watch",` +
			`"resourceName":"core/v1/pods","authenticationInfo":{"principalEmail":"` + principal + `"},"status":` + status + response + `}}`
	}
	f := func(entry string, wantStage auditv1.Stage, wantCode int32, wantID string) {
		t.Helper()
		ev := convertFixture(t, []byte(entry))
		if ev.Stage != wantStage || ev.ResponseStatus.Code != wantCode || string(ev.AuditID) != wantID {
			t.Errorf("got stage %s code %d id %s, want %s %d %s\n%s", ev.Stage, ev.ResponseStatus.Code, ev.AuditID, wantStage, wantCode, wantID, entry)
		}
	}
	op := func(first, last string) string {
		return `{"id":"op-1","producer":"k8s.io","first":` + first + `,"last":` + last + `}`
	}
	f(base(op("true", "false"), `{}`, "u", ""), auditv1.StageResponseStarted, 200, "op-1")
	f(base(op("false", "true"), `{}`, "u", ""), auditv1.StageResponseComplete, 200, "op-1")
	f(base(op(`"true"`, `"true"`), `{}`, "u", ""), auditv1.StageResponseComplete, 200, "op-1")
	f(base(`null`, `{}`, "u", ""), auditv1.StageResponseComplete, 200, "i-1")
	f(base(`{"id":"x","producer":"other"}`, `{}`, "u", ""), auditv1.StageResponseComplete, 200, "i-1")
	f(base(`null`, `{"code":7,"message":"no"}`, "u", ""), auditv1.StageResponseComplete, 403, "i-1")
	f(base(`null`, `{"code":5}`, "u", ""), auditv1.StageResponseComplete, 404, "i-1")
	f(base(`null`, `{"code":99}`, "u", ""), auditv1.StageResponseComplete, 500, "i-1")
	// A failed authentication: no principal, UNAUTHENTICATED.
	f(base(`null`, `{"code":16}`, "", ""), auditv1.StageResponseStarted, 401, "i-1")
	// A logged Status wins over the gRPC code (422 is INVALID_ARGUMENT too).
	f(base(`null`, `{"code":3}`, "u", `,"response":{"@type":"core.k8s.io/v1.Status","kind":"Status","code":422,"reason":"Invalid"}`), auditv1.StageResponseComplete, 422, "i-1")
}

func TestConvertRefuses(t *testing.T) {
	f := func(entry string, notAudit bool) {
		t.Helper()
		_, err := Convert([]byte(entry))
		if err == nil {
			t.Fatalf("converted %s", entry)
		}
		if errors.Is(err, ErrNotKubernetesAudit) != notAudit {
			t.Errorf("%s: err %v, want not-audit %v", entry, err, notAudit)
		}
	}
	f(`{"insertId":"1","timestamp":"2026-11-30T10:00:00Z","protoPayload":{"serviceName":"container.googleapis.com","methodName":"google.container.v1.ClusterManager.CreateCluster"}}`, true)
	f(`{"insertId":"1","timestamp":"2026-11-30T10:00:00Z","textPayload":"hello"}`, true)
	f(`{"insertId":"1","timestamp":"2026-11-30T10:00:00Z","protoPayload":{"serviceName":"k8s.io","methodName":"pods.create"}}`, true)
	f(`{"insertId":"1","protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.get","resourceName":"core/v1/pods/x"}}`, false)
	f(`{"timestamp":"2026-11-30T10:00:00Z","protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.get","resourceName":"core/v1/pods/x"}}`, false)
	f(`{"insertId":"1","timestamp":"yesterday","protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.get"}}`, false)
	f(`{"insertId":"1","timestamp":"2026-11-30T10:00:00Z","protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.get","resourceName":"core//pods"}}`, false)
	f(`{"insertId":"1","timestamp":"2026-11-30T10:00:00Z","protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.create","resourceName":"core/v1/pods/x","request":[1]}}`, false)
	f(`[]`, false)
}

func TestLabelsCannotForgeOwnAnnotations(t *testing.T) {
	entry := `{"insertId":"i","timestamp":"2026-11-30T10:00:00Z","labels":{"auditpipe.io/source":"webhook","auditpipe.io/gke-cluster-name":"other"},` +
		`"resource":{"labels":{"cluster_name":"real"}},"protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.get","resourceName":"core/v1/namespaces/a/pods/b"}}`
	ev := convertFixture(t, []byte(entry))
	if ev.Annotations[cloud.AnnotationSource] != Source || ev.Annotations[AnnotationClusterName] != "real" {
		t.Errorf("annotations %v", ev.Annotations)
	}
}

func TestDecodePush(t *testing.T) {
	entry := `{"insertId":"i","logName":"projects/p/logs/x","protoPayload":{}}`
	b64 := "eyJpbnNlcnRJZCI6ImkiLCJsb2dOYW1lIjoicHJvamVjdHMvcC9sb2dzL3giLCJwcm90b1BheWxvYWQiOnt9fQ=="
	f := func(body, wantData, wantID string, wantErr bool) {
		t.Helper()
		p, data, err := DecodePush([]byte(body))
		if (err != nil) != wantErr {
			t.Fatalf("%s: err %v", body, err)
		}
		if string(data) != wantData || p.ID() != wantID {
			t.Errorf("%s: data %q id %q", body, data, p.ID())
		}
	}
	f(`{"message":{"attributes":{"logging.googleapis.com/timestamp":"2026-11-30T10:00:00Z"},"data":"`+b64+`","messageId":"2070443601311540","message_id":"2070443601311540","publishTime":"2021-02-26T19:13:55.749Z","publish_time":"2021-02-26T19:13:55.749Z"},"subscription":"projects/myproject/subscriptions/mysubscription"}`, entry, "2070443601311540", false)
	f(`{"message":{"data":"`+b64+`","message_id":"136969346945"},"subscription":"projects/myproject/subscriptions/mysubscription"}`, entry, "136969346945", false)
	f(`{"message":{"data":"`+strings.TrimRight(b64, "=")+`","messageId":"1"},"subscription":"s","deliveryAttempt":2}`, entry, "1", false)
	// --push-no-wrapper: the LogEntry itself.
	f(entry, entry, "", false)
	f(`{"message":{"messageId":"1","attributes":{"a":"b"}},"subscription":"s"}`, "", "1", true)
	f(`{"message":{"data":"!!!","messageId":"1"},"subscription":"s"}`, "", "1", true)
	f(`{"hello":"world"}`, "", "", true)
	f(`[1]`, "", "", true)
	f(``, "", "", true)
}
