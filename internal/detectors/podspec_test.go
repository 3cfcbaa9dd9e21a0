package detectors

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// podSpecTestReq describes an audit event for podSpecTestEvent; zero
// fields take the values of a successful kubectl pod create.
type podSpecTestReq struct {
	level                    string // default RequestResponse
	verb                     string // default create
	group, resource, sub     string // default pods
	ns, name                 string // default shop, api
	code                     int    // default 201
	uri                      string // default derived from the rest
	req, resp                string // JSON bodies, omitted when empty
	annotations              map[string]string
	username, stage, auditID string
	// noName leaves objectRef.name empty, as for a create with generateName.
	noName bool
}

// podSpecTestEvent renders r as the apiserver would and decodes it through
// the pipeline, so tests see exactly what production sees.
func podSpecTestEvent(t testing.TB, r podSpecTestReq) *pipeline.Event {
	t.Helper()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&r.level, "RequestResponse")
	def(&r.verb, "create")
	def(&r.resource, "pods")
	def(&r.ns, "shop")
	if !r.noName {
		def(&r.name, "api")
	}
	def(&r.username, "alice@example.com")
	def(&r.stage, "ResponseComplete")
	if r.code == 0 {
		r.code = 201
	}
	if r.uri == "" {
		base := "/api/v1"
		if r.group != "" {
			base = "/apis/" + r.group + "/v1"
		}
		r.uri = base + "/namespaces/" + r.ns + "/" + r.resource
		if r.verb != "create" {
			r.uri += "/" + r.name
		}
		if r.sub != "" {
			r.uri += "/" + r.sub
		}
	}
	if r.auditID == "" {
		h := fnv.New128a()
		fmt.Fprint(h, r.verb, r.uri, r.req, r.resp, r.code)
		s := fmt.Sprintf("%x", h.Sum(nil))
		r.auditID = s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
	}
	ann := map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": `RBAC: allowed by RoleBinding "dev/shop" of ClusterRole "edit" to Group "dev"`}
	for k, v := range r.annotations {
		ann[k] = v
	}
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": r.level, "auditID": r.auditID, "stage": r.stage,
		"requestURI": r.uri, "verb": r.verb,
		"user":      map[string]any{"username": r.username, "groups": []string{"dev", "system:authenticated"}},
		"sourceIPs": []string{"10.0.4.17"}, "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
		"objectRef":                map[string]any{"resource": r.resource, "namespace": r.ns, "name": r.name, "apiGroup": r.group, "apiVersion": "v1", "subresource": r.sub},
		"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": r.code},
		"requestReceivedTimestamp": "2026-11-27T10:15:02.123456Z", "stageTimestamp": "2026-11-27T10:15:02.141234Z",
		"annotations": ann,
	}
	if r.req != "" && r.level != "Metadata" {
		ev["requestObject"] = json.RawMessage(r.req)
	}
	if r.resp != "" && r.level == "RequestResponse" {
		ev["responseObject"] = json.RawMessage(r.resp)
	}
	js, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("encoding test event: %v", err)
	}
	return decodeTestEvent(t, string(js))
}

