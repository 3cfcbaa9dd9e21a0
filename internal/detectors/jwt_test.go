package detectors

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/redact/redacttest"
)

// jwtIssued is when the test tokens were minted: the events' own day.
var jwtIssued = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// jwtEvent fills testdata/jwt/name's placeholders and redacts it as ingest
// does, so the detector sees what it would see in production.
func jwtEvent(t *testing.T, r *redact.Redactor, name string, vars map[string]string) *pipeline.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "jwt", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(data))
	for k, v := range vars {
		s = strings.ReplaceAll(s, k, v)
	}
	out, _, err := r.Event([]byte(s))
	if err != nil {
		t.Fatalf("redacting %s: %v", name, err)
	}
	if credential.ContainsJWT(out) {
		t.Fatalf("redacted event still holds a token:\n%s", out)
	}
	return decodeTestEvent(t, string(out))
}

func jwtDetectorFor(t *testing.T, mutate func(*JWTConfig)) Detector {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg.UnsignedJWT)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ds, err := buildJWT(cfg)
	if err != nil || len(ds) != 1 {
		t.Fatalf("building: %v (%d detectors)", err, len(ds))
	}
	return ds[0]
}

// jwtAssertClean checks that no finding carries a token.
func jwtAssertClean(t *testing.T, fs []pipeline.Finding, tokens ...string) {
	t.Helper()
	js, err := json.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if strings.Contains(string(js), tok) {
			t.Errorf("finding carries the raw token: %s", js)
		}
	}
	if credential.ContainsJWT(js) {
		t.Errorf("finding carries a JWT: %s", js)
	}
}

func TestJWTDetector(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	es256 := redacttest.ECKey(t, "ES256")
	stranger := redacttest.ECKey(t, "ES256")
	jwks := redacttest.WriteJWKS(t, rsaKey, es256)
	ingest, err := redact.New(redact.Config{JWKSFile: jwks})
	if err != nil {
		t.Fatal(err)
	}
	d := jwtDetectorFor(t, func(c *JWTConfig) { c.JWKSFile = jwks })

	pod := redacttest.PodClaims(jwtIssued)
	pubDER, _ := json.Marshal(rsaKey.Signer.Public())
	good := rsaKey.Token(t, pod)
	parts := strings.Split(good, ".")
	other := strings.Split(rsaKey.Token(t, redacttest.TokenRequestClaims(jwtIssued, time.Hour)), ".")
	// Claims of one token under the signature of another.
	spliced := parts[0] + "." + other[1] + "." + parts[2]
	noExp := redacttest.PodClaims(jwtIssued)
	delete(noExp, "exp")

	type tc struct {
		name     string
		file     string
		tok      string
		wantSev  pipeline.Severity
		wantText string // in the summary; "" means no finding
	}
	cases := []tc{
		{"in-tree pod token, TokenReview", "tokenreview_request.json", good, 0, ""},
		{"in-tree pod token, TokenRequest", "tokenrequest.json", good, 0, ""},
		{"ES256 short-lived", "tokenreview_request.json", es256.Token(t, redacttest.TokenRequestClaims(jwtIssued, time.Hour)), 0, ""},
		{"alg none", "tokenreview_request.json", redacttest.Unsigned(t, pod), pipeline.SeverityCritical, `Unsigned JWT (alg "none") in a TokenReview sent by system:serviceaccount:kube-system:metrics-server`},
		{"empty signature", "tokenreview_request.json", parts[0] + "." + parts[1] + ".", pipeline.SeverityCritical, "JWT with an empty signature"},
		{"HS256 key confusion", "tokenreview_request.json", redacttest.HS256(t, rsaKey.KID, pubDER, pod), pipeline.SeverityHigh, "JWT signed with \"HS256\", outside the allowed RS256/ES256/ES384/ES512"},
		{"bad signature", "tokenreview_request.json", spliced, pipeline.SeverityHigh, "JWT signature does not verify against the cluster's JWKS (signature does not verify)"},
		{"unknown kid", "tokenreview_request.json", stranger.Token(t, pod), pipeline.SeverityHigh, "not in the cluster's JWKS"},
		{"no kid", "tokenreview_request.json", rsaKey.Sign(t, map[string]any{"alg": "RS256"}, pod), pipeline.SeverityMedium, "JWT without a kid"},
		{"no exp", "tokenreview_request.json", rsaKey.Token(t, noExp), pipeline.SeverityMedium, "JWT without exp"},
		{"ten-year TokenRequest", "tokenrequest.json", rsaKey.Token(t, redacttest.TokenRequestClaims(jwtIssued, 10*365*24*time.Hour)), pipeline.SeverityMedium, "JWT valid for 3650d, above the 1d maximum in a TokenRequest issued to system:node:worker-2"},
		{"legacy token", "tokenreview_request.json", rsaKey.Token(t, redacttest.LegacyClaims()), pipeline.SeverityLow, "Legacy secret-based service-account token"},
		{"malformed", "tokenreview_request.json", "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.bm90IGpzb24.c2ln", pipeline.SeverityHigh, `JWT signature does not verify against the cluster's JWKS (signature does not verify) in a TokenReview sent by system:serviceaccount:kube-system:metrics-server: token for no subject (alg "RS256", kid ""`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := jwtEvent(t, ingest, c.file, map[string]string{"TOKEN": c.tok})
			fs := runDetector(d, ev)
			jwtAssertClean(t, fs, c.tok)
			if c.wantText == "" {
				if len(fs) != 0 {
					t.Fatalf("want no finding, got %q", fs[0].Summary)
				}
				return
			}
			if len(fs) != 1 {
				t.Fatalf("got %d findings, want 1", len(fs))
			}
			f := fs[0]
			if f.Severity != c.wantSev || !strings.Contains(f.Summary, c.wantText) {
				t.Errorf("got %s %q, want %s containing %q", f.Severity, f.Summary, c.wantSev, c.wantText)
			}
			if f.Detector != jwtDetectorID || f.MITRE == "" || f.ID == "" || len(f.Evidence) == 0 {
				t.Errorf("incomplete finding %+v", f)
			}
		})
	}
}

