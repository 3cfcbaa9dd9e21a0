package ingest

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Keys are costly to generate on a loaded 2-core machine: one of each per
// test binary.
var (
	googleKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSAKey() })
	otherKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSAKey() })
)

func mustRSAKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// jwksFor writes keys as Google publishes them at
// https://www.googleapis.com/oauth2/v3/certs.
func jwksFor(keys map[string]*rsa.PrivateKey) []byte {
	type jwk struct {
		Kty string `json:"kty"`
		Use string `json:"use"`
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		N   string `json:"n"`
		E   string `json:"e"`
	}
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	for kid, k := range keys {
		doc.Keys = append(doc.Keys, jwk{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: kid,
			N: base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())})
	}
	b, _ := json.Marshal(doc)
	return b
}

const (
	pushAudience = "https://ingest.acme.example/pubsub/prod-eu1"
	pushEmail    = "auditpipe-push@acme-prod.iam.gserviceaccount.com"
	pushBindings = `# one push subscription per GKE cluster
bindings:
- name: prod-eu1-push
  audience: ` + pushAudience + `
  email: ` + pushEmail + `
  cluster: prod-eu1
- name: prod-us1-push
  audience: https://ingest.acme.example/pubsub/prod-us1
  email: ` + pushEmail + `
  cluster: prod-us1
`
	pushTokens = `tokens:
- name: eu1-pubsub
  token: ` + tokenEU1 + `
  cluster: prod-eu1
`
)

// pushClaims are the claims Google documents for a push token.
func pushClaims(now time.Time) map[string]any {
	return map[string]any{
		"aud": pushAudience, "azp": "113774264463038321964", "email": pushEmail, "email_verified": true,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "iss": "https://accounts.google.com", "sub": "113774264463038321964",
	}
}

