package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/auditsend"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// verifyNoLeaks checks, after every cleanup of t (servers closed, senders
// shut down), that no goroutine started during t is left.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, senderGoroutines...)
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Tokens as an operator would generate them (openssl rand -hex 32).
const (
	tokenEU1    = "3f9c2a7d51e84b06c2d9a1f07e3b5c48d6a2e9f1b7c04d3a8e5f6b2c1d0a9e87"
	tokenEU1New = "a81d4c7e9b2f03d6e5c8a1b7f40e9d2c6b3a5f8e1d7c0b4a9e2f6d3c8b1a5e70"
	tokenUS1    = "c4e7a2d9f1b83c05e6d2a9f7b1c4e08d3a6f2b9e5c1d7a0f4b8e3c6d2a9f1b57"
	tokenForged = "3f9c2a7d51e84b06c2d9a1f07e3b5c48d6a2e9f1b7c04d3a8e5f6b2c1d0a9e88"
)

var allTokens = []string{tokenEU1, tokenEU1New, tokenUS1, tokenForged}

// authProducer is the acknowledging end of the transport, per cluster.
type authProducer struct {
	mu   sync.Mutex
	msgs []pipeline.Message
}

func (p *authProducer) Produce(_ context.Context, msgs []pipeline.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *authProducer) byCluster() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := map[string]int{}
	for _, m := range p.msgs {
		n[m.Cluster]++
	}
	return n
}

// authEnv is ingest behind TLS and the Authenticator on a loopback port,
// with the credential files in a temp dir and a clock the test steps.
type authEnv struct {
	dir      string
	clock    *fakeClock
	serverCA *testCA
	clientCA *testCA
	prod     *authProducer
	reg      *prometheus.Registry
	logs     *syncBuffer
	url      string // https://127.0.0.1:port
	addr     string

	certFile, keyFile, clientCAFile, tokenFile, mapFile, serverCAFile string
	// bodies collects every answer the senders' side could see.
	bodies *syncBuffer
}

const initialTokens = `# webhook tokens, one per apiserver
tokens:
- name: eu1-apiserver
  token: ` + tokenEU1 + `
- name: us1-apiserver
  token: ` + tokenUS1 + `
  cluster: prod-us1
`

const clusterMap = `clients:
- cn: apiserver.eu2.example.com
  cluster: prod-eu2
tokens:
- name: eu1-apiserver
  cluster: prod-eu1
`

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	e := &authEnv{
		dir: t.TempDir(), clock: newFakeClock(),
		serverCA: newTestCA(t, "ingest-serving-ca"), clientCA: newTestCA(t, "apiserver-client-ca"),
		prod: &authProducer{}, reg: prometheus.NewRegistry(), logs: &syncBuffer{}, bodies: &syncBuffer{},
	}
	cert, key, _ := e.serverCA.issue(t, "auditpipe-ingest", true)
	e.certFile = writeFile(t, e.dir, "tls.crt", cert)
	e.keyFile = writeFile(t, e.dir, "tls.key", key)
	e.serverCAFile = writeFile(t, e.dir, "serving-ca.crt", e.serverCA.pem)
	e.clientCAFile = writeFile(t, e.dir, "client-ca.crt", e.clientCA.pem)
	e.tokenFile = writeFile(t, e.dir, "tokens.yaml", []byte(initialTokens))
	e.mapFile = writeFile(t, e.dir, "cluster-map.yaml", []byte(clusterMap))

	log := slogTo(e.logs)
	tl, err := NewTLS(TLSConfig{CertFile: e.certFile, KeyFile: e.keyFile, ClientCAFile: e.clientCAFile, now: e.clock.Now}, log, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := NewAuthenticator(AuthConfig{TokenFile: e.tokenFile, ClusterMapFile: e.mapFile, now: e.clock.Now}, tl, log, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{DefaultCluster: "fallback"}, e.prod, nil, nil, log, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}))
	mux.Handle("/", h)
	srv := &http.Server{Handler: e.recordBodies(auth.Require(mux)), TLSConfig: tl.ServerConfig(), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.url = "https://" + e.addr
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.ServeTLS(ln, "", "") })
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
		e.assertNoTokenLeaked(t)
	})
	return e
}

