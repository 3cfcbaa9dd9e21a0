package detectors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// tokenT0 is the time the testdata events are written around.
var tokenT0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// tokenEdit changes one event's JSON before it is decoded.
type tokenEdit func(m map[string]any)

// tokenEvent loads testdata/tokens/<name>, applies edits to its JSON and
// decodes it as the pipeline would.
func tokenEvent(t testing.TB, name string, edits ...tokenEdit) *pipeline.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "tokens", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(edits) == 0 {
		return decodeTestEvent(t, string(data))
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, e := range edits {
		e(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return decodeTestEvent(t, string(out))
}

// tokenSet sets the value at path, creating objects on the way; a nil value
// deletes the key.
func tokenSet(v any, path ...string) tokenEdit {
	return func(m map[string]any) {
		for _, k := range path[:len(path)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		if v == nil {
			delete(m, path[len(path)-1])
			return
		}
		m[path[len(path)-1]] = v
	}
}

// tokenAt moves the event to tokenT0+off, with a realistic 2 ms handling
// time, and gives it an auditID of its own.
func tokenAt(off time.Duration) tokenEdit {
	return func(m map[string]any) {
		at := tokenT0.Add(off)
		m["requestReceivedTimestamp"] = at.Format("2006-01-02T15:04:05.000000Z07:00")
		m["stageTimestamp"] = at.Add(2 * time.Millisecond).Format("2006-01-02T15:04:05.000000Z07:00")
		m["auditID"] = fmt.Sprintf("%s-%d", m["auditID"], off)
	}
}

func tokenIP(ip string) tokenEdit  { return tokenSet([]any{ip}, "sourceIPs") }
func tokenUA(ua string) tokenEdit  { return tokenSet(ua, "userAgent") }
func tokenCode(code int) tokenEdit { return tokenSet(code, "responseStatus", "code") }
func tokenUser(u string) tokenEdit { return tokenSet(u, "user", "username") }

// tokenNoValue passed to tokenAnn deletes the annotation.
const tokenNoValue = "\x00delete"

func tokenAnn(k, v string) tokenEdit {
	if v == tokenNoValue {
		return tokenSet(nil, "annotations", k)
	}
	return tokenSet(v, "annotations", k)
}
func tokenExtra(k, v string) tokenEdit {
	if v == "" {
		return tokenSet(nil, "user", "extra", k)
	}
	return tokenSet([]any{v}, "user", "extra", k)
}

// tokenDetectors builds the three detectors from the default config as
// changed by mut.
func tokenDetectors(t testing.TB, mut func(*Config)) (stale, legacy, replay Detector) {
	t.Helper()
	cfg := DefaultConfig()
	if mut != nil {
		mut(&cfg)
	}
	ds, err := buildTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 || ds[0].ID() != staleID || ds[1].ID() != legacyID || ds[2].ID() != replayID {
		t.Fatalf("buildTokens returned %v", ds)
	}
	return ds[0], ds[1], ds[2]
}

// tokenCheck asserts the findings are exactly one with the given severity
// and summary fragments, or none when sev is "".
func tokenCheck(t *testing.T, fs []pipeline.Finding, detector, sev string, want ...string) {
	t.Helper()
	if sev == "" {
		for _, f := range fs {
			t.Errorf("unexpected finding: %s %s: %s", f.Detector, f.Severity, f.Summary)
		}
		return
	}
	if len(fs) != 1 {
		for _, f := range fs {
			t.Logf("finding: %s %s: %s", f.Detector, f.Severity, f.Summary)
		}
		t.Fatalf("got %d findings, want 1", len(fs))
	}
	f := fs[0]
	if f.Detector != detector || f.Severity.String() != sev {
		t.Errorf("got %s/%s, want %s/%s (%s)", f.Detector, f.Severity, detector, sev, f.Summary)
	}
	for _, w := range want {
		if !strings.Contains(f.Summary, w) {
			t.Errorf("summary %q lacks %q", f.Summary, w)
		}
	}
	if f.ID == "" || f.MITRE == "" || len(f.Evidence) == 0 || strings.Contains(f.Summary, "\n") {
		t.Errorf("incomplete finding: %+v", f)
	}
	for _, e := range f.Evidence {
		switch e.Source {
		case pipeline.FromEvent, pipeline.FromRequest, pipeline.FromResponse:
		default:
			t.Errorf("evidence %q has source %q", e.Field, e.Source)
		}
	}
}

func TestStaleToken(t *testing.T) {
	stale := func(n string) tokenEdit {
		return tokenAnn(staleAnnotation, "subject: system:serviceaccount:shop:web, seconds after warning threshold: "+n)
	}
	tests := []struct {
		name  string
		edits []tokenEdit
		sev   string
		want  []string
	}{
		{"minutes late: not reloading", []tokenEdit{stale("120")}, "low", []string{"system:serviceaccount:shop:web", "2m0s", "not reloading", "web-7d9f8b6c5-x2x9q"}},
		{"just under an hour", []tokenEdit{stale("3599")}, "low", nil},
		{"two hours late", []tokenEdit{stale("7200")}, "medium", []string{"2h0m0s"}},
		{"a day late: copied", []tokenEdit{stale("86400")}, "high", []string{"24h0m0s", "likely a copied token"}},
		{"reworded annotation still reported", []tokenEdit{tokenAnn(staleAnnotation, "stale since 3h")}, "low", []string{"unknown time"}},
		{"no annotation", []tokenEdit{tokenAnn(staleAnnotation, tokenNoValue)}, "", nil},
		{"fresh bound token", nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, _ := tokenDetectors(t, nil)
			file := "stale-use.json"
			if tt.edits == nil {
				file = "bound-use.json"
			}
			fs := runDetector(d, tokenEvent(t, file, tt.edits...))
			tokenCheck(t, fs, staleID, tt.sev, tt.want...)
		})
	}
}

func TestStaleTokenIgnoredUserAndRepeats(t *testing.T) {
	d, _, _ := tokenDetectors(t, func(c *Config) { c.Tokens.IgnoreUsers = []string{"system:serviceaccount:shop:*"} })
	tokenCheck(t, runDetector(d, tokenEvent(t, "stale-use.json")), staleID, "")

	// A workload that never reloads its token carries the annotation on
	// every request: one finding per window and severity, not one per call.
	d, _, _ = tokenDetectors(t, nil)
	var evs []*pipeline.Event
	for i := range 20 {
		evs = append(evs, tokenEvent(t, "stale-use.json", tokenAt(time.Duration(i)*10*time.Second)))
	}
	tokenCheck(t, runDetector(d, evs...), staleID, "low")
	next := tokenEvent(t, "stale-use.json", tokenAt(11*time.Minute))
	if fs := runDetector(d, next); len(fs) != 1 {
		t.Fatalf("next window: got %d findings, want 1", len(fs))
	}

	// Off: every request is reported.
	d, _, _ = tokenDetectors(t, func(c *Config) { c.Tokens.SuppressRepeats = false })
	if fs := runDetector(d, evs...); len(fs) != len(evs) {
		t.Fatalf("suppress_repeats off: got %d findings, want %d", len(fs), len(evs))
	}
}

func TestLegacyTokenUse(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		edits []tokenEdit
		sev   string
		want  []string
	}{
		{"auto-generated secret", "legacy-use.json", nil, "low", []string{"system:serviceaccount:ci:deployer", "auto-generated secret deployer-token-7xk2p"}},
		{"manual secret", "legacy-use.json", []tokenEdit{tokenAnn(legacyAutogeneratedAnnotation, tokenNoValue), tokenAnn(legacyManualAnnotation, "deployer-ci")}, "low", []string{"manually created secret deployer-ci"}},
		{"no-audience token only", "legacy-use.json", []tokenEdit{tokenAnn(legacyAutogeneratedAnnotation, tokenNoValue)}, "low", []string{"secret-based"}},
		{"kube-system service account", "legacy-use.json", []tokenEdit{
			tokenUser("system:serviceaccount:kube-system:deployer"),
			tokenAnn(legacyAnnotation, "system:serviceaccount:kube-system:deployer"),
		}, "medium", []string{"kube-system:deployer"}},
		{"revoked token presented", "legacy-invalidated.json", nil, "high", []string{"revoked", "ci/deployer-token-7xk2p", "198.51.100.23", "401"}},
		{"bound token", "bound-use.json", nil, "", nil},
		{"stale bound token is not legacy", "stale-use.json", nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, d, _ := tokenDetectors(t, nil)
			fs := runDetector(d, tokenEvent(t, tt.file, tt.edits...))
			tokenCheck(t, fs, legacyID, tt.sev, tt.want...)
		})
	}
}

