package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/gen"
)

func TestOptionsValidate(t *testing.T) {
	ok := options{reloadInterval: time.Second, shutdownWait: time.Second}
	f := func(name string, mod func(*options), wantErr string) {
		t.Helper()
		o := ok
		mod(&o)
		err := o.validate()
		if wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one containing %q", name, err, wantErr)
		}
	}
	tlsOn := func(o *options) { o.listen, o.tlsCert, o.tlsKey, o.tokenFile = ":8443", "c", "k", "t" }
	f("nothing", func(*options) {}, "no listener: pass --listen ADDR with --tls-cert and --tls-key")
	f("insecure only", func(o *options) { o.insecureListen = "127.0.0.1:8080" }, "")
	f("tls with token", tlsOn, "")
	f("tls with client CA", func(o *options) { tlsOn(o); o.tokenFile, o.clientCA = "", "ca" }, "")
	f("listen without cert", func(o *options) { o.listen, o.tokenFile = ":8443", "t" }, "--listen serves TLS only")
	f("cert without key", func(o *options) { tlsOn(o); o.tlsKey = "" }, "--tls-cert and --tls-key go together")
	f("listen without any credential", func(o *options) { tlsOn(o); o.tokenFile = "" }, "pass --client-ca, --token-file, --firehose-access-key-file and/or --pubsub-jwks-file")
	f("tls with Firehose keys only", func(o *options) { tlsOn(o); o.tokenFile, o.firehoseKeys = "", "keys" }, "")
	f("tls with Pub/Sub OIDC only", func(o *options) {
		tlsOn(o)
		o.tokenFile, o.pubsubJWKS, o.pubsubBindings = "", "certs.json", "bindings.yaml"
	}, "")
	f("cert without listen", func(o *options) { o.insecureListen, o.tlsCert, o.tlsKey = ":1", "c", "k" }, "--listen is empty")
	f("client CA without listen", func(o *options) { o.insecureListen, o.clientCA = ":1", "ca" }, "--client-ca needs the TLS listener")
	f("zero reload", func(o *options) { tlsOn(o); o.reloadInterval = 0 }, "--credential-reload-interval must be positive")
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// selfSigned writes a self-signed serving certificate for 127.0.0.1.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ingest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestRunServesTLSInsecureAndMetrics starts the command with all three
// listeners, posts over each webhook listener, and stops it as SIGTERM
// would.
func TestRunServesTLSInsecureAndMetrics(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	const token = "9d1c7e4a2b8f06d3c5e1a7b9f2d4c08e6a3b5d7f1c9e2a4b6d8f0c1e3a5b7d9f"
	tokenFile := filepath.Join(dir, "tokens")
	os.WriteFile(tokenFile, []byte(token+",prod-apiserver,prod-eu1\n"), 0o600)
	tlsAddr, plainAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() {
		runErr = run(ctx, []string{
			"--listen", tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile, "--token-file", tokenFile,
			"--insecure-listen", plainAddr, "--metrics-listen", metricsAddr,
			"--spool-dir", filepath.Join(dir, "spool"), "--log-level", "debug",
		}, &stderr)
	})

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	// Wait for start-up: the metrics listener answers once all are bound.
	for i := 0; ; i++ {
		resp, err := client.Get("http://" + metricsAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 200 {
			cancel()
			wg.Wait()
			t.Fatalf("ingest did not start: %v, run: %v", err, runErr)
		}
		time.Sleep(25 * time.Millisecond)
	}

	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + string(gen.New(gen.Config{Seed: 3}).Next().JSON) + `]}`
	post := func(url, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := post("https://"+tlsAddr+"/audit", token); code != http.StatusOK {
		t.Fatalf("TLS with token: %d %s", code, b)
	}
	if code, _ := post("https://"+tlsAddr+"/audit", ""); code != http.StatusUnauthorized {
		t.Fatalf("TLS without token: %d", code)
	}
	if code, b := post("http://"+plainAddr+"/audit/dev", ""); code != http.StatusOK {
		t.Fatalf("insecure listener without token: %d %s", code, b)
	}
	if code, _ := post("http://"+metricsAddr+"/audit", token); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Fatalf("metrics listener accepted a webhook post: %d", code)
	}
	resp, err := client.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `auditpipe_ingest_auth_failures_total{reason="no_credentials"} 1`) {
		t.Fatalf("metrics lack the refused request:\n%s", metrics)
	}

	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("run: %v\n%s", runErr, stderr.String())
	}
	logs := stderr.String()
	for _, want := range []string{"serving the webhook over plain HTTP", `listener=webhook-tls took=`, "producer closed", "shutdown complete"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if strings.Contains(logs, token[:12]) {
		t.Error("the token appears in the logs")
	}
}