// recordBodies keeps every response body, to be searched for tokens.
func (e *authEnv) recordBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(teeWriter{w, e.bodies}, r)
	})
}

type teeWriter struct {
	http.ResponseWriter
	b *syncBuffer
}

func (t teeWriter) Write(p []byte) (int, error) {
	t.b.Write(p)
	return t.ResponseWriter.Write(p)
}

// assertNoTokenLeaked searches the logs, every response body and the
// metrics for any token or a 12-character piece of one.
func (e *authEnv) assertNoTokenLeaked(t *testing.T) {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := json.Marshal(mfs)
	for where, text := range map[string]string{"logs": e.logs.String(), "responses": e.bodies.String(), "metrics": string(metrics)} {
		if text == "" && where == "logs" {
			t.Errorf("no logs captured: the search below would pass vacuously")
		}
		for _, tok := range allTokens {
			for i := 0; i+12 <= len(tok); i += 6 {
				if strings.Contains(text, tok[i:i+12]) {
					t.Errorf("%s contain a piece of a token (%s…)", where, tok[i:i+12])
				}
			}
		}
	}
}

// clientCert writes a client certificate for cn, signed by ca, and returns
// the file paths.
func (e *authEnv) clientCert(t *testing.T, ca *testCA, name, cn string) (certFile, keyFile string) {
	t.Helper()
	cert, key, _ := ca.issue(t, cn, false)
	return writeFile(t, e.dir, name+".crt", cert), writeFile(t, e.dir, name+".key", key)
}

// send replays n generated events through kube-apiserver's webhook client
// configured by a kubeconfig with o, and returns what it reports.
func (e *authEnv) send(t *testing.T, name, path string, o auditsend.KubeconfigOptions, n int) (sent, failed int64) {
	t.Helper()
	o.CAFile = e.serverCAFile
	kubeconfig := filepath.Join(e.dir, name+".kubeconfig")
	if err := auditsend.WriteKubeconfig(kubeconfig, e.url+path, o); err != nil {
		t.Fatal(err)
	}
	s, err := auditsend.New(auditsend.Config{Kubeconfig: kubeconfig, MaxBatchWait: 10 * time.Millisecond, InitialBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := gen.New(gen.Config{Seed: int64(len(name)), Cluster: "sender"})
	for range n {
		var ev auditv1.Event
		if err := auditjson.DecodeEvent(g.Next().JSON, &ev); err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&ev); err != nil {
			t.Fatal(err)
		}
	}
	s.Shutdown()
	sent, failed, dropped := s.Stats()
	if dropped != 0 {
		t.Fatalf("%s: %d events dropped", name, dropped)
	}
	return sent, failed
}

// postRaw posts a one-event list with an optional client certificate and
// bearer token, and returns the status, the decoded body and the headers.
func (e *authEnv) postRaw(t *testing.T, path string, cert *tls.Certificate, token string) (int, Response, http.Header) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.serverCA.cert)
	tc := &tls.Config{RootCAs: roots}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	defer client.CloseIdleConnections()
	g := gen.New(gen.Config{Seed: 7})
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + string(g.Next().JSON) + `]}`
	req, _ := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decoding %d answer: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, r, resp.Header
}