func TestLegacyTokenSecretCreate(t *testing.T) {
	// dropBody removes requestObject and responseObject as a Metadata-level
	// policy would.
	dropBody := []tokenEdit{tokenSet("Metadata", "level"), tokenSet(nil, "requestObject"), tokenSet(nil, "responseObject")}
	tests := []struct {
		name    string
		edits   []tokenEdit
		sev     string
		wantSrc string
		want    []string
	}{
		{"kube-system, read from response", nil, "high", pipeline.FromResponse, []string{"alice@example.com", "kube-system/backup-operator-token", `"backup-operator"`}},
		{"request level reads the request", []tokenEdit{tokenSet("Request", "level"), tokenSet(nil, "responseObject")}, "high", pipeline.FromRequest, nil},
		{"other namespace", []tokenEdit{
			tokenSet(map[string]any{"resource": "secrets", "namespace": "ci", "name": "deployer-token", "apiVersion": "v1"}, "objectRef"),
		}, "medium", pipeline.FromResponse, []string{"ci/deployer-token"}},
		{"server-side apply creating it", []tokenEdit{tokenSet("patch", "verb")}, "high", pipeline.FromResponse, nil},
		{"opaque secret", []tokenEdit{tokenSet("Opaque", "requestObject", "type"), tokenSet("Opaque", "responseObject", "type")}, "", "", nil},
		{"dry run", []tokenEdit{tokenSet("/api/v1/namespaces/kube-system/secrets?dryRun=All", "requestURI")}, "", "", nil},
		{"denied", []tokenEdit{tokenCode(403), tokenSet(nil, "responseObject")}, "", "", nil},
		{"update of an existing token secret", []tokenEdit{tokenSet("update", "verb"), tokenCode(200)}, "", "", nil},
		{"metadata level cannot tell", dropBody, "", "", nil},
		{"allowlisted creator", []tokenEdit{tokenUser("system:serviceaccount:argocd:argocd-server")}, "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, d, _ := tokenDetectors(t, func(c *Config) { c.Tokens.IgnoreUsers = []string{"system:serviceaccount:argocd:*"} })
			fs := runDetector(d, tokenEvent(t, "secret-create.json", tt.edits...))
			tokenCheck(t, fs, legacyID, tt.sev, tt.want...)
			if tt.sev != "" && fs[0].Evidence[0].Source != tt.wantSrc {
				t.Errorf("type read from %q, want %q", fs[0].Evidence[0].Source, tt.wantSrc)
			}
		})
	}
}

