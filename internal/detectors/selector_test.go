package detectors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/fields"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// selectorReq describes one request; selectorTestEvent renders it as the
// apiserver writes it at Metadata level (or above when bodies are given).
type selectorReq struct {
	stage, verb, uri, user, ua string
	groups                     []string
	impersonate                string
	resource, group, ns, name  string
	code                       int
	reason, message            string
	level                      string
	request, response          string // raw JSON bodies
	annotations                map[string]string
}

func selectorTestEvent(t testing.TB, r selectorReq) *pipeline.Event {
	t.Helper()
	if r.stage == "" {
		r.stage = "ResponseComplete"
		if r.verb == "watch" {
			r.stage = "ResponseStarted"
		}
	}
	if r.code == 0 {
		r.code = 200
	}
	if r.level == "" {
		r.level = "Metadata"
	}
	if r.groups == nil {
		r.groups = []string{"system:authenticated"}
	}
	ref := map[string]any{"resource": r.resource, "apiVersion": "v1"}
	if r.group != "" {
		ref["apiGroup"] = r.group
	}
	if r.ns != "" {
		ref["namespace"] = r.ns
	}
	if r.name != "" {
		ref["name"] = r.name
	}
	status := map[string]any{"metadata": map[string]any{}, "code": r.code}
	if r.code >= 400 {
		status["status"] = "Failure"
		status["reason"] = r.reason
		status["message"] = r.message
	}
	ann := map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
	if r.code == 403 {
		ann["authorization.k8s.io/decision"] = "forbid"
	}
	for k, v := range r.annotations {
		ann[k] = v
	}
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1",
		"level": r.level, "auditID": "0f8e2a41-6c1d-4b7a-9e3f-5d2c8b1a7e64",
		"stage": r.stage, "requestURI": r.uri, "verb": r.verb,
		"user":      map[string]any{"username": r.user, "groups": r.groups},
		"sourceIPs": []string{"10.0.3.44"}, "userAgent": r.ua,
		"objectRef": ref, "responseStatus": status,
		"requestReceivedTimestamp": "2026-11-27T09:30:00.000100Z",
		"stageTimestamp":           "2026-11-27T09:30:00.002300Z",
		"annotations":              ann,
	}
	if r.impersonate != "" {
		ev["impersonatedUser"] = map[string]any{"username": r.impersonate}
	}
	if r.request != "" {
		ev["requestObject"] = json.RawMessage(r.request)
	}
	if r.response != "" {
		ev["responseObject"] = json.RawMessage(r.response)
	}
	js, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return decodeTestEvent(t, string(js))
}

// selectorWant is the expected outcome: no finding when disc is "".
type selectorWant struct {
	disc string
	sev  pipeline.Severity
}

// selectorCheck runs d on ev and compares with want, and checks that every
// finding is complete enough to page someone with.
func selectorCheck(t *testing.T, d Detector, ev *pipeline.Event, want selectorWant) []pipeline.Finding {
	t.Helper()
	got := runDetector(d, ev)
	if want.disc == "" {
		if len(got) != 0 {
			t.Fatalf("want no finding, got %d: %s (%s)", len(got), got[0].Summary, got[0].Severity)
		}
		return got
	}
	if len(got) != 1 {
		t.Fatalf("want 1 finding, got %d: %+v", len(got), got)
	}
	f := got[0]
	if f.Severity != want.sev {
		t.Errorf("severity = %s, want %s (%s)", f.Severity, want.sev, f.Summary)
	}
	if wantID := pipeline.FindingID(d.ID(), ev.Cluster, string(ev.AuditID), pipeline.RequestHash(&ev.Event), want.disc); f.ID != wantID {
		t.Errorf("finding id does not match discriminator %q (%s)", want.disc, f.Summary)
	}
	if f.Detector != d.ID() || f.Summary == "" || strings.Contains(f.Summary, "\n") || f.MITRE == "" || len(f.Evidence) == 0 {
		t.Errorf("incomplete finding: %+v", f)
	}
	for _, e := range f.Evidence {
		if e.Field == "" || (e.Source != pipeline.FromEvent && e.Source != pipeline.FromRequest && e.Source != pipeline.FromResponse) {
			t.Errorf("bad evidence %+v", e)
		}
	}
	return got
}

