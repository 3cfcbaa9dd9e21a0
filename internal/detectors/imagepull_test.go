package detectors

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// imageWant is one expected finding: kind:container and severity.
type imageWant struct {
	disc string
	sev  pipeline.Severity
}

// imageTestDetector builds the detector from the defaults, edited by mod.
func imageTestDetector(t testing.TB, mod func(*ImagePullConfig)) *ImagePull {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg.UnsecuredImagePull)
	}
	d, err := NewImagePull(cfg.UnsecuredImagePull, cfg.State)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// imageCheck compares the findings d makes about evs with want, in order.
// Findings do not store their discriminator, so it is recovered by
// recomputing each wanted id from the finding's event.
func imageCheck(t *testing.T, d Detector, want []imageWant, evs ...*pipeline.Event) []pipeline.Finding {
	t.Helper()
	got := runDetector(d, evs...)
	var gotW []imageWant
	for _, f := range got {
		if f.Detector != d.ID() {
			t.Errorf("finding from detector %q", f.Detector)
		}
		if f.Summary == "" || f.MITRE == "" || len(f.Evidence) == 0 || f.ID == "" {
			t.Errorf("incomplete finding: %+v", f)
		}
		disc := "?"
		for _, ev := range evs {
			for _, w := range want {
				if pipeline.FindingID(d.ID(), ev.Cluster, string(ev.AuditID), pipeline.RequestHash(&ev.Event), w.disc) == f.ID {
					disc = w.disc
				}
			}
		}
		gotW = append(gotW, imageWant{disc: disc, sev: f.Severity})
	}
	if !slices.Equal(gotW, want) {
		var b strings.Builder
		for _, f := range got {
			fmt.Fprintf(&b, "\n  %s %s", f.Severity, f.Summary)
		}
		t.Errorf("got %v, want %v%s", gotW, want, b.String())
	}
	return got
}

func TestImagePullTestdata(t *testing.T) {
	tests := []struct {
		file string
		want []imageWant
	}{
		// Pinned to the node holding tenant-a's image, tag without digest.
		{"pod-create-nodename.json", []imageWant{{"cached-private-image:report", pipeline.SeverityCritical}}},
		// The request has no pull secrets, but the stored pod got the
		// service account's: quiet because the response is read first.
		{"pod-create-sa-secrets.json", nil},
		{"pod-create-metadata.json", nil},
		// Template: medium, +1 tag without digest, -1 because the service
		// account may still add secrets to the pods; the registry.k8s.io
		// sidecar is public.
		{"deployment-create.json", []imageWant{{"cached-private-image:checkout", pipeline.SeverityMedium}}},
		// No tag: defaults to Always, so only the mutable tag is reported.
		{"cronjob-create.json", []imageWant{{"mutable-tag:backup", pipeline.SeverityLow}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := imageTestDetector(t, nil)
			imageCheck(t, d, tt.want, loadTestEvent(t, "imagepull/"+tt.file))
		})
	}
}

func TestImagePullTestdataEvidence(t *testing.T) {
	d := imageTestDetector(t, nil)
	got := runDetector(d, loadTestEvent(t, "imagepull/pod-create-nodename.json"))
	if len(got) != 1 {
		t.Fatalf("got %d findings, want 1", len(got))
	}
	f := got[0]
	wantSummary := `Pod tenant-b/reporting container "report" runs private image registry.tenant-a.example.com/finance/ledger:4.2.0 with pull policy IfNotPresent and no imagePullSecrets: it can start from another tenant's cached copy (pinned to node ip-10-0-3-17.eu-west-1.compute.internal; tag without digest)`
	if f.Summary != wantSummary {
		t.Errorf("summary\n got %s\nwant %s", f.Summary, wantSummary)
	}
	wantEv := []pipeline.Evidence{
		{Field: "spec.containers[0].image", Value: "registry.tenant-a.example.com/finance/ledger:4.2.0", Source: "response"},
		{Field: "spec.containers[0].imagePullPolicy", Value: "IfNotPresent", Source: "response"},
		{Field: "spec.imagePullSecrets", Value: "none", Source: "response"},
		{Field: "spec.nodeName", Value: "ip-10-0-3-17.eu-west-1.compute.internal", Source: "response"},
	}
	if !slices.Equal(f.Evidence, wantEv) {
		t.Errorf("evidence\n got %+v\nwant %+v", f.Evidence, wantEv)
	}
	if f.MITRE != "T1610" || f.Namespace != "tenant-b" || f.Username != "mallory@tenant-b.example.com" {
		t.Errorf("mitre %q namespace %q user %q", f.MITRE, f.Namespace, f.Username)
	}
}