func loadPair(t *testing.T, certFile, keyFile string) *tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestAuthRealSenderOverMTLSAndToken(t *testing.T) {
	verifyNoLeaks(t)
	e := newAuthEnv(t)
	us1Cert, us1Key := e.clientCert(t, e.clientCA, "us1", "prod-us1")                  // CN is the cluster
	eu2Cert, eu2Key := e.clientCert(t, e.clientCA, "eu2", "apiserver.eu2.example.com") // mapped

	const n = 300
	f := func(name, path string, o auditsend.KubeconfigOptions, cluster string) {
		t.Helper()
		before := e.prod.byCluster()[cluster]
		sent, failed := e.send(t, name, path, o, n)
		if sent != n || failed != 0 {
			t.Fatalf("%s: sent %d failed %d, want %d sent", name, sent, failed, n)
		}
		if got := e.prod.byCluster()[cluster] - before; got != n {
			t.Fatalf("%s: %d events stored for %s, want %d (all: %v)", name, got, cluster, n, e.prod.byCluster())
		}
	}
	f("mtls-cn", "/audit", auditsend.KubeconfigOptions{ClientCertFile: us1Cert, ClientKeyFile: us1Key}, "prod-us1")
	f("mtls-mapped", "/audit/prod-eu2", auditsend.KubeconfigOptions{ClientCertFile: eu2Cert, ClientKeyFile: eu2Key}, "prod-eu2")
	f("token-mapped", "/audit/prod-eu1", auditsend.KubeconfigOptions{Token: tokenEU1}, "prod-eu1")
	f("token-own-cluster", "/audit", auditsend.KubeconfigOptions{Token: tokenUS1}, "prod-us1")
	if got := e.prod.byCluster()["fallback"]; got != 0 {
		t.Fatalf("%d events under the default cluster", got)
	}

	for method, want := range map[string]float64{MethodMTLS: 2 * n / 400, MethodToken: 2 * n / 400} {
		if got := counterValue(t, e.reg, MetricAuthenticated, map[string]string{"method": method}); got < want {
			t.Errorf("%s requests authenticated: %v, want at least %v", method, got, want)
		}
	}
}

func TestAuthRefusesWrongCredentials(t *testing.T) {
	verifyNoLeaks(t)
	e := newAuthEnv(t)
	otherCA := newTestCA(t, "someone-elses-ca")
	foreignCert, foreignKey := e.clientCert(t, otherCA, "foreign", "prod-us1")
	nodeCert, nodeKey := e.clientCert(t, e.clientCA, "node", "system:node:worker-1")

	f := func(name string, o auditsend.KubeconfigOptions, reason string) {
		t.Helper()
		before := counterValue(t, e.reg, MetricAuthFailures, map[string]string{"reason": reason})
		sent, failed := e.send(t, name, "/audit/prod-us1", o, 50)
		if sent != 0 || failed == 0 {
			t.Errorf("%s: sent %d failed %d, want every event failed", name, sent, failed)
		}
		if got := counterValue(t, e.reg, MetricAuthFailures, map[string]string{"reason": reason}); got <= before {
			t.Errorf("%s: %s failures %v, want more than %v", name, reason, got, before)
		}
	}
	f("other-ca", auditsend.KubeconfigOptions{ClientCertFile: foreignCert, ClientKeyFile: foreignKey}, ReasonUntrustedCertificate)
	f("wrong-token", auditsend.KubeconfigOptions{Token: tokenForged}, ReasonBadToken)
	f("nothing", auditsend.KubeconfigOptions{}, ReasonNoCredentials)
	f("cn-without-cluster", auditsend.KubeconfigOptions{ClientCertFile: nodeCert, ClientKeyFile: nodeKey}, ReasonCertificateWithoutCluster)
	// A valid token does not rescue an untrusted certificate.
	f("other-ca-with-token", auditsend.KubeconfigOptions{ClientCertFile: foreignCert, ClientKeyFile: foreignKey, Token: tokenUS1}, ReasonUntrustedCertificate)
	if got := e.prod.byCluster(); len(got) != 0 {
		t.Fatalf("refused requests stored events: %v", got)
	}

	// What the sender is told: 401, a JSON error saying why, and the
	// challenge.
	g := func(name string, cert *tls.Certificate, token, wantErr string) {
		t.Helper()
		code, resp, hdr := e.postRaw(t, "/audit", cert, token)
		if code != http.StatusUnauthorized || !strings.Contains(resp.Error, wantErr) || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q WWW-Authenticate=%q Content-Type=%q, want 401 with %q", name, code, resp.Error, hdr.Get("WWW-Authenticate"), hdr.Get("Content-Type"), wantErr)
		}
	}
	g("no credentials", nil, "authentication required", "")
	g("forged token", nil, tokenForged, "invalid bearer token")
	g("other CA", loadPair(t, foreignCert, foreignKey), "", "unknown authority")
	g("node certificate", loadPair(t, nodeCert, nodeKey), "", "names no cluster")

	// Probes and scrapers need no credential.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := client.Get(e.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without credentials: %d", p, resp.StatusCode)
		}
	}
}