func TestTokenRequest(t *testing.T) {
	spec := func(k string, v any) tokenEdit { return tokenSet(v, "requestObject", "spec", k) }
	podRef := map[string]any{"kind": "Pod", "apiVersion": "v1", "name": "web-1", "uid": "d1e2f3a4-0000-4111-8222-333344445555"}
	toNS := func(ns, sa string) tokenEdit {
		return tokenSet(map[string]any{"resource": "serviceaccounts", "namespace": ns, "name": sa, "apiVersion": "v1", "subresource": "token"}, "objectRef")
	}
	tests := []struct {
		name  string
		file  string
		edits []tokenEdit
		sev   string
		want  []string
	}{
		{"kubelet refresh is routine", "tokenrequest-kubelet.json", nil, "", nil},
		{"kubelet asked for 48h by a pod spec", "tokenrequest-kubelet.json", []tokenEdit{
			tokenSet(172800, "responseObject", "spec", "expirationSeconds"),
		}, "medium", []string{"risky TokenRequest", "system:node:node-a", "48h0m0s above the 24h0m0s maximum"}},
		{"human mints kube-system token", "tokenrequest-human.json", nil, "high", []string{"risky TokenRequest", "alice@example.com", "kube-system/clusterrole-aggregation-controller", "a person minting"}},
		{"human mints year-long kube-system token", "tokenrequest-human.json", []tokenEdit{spec("expirationSeconds", 31536000)}, "critical", []string{"8760h0m0s"}},
		{"human mints unbound token elsewhere", "tokenrequest-human.json", []tokenEdit{toNS("shop", "web")}, "low", []string{"not bound"}},
		{"human mints pod-bound token elsewhere", "tokenrequest-human.json", []tokenEdit{toNS("shop", "web"), spec("boundObjectRef", podRef)}, "", nil},
		{"service account mints unbound token", "tokenrequest-human.json", []tokenEdit{toNS("shop", "web"), tokenUser("system:serviceaccount:vault:vault")}, "low", []string{"system:serviceaccount:vault:vault"}},
		{"controller-manager mints kube-system client token", "tokenrequest-human.json", []tokenEdit{tokenUser("system:kube-controller-manager"), spec("expirationSeconds", 3600)}, "", nil},
		{"allowlisted minter", "tokenrequest-human.json", []tokenEdit{tokenUser("deploy-bot@example.com")}, "", nil},
		{"allowlisted minter still capped", "tokenrequest-human.json", []tokenEdit{tokenUser("deploy-bot@example.com"), spec("expirationSeconds", 31536000)}, "medium", []string{"8760h0m0s"}},
		{"denied attempt minted nothing", "tokenrequest-human.json", []tokenEdit{tokenCode(403), tokenAnn(tokenIssuedCredentialID, tokenNoValue)}, "", nil},
		{"metadata level still names the person", "tokenrequest-human.json", []tokenEdit{tokenSet("Metadata", "level"), tokenSet(nil, "requestObject")}, "high", []string{"a person minting"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, d := tokenDetectors(t, func(c *Config) { c.Tokens.TokenMinters = []string{"deploy-bot@example.com"} })
			fs := runDetector(d, tokenEvent(t, tt.file, tt.edits...))
			tokenCheck(t, fs, replayID, tt.sev, tt.want...)
			for _, f := range fs {
				b, _ := json.Marshal(f)
				if strings.Contains(string(b), "SECRET-TOKEN") || strings.Contains(string(b), "eyJ") {
					t.Errorf("finding leaks the minted token: %s", b)
				}
			}
		})
	}
}

