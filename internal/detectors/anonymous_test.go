package detectors

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// anonNewTestDetector builds the detector from the defaults with a small
// state cap.
func anonNewTestDetector(t testing.TB, maxEntries int) *Anonymous {
	t.Helper()
	d, err := NewAnonymous(defaultAnonymousConfig(), maxEntries)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// anonEnumerations keeps the enumeration findings, told apart from the
// per-request ones anonymous 403s also produce by their summary.
func anonEnumerations(fs []pipeline.Finding) []pipeline.Finding {
	var out []pipeline.Finding
	for _, f := range fs {
		if strings.HasPrefix(f.Summary, "Possible API enumeration") {
			out = append(out, f)
		}
	}
	return out
}

func anonEvidence(f pipeline.Finding, field string) (pipeline.Evidence, bool) {
	for _, e := range f.Evidence {
		if e.Field == field {
			return e, true
		}
	}
	return pipeline.Evidence{}, false
}

func TestAnonymousFires(t *testing.T) {
	tests := []struct {
		file     string
		severity pipeline.Severity
		mitre    string
		summary  string // substring
		evidence pipeline.Evidence
	}{
		{
			file: "secrets_list_allowed", severity: pipeline.SeverityCritical, mitre: "T1078.001",
			summary:  "203.0.113.45 was allowed to list secrets in namespace kube-system (/api/v1/namespaces/kube-system/secrets)",
			evidence: pipeline.Evidence{Field: "path", Value: "/api/v1/namespaces/kube-system/secrets", Source: pipeline.FromEvent},
		},
		{
			// watch is judged from ResponseStarted, its first complete view.
			file: "pods_watch_started", severity: pipeline.SeverityCritical, mitre: "T1078.001",
			summary:  "was allowed to watch pods",
			evidence: pipeline.Evidence{Field: "objectRef.resource", Value: "pods", Source: pipeline.FromEvent},
		},
		{
			file: "nonresource_post_allowed", severity: pipeline.SeverityCritical, mitre: "T1078.001",
			summary:  "allowed to POST /apis/example.com/v1/hooks, a non-read request",
			evidence: pipeline.Evidence{Field: "verb", Value: "post", Source: pipeline.FromEvent},
		},
		{
			file: "metrics_get_allowed", severity: pipeline.SeverityHigh, mitre: "T1078.001",
			summary:  "10.0.12.7 was allowed to GET /metrics, which is not in anonymous_access.allowed_paths",
			evidence: pipeline.Evidence{Field: "annotations.authorization.k8s.io/decision", Value: "allow", Source: pipeline.FromEvent},
		},
		{
			// Exact match: /readyz is allowed, /readyz/etcd is not.
			file: "readyz_etcd_allowed", severity: pipeline.SeverityHigh, mitre: "T1078.001",
			summary:  "GET /readyz/etcd",
			evidence: pipeline.Evidence{Field: "path", Value: "/readyz/etcd", Source: pipeline.FromEvent},
		},
		{
			// %2F decodes to a slash, as in req.URL.Path: not /healthz.
			file: "healthz_encoded_slash", severity: pipeline.SeverityHigh, mitre: "T1078.001",
			summary:  "GET /healthz%2Fetcd",
			evidence: pipeline.Evidence{Field: "path", Value: "/healthz/etcd", Source: pipeline.FromEvent},
		},
		{
			file: "secrets_forbidden", severity: pipeline.SeverityMedium, mitre: "T1595.003",
			summary:  "tried to list secrets in namespace kube-system (/api/v1/namespaces/kube-system/secrets) and was denied (403)",
			evidence: pipeline.Evidence{Field: "annotations.authorization.k8s.io/decision", Value: "forbid", Source: pipeline.FromEvent},
		},
		{
			file: "crb_create_cluster_admin", severity: pipeline.SeverityCritical, mitre: "T1098.006",
			summary:  `alice@example.com bound ClusterRole cluster-admin to Group system:unauthenticated in ClusterRoleBinding "anon-admin": anyone`,
			evidence: pipeline.Evidence{Field: "responseObject.subjects", Value: "Group system:unauthenticated", Source: pipeline.FromResponse},
		},
		{
			// Request level: only the merge patch is there to read.
			file: "rb_merge_patch_request_only", severity: pipeline.SeverityHigh, mitre: "T1098.006",
			summary:  `bound an unknown role (not in the request body) to User system:anonymous in RoleBinding "readers" in namespace payments`,
			evidence: pipeline.Evidence{Field: "requestObject.subjects", Value: "User system:anonymous", Source: pipeline.FromRequest},
		},
		{
			file: "crb_json_patch", severity: pipeline.SeverityHigh, mitre: "T1098.006",
			summary:  `to Group system:unauthenticated in ClusterRoleBinding "monitoring-view"`,
			evidence: pipeline.Evidence{Field: "requestObject.subjects", Value: "Group system:unauthenticated", Source: pipeline.FromRequest},
		},
		{
			// The response is a Status: the request says what was asked.
			file: "crb_create_forbidden", severity: pipeline.SeverityMedium, mitre: "T1098.006",
			summary:  "system:serviceaccount:ci:deployer tried to bind ClusterRole cluster-admin to Group system:unauthenticated",
			evidence: pipeline.Evidence{Field: "requestObject.roleRef", Value: "ClusterRole cluster-admin", Source: pipeline.FromRequest},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ev := loadTestEvent(t, filepath.Join("anonymous", tt.file+".json"))
			got := runDetector(anonNewTestDetector(t, 100), ev)
			if len(got) != 1 {
				t.Fatalf("got %d findings, want 1: %+v", len(got), got)
			}
			f := got[0]
			if f.Severity != tt.severity {
				t.Errorf("severity = %v, want %v (%s)", f.Severity, tt.severity, f.Summary)
			}
			if f.MITRE != tt.mitre {
				t.Errorf("mitre = %q, want %q", f.MITRE, tt.mitre)
			}
			if !strings.Contains(f.Summary, tt.summary) {
				t.Errorf("summary = %q, want it to contain %q", f.Summary, tt.summary)
			}
			if strings.ContainsAny(f.Summary, "\n\r") {
				t.Errorf("summary spans lines: %q", f.Summary)
			}
			e, ok := anonEvidence(f, tt.evidence.Field)
			if !ok || e != tt.evidence {
				t.Errorf("evidence %s = %+v, want %+v; all: %+v", tt.evidence.Field, e, tt.evidence, f.Evidence)
			}
			if f.Detector != AnonymousDetectorID || f.Cluster != testCluster || f.ID == "" || f.AuditID != string(ev.AuditID) {
				t.Errorf("identity fields not filled: %+v", f)
			}
		})
	}
}

