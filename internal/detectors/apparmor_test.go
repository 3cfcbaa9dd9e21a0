package detectors

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// apparmorTestDetector builds the detector from the defaults, edited by mod.
func apparmorTestDetector(t testing.TB, mod func(*AppArmorConfig)) *AppArmor {
	t.Helper()
	cfg := defaultAppArmorConfig()
	if mod != nil {
		mod(&cfg)
	}
	d, err := NewAppArmor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAppArmorTestdata(t *testing.T) {
	tests := []struct {
		file string
		want []imageWant
	}{
		// Annotation written by the user; the 1.30 sync also shows the
		// field in the response, which must not double the finding.
		// Privileged raises high to critical.
		{"pod-create-annotation-unconfined.json", []imageWant{{"apparmor-unconfined:node-exporter", pipeline.SeverityCritical}}},
		{"deployment-create-field-unconfined.json", []imageWant{{"apparmor-unconfined:api", pipeline.SeverityHigh}}},
		// RuntimeDefault, an empty annotation, and a Localhost profile
		// with no allowlist configured: quiet.
		{"deployment-create-confined.json", nil},
		// Pod-level seccomp Unconfined; "report" opts back in.
		{"cronjob-create-seccomp-unconfined.json", []imageWant{{"seccomp-unconfined:scan", pipeline.SeverityMedium}}},
		// kubectl debug adds an Unconfined debugger to a Localhost-confined pod.
		{"ephemeral-patch-unconfined.json", []imageWant{{"apparmor-unconfined:debugger-7k2xq", pipeline.SeverityCritical}}},
		{"ephemeral-patch-inherits.json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			imageCheck(t, apparmorTestDetector(t, nil), tt.want, loadTestEvent(t, "apparmor/"+tt.file))
		})
	}
}

func TestAppArmorEvidence(t *testing.T) {
	got := runDetector(apparmorTestDetector(t, nil), loadTestEvent(t, "apparmor/pod-create-annotation-unconfined.json"))
	if len(got) != 1 {
		t.Fatalf("got %d findings, want 1", len(got))
	}
	f := got[0]
	want := `Pod monitoring/node-exporter-debug container "node-exporter" runs AppArmor Unconfined (metadata.annotations.container.apparmor.security.beta.kubernetes.io/node-exporter), and is privileged`
	if f.Summary != want {
		t.Errorf("summary\n got %s\nwant %s", f.Summary, want)
	}
	if f.Evidence[0] != (pipeline.Evidence{Field: "metadata.annotations.container.apparmor.security.beta.kubernetes.io/node-exporter", Value: "unconfined", Source: "request"}) {
		t.Errorf("first evidence %+v: want the annotation read from the request", f.Evidence[0])
	}
	var psa bool
	for _, e := range f.Evidence {
		psa = psa || (e.Field == "annotations.pod-security.kubernetes.io/audit-violations" && strings.Contains(e.Value, "forbidden AppArmor profile"))
	}
	if !psa || f.MITRE != "T1611" {
		t.Errorf("want PSA evidence and T1611, got %q %+v", f.MITRE, f.Evidence)
	}
}