// tokenBound is a use of the pod-bound token in bound-use.json at T0+off.
func tokenBound(t testing.TB, off time.Duration, edits ...tokenEdit) *pipeline.Event {
	return tokenEvent(t, "bound-use.json", append([]tokenEdit{tokenAt(off)}, edits...)...)
}

func TestTokenReplay(t *testing.T) {
	const attacker = "198.51.100.66"
	unbound := []tokenEdit{
		tokenExtra(pipeline.ExtraPodName, ""), tokenExtra(pipeline.ExtraPodUID, ""),
		tokenExtra(pipeline.ExtraNodeName, ""), tokenExtra(pipeline.ExtraNodeUID, ""),
	}
	tests := []struct {
		name string
		evs  func(t testing.TB) []*pipeline.Event
		sev  string
		want []string
	}{
		{"pod token from a second IP", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 0), tokenBound(t, 3*time.Minute, tokenIP(attacker))}
		}, "high", []string{"token of pod web-7d9f8b6c5-x2x9q", "10.244.1.17", attacker}},
		{"out of order: the later use arrives first", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 3*time.Minute, tokenIP(attacker)), tokenBound(t, 0)}
		}, "high", []string{attacker}},
		{"late arrival from before the other's window start", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 9*time.Minute), tokenBound(t, 12*time.Minute), tokenBound(t, 0, tokenIP(attacker))}
		}, "high", []string{attacker}},
		{"late arrival from long before the other IP's uses", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 15*time.Minute), tokenBound(t, 16*time.Minute), tokenBound(t, 0, tokenIP(attacker))}
		}, "", nil},
		{"unbound token from two IPs", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 0, unbound...), tokenBound(t, time.Minute, append(unbound, tokenIP(attacker))...)}
		}, "medium", []string{"unbound token"}},
		{"three IPs: one finding per window", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 0), tokenBound(t, time.Minute, tokenIP(attacker)), tokenBound(t, 2*time.Minute, tokenIP("198.51.100.67"))}
		}, "high", nil},
		{"second IP outside the window", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 0), tokenBound(t, 11*time.Minute, tokenIP(attacker))}
		}, "", nil},
		{"same pod IP, Go client, all day", func(t testing.TB) []*pipeline.Event {
			var evs []*pipeline.Event
			for i := range 50 {
				evs = append(evs, tokenBound(t, time.Duration(i)*30*time.Minute))
			}
			return evs
		}, "", nil},
		{"kubelet and Go client agents from the pod IP", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 0), tokenBound(t, time.Minute, tokenUA("kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46")), tokenBound(t, 2*time.Minute, tokenUA("Go-http-client/2.0"))}
		}, "", nil},
		{"Go client then curl from the pod IP", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 0), tokenBound(t, time.Minute, tokenUA("curl/8.5.0"))}
		}, "medium", []string{"go-client", "curl"}},
		{"python client then Go client", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, 0, tokenUA("OpenAPI-Generator/31.0.0/python")), tokenBound(t, time.Minute)}
		}, "medium", []string{"python", "go-client"}},
		{"x509 node credential from two IPs", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenEvent(t, "x509-use.json", tokenAt(0)), tokenEvent(t, "x509-use.json", tokenAt(time.Minute), tokenIP(attacker))}
		}, "", nil},
		{"client cert with a service-account CN from two IPs", func(t testing.TB) []*pipeline.Event {
			// x509 credential ids are per certificate, not per token: the
			// replay logic is for bound tokens only.
			cert := []tokenEdit{tokenSet(nil, "user", "extra"), tokenExtra(pipeline.ExtraCredentialID, "X509SHA256=3b1d0f6e5c2a9b8d7e4f1a0c3b6d9e2f5a8c1b4d7e0f3a6c9b2d5e8f1a4c7b0d")}
			return []*pipeline.Event{tokenBound(t, 0, cert...), tokenBound(t, time.Minute, append(cert, tokenIP(attacker))...)}
		}, "", nil},
		{"OIDC user's JTI from two IPs", func(t testing.TB) []*pipeline.Event {
			oidc := []tokenEdit{tokenUser("alice@example.com"), tokenSet(nil, "user", "extra")}
			oidc = append(oidc, tokenExtra(pipeline.ExtraCredentialID, "JTI=6b0e4d2f-9c1a-4b8e-a7d3-2f5c8e1b9a64"))
			return []*pipeline.Event{tokenBound(t, 0, oidc...), tokenBound(t, time.Minute, append(oidc, tokenIP(attacker))...)}
		}, "", nil},
		{"legacy token (no credential id) from two IPs", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenEvent(t, "legacy-use.json", tokenAt(0)), tokenEvent(t, "legacy-use.json", tokenAt(time.Minute), tokenIP(attacker))}
		}, "", nil},
		{"impersonated extras are never trusted for identity", func(t testing.TB) []*pipeline.Event {
			// mallory impersonates with a real credential id from her IP:
			// forgery is reported, but no replay of that credential.
			real := tokenEvent(t, "pod-delete.json", tokenAt(0), tokenSet("get", "verb"), tokenSet(nil, "responseObject"), tokenSet(nil, "requestObject"))
			forged := tokenEvent(t, "impersonation-forged.json", tokenAt(time.Minute))
			return []*pipeline.Event{real, forged}
		}, "high", []string{"mallory@example.com impersonated", "forged authentication extras", pipeline.ExtraCredentialID, pipeline.ExtraPodName}},
		{"impersonation with ordinary extras", func(t testing.TB) []*pipeline.Event {
			return []*pipeline.Event{tokenEvent(t, "impersonation-forged.json", tokenSet(map[string]any{"scopes.authorization.openshift.io": []any{"user:full"}}, "impersonatedUser", "extra"))}
		}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, d := tokenDetectors(t, nil)
			fs := runDetector(d, tt.evs(t)...)
			tokenCheck(t, fs, replayID, tt.sev, tt.want...)
		})
	}
}