func TestImagePullCases(t *testing.T) {
	const private = "harbor.internal.example.net/shop/api"
	pod := func(spec string) string { return podSpecTestPod("shop", "api", "", spec) }
	one := func(image, policy string) string {
		c := `{"name":"api","image":"` + image + `"`
		if policy != "" {
			c += `,"imagePullPolicy":"` + policy + `"`
		}
		return pod(`{"containers":[` + c + `}]}`)
	}
	tests := []struct {
		name string
		mod  func(*ImagePullConfig)
		r    podSpecTestReq
		want []imageWant
	}{
		{"digest, defaulted IfNotPresent", nil, podSpecTestReq{resp: one(private+"@sha256:0f1e", "")},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityMedium}}},
		{"digest and Always", nil, podSpecTestReq{resp: one(private+"@sha256:0f1e", "Always")}, nil},
		{"Never with digest", nil, podSpecTestReq{resp: one(private+"@sha256:0f1e", "Never")},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityHigh}}},
		{"latest and digest defaults to Always", nil, podSpecTestReq{resp: one(private+":latest@sha256:0f1e", "")}, nil},
		{"latest with IfNotPresent", nil, podSpecTestReq{resp: one(private+":latest", "IfNotPresent")},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityHigh}, {"mutable-tag:api", pipeline.SeverityLow}}},
		{"port registry no tag", nil, podSpecTestReq{resp: one("registry.local:5000/team/tool", "")},
			[]imageWant{{"mutable-tag:api", pipeline.SeverityLow}}},
		{"ECR is node-credentialed", nil, podSpecTestReq{resp: one("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:5.1.0", "IfNotPresent")}, nil},
		{"GAR is node-credentialed", nil, podSpecTestReq{resp: one("europe-west1-docker.pkg.dev/acme/shop/api:5.1.0", "")}, nil},
		{"ACR is node-credentialed", nil, podSpecTestReq{resp: one("acme.azurecr.io/shop/api:5.1.0", "")}, nil},
		{"official image", nil, podSpecTestReq{resp: one("nginx:1.27", "IfNotPresent")}, nil},
		{"official image by full name", nil, podSpecTestReq{resp: one("index.docker.io/library/nginx", "Never")}, nil},
		{"distroless", nil, podSpecTestReq{resp: one("gcr.io/distroless/static-debian12:nonroot", "")}, nil},
		{"distroless look-alike is private", nil, podSpecTestReq{resp: one("gcr.io/distroless-evil/static:1", "")},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityHigh}}},
		{"docker hub user image is private by default", nil, podSpecTestReq{resp: one("acme/api:1.0", "")},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityHigh}}},
		{"configured quay org is public", func(c *ImagePullConfig) { c.PublicRegistries = append(c.PublicRegistries, "quay.io/prometheus/*") },
			podSpecTestReq{resp: one("quay.io/prometheus/node-exporter:v1.8.2", "")}, nil},
		{"pull secrets", nil, podSpecTestReq{resp: pod(`{"imagePullSecrets":[{"name":"harbor"}],"containers":[{"name":"api","image":"` + private + `:5.1.0"}]}`)}, nil},
		{"empty pull secret name does not count", nil, podSpecTestReq{resp: pod(`{"imagePullSecrets":[{}],"containers":[{"name":"api","image":"` + private + `:5.1.0"}]}`)},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityHigh}}},
		{"request only: the service account may add secrets", nil, podSpecTestReq{level: "Request", req: one(private+":5.1.0", "")},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityMedium}}},
		{"init and ephemeral containers", nil, podSpecTestReq{resp: pod(`{"initContainers":[{"name":"migrate","image":"` + private + `-migrate:5.1.0"}],"containers":[{"name":"api","image":"nginx:1.27"}],"ephemeralContainers":[{"name":"dbg","image":"` + private + `-debug:1"}]}`)},
			[]imageWant{{"cached-private-image:migrate", pipeline.SeverityHigh}, {"cached-private-image:dbg", pipeline.SeverityHigh}}},
		{"ephemeralcontainers judges only ephemeral containers", nil, podSpecTestReq{verb: "patch", sub: "ephemeralcontainers", code: 200,
			req:  `{"spec":{"ephemeralContainers":[{"name":"dbg","image":"` + private + `-debug:1"}]}}`,
			resp: pod(`{"containers":[{"name":"api","image":"` + private + `:5.1.0"}],"ephemeralContainers":[{"name":"dbg","image":"` + private + `-debug:1"}]}`)},
			[]imageWant{{"cached-private-image:dbg", pipeline.SeverityHigh}}},
		{"pod label patch is ignored", nil, podSpecTestReq{verb: "patch", code: 200, req: `{"metadata":{"labels":{"x":"y"}}}`, resp: one(private+":5.1.0", "")}, nil},
		{"pod image patch is judged", nil, podSpecTestReq{verb: "patch", code: 200, req: `{"spec":{"containers":[{"name":"api","image":"` + private + `:5.1.1"}]}}`, resp: one(private+":5.1.1", "")},
			[]imageWant{{"cached-private-image:api", pipeline.SeverityHigh}}},
		{"rejected create", nil, podSpecTestReq{code: 403, req: one(private+":5.1.0", ""),
			resp: `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`}, nil},
		{"allowlist", func(c *ImagePullConfig) { c.AllowedRegistries = []string{"harbor.internal.example.net"} },
			podSpecTestReq{resp: pod(`{"containers":[{"name":"api","image":"` + private + `:5.1.0","imagePullPolicy":"Always"},{"name":"web","image":"nginx:1.27"}]}`)},
			[]imageWant{{"registry-not-allowed:web", pipeline.SeverityMedium}}},
		{"statefulset template", nil, podSpecTestReq{verb: "update", group: "apps", resource: "statefulsets", code: 200,
			resp: strings.Replace(podSpecTestDeployment("shop", "db", "", `{"containers":[{"name":"db","image":"`+private+`-db:16","imagePullPolicy":"IfNotPresent"}]}`), "Deployment", "StatefulSet", 1)},
			[]imageWant{{"cached-private-image:db", pipeline.SeverityMedium}}},
		{"not a pod", nil, podSpecTestReq{resource: "configmaps", resp: `{"kind":"ConfigMap","data":{"image":"` + private + `"}}`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := imageTestDetector(t, tt.mod)
			imageCheck(t, d, tt.want, podSpecTestEvent(t, tt.r))
		})
	}
}