func TestAppArmorCases(t *testing.T) {
	const img = "harbor.internal.example.net/shop/api:5.1.0"
	pod := func(ns, annotations, spec string) string { return podSpecTestPod(ns, "api", annotations, spec) }
	unconfinedCtr := `{"containers":[{"name":"api","image":"` + img + `","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}]}`
	tests := []struct {
		name string
		mod  func(*AppArmorConfig)
		r    podSpecTestReq
		want []imageWant
	}{
		{"pod-level field applies to every container", nil, podSpecTestReq{req: pod("shop", "", `{"securityContext":{"appArmorProfile":{"type":"Unconfined"}},"initContainers":[{"name":"init","image":"`+img+`"}],"containers":[{"name":"api","image":"`+img+`"},{"name":"side","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"RuntimeDefault"}}}]}`)},
			[]imageWant{{"apparmor-unconfined:init", pipeline.SeverityHigh}, {"apparmor-unconfined:api", pipeline.SeverityHigh}}},
		{"container field beats annotation", nil, podSpecTestReq{req: pod("shop", `{"container.apparmor.security.beta.kubernetes.io/api":"unconfined"}`, `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"RuntimeDefault"}}}]}`)}, nil},
		{"annotation runtime/default", nil, podSpecTestReq{req: pod("shop", `{"container.apparmor.security.beta.kubernetes.io/api":"runtime/default"}`, `{"containers":[{"name":"api","image":"`+img+`"}]}`)}, nil},
		{"annotation empty", nil, podSpecTestReq{req: pod("shop", `{"container.apparmor.security.beta.kubernetes.io/api":""}`, `{"securityContext":{"appArmorProfile":{"type":"Unconfined"}},"containers":[{"name":"api","image":"`+img+`"}]}`)}, nil},
		{"exempt namespace", nil, podSpecTestReq{ns: "kube-system", req: pod("kube-system", "", unconfinedCtr)}, nil},
		{"allowlisted service account", func(c *AppArmorConfig) { c.AllowedServiceAccounts = []string{"monitoring/node-*"} },
			podSpecTestReq{ns: "monitoring", req: pod("monitoring", "", `{"serviceAccountName":"node-exporter","containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}]}`)}, nil},
		{"allowlist is per namespace", func(c *AppArmorConfig) { c.AllowedServiceAccounts = []string{"monitoring/node-exporter"} },
			podSpecTestReq{req: pod("shop", "", `{"serviceAccountName":"node-exporter","containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}]}`)},
			[]imageWant{{"apparmor-unconfined:api", pipeline.SeverityHigh}}},
		{"localhost outside allowlist", func(c *AppArmorConfig) { c.AllowedLocalhostProfiles = []string{"k8s-*"} },
			podSpecTestReq{req: pod("shop", `{"container.apparmor.security.beta.kubernetes.io/api":"localhost/permissive"}`, `{"containers":[{"name":"api","image":"`+img+`"}]}`)},
			[]imageWant{{"apparmor-localhost-not-allowed:api", pipeline.SeverityMedium}}},
		{"localhost inside allowlist", func(c *AppArmorConfig) { c.AllowedLocalhostProfiles = []string{"k8s-*"} },
			podSpecTestReq{req: pod("shop", "", `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"Localhost","localhostProfile":"k8s-shop-api"}}}]}`)}, nil},
		{"seccomp container Unconfined, privileged", nil, podSpecTestReq{req: pod("shop", "", `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"privileged":true,"seccompProfile":{"type":"Unconfined"}}}]}`)},
			[]imageWant{{"seccomp-unconfined:api", pipeline.SeverityHigh}}},
		{"privileged alone is not this detector's", nil, podSpecTestReq{req: pod("shop", "", `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"privileged":true}}]}`)}, nil},
		{"both unconfined", nil, podSpecTestReq{req: pod("shop", "", `{"securityContext":{"seccompProfile":{"type":"Unconfined"}},"containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}]}`)},
			[]imageWant{{"apparmor-unconfined:api", pipeline.SeverityHigh}, {"seccomp-unconfined:api", pipeline.SeverityMedium}}},
		// Escapes reach the decoded strings without their raw bytes:
		// the check before decoding must not skip these.
		{"escaped Unconfined", nil, podSpecTestReq{req: pod("shop", "", `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"Unc\u006fnfined"}}}]}`)},
			[]imageWant{{"apparmor-unconfined:api", pipeline.SeverityHigh}}},
		{"escaped annotation value", nil, podSpecTestReq{req: pod("shop", `{"container.apparmor.security.beta.kubernetes.io/api":"unc\u006fnfined"}`, `{"containers":[{"name":"api","image":"`+img+`"}]}`)},
			[]imageWant{{"apparmor-unconfined:api", pipeline.SeverityHigh}}},
		{"windows pod", nil, podSpecTestReq{req: pod("shop", "", `{"os":{"name":"windows"},"containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}]}`)}, nil},
		{"rejected by pod security", nil, podSpecTestReq{code: 403, req: pod("shop", "", unconfinedCtr),
			resp: `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"api\" is forbidden: violates PodSecurity \"baseline:latest\": forbidden AppArmor profile","reason":"Forbidden","code":403}`},
			[]imageWant{{"apparmor-unconfined:api", pipeline.SeverityLow}}},
		{"metadata level", nil, podSpecTestReq{level: "Metadata", req: pod("shop", "", unconfinedCtr)}, nil},
		{"dry run", nil, podSpecTestReq{uri: "/api/v1/namespaces/shop/pods?dryRun=All&fieldManager=kubectl-client-side-apply", req: pod("shop", "", unconfinedCtr)}, nil},
		{"deployment patch sets only the annotation", nil, podSpecTestReq{verb: "patch", group: "apps", resource: "deployments", code: 200,
			req:  `{"spec":{"template":{"metadata":{"annotations":{"container.apparmor.security.beta.kubernetes.io/api":"unconfined"}}}}}`,
			resp: podSpecTestDeployment("shop", "api", `{"container.apparmor.security.beta.kubernetes.io/api":"unconfined"}`, `{"containers":[{"name":"api","image":"`+img+`"}]}`)},
			[]imageWant{{"apparmor-unconfined:api", pipeline.SeverityHigh}}},
		{"deployment patch sets only the pod level", nil, podSpecTestReq{verb: "patch", group: "apps", resource: "deployments", code: 200,
			req:  `{"spec":{"template":{"spec":{"securityContext":{"appArmorProfile":{"type":"Unconfined"}}}}}}`,
			resp: podSpecTestDeployment("shop", "api", "", `{"securityContext":{"appArmorProfile":{"type":"Unconfined"}},"containers":[{"name":"api","image":"`+img+`"}]}`)},
			[]imageWant{{"apparmor-unconfined:", pipeline.SeverityHigh}}},
		{"ephemeral RuntimeDefault into a Localhost pod", nil, podSpecTestReq{verb: "update", sub: "ephemeralcontainers", code: 200,
			resp: pod("shop", "", `{"securityContext":{"appArmorProfile":{"type":"Localhost","localhostProfile":"k8s-shop-api"}},"containers":[{"name":"api","image":"`+img+`"}],"ephemeralContainers":[{"name":"dbg","image":"busybox:1.36","securityContext":{"appArmorProfile":{"type":"RuntimeDefault"},"seccompProfile":{"type":"Unconfined"}}}]}`)},
			[]imageWant{{"apparmor-weaker-ephemeral:dbg", pipeline.SeverityMedium}, {"seccomp-unconfined:dbg", pipeline.SeverityMedium}}},
		{"ephemeral seccomp weaker than containers", nil, podSpecTestReq{verb: "update", sub: "ephemeralcontainers", code: 200,
			resp: pod("shop", "", `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"seccompProfile":{"type":"Localhost","localhostProfile":"profiles/api.json"}}}],"ephemeralContainers":[{"name":"dbg","image":"busybox:1.36"}]}`)},
			[]imageWant{{"seccomp-weaker-ephemeral:dbg", pipeline.SeverityMedium}}},
		// No profile named anywhere: only the ephemeralContainers member
		// tells the check before decoding that this may fire.
		{"ephemeral without a profile into RuntimeDefault containers", nil, podSpecTestReq{verb: "update", sub: "ephemeralcontainers", code: 200,
			resp: pod("shop", "", `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"seccompProfile":{"type":"RuntimeDefault"}}}],"ephemeralContainers":[{"name":"dbg","image":"busybox:1.36"}]}`)},
			[]imageWant{{"seccomp-weaker-ephemeral:dbg", pipeline.SeverityMedium}}},
		{"ephemeral into an unconfined pod is not weaker", nil, podSpecTestReq{verb: "update", sub: "ephemeralcontainers", code: 200,
			resp: pod("shop", "", `{"containers":[{"name":"api","image":"`+img+`","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}],"ephemeralContainers":[{"name":"dbg","image":"busybox:1.36","securityContext":{"appArmorProfile":{"type":"Unconfined"}}}]}`)},
			[]imageWant{{"apparmor-unconfined:dbg", pipeline.SeverityHigh}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			imageCheck(t, apparmorTestDetector(t, tt.mod), tt.want, podSpecTestEvent(t, tt.r))
		})
	}
}