func TestAuthCredentialCannotWriteOtherCluster(t *testing.T) {
	verifyNoLeaks(t)
	e := newAuthEnv(t)
	us1Cert, us1Key := e.clientCert(t, e.clientCA, "us1", "prod-us1")
	f := func(name string, o auditsend.KubeconfigOptions) {
		t.Helper()
		sent, failed := e.send(t, name, "/audit/prod-eu2", o, 50)
		if sent != 0 || failed == 0 {
			t.Errorf("%s: sent %d failed %d, want every event failed", name, sent, failed)
		}
	}
	f("token bound to prod-eu1", auditsend.KubeconfigOptions{Token: tokenEU1})
	f("certificate for prod-us1", auditsend.KubeconfigOptions{ClientCertFile: us1Cert, ClientKeyFile: us1Key})
	if got := e.prod.byCluster(); len(got) != 0 {
		t.Fatalf("events stored: %v", got)
	}
	code, resp, _ := e.postRaw(t, "/audit/prod-eu2", nil, tokenEU1)
	if code != http.StatusForbidden || !strings.Contains(resp.Error, `"eu1-apiserver" is bound to cluster "prod-eu1"`) {
		t.Fatalf("got %d %q, want 403 naming the credential and its cluster", code, resp.Error)
	}
}

func TestAuthPicksUpRotatedFiles(t *testing.T) {
	verifyNoLeaks(t)
	e := newAuthEnv(t)
	roots := x509.NewCertPool()
	roots.AddCert(e.serverCA.cert)

	code := func(cert *tls.Certificate, token string) int {
		t.Helper()
		c, _, _ := e.postRaw(t, "/audit", cert, token)
		return c
	}
	if c := code(nil, tokenEU1); c != http.StatusOK {
		t.Fatalf("initial token: %d", c)
	}

	// Token rotation, in the line format this time: the new token works,
	// the old one stops working, the other entry is untouched.
	writeFile(t, e.dir, "tokens.yaml", []byte("# rotated\n"+tokenEU1New+",eu1-apiserver\n"+tokenUS1+",us1-apiserver,prod-us1\n"))
	e.clock.Add(DefaultReloadInterval)
	if c := code(nil, tokenEU1New); c != http.StatusOK {
		t.Fatalf("new token: %d", c)
	}
	if c := code(nil, tokenEU1); c != http.StatusUnauthorized {
		t.Fatalf("old token after rotation: %d", c)
	}
	if c := code(nil, tokenUS1); c != http.StatusOK {
		t.Fatalf("untouched token: %d", c)
	}
	sent, failed := e.send(t, "rotated-token", "/audit", auditsend.KubeconfigOptions{Token: tokenEU1New}, 20)
	if sent != 20 || failed != 0 || e.prod.byCluster()["prod-eu1"] != 21 {
		t.Fatalf("rotated token via sender: sent %d failed %d stored %v", sent, failed, e.prod.byCluster())
	}

	// A broken token file (a short token) keeps the last good one.
	writeFile(t, e.dir, "tokens.yaml", []byte("tooshort,eu1-apiserver,prod-eu1\n"))
	e.clock.Add(DefaultReloadInterval)
	if c := code(nil, tokenEU1New); c != http.StatusOK {
		t.Fatalf("after a broken token file: %d", c)
	}
	if n := counterValue(t, e.reg, MetricCredentialReloads, map[string]string{"source": "tokens", "result": "error"}); n != 1 {
		t.Fatalf("token reload errors %v, want 1", n)
	}

	// Serving certificate rotation.
	cert, key, serial := e.serverCA.issue(t, "auditpipe-ingest", true)
	writeFile(t, e.dir, "tls.crt", cert)
	writeFile(t, e.dir, "tls.key", key)
	e.clock.Add(DefaultReloadInterval)
	if got := servedSerial(t, e.addr, roots); got != serial {
		t.Fatalf("serving serial %d, want the new %d", got, serial)
	}

	// Client CA rotation: a certificate from the old CA is refused, one
	// from the new CA accepted, on the same listener without a restart.
	oldCertFile, oldKeyFile := e.clientCert(t, e.clientCA, "old", "prod-us1")
	oldCert := loadPair(t, oldCertFile, oldKeyFile)
	if c := code(oldCert, ""); c != http.StatusOK {
		t.Fatalf("old-CA certificate before rotation: %d", c)
	}
	newCA := newTestCA(t, "apiserver-client-ca-2027")
	writeFile(t, e.dir, "client-ca.crt", newCA.pem)
	e.clock.Add(DefaultReloadInterval)
	if c := code(oldCert, ""); c != http.StatusUnauthorized {
		t.Fatalf("old-CA certificate after rotation: %d", c)
	}
	newCert, newKey := e.clientCert(t, newCA, "new", "prod-us1")
	sent, failed = e.send(t, "new-ca", "/audit", auditsend.KubeconfigOptions{ClientCertFile: newCert, ClientKeyFile: newKey}, 20)
	if sent != 20 || failed != 0 {
		t.Fatalf("new-CA certificate via sender: sent %d failed %d", sent, failed)
	}
}