// TestImagePullSeenWithSecrets checks the stateful raise: once tenant-a
// pulls a repository with secrets, tenant-b using it without is worse.
func TestImagePullSeenWithSecrets(t *testing.T) {
	d := imageTestDetector(t, nil)
	withSecrets := loadTestEvent(t, "imagepull/pod-create-sa-secrets.json")
	without := podSpecTestEvent(t, podSpecTestReq{ns: "tenant-b", name: "copycat",
		resp: podSpecTestPod("tenant-b", "copycat", "", `{"containers":[{"name":"c","image":"registry.tenant-a.example.com/finance/ledger@sha256:9a8b"}]}`)})
	imageCheck(t, d, []imageWant{{"cached-private-image:c", pipeline.SeverityMedium}}, without)
	got := imageCheck(t, d, []imageWant{{"cached-private-image:c", pipeline.SeverityHigh}}, withSecrets, without)
	if !slices.Contains(got[0].Evidence, pipeline.Evidence{Field: "repository_pulled_with_secrets_in", Value: "tenant-a", Source: "event"}) {
		t.Errorf("evidence lacks the other namespace: %+v", got[0].Evidence)
	}
	// The same namespace pulling with and without secrets is no sign of
	// riding on someone else's copy.
	same := podSpecTestEvent(t, podSpecTestReq{ns: "tenant-a", name: "copycat",
		resp: podSpecTestPod("tenant-a", "copycat", "", `{"containers":[{"name":"c","image":"registry.tenant-a.example.com/finance/ledger@sha256:9a8b"}]}`)})
	imageCheck(t, d, []imageWant{{"cached-private-image:c", pipeline.SeverityMedium}}, same)
}