func signJWT(header, claims map[string]any, key *rsa.PrivateKey) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	if key == nil {
		return input + "."
	}
	d := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	if err != nil {
		panic(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func googleToken(claims map[string]any) string {
	return signJWT(map[string]any{"alg": "RS256", "kid": "k-2026-11", "typ": "JWT"}, claims, googleKey())
}

// gkeEntries are the LogEntries of the gke package's fixtures, compacted.
func gkeEntries(t testing.TB) [][]byte {
	t.Helper()
	data, err := os.ReadFile("../cloud/gke/testdata/gcloud-logging-read.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(raw))
	for i, r := range raw {
		var b bytes.Buffer
		if err := json.Compact(&b, r); err != nil {
			t.Fatal(err)
		}
		out[i] = b.Bytes()
	}
	return out
}

// pushBody wraps a LogEntry as Pub/Sub's push request body.
func pushBody(entry []byte, id string) string {
	return `{"message":{"attributes":{"logging.googleapis.com/timestamp":"2026-11-30T10:15:02.117345Z"},"data":"` +
		base64.StdEncoding.EncodeToString(entry) + `","messageId":"` + id + `","message_id":"` + id +
		`","publishTime":"2026-11-30T10:15:10.25Z","publish_time":"2026-11-30T10:15:10.25Z"},"subscription":"projects/acme-prod/subscriptions/auditpipe-gke-prod-eu1"}`
}

type pubsubEnv struct {
	clock *fakeClock
	prod  *memProducer
	reg   *prometheus.Registry
	logs  *syncBuffer
	srv   *httptest.Server
	dir   string
	jwks  string
}

func newPubSubEnv(t *testing.T, insecure bool, prod pipeline.Producer) *pubsubEnv {
	t.Helper()
	e := &pubsubEnv{clock: &fakeClock{t: time.Date(2026, 11, 30, 10, 15, 12, 0, time.UTC)}, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, dir: t.TempDir()}
	if prod == nil {
		e.prod = &memProducer{}
		prod = e.prod
	}
	e.jwks = writeFile(t, e.dir, "google-certs.json", jwksFor(map[string]*rsa.PrivateKey{"k-2026-11": googleKey()}))
	bindings := writeFile(t, e.dir, "pubsub-bindings.yaml", []byte(pushBindings))
	tokens := writeFile(t, e.dir, "tokens.yaml", []byte(pushTokens))
	log := slogTo(e.logs)
	auth, err := NewAuthenticator(AuthConfig{TokenFile: tokens, now: e.clock.Now}, nil, log, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := NewPubSubAuth(PubSubAuthConfig{JWKSFile: e.jwks, BindingsFile: bindings, ReloadInterval: time.Second, now: e.clock.Now}, log, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	auth.WithPubSub(ps)
	h, err := New(Config{DefaultCluster: "fallback"}, prod, nil, nil, log, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	if insecure {
		e.srv = httptest.NewServer(auth.Optional(h))
	} else {
		e.srv = httptest.NewServer(auth.Require(h))
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *pubsubEnv) push(t *testing.T, path, body, token string) (int, Response) {
	t.Helper()
	var hdr []string
	if token != "" {
		hdr = []string{"Authorization", "Bearer " + token}
	}
	code, resp, _ := post(t, e.srv.URL+path, body, hdr...)
	return code, resp
}

func TestPubSubOIDCDeliversGKEEvents(t *testing.T) {
	e := newPubSubEnv(t, false, nil)
	tok := googleToken(pushClaims(e.clock.Now()))
	entries := gkeEntries(t)
	for round := range 2 {
		// The second round is Pub/Sub redelivering every message (it
		// delivers at least once): nothing is produced twice.
		for i, entry := range entries {
			code, resp := e.push(t, "/pubsub/prod-eu1", pushBody(entry, "1000"+string(rune('0'+i))), tok)
			if code != http.StatusOK || resp.Accepted != 1 {
				t.Fatalf("round %d entry %d: %d %+v", round, i, code, resp)
			}
		}
	}
	msgs := e.prod.snapshot()
	if len(msgs) != len(entries) {
		t.Fatalf("%d messages produced for %d entries delivered twice", len(msgs), len(entries))
	}
	for _, m := range msgs {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, m.Cluster, m.Value); err != nil {
			t.Fatal(err)
		}
		if m.Cluster != "prod-eu1" || !strings.HasPrefix(string(m.Key), "prod-eu1/") || ev.Annotations["auditpipe.io/gke-cluster-name"] != "prod-eu1" {
			t.Errorf("message %s: cluster %s, annotations %v", m.Key, m.Cluster, ev.Annotations)
		}
	}
	if got := counterValue(t, e.reg, MetricPubSubMessages, map[string]string{"result": PubSubAccepted}); got != 2*float64(len(entries)) {
		t.Errorf("accepted messages counted %v", got)
	}
	if got := counterValue(t, e.reg, MetricDeduplicated, nil); got != float64(len(entries)) {
		t.Errorf("deduplicated %v", got)
	}
}

func TestPubSubOIDCRefusals(t *testing.T) {
	e := newPubSubEnv(t, false, nil)
	now := e.clock.Now()
	entry := gkeEntries(t)[0]
	with := func(k string, v any) map[string]any {
		c := pushClaims(now)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hs256 := func() string {
		// alg confusion: HMAC keyed with the RSA public key.
		h, _ := json.Marshal(map[string]any{"alg": "HS256", "kid": "k-2026-11", "typ": "JWT"})
		c, _ := json.Marshal(pushClaims(now))
		input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
		mac := hmac.New(sha256.New, googleKey().N.Bytes())
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	good := googleToken(pushClaims(now))
	parts := strings.Split(good, ".")
	cases := []struct{ name, token, want string }{
		{"wrong audience", googleToken(with("aud", "https://ingest.acme.example/pubsub/other")), "no pubsub binding"},
		{"wrong email", googleToken(with("email", "attacker@evil-project.iam.gserviceaccount.com")), "no pubsub binding"},
		{"email not verified", googleToken(with("email_verified", false)), "not verified"},
		{"expired", googleToken(with("exp", now.Add(-2*time.Minute).Unix())), "expired"},
		{"issued in the future", googleToken(with("iat", now.Add(10*time.Minute).Unix())), "future"},
		{"no exp", googleToken(with("exp", nil)), "lacks exp"},
		{"too long-lived", googleToken(with("exp", now.Add(48*time.Hour).Unix())), "longer than"},
		{"other issuer", googleToken(with("iss", "https://evil.example")), "not Google's"},
		{"bad signature", signJWT(map[string]any{"alg": "RS256", "kid": "k-2026-11", "typ": "JWT"}, pushClaims(now), otherKey()), "signature"},
		{"unknown kid", signJWT(map[string]any{"alg": "RS256", "kid": "k-other", "typ": "JWT"}, pushClaims(now), otherKey()), "signature"},
		{"claims swapped under a valid signature", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"`+pushAudience+`","email":"`+pushEmail+`","email_verified":true,"iss":"https://accounts.google.com","iat":1,"exp":99999999999}`)) + "." + parts[2], "signature"},
		{"alg none", signJWT(map[string]any{"alg": "none", "typ": "JWT"}, pushClaims(now), nil), "only RS256"},
		{"alg HS256", hs256(), "only RS256"},
		{"garbage JWT", "eyJ.a.b", "header"},
	}
	for _, c := range cases {
		code, resp := e.push(t, "/pubsub/prod-eu1", pushBody(entry, "1"), c.token)
		if code != http.StatusUnauthorized || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%s: %d %q, want 401 containing %q", c.name, code, resp.Error, c.want)
		}
		if strings.Contains(resp.Error, c.token) {
			t.Errorf("%s: the answer quotes the token", c.name)
		}
	}
	if got := counterValue(t, e.reg, MetricAuthFailures, map[string]string{"reason": ReasonBadOIDCToken}); got != float64(len(cases)) {
		t.Errorf("%v OIDC failures counted, want %d", got, len(cases))
	}
	if n := len(e.prod.snapshot()); n != 0 {
		t.Errorf("%d events produced from refused requests", n)
	}
	// And the good token still works after all that.
	if code, resp := e.push(t, "/pubsub/prod-eu1", pushBody(entry, "1"), good); code != http.StatusOK {
		t.Fatalf("good token: %d %+v", code, resp)
	}
	// A token bound to prod-eu1 cannot write for another cluster.
	if code, _ := e.push(t, "/pubsub/prod-us1", pushBody(entry, "1"), good); code != http.StatusForbidden {
		t.Errorf("eu1 token on the us1 path: %d, want 403", code)
	}
	// The us1 binding (another audience, same service account) writes
	// for us1.
	c := pushClaims(now)
	c["aud"] = "https://ingest.acme.example/pubsub/prod-us1"
	if code, _ := e.push(t, "/pubsub", pushBody(gkeEntries(t)[1], "2"), googleToken(c)); code != http.StatusOK {
		t.Errorf("us1 token: %d", code)
	}
	clusters := map[string]int{}
	for _, m := range e.prod.snapshot() {
		clusters[m.Cluster]++
	}
	if clusters["prod-eu1"] != 1 || clusters["prod-us1"] != 1 || len(clusters) != 2 {
		t.Errorf("produced per cluster: %v", clusters)
	}
}

func TestPubSubQueryToken(t *testing.T) {
	e := newPubSubEnv(t, false, nil)
	entry := gkeEntries(t)[2]
	if code, resp := e.push(t, "/pubsub/prod-eu1?token="+tokenEU1, pushBody(entry, "7"), ""); code != http.StatusOK {
		t.Fatalf("query token: %d %+v", code, resp)
	}
	// What the handler behind the authentication sees carries no token.
	var seen string
	auth, err := NewAuthenticator(AuthConfig{TokenFile: writeFile(t, t.TempDir(), "t.yaml", []byte(pushTokens))}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	probe := auth.WithPubSub(nil).Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.RequestURI + " " + r.URL.String() }))
	rec := httptest.NewRecorder()
	probe.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/pubsub/prod-eu1?token="+tokenEU1+"&x=1", strings.NewReader("")))
	if rec.Code != http.StatusOK || strings.Contains(seen, tokenEU1) || !strings.Contains(seen, "x=1") {
		t.Errorf("behind the authentication: %d, saw %q", rec.Code, seen)
	}
	if code, _ := e.push(t, "/pubsub/prod-eu1?token="+tokenForged, pushBody(entry, "7"), ""); code != http.StatusUnauthorized {
		t.Errorf("forged query token: %d", code)
	}
	if code, _ := e.push(t, "/pubsub/prod-eu1?token=", pushBody(entry, "7"), ""); code != http.StatusUnauthorized {
		t.Errorf("empty query token: %d", code)
	}
	// Only the Pub/Sub path takes a token in the query: the webhook's
	// must be in the header, where proxies do not log it.
	if code, _ := e.push(t, "/audit/prod-eu1?token="+tokenEU1, eventList(item(1, "u", "")), ""); code != http.StatusUnauthorized {
		t.Errorf("query token on /audit: %d, want 401", code)
	}
	if code, _ := e.push(t, "/pubsub/prod-eu1", pushBody(entry, "7"), ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if got := counterValue(t, e.reg, MetricAuthFailures, map[string]string{"reason": ReasonBadToken}); got != 2 {
		t.Errorf("bad_token failures %v, want 2", got)
	}
	if got := counterValue(t, e.reg, MetricAuthenticated, map[string]string{"method": MethodQueryToken}); got != 1 {
		t.Errorf("query-token authentications %v", got)
	}
	if logs := e.logs.String(); strings.Contains(logs, tokenEU1) || strings.Contains(logs, tokenForged) {
		t.Errorf("a query token reached the log:\n%s", logs)
	}
}

func TestPubSubInsecureListenerAcceptsAnonymous(t *testing.T) {
	e := newPubSubEnv(t, true, nil)
	if code, resp := e.push(t, "/pubsub/dev-local", pushBody(gkeEntries(t)[3], "9"), ""); code != http.StatusOK {
		t.Fatalf("anonymous push: %d %+v", code, resp)
	}
	if msgs := e.prod.snapshot(); len(msgs) != 1 || msgs[0].Cluster != "dev-local" {
		t.Fatalf("produced %+v", msgs)
	}
	// A credential that is presented is still checked.
	if code, _ := e.push(t, "/pubsub/dev-local", pushBody(gkeEntries(t)[3], "9"), signJWT(map[string]any{"alg": "none"}, pushClaims(e.clock.Now()), nil)); code != http.StatusUnauthorized {
		t.Errorf("forged token on the insecure listener: %d", code)
	}
}

func TestPubSubMalformedAndSkipped(t *testing.T) {
	e := newPubSubEnv(t, true, nil)
	notK8s := []byte(`{"insertId":"-abc123","logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity","protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"container.googleapis.com","methodName":"google.container.v1.ClusterManager.SetNodePoolSize","resourceName":"projects/acme-prod/zones/europe-west1-b/clusters/prod-eu1/nodePools/pool-1"},"resource":{"type":"gke_nodepool","labels":{"cluster_name":"prod-eu1"}},"timestamp":"2026-11-30T10:00:00Z"}`)
	cases := []struct {
		name, body string
		code       int
		result     string
	}{
		{"not a push", `{"hello":"world"}`, 400, PubSubMalformed},
		{"not JSON", `message=hello`, 400, PubSubMalformed},
		{"bad base64", `{"message":{"data":"%%%","messageId":"1"},"subscription":"s"}`, 400, PubSubMalformed},
		{"data not a LogEntry", pushBody([]byte(`hello`), "2"), 400, PubSubMalformed},
		{"LogEntry without timestamp", pushBody([]byte(`{"insertId":"x","protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.pods.get","resourceName":"core/v1/namespaces/a/pods/b"}}`), "3"), 400, PubSubMalformed},
		{"another service's audit log", pushBody(notK8s, "4"), 200, PubSubSkipped},
	}
	for _, c := range cases {
		code, resp := e.push(t, "/pubsub/prod-eu1", c.body, "")
		if code != c.code {
			t.Errorf("%s: %d %+v, want %d", c.name, code, resp, c.code)
		}
	}
	if got := counterValue(t, e.reg, MetricPubSubMessages, map[string]string{"result": PubSubMalformed}); got != 5 {
		t.Errorf("malformed %v", got)
	}
	if got := counterValue(t, e.reg, MetricPubSubMessages, map[string]string{"result": PubSubSkipped}); got != 1 {
		t.Errorf("skipped %v", got)
	}
	if n := len(e.prod.snapshot()); n != 0 {
		t.Errorf("%d produced", n)
	}
}

func TestPubSubJWKSRotation(t *testing.T) {
	e := newPubSubEnv(t, false, nil)
	entry := gkeEntries(t)[0]
	claims := pushClaims(e.clock.Now())
	rotated := signJWT(map[string]any{"alg": "RS256", "kid": "k-2026-12", "typ": "JWT"}, claims, otherKey())
	if code, _ := e.push(t, "/pubsub/prod-eu1", pushBody(entry, "1"), rotated); code != http.StatusUnauthorized {
		t.Fatalf("token of a key not yet published: %d", code)
	}
	// Google publishes its next key ahead of use; the operator's refresh
	// of the file is picked up without a restart.
	writeFile(t, e.dir, "google-certs.json", jwksFor(map[string]*rsa.PrivateKey{"k-2026-11": googleKey(), "k-2026-12": otherKey()}))
	e.clock.Add(2 * time.Second)
	if code, resp := e.push(t, "/pubsub/prod-eu1", pushBody(entry, "1"), rotated); code != http.StatusOK {
		t.Fatalf("token of the rotated key: %d %+v", code, resp)
	}
	// A broken file keeps the previous keys.
	writeFile(t, e.dir, "google-certs.json", []byte(`{"keys":[`))
	e.clock.Add(2 * time.Second)
	if code, _ := e.push(t, "/pubsub/prod-eu1", pushBody(entry, "1"), googleToken(claims)); code != http.StatusOK {
		t.Errorf("after a broken JWKS write: %d", code)
	}
	if got := counterValue(t, e.reg, MetricCredentialReloads, map[string]string{"source": "pubsub", "result": "error"}); got != 1 {
		t.Errorf("reload errors %v", got)
	}
}

func TestPubSubBindingsValidation(t *testing.T) {
	dir := t.TempDir()
	jwks := writeFile(t, dir, "certs.json", jwksFor(map[string]*rsa.PrivateKey{"k": googleKey()}))
	f := func(bindings, want string) {
		t.Helper()
		p := writeFile(t, dir, "b.yaml", []byte(bindings))
		_, err := NewPubSubAuth(PubSubAuthConfig{JWKSFile: jwks, BindingsFile: p}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", bindings, err, want)
		}
	}
	f("bindings: []", "no bindings")
	f("bindings:\n- {name: a, audience: x, email: e@x, cluster: c}\n- {name: b, audience: x, email: e@x, cluster: d}", "same audience and email")
	f("bindings:\n- {name: a, email: e@x, cluster: c}", "audience is required")
	f("bindings:\n- {name: a, audience: x, email: nobody, cluster: c}", "email")
	f("bindings:\n- {name: a, audience: x, email: e@x, cluster: 'bad cluster'}", "cluster")
	f("bindings:\n- {name: a, audience: x, email: e@x, cluster: c, extra: 1}", "unknown field")
	if _, err := NewPubSubAuth(PubSubAuthConfig{JWKSFile: jwks}, nil, nil); err == nil {
		t.Error("a JWKS file without bindings is accepted")
	}
	if p, err := NewPubSubAuth(PubSubAuthConfig{}, nil, nil); p != nil || err != nil {
		t.Errorf("nothing configured: %v %v", p, err)
	}
}

// TestPubSubRespectsIngestLimits: a push is admitted as a webhook body
// is: beyond max-body-bytes it is 413 (declared or read), and with every
// processing slot taken it is 429 with Retry-After.
func TestPubSubRespectsIngestLimits(t *testing.T) {
	prod := &memProducer{}
	h, err := New(Config{MaxBodyBytes: 4 << 10, MaxInFlightRequests: 1}, prod, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	big := pushBody(gkeEntries(t)[0], "1") // about 6 KiB
	if code, resp, _ := post(t, srv.URL+"/pubsub/prod-eu1", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized push: %d %+v", code, resp)
	}
	small := pushBody(gkeEntries(t)[2], "2")
	if !h.lim.acquireRequest() {
		t.Fatal("taking the only slot")
	}
	code, _, hdr := post(t, srv.URL+"/pubsub/prod-eu1", small)
	h.lim.releaseRequest()
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("saturated: %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}
	if code, _, _ := post(t, srv.URL+"/pubsub/prod-eu1", small); code != http.StatusOK {
		t.Errorf("after the slot is free: %d", code)
	}
	if h.lim.bytes.Load() != 0 || h.lim.requests.Load() != 0 {
		t.Errorf("held after the requests: %d bytes, %d requests", h.lim.bytes.Load(), h.lim.requests.Load())
	}
}