const (
	selectorNode      = "ip-10-0-1-23.eu-west-1.compute.internal"
	selectorKubeletUA = "kubelet/v1.33.1 (linux/amd64) kubernetes/8adc0f0"
	selectorKubectlUA = "kubectl/v1.33.0 (linux/amd64) kubernetes/60a317e"
)

var selectorNodeGroups = []string{"system:nodes", "system:authenticated"}

func TestSelectorDetector(t *testing.T) {
	d := newSelectorDetector(defaultSelectorConfig())
	node := "system:node:" + selectorNode
	none := selectorWant{}
	tests := []struct {
		name string
		req  selectorReq
		want selectorWant
	}{
		// Kubelets.
		{"kubelet watches its own pods", selectorReq{verb: "watch", uri: "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3D" + selectorNode + "&resourceVersion=48213977&timeoutSeconds=426&watch=true", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "pods"}, none},
		{"kubelet lists its own pods among other terms", selectorReq{verb: "list", uri: "/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cspec.nodeName%3D" + selectorNode + "&limit=500", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "pods"}, none},
		{"kubelet gets a pod", selectorReq{verb: "get", uri: "/api/v1/namespaces/shop/pods/cart-6d8f7b9c5-abcde", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "pods", ns: "shop", name: "cart-6d8f7b9c5-abcde"}, none},
		{"kubelet watches its own node", selectorReq{verb: "watch", uri: "/api/v1/nodes?allowWatchBookmarks=true&fieldSelector=metadata.name%3D" + selectorNode + "&watch=true", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "nodes", name: selectorNode}, none},
		{"kubelet watches one secret by name", selectorReq{verb: "watch", uri: "/api/v1/namespaces/shop/secrets?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dcart-tls&watch=true", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "secrets", ns: "shop", name: "cart-tls"}, none},
		{"kubelet lists one named pod", selectorReq{verb: "list", uri: "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dcart-1", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "pods", ns: "shop", name: "cart-1"}, none},
		{"kubelet watches its node by the deprecated path", selectorReq{verb: "watch", uri: "/api/v1/watch/nodes/" + selectorNode, user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "nodes", name: selectorNode}, none},
		{"node watches another node by the deprecated path", selectorReq{verb: "watch", uri: "/api/v1/watch/nodes/ip-10-0-9-9", user: node, groups: selectorNodeGroups, ua: "curl/8.5.0", resource: "nodes", name: "ip-10-0-9-9"}, selectorWant{"node-nodes", pipeline.SeverityCritical}},
		{"node watches another node's pods", selectorReq{verb: "watch", uri: "/api/v1/pods?fieldSelector=spec.nodeName%3Dip-10-0-9-9&watch=true", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "pods"}, selectorWant{"node-pods", pipeline.SeverityHigh}},
		{"node lists all pods with curl (gate off)", selectorReq{verb: "list", uri: "/api/v1/pods?limit=500", user: node, groups: selectorNodeGroups, ua: "curl/8.5.0", resource: "pods"}, selectorWant{"node-pods", pipeline.SeverityCritical}},
		{"node lists pods with spec.nodeName!=own", selectorReq{verb: "list", uri: "/api/v1/pods?fieldSelector=spec.nodeName%21%3D" + selectorNode, user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "pods"}, selectorWant{"node-pods", pipeline.SeverityHigh}},
		{"node lists all nodes", selectorReq{verb: "list", uri: "/api/v1/nodes?limit=500", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "nodes"}, selectorWant{"node-nodes", pipeline.SeverityHigh}},
		{"node list of nodes refused", selectorReq{verb: "list", uri: "/api/v1/nodes?limit=500", user: node, groups: selectorNodeGroups, ua: selectorKubectlUA, resource: "nodes", code: 403, reason: "Forbidden", message: `nodes is forbidden: User "` + node + `" cannot list resource "nodes" in API group "" at the cluster scope: node '` + selectorNode + `' cannot read all nodes, only its own Node object`}, selectorWant{"node-forbidden", pipeline.SeverityCritical}},
		{"node refused for another reason", selectorReq{verb: "list", uri: "/api/v1/pods", user: node, groups: selectorNodeGroups, ua: selectorKubectlUA, resource: "pods", code: 500, reason: "InternalError", message: "etcdserver: request timed out"}, none},

		// Other identities.
		{"unselected cluster-wide secrets watch", selectorReq{verb: "watch", uri: "/api/v1/secrets?watch=true", user: "system:serviceaccount:monitoring:agent", ua: "python-requests/2.32.3", resource: "secrets"}, selectorWant{"broad", pipeline.SeverityHigh}},
		{"unselected cluster-wide secrets list", selectorReq{verb: "list", uri: "/api/v1/secrets?limit=500", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}, selectorWant{"broad", pipeline.SeverityHigh}},
		{"secrets by service-account-token type", selectorReq{verb: "list", uri: "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}, selectorWant{"broad", pipeline.SeverityHigh}},
		{"secrets of one namespace via metadata.namespace", selectorReq{verb: "list", uri: "/api/v1/secrets?fieldSelector=metadata.namespace%3Dshop", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"namespaced secrets with !label only", selectorReq{verb: "list", uri: "/api/v1/namespaces/shop/secrets?labelSelector=%21nobody-has-this", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets", ns: "shop"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"namespaced secrets, helm's label selector", selectorReq{verb: "list", uri: "/api/v1/namespaces/shop/secrets?labelSelector=owner%3Dhelm", user: "alice@example.com", ua: "Helm/3.16.2", resource: "secrets", ns: "shop"}, none},
		{"cluster-wide pods with != only", selectorReq{verb: "list", uri: "/api/v1/pods?labelSelector=app%21%3Dcart", user: "alice@example.com", ua: selectorKubectlUA, resource: "pods"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"cluster-wide pods with notin only", selectorReq{verb: "list", uri: "/api/v1/pods?labelSelector=app+notin+%28cart%29", user: "alice@example.com", ua: selectorKubectlUA, resource: "pods"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"cluster-wide pods with an in selector", selectorReq{verb: "list", uri: "/api/v1/pods?labelSelector=app+in+%28cart%29", user: "alice@example.com", ua: selectorKubectlUA, resource: "pods"}, none},
		{"empty labelSelector", selectorReq{verb: "list", uri: "/api/v1/configmaps?labelSelector=", user: "alice@example.com", ua: selectorKubectlUA, resource: "configmaps"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"unparsable fieldSelector", selectorReq{verb: "list", uri: "/api/v1/configmaps?fieldSelector=metadata.name", user: "alice@example.com", ua: selectorKubectlUA, resource: "configmaps"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"unparsable labelSelector", selectorReq{verb: "list", uri: "/api/v1/configmaps?labelSelector=a%3D%3D%3Db", user: "alice@example.com", ua: selectorKubectlUA, resource: "configmaps"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"first labelSelector wins, as in the apiserver", selectorReq{verb: "list", uri: "/api/v1/configmaps?labelSelector=%21x&labelSelector=app%3Dcart", user: "alice@example.com", ua: selectorKubectlUA, resource: "configmaps"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"selector hidden behind a semicolon is ignored", selectorReq{verb: "list", uri: "/api/v1/configmaps?x=1;labelSelector=app%3Dcart", user: "alice@example.com", ua: selectorKubectlUA, resource: "configmaps"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"namespaced configmaps, no selector", selectorReq{verb: "list", uri: "/api/v1/namespaces/shop/configmaps", user: "alice@example.com", ua: selectorKubectlUA, resource: "configmaps", ns: "shop"}, selectorWant{"broad", pipeline.SeverityLow}},
		{"configmap by metadata.name is not a get but narrow", selectorReq{verb: "list", uri: "/api/v1/namespaces/shop/configmaps?fieldSelector=metadata.name%3Dcart-config", user: "alice@example.com", ua: selectorKubectlUA, resource: "configmaps", ns: "shop", name: "cart-config"}, none},
		{"refused secrets list", selectorReq{verb: "list", uri: "/api/v1/secrets", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets", code: 403, reason: "Forbidden", message: `secrets is forbidden: User "alice@example.com" cannot list resource "secrets" in API group "" at the cluster scope`}, selectorWant{"broad-refused", pipeline.SeverityLow}},
		// Refused reconnaissance is its own, lower signal than the same read allowed.
		{"refused pods watch, cluster-wide", selectorReq{verb: "watch", uri: "/api/v1/pods?watch=true", user: "alice@example.com", ua: selectorKubectlUA, resource: "pods", code: 403, reason: "Forbidden", message: `pods is forbidden: User "alice@example.com" cannot watch resource "pods" in API group "" at the cluster scope`}, selectorWant{"broad-refused", pipeline.SeverityLow}},
		{"allowed pods watch, cluster-wide", selectorReq{verb: "watch", uri: "/api/v1/pods?watch=true", user: "alice@example.com", ua: selectorKubectlUA, resource: "pods"}, selectorWant{"broad", pipeline.SeverityMedium}},
		{"one secret watched by the deprecated path", selectorReq{verb: "watch", uri: "/api/v1/watch/namespaces/shop/secrets/cart-tls", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets", ns: "shop", name: "cart-tls"}, none},
		{"deployments are not sensitive", selectorReq{verb: "list", uri: "/apis/apps/v1/deployments", user: "alice@example.com", ua: selectorKubectlUA, resource: "deployments", group: "apps"}, none},
		{"secret get", selectorReq{verb: "get", uri: "/api/v1/namespaces/shop/secrets/cart-tls", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets", ns: "shop", name: "cart-tls"}, none},
		{"controller-manager lists secrets", selectorReq{verb: "list", uri: "/api/v1/secrets?limit=500&resourceVersion=0", user: "system:kube-controller-manager", ua: "kube-controller-manager/v1.33.1 (linux/amd64) kubernetes/8adc0f0/shared-informers", resource: "secrets"}, none},
		{"kube-system controller watches pods", selectorReq{verb: "watch", uri: "/api/v1/pods?allowWatchBookmarks=true&watch=true", user: "system:serviceaccount:kube-system:generic-garbage-collector", ua: "kube-controller-manager/v1.33.1", resource: "pods"}, none},
		{"impersonating the controller-manager is not allowlisted", selectorReq{verb: "list", uri: "/api/v1/secrets", user: "alice@example.com", impersonate: "system:kube-controller-manager", ua: selectorKubectlUA, resource: "secrets"}, selectorWant{"broad", pipeline.SeverityHigh}},
		// Clusters with omitStages: [ResponseStarted] send only this stage.
		{"watch ResponseComplete is judged", selectorReq{stage: "ResponseComplete", verb: "watch", uri: "/api/v1/secrets?watch=true", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}, selectorWant{"broad", pipeline.SeverityHigh}},
		{"watch RequestReceived is not judged", selectorReq{stage: "RequestReceived", verb: "watch", uri: "/api/v1/secrets?watch=true", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}, none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			selectorCheck(t, d, selectorTestEvent(t, tt.req), tt.want)
		})
	}
}

func TestSelectorDetectorTestdata(t *testing.T) {
	d := newSelectorDetector(defaultSelectorConfig())
	tests := []struct {
		file string
		want selectorWant
		// evidence that must be present, as field=value
		evidence string
	}{
		{"kubelet-watch-own-pods.json", selectorWant{}, ""},
		{"kubelet-credential-list-pods-forbidden.json", selectorWant{"node-forbidden", pipeline.SeverityCritical}, "userAgent=" + selectorKubectlUA},
		{"watch-secrets-cluster-wide.json", selectorWant{"broad", pipeline.SeverityHigh}, "requestURI=/api/v1/secrets?watch=true"},
		{"sar-both-selectors.json", selectorWant{"sar-probe", pipeline.SeverityMedium}, "spec.resourceAttributes.fieldSelector.rawSelector=spec.nodeName=node-1"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := selectorCheck(t, d, loadTestEvent(t, filepath.Join("selector", tt.file)), tt.want)
			if tt.evidence != "" && !selectorHasEvidence(got[0], tt.evidence) {
				t.Errorf("evidence %q missing: %+v", tt.evidence, got[0].Evidence)
			}
		})
	}
}

func selectorHasEvidence(f pipeline.Finding, fieldValue string) bool {
	for _, e := range f.Evidence {
		if e.Field+"="+e.Value == fieldValue {
			return true
		}
	}
	return false
}

func TestSelectorDetectorSubjectAccessReview(t *testing.T) {
	d := newSelectorDetector(defaultSelectorConfig())
	const both = `{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes":{"verb":"list","resource":"pods","labelSelector":{"rawSelector":"app=x","requirements":[{"key":"app","operator":"NotIn","values":["x"]}]}},"user":"bob"}}`
	const rawOnly = `{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes":{"verb":"list","resource":"pods","fieldSelector":{"rawSelector":"spec.nodeName=node-1"}},"user":"system:node:node-1","groups":["system:nodes"]}}`
	const reqOnly = `{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes":{"verb":"list","resource":"pods","fieldSelector":{"requirements":[{"key":"spec.nodeName","operator":"In","values":["node-1"]}]}}}}`
	sar := func(resource, level, request, response string) selectorReq {
		return selectorReq{verb: "create", uri: "/apis/authorization.k8s.io/v1/" + resource, user: "mallory@example.com", ua: "curl/8.5.0",
			resource: resource, group: "authorization.k8s.io", code: 201, level: level, request: request, response: response}
	}
	tests := []struct {
		name   string
		req    selectorReq
		want   selectorWant
		source string
	}{
		{"both set, read from response", sar("subjectaccessreviews", "RequestResponse", both, both), selectorWant{"sar-probe", pipeline.SeverityMedium}, pipeline.FromResponse},
		{"both set, Request level", sar("selfsubjectaccessreviews", "Request", both, ""), selectorWant{"sar-probe", pipeline.SeverityMedium}, pipeline.FromRequest},
		{"rawSelector only (the apiserver's own delegated checks)", sar("subjectaccessreviews", "RequestResponse", rawOnly, rawOnly), selectorWant{}, ""},
		{"requirements only", sar("selfsubjectaccessreviews", "Request", reqOnly, ""), selectorWant{}, ""},
		{"Metadata level has no body to judge", sar("subjectaccessreviews", "Metadata", "", ""), selectorWant{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := selectorCheck(t, d, selectorTestEvent(t, tt.req), tt.want)
			if tt.source != "" && got[0].Evidence[0].Source != tt.source {
				t.Errorf("evidence source = %s, want %s", got[0].Evidence[0].Source, tt.source)
			}
		})
	}
}

func TestSelectorQuery(t *testing.T) {
	f := func(uri, wantField, wantLabel string, wantHasField, wantHasLabel bool) {
		t.Helper()
		field, label, hasField, hasLabel := selectorQuery(uri)
		if field != wantField || label != wantLabel || hasField != wantHasField || hasLabel != wantHasLabel {
			t.Errorf("selectorQuery(%q) = %q, %q, %v, %v; want %q, %q, %v, %v",
				uri, field, label, hasField, hasLabel, wantField, wantLabel, wantHasField, wantHasLabel)
		}
	}
	f("/api/v1/pods", "", "", false, false)
	f("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1", "spec.nodeName=node-1", "", true, false)
	f("/api/v1/pods?labelSelector=app+in+%28a%2Cb%29", "", "app in (a,b)", false, true)
	f("/api/v1/pods?labelSelector=", "", "", false, true)
	f("/api/v1/pods?fieldSelect%6Fr=a%3Db", "a=b", "", true, false)                 // escaped key
	f("/api/v1/pods?fieldSelector=%zz&fieldSelector=a%3Db", "a=b", "", true, false) // bad escape skipped
	f("/api/v1/pods?a=1;fieldSelector=x%3Dy", "", "", false, false)                 // semicolon pair skipped
	f("/api/v1/pods?labelSelector=a&labelSelector=b", "", "a", false, true)
}

func TestSelectorJudge(t *testing.T) {
	field := func(raw, resource string, want bool) {
		t.Helper()
		if got := selectorJudgeField(raw, resource); got.narrows != want {
			t.Errorf("selectorJudgeField(%q, %s).narrows = %v, want %v (%s)", raw, resource, got.narrows, want, got.why)
		}
	}
	field("", "pods", false)
	field(",", "pods", false)
	field("metadata.name=x", "pods", true)
	field("metadata.name==x", "pods", true)
	field("metadata.name!=x", "pods", false)
	field("spec.nodeName=", "pods", true) // unscheduled pods: narrow
	field("metadata.name", "pods", false)
	field(`metadata.name=a\,b`, "pods", true)
	field(`metadata.name=a\q`, "pods", false) // bad escape: does not parse
	field("type=kubernetes.io/service-account-token", "secrets", false)
	field("type=kubernetes.io/service-account-token", "events", true)
	field("metadata.namespace=kube-system", "secrets", false)
	field("metadata.namespace=kube-system,metadata.name=x", "secrets", true)
	field("=x", "pods", false)

	label := func(raw string, want bool) {
		t.Helper()
		if got := selectorJudgeLabel(raw); got.narrows != want {
			t.Errorf("selectorJudgeLabel(%q).narrows = %v, want %v (%s)", raw, got.narrows, want, got.why)
		}
	}
	label("", false)
	label("app=x", true)
	label("app", true)
	label("!app", false)
	label("app!=x", false)
	label("app notin (x)", false)
	label("app notin (x),tier=web", true)
	label("app in (x)", true)
	label("a==b==c", false)
	label("replicas>1", true)
}

// TestSelectorFieldTermsFastPath checks that the parser-free path for a
// single "field=value" term agrees with fields.ParseSelector.
func TestSelectorFieldTermsFastPath(t *testing.T) {
	for _, raw := range []string{
		"spec.nodeName=node-1", "metadata.name==x", "a=", "a==", "a=b=c", "a===b", " a = b ",
		"spec.nodeName=ip-10-0-1-23.eu-west-1.compute.internal", "type=kubernetes.io/service-account-token",
	} {
		got, gotErr := selectorFieldTerms(raw, nil)
		sel, wantErr := fields.ParseSelector(raw)
		if (gotErr != nil) != (wantErr != nil) {
			t.Errorf("%q: error %v, parser error %v", raw, gotErr, wantErr)
			continue
		}
		if wantErr != nil {
			continue
		}
		reqs := sel.Requirements()
		if len(got) != len(reqs) {
			t.Errorf("%q: %d terms, parser %d", raw, len(got), len(reqs))
			continue
		}
		for i, r := range reqs {
			if got[i].field != r.Field || got[i].value != r.Value || !got[i].equal {
				t.Errorf("%q: term %+v, parser %+v", raw, got[i], r)
			}
		}
	}
}

func TestSelectorConfigValidate(t *testing.T) {
	if err := defaultSelectorConfig().validate("broad_selector"); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := defaultSelectorConfig()
	bad.SensitiveResources = append(bad.SensitiveResources, "", "a/b/c")
	bad.AllowedIdentities.Users = append(bad.AllowedIdentities.Users, "system:serviceaccount:kube-system:*")
	bad.AllowedIdentities.Prefixes = append(bad.AllowedIdentities.Prefixes, "")
	bad.NodeSeverity = 9
	err := bad.validate("broad_selector")
	if err == nil {
		t.Fatal("want errors")
	}
	for _, key := range []string{
		"broad_selector.sensitive_resources[4]", "broad_selector.sensitive_resources[5]",
		"broad_selector.allowed_identities.users[3]", "broad_selector.allowed_identities.prefixes[1]",
		"broad_selector.node_severity",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestSelectorParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
broad_selector:
  sensitive_resources: [secrets]
  allowed_identities:
    groups: [platform-readers]
  secrets_cluster_severity: critical
`))
	if err != nil {
		t.Fatal(err)
	}
	d := newSelectorDetector(cfg.BroadSelector)
	watch := selectorReq{verb: "watch", uri: "/api/v1/secrets?watch=true", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}
	selectorCheck(t, d, selectorTestEvent(t, watch), selectorWant{"broad", pipeline.SeverityCritical})
	watch.groups = []string{"platform-readers", "system:authenticated"}
	selectorCheck(t, d, selectorTestEvent(t, watch), selectorWant{})
	pods := selectorReq{verb: "list", uri: "/api/v1/pods", user: "alice@example.com", ua: selectorKubectlUA, resource: "pods"}
	selectorCheck(t, d, selectorTestEvent(t, pods), selectorWant{})

	if _, err := ParseConfig([]byte("broad_selector:\n  severity: urgent\n")); err == nil {
		t.Error("unknown severity accepted")
	}
}

// FuzzSelector feeds arbitrary event JSON through Decode and both detectors
// owned here: whatever decodes must not make them panic.
func FuzzSelector(f *testing.F) {
	for _, dir := range []string{"selector", "admission"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, uri := range []string{
		`/api/v1/pods?fieldSelector=spec.nodeName%3D%3D`,
		`/api/v1/pods?fieldSelector=%5C&labelSelector=%21`,
		`/api/v1/pods?labelSelector=a+in+%28`,
		`/api/v1/pods?fieldSelector=a%3Db%3Dc%2C%21%3D`,
	} {
		f.Add([]byte(`{"stage":"ResponseComplete","verb":"list","requestURI":"` + uri + `","user":{"username":"system:node:n1"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200}}`))
	}
	f.Add([]byte(`{"stage":"ResponseComplete","verb":"patch","user":{"username":"x"},"objectRef":{"resource":"namespaces","name":"a"},"requestObject":[{"op":"replace","path":"/metadata/labels","value":null}],"responseStatus":{"code":200}}`))
	f.Add([]byte(`{"stage":"ResponseComplete","verb":"patch","user":{"username":"x"},"objectRef":{"resource":"validatingwebhookconfigurations","apiGroup":"admissionregistration.k8s.io"},"requestObject":[{"op":"add","path":"/webhooks/0/rules/-","value":{"resources":["*"]}},{"op":"x"}],"responseStatus":{"code":200},"annotations":{"mutation.webhook.admission.k8s.io/round_0_index_0":"{\"mutated\":true}","patch.webhook.admission.k8s.io/round_0_index_0":"{\"patch\":[{\"op\":\"add\",\"path\":\"\"}]}"}}`))

	ds := []Detector{newSelectorDetector(defaultSelectorConfig()), newAdmissionDetector(defaultAdmissionConfig())}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, testCluster, data); err != nil {
			return
		}
		var out []pipeline.Finding
		for _, d := range ds {
			out = d.Detect(&ev, out)
		}
		for _, fd := range out {
			if fd.Summary == "" {
				t.Fatalf("finding without summary: %+v", fd)
			}
		}
	})
}

func BenchmarkSelectorDetect(b *testing.B) {
	d := newSelectorDetector(defaultSelectorConfig())
	node := "system:node:" + selectorNode
	cases := []struct {
		name string
		req  selectorReq
	}{
		{"kubelet_own_watch", selectorReq{verb: "watch", uri: "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3D" + selectorNode + "&resourceVersion=48213977&timeoutSeconds=426&watch=true", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "pods"}},
		{"kubelet_secret_watch", selectorReq{verb: "watch", uri: "/api/v1/namespaces/shop/secrets?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dcart-tls&watch=true", user: node, groups: selectorNodeGroups, ua: selectorKubeletUA, resource: "secrets", ns: "shop", name: "cart-tls"}},
		{"get", selectorReq{verb: "get", uri: "/api/v1/namespaces/shop/secrets/cart-tls", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets", ns: "shop", name: "cart-tls"}},
		{"label_narrowed", selectorReq{verb: "list", uri: "/api/v1/namespaces/shop/secrets?labelSelector=owner%3Dhelm", user: "alice@example.com", ua: "Helm/3.16.2", resource: "secrets", ns: "shop"}},
		{"broad_secrets_watch", selectorReq{verb: "watch", uri: "/api/v1/secrets?watch=true", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}},
	}
	for _, c := range cases {
		ev := selectorTestEvent(b, c.req)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			out := make([]pipeline.Finding, 0, 4)
			for b.Loop() {
				out = d.Detect(ev, out[:0])
			}
		})
	}
}

// TestSelectorLabelCache shows cached verdicts equal to fresh ones, for a
// narrowing selector and its look-alike that only excludes, and the cache
// staying within its bound when every selector is new.
func TestSelectorLabelCache(t *testing.T) {
	var c selectorLabelCache
	for range 2 {
		for _, raw := range []string{"app=web", "app!=web", "", "a in (", "!app"} {
			if got, want := c.judge(raw), selectorJudgeLabel(raw); got != want {
				t.Fatalf("cached verdict %+v for %q, fresh %+v", got, raw, want)
			}
		}
	}
	for i := range 3 * selectorLabelCacheSize {
		c.judge(fmt.Sprintf("app=web-%d", i))
	}
	if n := len(c.m); n > selectorLabelCacheSize {
		t.Fatalf("%d cached selectors, bound %d", n, selectorLabelCacheSize)
	}
	long := "app=" + strings.Repeat("x", selectorLabelCacheMaxLen)
	if got, want := c.judge(long), selectorJudgeLabel(long); got != want {
		t.Fatalf("verdict %+v for a long selector, fresh %+v", got, want)
	}
	if _, kept := c.m[long]; kept {
		t.Fatal("a selector longer than selectorLabelCacheMaxLen was cached")
	}
}