func TestImagePullRedelivery(t *testing.T) {
	d := imageTestDetector(t, nil)
	a := runDetector(d, loadTestEvent(t, "imagepull/pod-create-nodename.json"))
	b := runDetector(d, loadTestEvent(t, "imagepull/pod-create-nodename.json"))
	if len(a) != 1 || len(b) != 1 || a[0].ID != b[0].ID {
		t.Fatalf("redelivered event gave different findings: %v vs %v", a, b)
	}
	// The RequestReceived stage of the same request is not authoritative.
	ev := loadTestEvent(t, "imagepull/pod-create-nodename.json")
	ev.Stage = "RequestReceived"
	if got := runDetector(d, ev); len(got) != 0 {
		t.Errorf("RequestReceived stage produced %d findings", len(got))
	}
}

func TestImageParseRef(t *testing.T) {
	f := func(in, want string, wantOK bool) {
		t.Helper()
		r, ok := imageParseRef(in)
		got := r.Host + " " + r.Path + " " + r.Tag + " " + r.Digest
		if ok != wantOK || (ok && got != want) {
			t.Errorf("imageParseRef(%q) = %q %v, want %q %v", in, got, ok, want, wantOK)
		}
	}
	f("nginx", "docker.io library/nginx  ", true)
	f("nginx:1.27", "docker.io library/nginx 1.27 ", true)
	f("bitnami/redis:7.2", "docker.io bitnami/redis 7.2 ", true)
	f("docker.io/nginx", "docker.io library/nginx  ", true)
	f("index.docker.io/library/nginx:latest", "docker.io library/nginx latest ", true)
	f("localhost/app", "localhost app  ", true)
	f("localhost:5000/app:v1", "localhost:5000 app v1 ", true)
	f("registry.local:5000/team/tool", "registry.local:5000 team/tool  ", true)
	f("Registry/app", "registry app  ", true)
	f("ghcr.io/acme/app@sha256:abc", "ghcr.io acme/app  sha256:abc", true)
	f("ghcr.io/acme/app:1.0@sha256:abc", "ghcr.io acme/app 1.0 sha256:abc", true)
	f("123456789012.dkr.ecr.eu-west-1.amazonaws.com/a/b:1", "123456789012.dkr.ecr.eu-west-1.amazonaws.com a/b 1 ", true)
	f("", "", false)
	f("ghcr.io/", "", false)
	f("app:", "", false)
	f("app@sha256", "", false)
	f("a//b", "", false)
}

func TestImageEffectivePolicy(t *testing.T) {
	f := func(image, declared, want string) {
		t.Helper()
		r, _ := imageParseRef(image)
		if got, _ := imageEffectivePolicy(declared, r); got != want {
			t.Errorf("imageEffectivePolicy(%q, %q) = %q, want %q", declared, image, got, want)
		}
	}
	f("app", "", "Always")
	f("app:latest", "", "Always")
	f("app:1.0", "", "IfNotPresent")
	f("app@sha256:abc", "", "IfNotPresent")
	f("app:latest@sha256:abc", "", "Always")
	f("app:1.0", "Never", "Never")
	f("app", "IfNotPresent", "IfNotPresent")
}

