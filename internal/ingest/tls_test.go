package ingest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    []byte
	serial atomic.Int64
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.serial.Store(100)
	return ca
}

// issue returns a PEM certificate and key for cn: a serving certificate for
// 127.0.0.1 and localhost, or a client certificate.
func (ca *testCA) issue(t testing.TB, cn string, server bool) (certPEM, keyPEM []byte, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial = ca.serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(12 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), serial
}

// writeFile writes b to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeClock lets a test step past the reload interval without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// counterValue reads a counter from reg by name and labels.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// servedSerial completes a handshake with addr and returns the serving
// certificate's serial number.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSReloadsCertificateAndKeepsOldOnBrokenPair(t *testing.T) {
	verifyNoLeaks(t)
	dir := t.TempDir()
	ca := newTestCA(t, "ingest-serving-ca")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cert, key, serial1 := ca.issue(t, "ingest", true)
	certFile := writeFile(t, dir, "tls.crt", cert)
	keyFile := writeFile(t, dir, "tls.key", key)

	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	tl, err := NewTLS(TLSConfig{CertFile: certFile, KeyFile: keyFile, now: clock.Now}, slogTo(logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tl.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	})
	defer func() { ln.Close(); wg.Wait() }()
	addr := ln.Addr().String()

	if got := servedSerial(t, addr, roots); got != serial1 {
		t.Fatalf("serial %d, want %d", got, serial1)
	}
	// TLS 1.1 and older are refused.
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	if v, want := counterValue(t, reg, MetricCertificateExpiry, nil), float64(time.Now().Add(12*time.Hour).Unix()); v < want-60 || v > want+60 {
		t.Errorf("expiry gauge %v, want about %v", v, want)
	}

	// A rewrite is not looked at before the interval has passed.
	cert2, key2, serial2 := ca.issue(t, "ingest", true)
	writeFile(t, dir, "tls.crt", cert2)
	writeFile(t, dir, "tls.key", key2)
	if got := servedSerial(t, addr, roots); got != serial1 {
		t.Fatalf("before the interval: serial %d, want the old %d", got, serial1)
	}
	clock.Add(DefaultReloadInterval)
	if got := servedSerial(t, addr, roots); got != serial2 {
		t.Fatalf("after rotation: serial %d, want %d", got, serial2)
	}

	// Half a rotation (new certificate, old key) keeps serving the last
	// good pair, and is counted and logged once.
	cert3, key3, serial3 := ca.issue(t, "ingest", true)
	writeFile(t, dir, "tls.crt", cert3)
	for range 3 {
		clock.Add(DefaultReloadInterval)
		if got := servedSerial(t, addr, roots); got != serial2 {
			t.Fatalf("broken pair: serial %d, want the previous %d", got, serial2)
		}
	}
	if n := counterValue(t, reg, MetricCredentialReloads, map[string]string{"source": "certificate", "result": "error"}); n != 1 {
		t.Fatalf("reload errors counted %v times, want 1", n)
	}
	if n := bytes.Count([]byte(logs.String()), []byte("keeping the previous ones")); n != 1 {
		t.Fatalf("reload error logged %d times, want 1:\n%s", n, logs)
	}
	writeFile(t, dir, "tls.key", key3)
	clock.Add(DefaultReloadInterval)
	if got := servedSerial(t, addr, roots); got != serial3 {
		t.Fatalf("completed rotation: serial %d, want %d", got, serial3)
	}
	if n := counterValue(t, reg, MetricCredentialReloads, map[string]string{"source": "certificate", "result": "ok"}); n != 2 {
		t.Fatalf("reloads ok = %v, want 2", n)
	}
	// A removed file (an atomic rename in progress) also keeps the pair.
	os.Remove(keyFile)
	clock.Add(DefaultReloadInterval)
	if got := servedSerial(t, addr, roots); got != serial3 {
		t.Fatalf("missing key: serial %d, want %d", got, serial3)
	}
}

func TestTLSStartupErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	cert, key, _ := ca.issue(t, "ingest", true)
	certFile := writeFile(t, dir, "tls.crt", cert)
	keyFile := writeFile(t, dir, "tls.key", key)
	_, otherKey, _ := ca.issue(t, "ingest", true)
	badKey := writeFile(t, dir, "other.key", otherKey)
	notPEM := writeFile(t, dir, "ca.txt", []byte("not a certificate"))

	f := func(cfg TLSConfig, wantErr string) {
		t.Helper()
		_, err := NewTLS(cfg, nil, nil)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(wantErr)) {
			t.Errorf("NewTLS(%+v) = %v, want error containing %q", cfg, err, wantErr)
		}
	}
	f(TLSConfig{KeyFile: keyFile}, "tls.cert_file is required")
	f(TLSConfig{CertFile: certFile, KeyFile: badKey}, "private key does not match")
	f(TLSConfig{CertFile: certFile, KeyFile: filepath.Join(dir, "missing")}, "reading ")
	f(TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: notPEM}, "no PEM certificate")

	tl, err := NewTLS(TLSConfig{CertFile: certFile, KeyFile: keyFile}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tl.ClientCAs() != nil || tl.ServerConfig().ClientAuth != tls.NoClientCert {
		t.Fatal("without a client CA no client certificate is requested")
	}
}