func TestAnonymousQuiet(t *testing.T) {
	tests := []struct {
		file string
		why  string
	}{
		{"readyz_probe", "load-balancer probe of an allowed path, query ignored"},
		{"version_allowed", "/version is allowed"},
		{"healthz_escaped_probe", "/heal%74hz is /healthz once decoded, as the apiserver matches it"},
		{"authenticated_secrets_list", "authenticated user"},
		{"impersonating_anonymous", "authenticated user impersonating system:anonymous"},
		{"failed_auth", "a single failed authentication is not enumeration"},
		{"secrets_list_requestreceived", "RequestReceived is not the authoritative stage"},
		{"crb_create_normal", "binding to an ordinary group"},
		{"crb_response_stripped", "the stored binding (response) has no anonymous subject, whatever was asked"},
		{"crb_create_metadata_level", "no body to read at Metadata level"},
		{"rb_strategic_delete_request_only", "a strategic-merge patch deleting the anonymous subject"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ev := loadTestEvent(t, filepath.Join("anonymous", tt.file+".json"))
			if got := runDetector(anonNewTestDetector(t, 100), ev); len(got) != 0 {
				t.Errorf("%s: got %d findings, want none: %+v", tt.why, len(got), got)
			}
		})
	}
}

// The look-alike pairs above must differ only in what the detector judges:
// the same probe on a path outside the list fires.
func TestAnonymousAllowedPathsConfigured(t *testing.T) {
	cfg := defaultAnonymousConfig()
	cfg.AllowedPaths = []string{"/livez"}
	d, err := NewAnonymous(cfg, 100)
	if err != nil {
		t.Fatal(err)
	}
	ev := loadTestEvent(t, "anonymous/readyz_probe.json")
	got := runDetector(d, ev)
	if len(got) != 1 || got[0].Severity != pipeline.SeverityHigh {
		t.Fatalf("readyz outside allowed_paths [/livez]: got %+v, want one high finding", got)
	}
}