func TestTokenReplayMintedBy(t *testing.T) {
	_, _, d := tokenDetectors(t, nil)
	minted := tokenEvent(t, "tokenrequest-kubelet.json")
	fs := runDetector(d, minted, tokenBound(t, 0), tokenBound(t, time.Minute, tokenIP("198.51.100.66")))
	tokenCheck(t, fs, replayID, "high", "(minted by system:node:node-a)")
	var found bool
	for _, e := range fs[0].Evidence {
		if strings.Contains(e.Field, tokenIssuedCredentialID) && strings.Contains(e.Value, "shop/web") {
			found = true
		}
	}
	if !found {
		t.Errorf("no issued-credential-id evidence in %+v", fs[0].Evidence)
	}
}

func TestTokenReplayDeletedPod(t *testing.T) {
	del := func(off time.Duration, edits ...tokenEdit) *pipeline.Event {
		return tokenEvent(t, "pod-delete.json", append([]tokenEdit{tokenAt(off), tokenSet(tokenT0.Add(off+30*time.Second).Format(time.RFC3339), "responseObject", "metadata", "deletionTimestamp")}, edits...)...)
	}
	metadataOnly := []tokenEdit{tokenSet("Metadata", "level"), tokenSet(nil, "requestObject"), tokenSet(nil, "responseObject")}
	recreated := []tokenEdit{tokenExtra(pipeline.ExtraPodUID, "feedface-9999-4888-8777-666655554444"), tokenExtra(pipeline.ExtraCredentialID, "JTI=11111111-2222-4333-8444-555566667777")}
	tests := []struct {
		name string
		evs  func() []*pipeline.Event
		sev  string
		want []string
	}{
		{"used five minutes after deletion", func() []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, -time.Minute), del(0), tokenBound(t, 5*time.Minute)}
		}, "high", []string{"deleted pod shop/web-7d9f8b6c5-x2x9q", "10.244.1.17"}},
		{"use arrives before the delete event", func() []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, -time.Minute), tokenBound(t, 5*time.Minute), del(0)}
		}, "high", []string{"deleted pod shop/web-7d9f8b6c5-x2x9q"}},
		{"used again and again after deletion, deleted twice", func() []*pipeline.Event {
			kubeletFinal := []tokenEdit{tokenUser("system:node:node-a"), tokenSet(map[string]any{"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": map[string]any{"uid": "c0ffee00-1234-4abc-9def-0123456789ab"}}, "requestObject")}
			return []*pipeline.Event{tokenBound(t, -time.Minute), tokenBound(t, 5*time.Minute), tokenBound(t, 6*time.Minute), del(0), del(31*time.Second, kubeletFinal...), tokenBound(t, 7*time.Minute)}
		}, "high", nil},
		{"used during the termination grace period", func() []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, -time.Minute), del(0), tokenBound(t, 20*time.Second), tokenBound(t, 80*time.Second)}
		}, "", nil},
		{"long grace period from the response", func() []*pipeline.Event {
			return []*pipeline.Event{del(0, tokenSet(tokenT0.Add(10*time.Minute).Format(time.RFC3339), "responseObject", "metadata", "deletionTimestamp")), tokenBound(t, 5*time.Minute)}
		}, "", nil},
		{"long grace learned from the kubelet's final delete", func() []*pipeline.Event {
			// The user's delete is logged at Metadata level (deadline
			// unknown, 90 s assumed); the kubelet's final delete at 10m
			// carries the pod, whose deletionTimestamp says 10m. A use at
			// 5m delivered last is inside the real grace period.
			final := del(10*time.Minute, tokenUser("system:node:node-a"), tokenSet(tokenT0.Add(10*time.Minute).Format(time.RFC3339), "responseObject", "metadata", "deletionTimestamp"))
			return []*pipeline.Event{tokenBound(t, -time.Minute), del(0, metadataOnly...), final, tokenBound(t, 5*time.Minute)}
		}, "", nil},
		{"recreated pod of the same name", func() []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, -time.Minute), del(0), tokenBound(t, 5*time.Minute, recreated...)}
		}, "", nil},
		{"metadata-level delete attributed to the pod in use", func() []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, -time.Minute), del(0, metadataOnly...), tokenBound(t, 5*time.Minute)}
		}, "high", nil},
		{"metadata-level delete, recreated pod", func() []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, -time.Minute), del(0, metadataOnly...), tokenBound(t, 5*time.Minute, recreated...)}
		}, "", nil},
		{"metadata-level deletes of two incarnations", func() []*pipeline.Event {
			// web-0 (old uid) is deleted and recreated; the new one's
			// token is used, then it is deleted too and its token used
			// after that: the second delete belongs to the new uid.
			return []*pipeline.Event{
				tokenBound(t, -10*time.Minute), del(-9*time.Minute, metadataOnly...),
				tokenBound(t, -time.Minute, recreated...), del(0, metadataOnly...), tokenBound(t, 5*time.Minute, recreated...),
			}
		}, "high", nil},
		{"metadata-level delete of a pod never seen: unknown uid, quiet", func() []*pipeline.Event {
			return []*pipeline.Event{del(0, metadataOnly...), tokenBound(t, 5*time.Minute)}
		}, "", nil},
		{"failed delete", func() []*pipeline.Event {
			return []*pipeline.Event{tokenBound(t, -time.Minute), del(0, tokenCode(404), tokenSet(nil, "responseObject")), tokenBound(t, 5*time.Minute)}
		}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, d := tokenDetectors(t, nil)
			fs := runDetector(d, tt.evs()...)
			tokenCheck(t, fs, replayID, tt.sev, tt.want...)
			if tt.sev == "" {
				return
			}
			wantCred := "JTI=8c3f2b1a-6d4e-4f7a-9b2c-1e5d8a7f6c40"
			if strings.Contains(tt.name, "two incarnations") {
				wantCred = "JTI=11111111-2222-4333-8444-555566667777"
			}
			if fs[0].CredentialID != wantCred {
				t.Errorf("finding names credential %q, want %q", fs[0].CredentialID, wantCred)
			}
		})
	}
}