func TestJWTDetectorSecret(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	ingest, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d := jwtDetectorFor(t, nil)
	f := func(name, file, tok string, wantSev pipeline.Severity, wantFindings int) {
		t.Run(name, func(t *testing.T) {
			b64 := base64.StdEncoding.EncodeToString([]byte(tok))
			la, _ := json.Marshal(`{"apiVersion":"v1","data":{"token":"` + b64 + `"},"kind":"Secret"}`)
			ev := jwtEvent(t, ingest, file, map[string]string{"TOKEN_B64": b64, "CACRT_B64": "Y2E=", `"LASTAPPLIED"`: string(la)})
			fs := runDetector(d, ev)
			jwtAssertClean(t, fs, tok, b64)
			if len(fs) != wantFindings {
				t.Fatalf("got %d findings, want %d", len(fs), wantFindings)
			}
			if wantFindings > 0 {
				if fs[0].Severity != wantSev || fs[0].Evidence[len(fs[0].Evidence)-1].Source != pipeline.FromResponse {
					t.Errorf("got %s %q %+v", fs[0].Severity, fs[0].Summary, fs[0].Evidence)
				}
			}
		})
	}
	f("planted alg none token", "secret_sa_token.json", redacttest.Unsigned(t, redacttest.PodClaims(jwtIssued)), pipeline.SeverityCritical, 1)
	f("legacy token written", "secret_sa_token.json", rsaKey.Token(t, redacttest.LegacyClaims()), pipeline.SeverityLow, 1)
	// Reading Secrets back is not news: only writes are judged.
	f("list of secrets", "secret_list.json", redacttest.Unsigned(t, redacttest.PodClaims(jwtIssued)), 0, 0)
}

func TestJWTDetectorTokenReviewError(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	jwks := redacttest.WriteJWKS(t, rsaKey)
	ingest, err := redact.New(redact.Config{JWKSFile: jwks})
	if err != nil {
		t.Fatal(err)
	}
	d := jwtDetectorFor(t, nil) // no jwks here: the verified flag from ingest is enough
	stranger := redacttest.ECKey(t, "ES256")
	good := rsaKey.Token(t, redacttest.PodClaims(jwtIssued))
	f := func(name, tok, status string, wantSev pipeline.Severity, wantText string) {
		t.Run(name, func(t *testing.T) {
			ev := jwtEvent(t, ingest, "tokenreview_response.json", map[string]string{"TOKEN": tok, "STATUS": status})
			fs := runDetector(d, ev)
			jwtAssertClean(t, fs, tok)
			if wantText == "" {
				if len(fs) != 0 {
					t.Fatalf("want no finding, got %q", fs[0].Summary)
				}
				return
			}
			if len(fs) != 1 || fs[0].Severity != wantSev || !strings.Contains(fs[0].Summary, wantText) {
				t.Fatalf("got %+v, want one %s finding containing %q", fs, wantSev, wantText)
			}
		})
	}
	authenticated := `{"authenticated":true,"user":{"username":"system:serviceaccount:shop:checkout","groups":["system:serviceaccounts","system:authenticated"]},"audiences":["https://kubernetes.default.svc.cluster.local"]}`
	f("authenticated", good, authenticated, 0, "")
	f("forged, rejected", stranger.Token(t, redacttest.PodClaims(jwtIssued)),
		`{"authenticated":false,"user":{},"error":"[invalid bearer token, square/go-jose: error in cryptographic primitive]"}`,
		pipeline.SeverityHigh, "JWT signature does not verify against the cluster's JWKS (kid not in jwks) in a TokenReview sent by system:serviceaccount:monitoring:kube-rbac-proxy")
	f("opaque token rejected", "0123456789abcdef0123456789abcdef",
		`{"authenticated":false,"user":{},"error":"invalid bearer token"}`,
		pipeline.SeverityHigh, "TokenReview rejected the token: invalid bearer token")
	f("expired", good, `{"authenticated":false,"user":{},"error":"[invalid bearer token, service account token has expired]"}`,
		pipeline.SeverityMedium, "TokenReview rejected the token")
}