func TestImagePullConfig(t *testing.T) {
	_, err := ParseConfig([]byte(`
unsecured_image_pull:
  public_registries: ["https://quay.io/x"]
  allowed_registries: ["ghcr.io/acme/*", "ghcr.io/a*b/c", "[", ""]
`))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		"unsecured_image_pull.public_registries[0]",
		"unsecured_image_pull.allowed_registries[1]",
		"unsecured_image_pull.allowed_registries[2]",
		"unsecured_image_pull.allowed_registries[3]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "allowed_registries[0]") {
		t.Errorf("valid pattern rejected: %v", err)
	}
	cfg, err := ParseConfig([]byte("unsecured_image_pull:\n  node_credentialed_registries: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Without node credentials, an ECR image without secrets is reported.
	d, err := NewImagePull(cfg.UnsecuredImagePull, cfg.State)
	if err != nil {
		t.Fatal(err)
	}
	imageCheck(t, d, []imageWant{{"cached-private-image:api", pipeline.SeverityHigh}},
		podSpecTestEvent(t, podSpecTestReq{resp: podSpecTestPod("shop", "api", "", `{"containers":[{"name":"api","image":"123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:5.1.0"}]}`)}))
}

// imageBenchNonPod is a RequestResponse ConfigMap update: a common event
// the detector must dismiss without decoding.
const imageBenchNonPod = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/configmaps/api-config","verb":"update","user":{"username":"system:serviceaccount:shop:api","groups":["system:serviceaccounts","system:authenticated"]},"sourceIPs":["10.0.4.17"],"userAgent":"api/1.0","objectRef":{"resource":"configmaps","namespace":"shop","name":"api-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"api-config","namespace":"shop"},"data":{"image":"harbor.internal.example.net/shop/api:5.1.0"}},"responseObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"api-config","namespace":"shop","resourceVersion":"48300999"},"data":{"image":"harbor.internal.example.net/shop/api:5.1.0"}},"requestReceivedTimestamp":"2026-11-27T10:15:02.123456Z","stageTimestamp":"2026-11-27T10:15:02.141234Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`

func BenchmarkImagePull(b *testing.B) {
	d := imageTestDetector(b, nil)
	for _, bc := range []struct {
		name string
		ev   *pipeline.Event
	}{
		{"pod-create", loadTestEvent(b, "imagepull/pod-create-nodename.json")},
		{"deployment-create", loadTestEvent(b, "imagepull/deployment-create.json")},
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

// TestImagePatternMatchesPathMatch keeps the literal and prefix/suffix
// shortcuts of imagePattern.match equal to path.Match on the host: each
// host below matches one pattern and misses a look-alike.
func TestImagePatternMatchesPathMatch(t *testing.T) {
	patterns := []string{
		"docker.io/library", "registry.k8s.io", "*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn",
		"*-docker.pkg.dev", "*.azurecr.io", "reg?.example.com", "[a-c]]x.example", "a\\*b.io", "*", "ex*ample.*",
	}
	hosts := []string{
		"docker.io", "docker.iox", "registry.k8s.io", "registry.k8s.io.evil", "123.dkr.ecr.eu-west-1.amazonaws.com",
		"123.dkr.ecr.eu-west-1.amazonaws.com.cn", "dkr.ecr.amazonaws.com", "europe-docker.pkg.dev", "docker.pkg.dev",
		"x.azurecr.io", "azurecr.io", "reg1.example.com", "reg12.example.com", "b]x.example", "d]x.example", "]x.io",
		"ax.io", "a*b.io", "axb.io", "example.com", "exxample.org", "", "localhost:5000",
	}
	for _, s := range patterns {
		p, err := imageParsePattern(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		for _, h := range hosts {
			want, _ := path.Match(p.host, h)
			if got := p.match(imageRef{Host: h, Path: p.path}); got != want {
				t.Errorf("pattern %q, host %q: match %v, path.Match %v", s, h, got, want)
			}
		}
	}
	lib, _ := imageParsePattern("docker.io/library")
	for path, want := range map[string]bool{"library": true, "library/nginx": true, "libraryx/nginx": false, "librar": false, "other/library": false} {
		if got := lib.match(imageRef{Host: "docker.io", Path: path}); got != want {
			t.Errorf("docker.io/library on path %q: %v, want %v", path, got, want)
		}
	}
}