func TestAnonymousOneFindingPerRequest(t *testing.T) {
	received := loadTestEvent(t, "anonymous/secrets_list_requestreceived.json")
	complete := loadTestEvent(t, "anonymous/secrets_list_allowed.json")
	d := anonNewTestDetector(t, 100)
	// Stages arrive in any order; only ResponseComplete is judged.
	got := runDetector(d, complete, received)
	if len(got) != 1 {
		t.Fatalf("RequestReceived+ResponseComplete: got %d findings, want 1", len(got))
	}
	// A redelivered event (webhook retry, Kafka replay) yields the same id,
	// so the findings table collapses it.
	again := runDetector(anonNewTestDetector(t, 100), loadTestEvent(t, "anonymous/secrets_list_allowed.json"))
	if len(again) != 1 || again[0].ID != got[0].ID {
		t.Fatalf("redelivery: got %+v, want the same finding_id %s", again, got[0].ID)
	}
}

// anonScanPaths is a scanner's word list.
var anonScanPaths = []string{
	"/api/v1/secrets", "/api/v1/pods", "/apis/apps/v1/deployments", "/metrics",
	"/debug/pprof/", "/logs/", "/api/v1/nodes", "/openapi/v2",
	"/api/v1/configmaps", "/api/v1/namespaces/kube-system/secrets", "/configz",
	"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "/api/v1/serviceaccounts",
	"/.well-known/openid-configuration",
}

// anonDeniedEvent renders a denied unauthenticated request as the apiserver
// audits it: a failed authentication (401, empty user, ResponseStarted) or
// an anonymous request refused by the authorizer (403, ResponseComplete).
func anonDeniedEvent(t testing.TB, code int, i int, at time.Time, path string, sourceIPs string) *pipeline.Event {
	t.Helper()
	ts := at.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	if code == 401 {
		return decodeTestEvent(t, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b6e4f2a-0000-4000-8000-%012d","stage":"ResponseStarted","requestURI":%q,"verb":"get","user":{},"sourceIPs":[%s],"userAgent":"Go-http-client/1.1","responseStatus":{"metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
			i, path, sourceIPs, ts, ts))
	}
	return decodeTestEvent(t, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b6e4f2a-0000-4000-8000-%012d","stage":"ResponseComplete","requestURI":%q,"verb":"get","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":[%s],"userAgent":"Go-http-client/1.1","responseStatus":{"metadata":{},"status":"Failure","message":"forbidden: User \"system:anonymous\" cannot get path \"%s\"","reason":"Forbidden","details":{},"code":403},"requestReceivedTimestamp":%q,"stageTimestamp":%q,"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}`,
		i, path, sourceIPs, path, ts, ts))
}

// anonBurstEvents is n denied requests from one IP, 2 s apart, starting 5 s into
// a minute so that the burst fits one 1m bucket.
func anonBurstEvents(t testing.TB, code, n int, ip string) []*pipeline.Event {
	t.Helper()
	start := time.Date(2026, 11, 27, 10, 20, 5, 0, time.UTC)
	evs := make([]*pipeline.Event, n)
	for i := range n {
		evs[i] = anonDeniedEvent(t, code, i, start.Add(time.Duration(i)*2*time.Second), anonScanPaths[i%len(anonScanPaths)], `"`+ip+`"`)
	}
	return evs
}