func TestAppArmorRedelivery(t *testing.T) {
	d := apparmorTestDetector(t, nil)
	a := runDetector(d, loadTestEvent(t, "apparmor/cronjob-create-seccomp-unconfined.json"))
	b := runDetector(d, loadTestEvent(t, "apparmor/cronjob-create-seccomp-unconfined.json"))
	if len(a) != 1 || len(b) != 1 || a[0].ID != b[0].ID {
		t.Fatalf("redelivered event gave different findings: %v vs %v", a, b)
	}
	// A different request for the same object is a different finding.
	ev := loadTestEvent(t, "apparmor/cronjob-create-seccomp-unconfined.json")
	ev.AuditID = "c0ffee00-1234-4567-89ab-cdef01234568"
	if c := runDetector(d, ev); len(c) != 1 || c[0].ID == a[0].ID {
		t.Errorf("another request reused the finding id")
	}
}

func TestAppArmorConfig(t *testing.T) {
	_, err := ParseConfig([]byte(`
apparmor_unconfined:
  exempt_namespaces: [""]
  allowed_service_accounts: ["cilium", "kube-system/cilium", "a/b/c", "x/["]
  allowed_localhost_profiles: ["k8s-*", "["]
`))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		"apparmor_unconfined.exempt_namespaces[0]",
		"apparmor_unconfined.allowed_service_accounts[0]",
		"apparmor_unconfined.allowed_service_accounts[2]",
		"apparmor_unconfined.allowed_service_accounts[3]",
		"apparmor_unconfined.allowed_localhost_profiles[1]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	for _, bad := range []string{"allowed_service_accounts[1]", "allowed_localhost_profiles[0]"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("valid entry %s rejected: %v", bad, err)
		}
	}
	if got := DefaultConfig().AppArmorUnconfined.ExemptNamespaces; !slices.Equal(got, []string{"kube-system"}) {
		t.Errorf("default exempt namespaces %v", got)
	}
}