// TestTokenReplayDeterministicIDs checks that a redelivery on the same
// detector adds nothing, and that a restart (fresh state) replaying the
// events in either order yields the same finding ids.
func TestTokenReplayDeterministicIDs(t *testing.T) {
	evs := []*pipeline.Event{
		tokenBound(t, -time.Minute),
		tokenEvent(t, "pod-delete.json"),
		tokenBound(t, 2*time.Minute, tokenIP("198.51.100.66"), tokenUA("curl/8.5.0")),
	}
	ids := func(fs []pipeline.Finding) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.ID)
		}
		slices.Sort(out)
		return out
	}
	_, _, d := tokenDetectors(t, nil)
	first := runDetector(d, evs...)
	if len(first) != 3 {
		for _, f := range first {
			t.Logf("%s: %s", f.Severity, f.Summary)
		}
		t.Fatalf("got %d findings, want 3 (IPs, agent, deleted pod)", len(first))
	}
	if again := runDetector(d, evs...); len(again) != 0 {
		t.Errorf("redelivery produced %d more findings", len(again))
	}
	_, _, restarted := tokenDetectors(t, nil)
	reversed := slices.Clone(evs)
	slices.Reverse(reversed)
	if got, want := ids(runDetector(restarted, reversed...)), ids(first); !slices.Equal(got, want) {
		t.Errorf("ids after restart in reverse order:\n got %v\nwant %v", got, want)
	}

	// Stateless-per-request findings: same event, same id.
	_, l1, _ := tokenDetectors(t, nil)
	_, l2, _ := tokenDetectors(t, nil)
	a := runDetector(l1, tokenEvent(t, "legacy-use.json"))
	b := runDetector(l2, tokenEvent(t, "legacy-use.json", tokenAt(time.Second)))
	if len(a) != 1 || len(b) != 1 || a[0].ID != b[0].ID {
		t.Errorf("legacy finding ids differ within one window: %v %v", a, b)
	}
}