func TestAuthInsecureListener(t *testing.T) {
	verifyNoLeaks(t)
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "tokens", []byte(tokenUS1+",us1-apiserver,prod-us1\n"))
	logs := &syncBuffer{}
	auth, err := NewAuthenticator(AuthConfig{TokenFile: tokenFile}, nil, slogTo(logs), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []Identity
	var mu sync.Mutex
	h := auth.Optional(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := IdentityFrom(r.Context())
		if !ok || r.Header.Get("Authorization") != "" {
			t.Errorf("identity set %v, Authorization passed on: %q", ok, r.Header.Get("Authorization"))
		}
		mu.Lock()
		got = append(got, id)
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	f := func(header string, wantCode int, want Identity) {
		t.Helper()
		r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/audit/dev", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		w := &recorder{header: http.Header{}}
		mu.Lock()
		got = nil
		mu.Unlock()
		h.ServeHTTP(w, r)
		if w.code != wantCode {
			t.Fatalf("%q: code %d, want %d", header, w.code, wantCode)
		}
		if wantCode == http.StatusOK && (len(got) != 1 || got[0] != want) {
			t.Fatalf("%q: identity %+v, want %+v", header, got, want)
		}
	}
	f("", http.StatusOK, Identity{})
	f("Bearer "+tokenUS1, http.StatusOK, Identity{Method: MethodToken, Name: "us1-apiserver", Cluster: "prod-us1"})
	f("bearer  "+tokenUS1+" ", http.StatusOK, Identity{Method: MethodToken, Name: "us1-apiserver", Cluster: "prod-us1"})
	f("Bearer "+tokenForged, http.StatusUnauthorized, Identity{})
	f("Basic "+tokenUS1, http.StatusUnauthorized, Identity{})
	f("Bearer", http.StatusUnauthorized, Identity{})
	for _, tok := range allTokens {
		if strings.Contains(logs.String(), tok[:12]) {
			t.Fatalf("token in logs:\n%s", logs)
		}
	}
}

// recorder is a minimal ResponseWriter (httptest.ResponseRecorder would do,
// but its zero code is 200 before WriteHeader, hiding a missing call).
type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return len(p), nil
}
func (r *recorder) WriteHeader(code int) { r.code = code }

func TestTokenLookupMatchesOnlyExactToken(t *testing.T) {
	st, err := buildAuthState("tokens", []byte(initialTokens), "map", []byte(clusterMap))
	if err != nil {
		t.Fatal(err)
	}
	f := func(token, wantName string) {
		t.Helper()
		e, ok := st.lookup(token)
		if ok != (wantName != "") || e.name != wantName {
			t.Errorf("lookup(%.8s…) = %q %v, want %q", token, e.name, ok, wantName)
		}
	}
	f(tokenEU1, "eu1-apiserver")
	f(tokenUS1, "us1-apiserver") // the last entry
	f(tokenForged, "")           // differs in the last character
	f(tokenEU1[:len(tokenEU1)-1], "")
	f(tokenEU1+"0", "")
	f(strings.ToUpper(tokenEU1), "")
	f("", "")
	empty := &authState{}
	if _, ok := empty.lookup(tokenEU1); ok {
		t.Error("empty state matched")
	}
}