func BenchmarkAppArmor(b *testing.B) {
	d := apparmorTestDetector(b, nil)
	for _, bc := range []struct {
		name string
		ev   *pipeline.Event
	}{
		{"pod-create", loadTestEvent(b, "apparmor/pod-create-annotation-unconfined.json")},
		{"pod-create-quiet", loadTestEvent(b, "imagepull/pod-create-nodename.json")},
		{"deployment-create", loadTestEvent(b, "apparmor/deployment-create-confined.json")},
		{"non-pod", decodeTestEvent(b, imageBenchNonPod)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.ev.Raw)))
			out := make([]pipeline.Finding, 0, 4)
			for b.Loop() {
				out = d.Detect(bc.ev, out[:0])
			}
		})
	}
}

// TestAppArmorRawPrecheck holds apparmorRawMayFire to the decoded check:
// on generated streams (attacks included) the detector reports the same
// with it as when it decodes every pod's body.
func TestAppArmorRawPrecheck(t *testing.T) {
	fast := apparmorTestDetector(t, nil)
	slow := apparmorTestDetector(t, nil)
	slow.decodeAll = true
	n := 30000
	if testing.Short() {
		n = 6000
	}
	found, skipped := 0, 0
	for _, ratio := range []float64{0.05, 1} {
		g := gen.New(gen.Config{Seed: 9, AttackRatio: ratio})
		for i := 0; i < n; i++ {
			data := g.Next().JSON
			var a, b pipeline.Event
			if err := auditjson.Decode(&a, "prod", data); err != nil {
				t.Fatal(err)
			}
			if err := auditjson.Decode(&b, "prod", data); err != nil {
				t.Fatal(err)
			}
			got, want := fast.Detect(&a, nil), slow.Detect(&b, nil)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ratio %v event %d: with the raw check %v, decoding %v", ratio, i, got, want)
			}
			found += len(want)
			if _, ok := podSpecMatch(&a); ok && a.BodyDecodes() < b.BodyDecodes() {
				skipped++
			}
		}
	}
	if found == 0 || skipped == 0 {
		t.Fatalf("%d findings, %d pod writes skipped: the comparison proves nothing", found, skipped)
	}
	t.Logf("%d findings, %d pod writes not decoded", found, skipped)
}