func TestTokenStateBounded(t *testing.T) {
	_, _, d := tokenDetectors(t, func(c *Config) { c.State.MaxEntries = 8 })
	rd := d.(*replayDetector)
	for i := range 200 {
		runDetector(d,
			tokenBound(t, time.Duration(i)*time.Second, tokenExtra(pipeline.ExtraCredentialID, fmt.Sprintf("JTI=%08d-0000-4000-8000-000000000000", i)), tokenExtra(pipeline.ExtraPodName, fmt.Sprintf("web-%d", i))),
			tokenEvent(t, "pod-delete.json", tokenAt(time.Duration(i)*time.Second), tokenSet(map[string]any{"resource": "pods", "namespace": "shop", "name": fmt.Sprintf("gone-%d", i), "apiVersion": "v1"}, "objectRef")),
			tokenEvent(t, "tokenrequest-kubelet.json", tokenAt(time.Duration(i)*time.Second), tokenAnn(tokenIssuedCredentialID, fmt.Sprintf("JTI=%d", i))),
		)
	}
	if n := rd.creds.Len(); n > 8 {
		t.Errorf("credential table holds %d entries, cap 8", n)
	}
	if n := rd.pods.Len(); n > 8 {
		t.Errorf("pod table holds %d entries, cap 8", n)
	}
	if n := rd.minted.Len(); n > 8 {
		t.Errorf("minted table holds %d entries, cap 8", n)
	}
}