func TestCredentialFilesValidation(t *testing.T) {
	f := func(name, tokens, cmap, wantErr string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			tokenPath, mapPath := "tokens", "map"
			if tokens == "-" {
				tokenPath, tokens = "", ""
			}
			if cmap == "-" {
				mapPath, cmap = "", ""
			}
			_, err := buildAuthState(tokenPath, []byte(tokens), mapPath, []byte(cmap))
			if wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("error %v, want one containing %q", err, wantErr)
			}
			for _, tok := range allTokens {
				if strings.Contains(err.Error(), tok[:12]) {
					t.Fatalf("error reveals a token: %v", err)
				}
			}
		})
	}
	line := func(tok, name, cluster string) string { return tok + "," + name + "," + cluster + "\n" }
	f("lines", line(tokenEU1, "a", "prod-eu1")+"\n# comment\n"+line(tokenUS1, "b", "prod-us1"), "-", "")
	f("yaml with map", initialTokens, clusterMap, "")
	f("map only", "-", "clients:\n- cn: x\n  cluster: prod-x\n", "")
	f("short token", line("0123456789", "a", "c1"), "-", "tokens[0] (a): token shorter than 16")
	f("duplicate name", line(tokenEU1, "a", "c1")+line(tokenUS1, "a", "c1"), "-", "tokens[1] (a): name listed twice")
	f("duplicate token", line(tokenEU1, "a", "c1")+line(tokenEU1, "b", "c1"), "-", "tokens[1] (b): same token as a")
	f("no cluster", tokenEU1+",a\n", "-", "tokens[0] (a): no cluster")
	f("bad cluster", line(tokenEU1, "a", "prod eu1"), "-", "tokens[0] (a).cluster: invalid cluster name")
	f("bad name", line(tokenEU1, "a b", "c1"), "-", `tokens[0].name "a b"`)
	f("one field", tokenEU1+"\n", "-", "line 1: want token,name[,cluster]")
	f("too many fields", line(tokenEU1, "a", "c1,extra"), "-", "line 1: want token,name[,cluster]")
	f("yaml unknown field", "tokens:\n- name: a\n  secret: "+tokenEU1+"\n", "-", `unknown field "secret"`)
	f("map conflicts with token file", line(tokenEU1, "eu1-apiserver", "prod-us1"), clusterMap, `bound to cluster "prod-us1" in the token file and "prod-eu1" in the cluster map`)
	f("map names unknown token", line(tokenUS1, "b", "c1"), clusterMap, `tokens entry "eu1-apiserver" names no token`)
	f("map unknown field", "-", "client:\n- cn: x\n", `unknown field "client"`)
	f("map duplicate cn", "-", "clients:\n- cn: x\n  cluster: a\n- cn: x\n  cluster: b\n", `clients[1].cn "x" is listed twice`)
	f("map missing cluster", "-", "clients:\n- cn: x\n", "clients[0].cluster: invalid cluster name")
	f("map tokens without token file", "-", clusterMap, "no --token-file")
}