func TestAnonymousEnumeration(t *testing.T) {
	reversed := func(evs []*pipeline.Event) []*pipeline.Event {
		out := make([]*pipeline.Event, len(evs))
		for i, ev := range evs {
			out[len(evs)-1-i] = ev
		}
		return out
	}
	interleaved := func(evs []*pipeline.Event) []*pipeline.Event {
		var out []*pipeline.Event
		for i := 1; i < len(evs); i += 2 {
			out = append(out, evs[i])
		}
		for i := 0; i < len(evs); i += 2 {
			out = append(out, evs[i])
		}
		return out
	}
	twice := func(evs []*pipeline.Event) []*pipeline.Event {
		return append(append([]*pipeline.Event(nil), evs...), evs...)
	}

	burst403 := anonBurstEvents(t, 403, 12, "203.0.113.45")
	burst401 := anonBurstEvents(t, 401, 12, "198.51.100.23")
	samePath := make([]*pipeline.Event, 12)
	manyIPs := make([]*pipeline.Event, 12)
	rotatingXFF := make([]*pipeline.Event, 12)
	at := time.Date(2026, 11, 27, 10, 20, 5, 0, time.UTC)
	for i := range 12 {
		samePath[i] = anonDeniedEvent(t, 401, i, at.Add(time.Duration(i)*time.Second), "/api/v1/secrets", `"203.0.113.45"`)
		manyIPs[i] = anonDeniedEvent(t, 401, i, at.Add(time.Duration(i)*time.Second), anonScanPaths[i], fmt.Sprintf(`"203.0.113.%d"`, 100+i))
		// X-Forwarded-For comes first and is the client's to choose; the
		// TCP peer comes last.
		rotatingXFF[i] = anonDeniedEvent(t, 401, i, at.Add(time.Duration(i)*time.Second), anonScanPaths[i], fmt.Sprintf(`"10.%d.%d.1","203.0.113.77"`, i, i))
	}
	// 6 before and 6 after a bucket boundary: the documented blind spot.
	straddle := make([]*pipeline.Event, 12)
	boundary := time.Date(2026, 11, 27, 10, 21, 0, 0, time.UTC)
	for i := range 12 {
		straddle[i] = anonDeniedEvent(t, 403, i, boundary.Add(time.Duration(i-6)*time.Second), anonScanPaths[i], `"203.0.113.45"`)
	}

	// Refused health probes are not counted: 8 scan paths plus the 4
	// allowed paths stay below 10.
	withProbes := append([]*pipeline.Event(nil), burst403[:8]...)
	for i, p := range []string{"/healthz", "/livez", "/readyz?verbose", "/version"} {
		withProbes = append(withProbes, anonDeniedEvent(t, 403, 100+i, at.Add(time.Duration(i)*time.Second), p, `"203.0.113.45"`))
	}

	tests := []struct {
		name   string
		evs    []*pipeline.Event
		want   int
		wantIP string
	}{
		{"12 distinct 403 paths", burst403, 1, "203.0.113.45"},
		{"12 distinct 403 paths reversed", reversed(burst403), 1, "203.0.113.45"},
		{"12 distinct 403 paths interleaved", interleaved(burst403), 1, "203.0.113.45"},
		{"12 distinct 403 paths delivered twice", twice(burst403), 1, "203.0.113.45"},
		{"12 distinct 401 paths", burst401, 1, "198.51.100.23"},
		{"rotating X-Forwarded-For", rotatingXFF, 1, "203.0.113.77"},
		{"3 distinct paths", burst403[:3], 0, ""},
		{"9 distinct paths, one short", burst403[:9], 0, ""},
		{"12 retries of one path", samePath, 0, ""},
		{"12 sources, one path each", manyIPs, 0, ""},
		{"6+6 across a bucket boundary", straddle, 0, ""},
		{"8 scan paths and 4 refused health probes", withProbes, 0, ""},
	}
	var ids = map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := anonEnumerations(runDetector(anonNewTestDetector(t, 100), tt.evs...))
			if len(got) != tt.want {
				t.Fatalf("got %d enumeration findings, want %d: %+v", len(got), tt.want, got)
			}
			if tt.want == 0 {
				return
			}
			f := got[0]
			if f.SourceIP != tt.wantIP || f.Severity != pipeline.SeverityMedium || f.MITRE != "T1595.003" {
				t.Errorf("finding = %+v", f)
			}
			if want := time.Date(2026, 11, 27, 10, 20, 0, 0, time.UTC); !f.Time.Equal(want) {
				t.Errorf("time = %v, want the bucket start %v", f.Time, want)
			}
			if e, _ := anonEvidence(f, "user_agents"); e.Value != "Go-http-client/1.1" {
				t.Errorf("user_agents evidence = %q", e.Value)
			}
			ids[tt.wantIP] += f.ID + " "
		})
	}
	// Every ordering of the same burst names the same finding.
	if ids := strings.Fields(ids["203.0.113.45"]); len(ids) != 4 || ids[0] != ids[1] || ids[0] != ids[2] || ids[0] != ids[3] {
		t.Errorf("orderings of one burst gave ids %v, want four equal ids", ids)
	}
}