// podSpecTestPod renders a Pod body with the given spec JSON.
func podSpecTestPod(ns, name, annotations, spec string) string {
	if annotations == "" {
		annotations = "{}"
	}
	return fmt.Sprintf(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":%q,"namespace":%q,"annotations":%s},"spec":%s}`, name, ns, annotations, spec)
}

// podSpecTestDeployment renders a Deployment body whose template has the
// given annotations and spec.
func podSpecTestDeployment(ns, name, annotations, spec string) string {
	if annotations == "" {
		annotations = "{}"
	}
	return fmt.Sprintf(`{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":%q,"namespace":%q},"spec":{"replicas":2,"selector":{"matchLabels":{"app":%q}},"template":{"metadata":{"labels":{"app":%q},"annotations":%s},"spec":%s}}}`,
		name, ns, name, name, annotations, spec)
}

func TestPodSpecDecode(t *testing.T) {
	pod := func(image string) string {
		return podSpecTestPod("shop", "api", "", `{"containers":[{"name":"api","image":"`+image+`"}]}`)
	}
	status := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"api\" is forbidden","reason":"Forbidden","code":403}`
	tests := []struct {
		name       string
		r          podSpecTestReq
		prefer     string
		wantOK     bool
		wantSource string
		wantImage  string
		wantPath   string
		wantName   string
	}{
		{"response preferred", podSpecTestReq{req: pod("req"), resp: pod("resp")}, pipeline.FromResponse, true, pipeline.FromResponse, "resp", "spec", "shop/api"},
		{"request preferred", podSpecTestReq{req: pod("req"), resp: pod("resp")}, pipeline.FromRequest, true, pipeline.FromRequest, "req", "spec", "shop/api"},
		{"request level falls back to request", podSpecTestReq{level: "Request", req: pod("req"), resp: pod("resp")}, pipeline.FromResponse, true, pipeline.FromRequest, "req", "spec", "shop/api"},
		{"status response skipped", podSpecTestReq{code: 403, req: pod("req"), resp: status}, pipeline.FromResponse, true, pipeline.FromRequest, "req", "spec", "shop/api"},
		{"json patch request skipped", podSpecTestReq{verb: "patch", group: "apps", resource: "deployments", req: `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"x"}]`,
			resp: podSpecTestDeployment("shop", "api", "", `{"containers":[{"name":"api","image":"resp"}]}`)}, pipeline.FromRequest, true, pipeline.FromResponse, "resp", "spec.template.spec", "shop/api"},
		{"cronjob", podSpecTestReq{group: "batch", resource: "cronjobs", name: "backup",
			req: `{"kind":"CronJob","metadata":{"name":"backup"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"cj"}]}}}}}}`}, pipeline.FromResponse, true, pipeline.FromRequest, "cj", "spec.jobTemplate.spec.template.spec", "shop/backup"},
		{"generateName", podSpecTestReq{noName: true, req: `{"kind":"Pod","metadata":{"generateName":"api-7d9-"},"spec":{"containers":[{"name":"api","image":"g"}]}}`}, pipeline.FromResponse, true, pipeline.FromRequest, "g", "spec", "shop/api-7d9-*"},
		{"metadata level", podSpecTestReq{level: "Metadata", req: pod("req"), resp: pod("resp")}, pipeline.FromResponse, false, "", "", "", ""},
		{"truncated", podSpecTestReq{req: pod("req"), annotations: map[string]string{"audit.k8s.io/truncated": "true"}}, pipeline.FromResponse, false, "", "", "", ""},
		{"dry run", podSpecTestReq{uri: "/api/v1/namespaces/shop/pods?dryRun=All", req: pod("req"), resp: pod("resp")}, pipeline.FromResponse, false, "", "", "", ""},
		{"get is not a write", podSpecTestReq{verb: "get", resp: pod("resp")}, pipeline.FromResponse, false, "", "", "", ""},
		{"status subresource", podSpecTestReq{verb: "update", sub: "status", req: pod("req"), resp: pod("resp")}, pipeline.FromResponse, false, "", "", "", ""},
		{"deployment scale", podSpecTestReq{verb: "patch", group: "apps", resource: "deployments", sub: "scale", req: `{"spec":{"replicas":3}}`}, pipeline.FromResponse, false, "", "", "", ""},
		{"configmap", podSpecTestReq{resource: "configmaps", req: `{"kind":"ConfigMap","data":{"spec":"x"}}`}, pipeline.FromResponse, false, "", "", "", ""},
		{"undecodable bodies", podSpecTestReq{req: `{"spec":{"containers":"nope"}}`, resp: `{"spec":7}`}, pipeline.FromResponse, false, "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := podSpecTestEvent(t, tt.r)
			tgt, ok := podSpecMatch(ev)
			var o *podSpecObject
			if ok {
				o, ok = podSpecDecode(ev, tgt, tt.prefer)
			}
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			var img string
			if cs := o.Spec.podSpecContainers(); len(cs) > 0 {
				img = cs[0].C.Image
			}
			if o.Source != tt.wantSource || img != tt.wantImage || o.SpecPath != tt.wantPath || o.Name != tt.wantName {
				t.Errorf("got source %q image %q path %q name %q, want %q %q %q %q", o.Source, img, o.SpecPath, o.Name, tt.wantSource, tt.wantImage, tt.wantPath, tt.wantName)
			}
		})
	}
}

// podSpecFuzzTargets are the objectRefs FuzzPodSpec feeds each body under.
var podSpecFuzzTargets = []struct{ verb, group, resource, sub string }{
	{"create", "", "pods", ""},
	{"patch", "", "pods", ""},
	{"patch", "", "pods", "ephemeralcontainers"},
	{"update", "apps", "deployments", ""},
	{"create", "batch", "cronjobs", ""},
}

// FuzzPodSpec feeds arbitrary bodies, as request and response, to the
// decoder and both detectors under each supported objectRef. Nothing may
// panic, and a finding must always name its detector and carry an id.
func FuzzPodSpec(f *testing.F) {
	for _, dir := range []string{"imagepull", "apparmor"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			var ev struct {
				Req  json.RawMessage `json:"requestObject"`
				Resp json.RawMessage `json:"responseObject"`
			}
			if err := json.Unmarshal(data, &ev); err != nil {
				f.Fatal(err)
			}
			f.Add([]byte(ev.Req), []byte(ev.Resp))
		}
	}
	f.Add([]byte(`{"spec":{"containers":[{"name":"","image":"@"}],"securityContext":{"appArmorProfile":{"type":"Localhost"}}}}`), []byte(`null`))
	f.Add([]byte(`{"metadata":{"annotations":{"container.apparmor.security.beta.kubernetes.io/":"localhost/"}},"spec":{"ephemeralContainers":[{"image":":/:@:"}]}}`), []byte(`[]`))
	f.Add([]byte(`{"spec":{"template":null,"jobTemplate":{"spec":{"template":{"spec":{"initContainers":[{"image":"a//b:"}]}}}}}}`), []byte(`{"kind":"Status"}`))

	cfg := DefaultConfig()
	cfg.UnsecuredImagePull.AllowedRegistries = []string{"harbor.internal.example.net"}
	cfg.AppArmorUnconfined.AllowedLocalhostProfiles = []string{"k8s-*"}
	set, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	aa, err := NewAppArmor(cfg.AppArmorUnconfined)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		for _, tg := range podSpecFuzzTargets {
			ev := &pipeline.Event{Cluster: testCluster}
			ev.AuditID = types.UID("fuzz")
			ev.Stage = auditv1.StageResponseComplete
			ev.Level = auditv1.LevelRequestResponse
			ev.Verb = tg.verb
			ev.ObjectRef = &auditv1.ObjectReference{Resource: tg.resource, APIGroup: tg.group, Subresource: tg.sub, Namespace: "shop", Name: "x"}
			if len(req) > 0 {
				ev.RequestObject = &runtime.Unknown{Raw: req}
			}
			if len(resp) > 0 {
				ev.ResponseObject = &runtime.Unknown{Raw: resp}
			}
			if tgt, ok := podSpecMatch(ev); ok {
				// apparmorMayFire only skips specs judging would find
				// nothing in.
				if o, ok := podSpecDecode(ev, tgt, pipeline.FromRequest); ok && !apparmorMayFire(o) {
					if got := aa.judgeObject(ev, o, tgt, nil); len(got) > 0 {
						t.Fatalf("apparmorMayFire ruled out %+v, judging finds %+v", o.Spec, got)
					}
				}
			}
			for _, fd := range set.Detect(ev, nil) {
				if fd.ID == "" || !strings.Contains(fd.Detector, "-") || fd.Summary == "" {
					t.Fatalf("malformed finding %+v", fd)
				}
			}
		}
		imageParseRef(string(req))
	})
}

// TestPodSpecViewShared shows the detectors reading one pod-spec view per
// body: both detectors see the same object, the body is decoded once, and
// an event whose objectRef changed is read again rather than judged by
// the view read for the old one.
func TestPodSpecViewShared(t *testing.T) {
	ev := &pipeline.Event{Cluster: testCluster}
	ev.Stage = auditv1.StageResponseComplete
	ev.Verb = "create"
	ev.ObjectRef = &auditv1.ObjectReference{Resource: "pods", Namespace: "shop", Name: "api"}
	ev.RequestObject = &runtime.Unknown{Raw: []byte(`{"kind":"Pod","spec":{"containers":[{"name":"c","image":"nginx"}]}}`)}
	tgt, ok := podSpecMatch(ev)
	if !ok {
		t.Fatal("pod create not matched")
	}
	a, okA := podSpecDecode(ev, tgt, pipeline.FromRequest)
	b, okB := podSpecDecode(ev, tgt, pipeline.FromResponse) // falls back to the request
	if !okA || !okB || a != b {
		t.Fatalf("views %p (%v) and %p (%v): want one shared view", a, okA, b, okB)
	}
	if n := ev.BodyDecodes(); n != 1 {
		t.Fatalf("%d body decodes, want 1", n)
	}
	ev.ObjectRef = &auditv1.ObjectReference{Resource: "pods", Namespace: "other", Name: "api"}
	c, ok := podSpecDecode(ev, tgt, pipeline.FromRequest)
	if !ok || c == a || c.Name != "other/api" {
		t.Fatalf("view after the objectRef changed: %+v (shared %v)", c, c == a)
	}
}