func TestAuthFailuresLoggedThrottled(t *testing.T) {
	logs := &syncBuffer{}
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	auth, err := NewAuthenticator(AuthConfig{now: clock.Now}, nil, slogTo(logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	h := auth.Require(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("reached the handler") }))
	for range 100 {
		r, _ := http.NewRequest(http.MethodPost, "/audit", nil)
		h.ServeHTTP(&recorder{header: http.Header{}}, r)
	}
	clock.Add(logEvery)
	r, _ := http.NewRequest(http.MethodPost, "/audit", nil)
	h.ServeHTTP(&recorder{header: http.Header{}}, r)
	if n := strings.Count(logs.String(), "refusing unauthenticated webhook request"); n != 2 {
		t.Fatalf("logged %d times, want 2:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "suppressed=99") {
		t.Fatalf("the second line does not count the suppressed ones:\n%s", logs)
	}
	if n := counterValue(t, reg, MetricAuthFailures, map[string]string{"reason": ReasonNoCredentials}); n != 101 {
		t.Fatalf("counted %v failures, want 101", n)
	}
}

// BenchmarkAuthenticate measures what authentication adds to a webhook
// request: a token lookup against 100 configured tokens, and a client
// certificate chain verification (done per request, not per handshake).
func BenchmarkAuthenticate(b *testing.B) {
	var lines strings.Builder
	for i := range 100 {
		fmt.Fprintf(&lines, "%064x,apiserver-%d,cluster-%d\n", i+1, i, i)
	}
	t := b
	dir := b.TempDir()
	ca := newTestCA(t, "bench-ca")
	caFile := writeFile(t, dir, "ca.crt", ca.pem)
	srvCert, srvKey, _ := ca.issue(t, "ingest", true)
	tl, err := NewTLS(TLSConfig{CertFile: writeFile(t, dir, "tls.crt", srvCert), KeyFile: writeFile(t, dir, "tls.key", srvKey), ClientCAFile: caFile}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	auth, err := NewAuthenticator(AuthConfig{TokenFile: writeFile(t, dir, "tokens", []byte(lines.String()))}, tl, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	clientPEM, _, _ := ca.issue(t, "prod-eu1", false)
	blk, _ := pem.Decode(clientPEM)
	client, _ := x509.ParseCertificate(blk.Bytes)

	b.Run("token-100-entries", func(b *testing.B) {
		b.ReportAllocs()
		r, _ := http.NewRequest(http.MethodPost, "/audit", nil)
		r.Header.Set("Authorization", fmt.Sprintf("Bearer %064x", 100))
		for b.Loop() {
			if _, _, err := auth.authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mtls-verify", func(b *testing.B) {
		b.ReportAllocs()
		r, _ := http.NewRequest(http.MethodPost, "/audit", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{client}}
		for b.Loop() {
			if _, _, err := auth.authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestTwoTLSShareARegistry: a second TLS on the registry of a first shares
// its series instead of panicking on a duplicate registration.
func TestTwoTLSShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	ca := newTestCA(t, "ingest-serving-ca")
	cert, key, _ := ca.issue(t, "auditpipe-ingest", true)
	cfg := TLSConfig{CertFile: writeFile(t, dir, "tls.crt", cert), KeyFile: writeFile(t, dir, "tls.key", key)}
	for i := range 2 {
		if _, err := NewTLS(cfg, nil, reg); err != nil {
			t.Fatalf("TLS %d: %v", i, err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == MetricCertificateExpiry
	}
	if !found {
		t.Errorf("%s not registered", MetricCertificateExpiry)
	}
}

// TestTwoAuthenticatorsShareARegistry: a second Authenticator on the
// registry of a first adds to the same series instead of panicking.
func TestTwoAuthenticatorsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		auth, err := NewAuthenticator(AuthConfig{}, nil, nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := http.NewRequest(http.MethodPost, "/audit", nil)
		auth.Require(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("reached the handler") })).ServeHTTP(&recorder{header: http.Header{}}, r)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var failures float64
	for _, mf := range mfs {
		if mf.GetName() == MetricAuthFailures {
			for _, m := range mf.GetMetric() {
				failures += m.GetCounter().GetValue()
			}
		}
	}
	if failures != 2 {
		t.Errorf("%s = %v over both authenticators, want 2", MetricAuthFailures, failures)
	}
}

// TestTwoHandlersShareARegistry: a second Handler on the registry of a
// first adds to the same series instead of panicking.
func TestTwoHandlersShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		h, err := New(Config{DefaultCluster: "prod-eu1"}, &authProducer{}, nil, nil, nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, "/audit", strings.NewReader(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var requests float64
	for _, mf := range mfs {
		if mf.GetName() == MetricRequests {
			for _, m := range mf.GetMetric() {
				requests += m.GetCounter().GetValue()
			}
		}
	}
	if requests != 2 {
		t.Errorf("%s = %v over both handlers, want 2", MetricRequests, requests)
	}
}