// Detect is called from several consumers at once: a burst split between
// them is still reported once.
func TestAnonymousEnumerationConcurrent(t *testing.T) {
	d := anonNewTestDetector(t, 100)
	evs := anonBurstEvents(t, 403, 12, "203.0.113.45")
	var (
		mu  sync.Mutex
		got []pipeline.Finding
		wg  sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			var out []pipeline.Finding
			for i := w; i < len(evs); i += 4 {
				out = d.Detect(evs[i], out)
			}
			mu.Lock()
			got = append(got, anonEnumerations(out)...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(got) != 1 {
		t.Fatalf("got %d enumeration findings from 4 concurrent callers, want 1", len(got))
	}
}

// A restart loses the state; the burst re-found from the redelivered tail
// keeps its id, so the findings table holds one row.
func TestAnonymousEnumerationRestart(t *testing.T) {
	evs := anonBurstEvents(t, 403, 14, "203.0.113.45")
	before := anonEnumerations(runDetector(anonNewTestDetector(t, 100), evs[:12]...))
	after := anonEnumerations(runDetector(anonNewTestDetector(t, 100), evs[3:]...))
	if len(before) != 1 || len(after) != 1 {
		t.Fatalf("got %d before and %d after the restart, want 1 and 1", len(before), len(after))
	}
	if before[0].ID != after[0].ID {
		t.Errorf("finding id changed across a restart: %s then %s", before[0].ID, after[0].ID)
	}
	// Another cluster is another burst.
	other := anonBurstEvents(t, 403, 12, "203.0.113.45")
	for _, ev := range other {
		ev.Cluster = "prod-us1"
	}
	if o := anonEnumerations(runDetector(anonNewTestDetector(t, 100), other...)); len(o) != 1 || o[0].ID == before[0].ID {
		t.Errorf("same burst in another cluster: got %+v, want one finding with another id", o)
	}
}

func TestAnonymousEnumerationStateBounded(t *testing.T) {
	const maxEntries = 8
	d := anonNewTestDetector(t, maxEntries)
	at := time.Date(2026, 11, 27, 10, 20, 5, 0, time.UTC)
	var evs []*pipeline.Event
	for i := range 200 {
		evs = append(evs, anonDeniedEvent(t, 401, i, at.Add(time.Duration(i)*time.Millisecond), anonScanPaths[i%len(anonScanPaths)], fmt.Sprintf(`"198.51.%d.%d"`, i/250, i%250)))
	}
	runDetector(d, evs...)
	if n := d.bursts.Len(); n > maxEntries {
		t.Fatalf("state holds %d sources, want at most %d", n, maxEntries)
	}
	if n := d.bursts.Len(); n == 0 {
		t.Fatal("state holds nothing: the enumeration path was not exercised")
	}
}

func TestAnonymousRequestPath(t *testing.T) {
	f := func(uri, want string) {
		t.Helper()
		if got := anonRequestPath(uri); got != want {
			t.Errorf("anonRequestPath(%q) = %q, want %q", uri, got, want)
		}
	}
	f("/readyz", "/readyz")
	f("/readyz?verbose=1&exclude=etcd", "/readyz")
	f("/heal%74hz", "/healthz")
	f("/healthz%2Fetcd", "/healthz/etcd")
	f("/healthz%3Fx", "/healthz?x") // an escaped ? is part of the path
	f("/bad%zz", "/bad%zz")         // Go's server would refuse it; keep it unmatched
	f("", "")
}

func TestAnonymousConfig(t *testing.T) {
	if _, err := ParseConfig([]byte("anonymous_access:\n  allowed_paths: [/livez, /readyz]\n  enumeration:\n    min_distinct_paths: 20\n    window: 5m\n")); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.AnonymousAccess.AllowedPaths; strings.Join(got, ",") != "/healthz,/livez,/readyz,/version" {
		t.Errorf("default allowed_paths = %v", got)
	}
	_, err = ParseConfig([]byte("anonymous_access:\n  allowed_paths: ['', healthz, '/readyz?verbose']\n  enumeration:\n    min_distinct_paths: 1\n    window: 0s\n"))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, key := range []string{
		"anonymous_access.allowed_paths[0]", "anonymous_access.allowed_paths[1]", "anonymous_access.allowed_paths[2]",
		"anonymous_access.enumeration.min_distinct_paths", "anonymous_access.enumeration.window",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if _, err := ParseConfig([]byte("anonymous_access:\n  allowed_path: [/livez]\n")); err == nil {
		t.Error("misspelt key accepted")
	}
}

// The common case, an authenticated request that succeeded, must not
// allocate: it is almost every event.
func TestAnonymousAuthenticatedDoesNotAllocate(t *testing.T) {
	d := anonNewTestDetector(t, 100)
	ev := loadTestEvent(t, "anonymous/authenticated_secrets_list.json")
	out := make([]pipeline.Finding, 0, 4)
	if n := testing.AllocsPerRun(100, func() { out = d.Detect(ev, out[:0]) }); n != 0 {
		t.Errorf("authenticated request: %v allocations per event, want 0", n)
	}
}

func FuzzAnonymous(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "anonymous", "*.json"))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"stage":"ResponseComplete","requestURI":"%","user":{"username":"system:anonymous"},"responseStatus":{"code":200}}`))
	f.Add([]byte(`{"stage":"ResponseComplete","verb":"patch","objectRef":{"resource":"rolebindings","apiGroup":"rbac.authorization.k8s.io"},"requestObject":[{"op":"add","path":"/subjects","value":7}]}`))
	f.Add([]byte(`{"stage":"ResponseStarted","user":{},"sourceIPs":["1.2.3.4"],"responseStatus":{"code":401},"stageTimestamp":"0001-01-01T00:00:00Z"}`))
	d := anonNewTestDetector(f, 64)
	set := NewSuite(d)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, testCluster, data); err != nil {
			return
		}
		for _, fd := range set.Detect(&ev, nil) {
			if fd.ID == "" || fd.Summary == "" || strings.ContainsAny(fd.Summary, "\n\r") {
				t.Fatalf("malformed finding %+v", fd)
			}
		}
		if d.bursts.Len() > 64 {
			t.Fatalf("state grew past its cap: %d", d.bursts.Len())
		}
	})
}

func BenchmarkAnonymous(b *testing.B) {
	for _, name := range []string{"authenticated_secrets_list", "readyz_probe", "secrets_list_allowed", "failed_auth", "crb_create_cluster_admin"} {
		b.Run(name, func(b *testing.B) {
			ev := loadTestEvent(b, filepath.Join("anonymous", name+".json"))
			d := anonNewTestDetector(b, 1000)
			out := make([]pipeline.Finding, 0, 4)
			b.ReportAllocs()
			for b.Loop() {
				out = d.Detect(ev, out[:0])
			}
		})
	}
}

func TestAnonymousOneLine(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := anonOneLine(in); got != want {
			t.Errorf("anonOneLine(%q) = %q, want %q", in, got, want)
		}
	}
	f("plain summary", "plain summary")
	f(`bound ClusterRole "x" to Group system:unauthenticated`, `bound ClusterRole "x" to Group system:unauthenticated`)
	f("evil\nname", `evil\nname`)
	f("a\u2028b\x7f", `a\u2028b\x7f`)

	q := func(in, want string) {
		t.Helper()
		if got := anonQuote(in); got != want {
			t.Errorf("anonQuote(%q) = %q, want %q", in, got, want)
		}
	}
	q("/api/v1/pods", "/api/v1/pods")
	q("/a\tb\n", `/a\tb\n`)
	q("/caf\u00e9", `/caf\u00e9`)
	q(strings.Repeat("/x", 100), strings.Repeat("/x", 60)+"...")
}