func TestJWTDetectorQuiet(t *testing.T) {
	ingest, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d := jwtDetectorFor(t, nil)
	f := func(name string, ev *pipeline.Event) {
		t.Run(name, func(t *testing.T) {
			if fs := runDetector(d, ev); len(fs) != 0 {
				t.Errorf("got %q", fs[0].Summary)
			}
		})
	}
	f("metadata event", jwtEvent(t, ingest, "pod_metadata.json", nil))
	f("tokenreview without token", jwtEvent(t, ingest, "tokenreview_request.json", map[string]string{"TOKEN": ""}))
	f("opaque bootstrap token", jwtEvent(t, ingest, "tokenreview_request.json", map[string]string{"TOKEN": "07401b.f395accd246ae52d"}))
}

func TestJWTDetectorExternalIssuer(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	idp := redacttest.ECKey(t, "ES256")
	jwks := redacttest.WriteJWKS(t, rsaKey)
	ingest, err := redact.New(redact.Config{JWKSFile: jwks})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"iss": "https://dex.example.com", "sub": "jane", "aud": "kubernetes", "iat": jwtIssued.Unix(), "exp": jwtIssued.Unix() + 600}
	ev := jwtEvent(t, ingest, "tokenreview_request.json", map[string]string{"TOKEN": idp.Token(t, claims)})
	if fs := runDetector(jwtDetectorFor(t, func(c *JWTConfig) { c.JWKSFile = jwks }), ev); len(fs) != 1 || fs[0].Severity != pipeline.SeverityHigh {
		t.Fatalf("without external_issuers: %+v", fs)
	}
	d := jwtDetectorFor(t, func(c *JWTConfig) { c.JWKSFile = jwks; c.ExternalIssuers = []string{"https://dex.example.com"} })
	if fs := runDetector(d, ev); len(fs) != 0 {
		t.Fatalf("external issuer flagged: %q", fs[0].Summary)
	}
}

// TestJWTDetectorUnredacted covers events that reached detect without
// ingest's redaction: the detector judges the token the same way and still
// keeps it out of the finding.
func TestJWTDetectorUnredacted(t *testing.T) {
	tok := redacttest.Unsigned(t, redacttest.PodClaims(jwtIssued))
	data, err := os.ReadFile(filepath.Join("testdata", "jwt", "tokenreview_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	ev := decodeTestEvent(t, strings.ReplaceAll(string(data), "TOKEN", tok))
	fs := runDetector(jwtDetectorFor(t, nil), ev)
	jwtAssertClean(t, fs, tok)
	if len(fs) != 1 || fs[0].Severity != pipeline.SeverityCritical {
		t.Fatalf("got %+v", fs)
	}
}

func TestJWTConfig(t *testing.T) {
	f := func(yaml, wantErr string) {
		t.Helper()
		_, err := ParseConfig([]byte(yaml))
		if wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", yaml, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err = %v, want %q", yaml, err, wantErr)
		}
	}
	f("unsigned_jwt:\n  allowed_algs: [RS256]\n  max_lifetime: 2h\n", "")
	f("unsigned_jwt:\n  allowed_algs: []\n", "unsigned_jwt.allowed_algs must not be empty")
	f("unsigned_jwt:\n  allowed_algs: [none]\n", `unsigned_jwt.allowed_algs: unknown algorithm "none"`)
	f("unsigned_jwt:\n  max_lifetime: 0s\n", "unsigned_jwt.max_lifetime must be positive")
	f("unsigned_jwt:\n  max_liftime: 1h\n", "max_liftime")

	cfg := DefaultConfig()
	cfg.UnsignedJWT.JWKSFile = filepath.Join(t.TempDir(), "missing.json")
	if _, err := buildJWT(cfg); err == nil || !strings.Contains(err.Error(), "unsigned_jwt.jwks_file") {
		t.Errorf("missing jwks: %v", err)
	}
}