func TestTokenConfig(t *testing.T) {
	f := func(yaml, wantErr string) {
		t.Helper()
		cfg, err := ParseConfig([]byte(yaml))
		if wantErr == "" {
			if err != nil {
				t.Fatalf("%q: %v", yaml, err)
			}
			if _, err := buildTokens(cfg); err != nil {
				t.Fatalf("%q: building: %v", yaml, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%q: got error %v, want %q", yaml, err, wantErr)
		}
	}
	f("", "")
	f("tokens:\n  max_token_lifetime: 48h\n  ignore_users: [\"system:serviceaccount:ci:*\"]\n  token_minters: [deploy-bot]\n", "")
	f("tokens:\n  max_token_lifetime: 5m\n", "tokens.max_token_lifetime must be at least 10m")
	f("tokens:\n  stale_high_after: 30m\n", "tokens.stale_high_after must be greater")
	f("tokens:\n  stale_medium_after: 0s\n", "tokens.stale_medium_after must be positive")
	f("tokens:\n  token_memory: 0s\n", "tokens.token_memory must be positive")
	f("tokens:\n  ignore_users: [\"*\"]\n", "tokens.ignore_users[0]")
	f("tokens:\n  token_minters: [\"a*b\"]\n", "tokens.token_minters[0]")
	f("tokens:\n  protected_namespaces: [\"\"]\n", "tokens.protected_namespaces[0]")
	f("tokens:\n  max_lifetime: 1h\n", "max_lifetime")

	def := defaultTokenConfig()
	if time.Duration(def.MaxTokenLifetime) != 86400*time.Second || !slices.Equal(def.ProtectedNamespaces, []string{"kube-system"}) || !def.SuppressRepeats {
		t.Errorf("unexpected defaults %+v", def)
	}
}

func TestTokenAgentFamily(t *testing.T) {
	f := func(ua, want string, tooling bool) {
		t.Helper()
		got, tool := tokenAgentFamily(ua)
		if got != want || tool != tooling {
			t.Errorf("tokenAgentFamily(%q) = %s, %v; want %s, %v", ua, got, tool, want, tooling)
		}
	}
	f("kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46", tokenFamilyKubelet, false)
	f("kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:job-controller", tokenFamilyKube, false)
	f("manager/v0.0.0 (linux/amd64) kubernetes/$Format", tokenFamilyGo, false)
	f("Go-http-client/2.0", tokenFamilyGo, false)
	f("kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46", tokenFamilyKubectl, true)
	f("curl/8.5.0", tokenFamilyCurl, true)
	f("python-requests/2.31.0", tokenFamilyPython, true)
	f("Python/3.12 aiohttp/3.9.5", tokenFamilyPython, true)
	f("OpenAPI-Generator/31.0.0/python", tokenFamilyPython, true)
	f("Wget/1.21.4", tokenFamilyOther, true)
	f("", tokenFamilyOther, true)
}

func TestStaleParse(t *testing.T) {
	f := func(v, sub string, n int64, ok bool) {
		t.Helper()
		gs, gn, gok := staleParse(v)
		if gs != sub || gn != n || gok != ok {
			t.Errorf("staleParse(%q) = %q, %d, %v", v, gs, gn, gok)
		}
	}
	f("subject: system:serviceaccount:a:b, seconds after warning threshold: 42", "system:serviceaccount:a:b", 42, true)
	f("subject: system:serviceaccount:a:b, seconds after warning threshold: -1", "", 0, false)
	f("subject: x, seconds after warning threshold: ", "", 0, false)
	f("seconds after warning threshold: 5", "", 0, false)
	f("", "", 0, false)
}

// TestTokenCommonPathAllocs keeps the path every non-service-account
// request takes through all three detectors allocation-free.
func TestTokenCommonPathAllocs(t *testing.T) {
	stale, legacy, replay := tokenDetectors(t, nil)
	evs := []*pipeline.Event{
		tokenEvent(t, "x509-use.json"),
		tokenEvent(t, "secret-create.json", tokenSet("get", "verb"), tokenCode(200)),
		tokenEvent(t, "bound-use.json", tokenUser("alice@example.com")),
	}
	out := make([]pipeline.Finding, 0, 4)
	for _, ev := range evs {
		allocs := testing.AllocsPerRun(100, func() {
			out = stale.Detect(ev, out[:0])
			out = legacy.Detect(ev, out)
			out = replay.Detect(ev, out)
		})
		if allocs != 0 || len(out) != 0 {
			t.Errorf("%s: %v allocations, %d findings; want 0, 0", ev.RequestURI, allocs, len(out))
		}
	}
}

func FuzzTokens(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "tokens"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata", "tokens", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"stage":"ResponseComplete","user":{"username":"system:serviceaccount:a:b","extra":{"authentication.kubernetes.io/credential-id":["JTI="],"authentication.kubernetes.io/pod-name":[""]}},"annotations":{"authentication.k8s.io/stale-token":"subject: , seconds after warning threshold: 99999999999999999999"}}`))
	f.Add([]byte(`{"stage":"ResponseComplete","verb":"delete","objectRef":{"resource":"pods","name":"p"},"responseStatus":{"code":200},"responseObject":{"metadata":{"deletionTimestamp":"not a time"}},"requestObject":{"preconditions":{"uid":null}}}`))
	f.Add([]byte(`{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"serviceaccounts","subresource":"token"},"responseStatus":{"code":201},"requestObject":{"spec":{"expirationSeconds":-9223372036854775808}}}`))
	stale, legacy, replay := tokenDetectors(f, func(c *Config) { c.State.MaxEntries = 64 })
	set := NewSuite(stale, legacy, replay)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, testCluster, data); err != nil {
			return
		}
		for _, fd := range set.Detect(&ev, nil) {
			if fd.ID == "" || fd.Detector == "" || fd.Summary == "" {
				t.Fatalf("incomplete finding %+v", fd)
			}
		}
	})
}

func BenchmarkTokens(b *testing.B) {
	stale, legacy, replay := tokenDetectors(b, nil)
	set := NewSuite(stale, legacy, replay)
	cases := []struct {
		name string
		ev   *pipeline.Event
	}{
		{"node-x509", tokenEvent(b, "x509-use.json")},
		{"bound-sa-token", tokenEvent(b, "bound-use.json")},
		{"legacy-token", tokenEvent(b, "legacy-use.json")},
		{"tokenrequest-kubelet", tokenEvent(b, "tokenrequest-kubelet.json")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.ev.Raw)))
			out := make([]pipeline.Finding, 0, 4)
			for b.Loop() {
				out = set.Detect(c.ev, out[:0])
			}
		})
	}
}
