package ingest

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/prom"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names for TLS and credential files.
const (
	// MetricCredentialReloads counts re-reads of the certificate, client
	// CA and token files by source (certificate, client_ca, tokens) and
	// result (ok, error). An error keeps the previous credentials serving.
	MetricCredentialReloads = "auditpipe_ingest_credential_reloads_total"
	// MetricCertificateExpiry is the serving certificate's NotAfter, so an
	// alert can fire well before the apiserver starts failing handshakes.
	MetricCertificateExpiry = "auditpipe_ingest_tls_certificate_expiry_timestamp_seconds"
)

// DefaultReloadInterval is how often credential files are checked for
// changes at most. Checks happen on use (a handshake, a request), so an idle
// server reads nothing; a few seconds keeps rotation prompt without hashing
// files on every request.
const DefaultReloadInterval = 5 * time.Second

// TLSConfig says where the serving certificate and the trusted client CA
// live. All files are re-read when their content changes.
type TLSConfig struct {
	// CertFile and KeyFile hold the PEM serving certificate (with its
	// intermediates) and private key. Both are required.
	CertFile, KeyFile string
	// ClientCAFile holds the PEM CAs that sign the apiservers' client
	// certificates. Empty disables mTLS.
	ClientCAFile string
	// ReloadInterval bounds how often the files are checked. Default
	// DefaultReloadInterval.
	ReloadInterval time.Duration

	// now is the clock; tests replace it to step past ReloadInterval.
	now func() time.Time
}

// WithDefaults returns c with unset fields set to their defaults.
func (c TLSConfig) WithDefaults() TLSConfig {
	if c.ReloadInterval == 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Validate checks c, naming the key of each problem.
func (c TLSConfig) Validate() error {
	var errs []error
	if c.CertFile == "" {
		errs = append(errs, errors.New("tls.cert_file is required"))
	}
	if c.KeyFile == "" {
		errs = append(errs, errors.New("tls.key_file is required"))
	}
	if c.ReloadInterval < 0 {
		errs = append(errs, errors.New("tls.reload_interval must not be negative"))
	}
	return errors.Join(errs...)
}

// TLS serves a certificate and a client CA pool that follow their files.
type TLS struct {
	cert *reloader[tls.Certificate]
	ca   *reloader[x509.CertPool] // nil without ClientCAFile
}

// NewTLS loads the files; they must be valid at start. log and reg may be
// nil.
func NewTLS(cfg TLSConfig, log *slog.Logger, reg prometheus.Registerer) (*TLS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reloads, err := registerReloads(reg)
	if err != nil {
		return nil, err
	}
	// A second TLS on one registry (a test, two listeners) shares the
	// gauge rather than panicking; the last certificate loaded sets it.
	expiry, err := prom.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricCertificateExpiry, Help: "NotAfter of the serving certificate, as a Unix timestamp."}))
	if err != nil {
		return nil, fmt.Errorf("registering TLS metrics: %w", err)
	}

	t := &TLS{}
	t.cert, err = newReloader("certificate", []string{cfg.CertFile, cfg.KeyFile}, cfg.ReloadInterval, cfg.now, log, reloads,
		func(b [][]byte) (*tls.Certificate, error) {
			c, err := tls.X509KeyPair(b[0], b[1])
			if err != nil {
				return nil, fmt.Errorf("parsing key pair %s, %s: %w", cfg.CertFile, cfg.KeyFile, err)
			}
			// X509KeyPair fills Leaf since Go 1.23.
			if c.Leaf != nil {
				expiry.Set(float64(c.Leaf.NotAfter.Unix()))
			}
			return &c, nil
		})
	if err != nil {
		return nil, err
	}
	if cfg.ClientCAFile != "" {
		t.ca, err = newReloader("client_ca", []string{cfg.ClientCAFile}, cfg.ReloadInterval, cfg.now, log, reloads,
			func(b [][]byte) (*x509.CertPool, error) {
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(b[0]) {
					return nil, fmt.Errorf("parsing client CA %s: no PEM certificate found", cfg.ClientCAFile)
				}
				return pool, nil
			})
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// ServerConfig returns the listener's TLS configuration: TLS 1.2 or newer,
// the current certificate on every handshake and, with a client CA, a
// request for a client certificate.
//
// The client certificate is requested, not verified, during the handshake
// (tls.RequestClientCert rather than VerifyClientCertIfGiven). The handshake
// still proves the client holds the certificate's key; the chain is then
// verified by the Authenticator against the current CA pool for every
// request. That keeps token authentication working on the same listener,
// lets a CA rotation apply to open connections, and turns an untrusted
// certificate into a counted 401 with a message instead of a TLS alert the
// apiserver logs as "bad certificate". No acceptable-CA list is sent, so a
// client offers its certificate even when another CA signed it, and is told
// why it is refused.
func (t *TLS) ServerConfig() *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.cert.get(), nil
		},
	}
	if t.ca != nil {
		c.ClientAuth = tls.RequestClientCert
	}
	return c
}

// ClientCAs returns the current client CA pool, nil without mTLS.
func (t *TLS) ClientCAs() *x509.CertPool {
	if t == nil || t.ca == nil {
		return nil
	}
	return t.ca.get()
}

func registerReloads(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricCredentialReloads, Help: "Credential file reloads by source and result; an error keeps the previous credentials."}, []string{"source", "result"})
	// TLS and the Authenticator share the counter; whichever comes second
	// uses the one already registered.
	c, err := prom.Register(reg, c)
	if err != nil {
		return nil, fmt.Errorf("registering credential reload metrics: %w", err)
	}
	return c, nil
}

// reloader holds a value built from a set of small files and rebuilds it
// when their content changes, checking at most once per interval, on use.
// There is no goroutine: an idle server reads nothing and nothing needs to
// be stopped. A file that cannot be read or a content that does not build
// keeps the previous value, and is logged and counted once per distinct
// problem, not once per check.
type reloader[T any] struct {
	source   string // metric label and log key
	paths    []string
	interval time.Duration
	now      func() time.Time
	build    func([][]byte) (*T, error)
	log      *slog.Logger
	reloads  *prometheus.CounterVec

	cur  atomic.Pointer[T]
	next atomic.Int64 // UnixNano of the next due check

	mu      sync.Mutex // held by the one caller that checks
	digest  [sha256.Size]byte
	lastErr string
}

func newReloader[T any](source string, paths []string, interval time.Duration, now func() time.Time, log *slog.Logger, reloads *prometheus.CounterVec, build func([][]byte) (*T, error)) (*reloader[T], error) {
	r := &reloader[T]{source: source, paths: paths, interval: interval, now: now, build: build, log: log, reloads: reloads}
	contents, digest, err := readFiles(paths)
	if err != nil {
		return nil, err
	}
	v, err := build(contents)
	if err != nil {
		return nil, err
	}
	r.cur.Store(v)
	r.digest = digest
	r.next.Store(now().Add(interval).UnixNano())
	return r, nil
}

// get returns the current value, first reloading it if a check is due.
func (r *reloader[T]) get() *T {
	if r.now().UnixNano() >= r.next.Load() && r.mu.TryLock() {
		// Callers that lose the race serve the current value rather than
		// wait for file I/O.
		r.check()
		r.mu.Unlock()
	}
	return r.cur.Load()
}

func (r *reloader[T]) check() {
	now := r.now()
	if now.UnixNano() < r.next.Load() {
		return
	}
	r.next.Store(now.Add(r.interval).UnixNano())
	contents, digest, err := readFiles(r.paths)
	if err == nil && digest == r.digest {
		return
	}
	if err == nil {
		// Remember the digest even if the content does not build: a
		// half-written pair is retried when it changes again, not logged
		// every interval.
		r.digest = digest
		var v *T
		if v, err = r.build(contents); err == nil {
			r.cur.Store(v)
			r.lastErr = ""
			r.reloads.WithLabelValues(r.source, "ok").Inc()
			r.log.Info("reloaded credentials", "source", r.source, "files", r.paths)
			return
		}
	}
	if msg := err.Error(); msg != r.lastErr {
		r.lastErr = msg
		r.reloads.WithLabelValues(r.source, "error").Inc()
		r.log.Error("reloading credentials, keeping the previous ones", "source", r.source, "err", err)
	}
}

// readFiles reads paths and returns their contents with one digest over all
// of them; comparing content rather than mtime catches a rewrite within the
// file system's timestamp granularity.
func readFiles(paths []string) ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	out := make([][]byte, len(paths))
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, [sha256.Size]byte{}, fmt.Errorf("reading %s: %w", p, err)
		}
		out[i] = b
		// Length-prefix each file so that moving bytes between files
		// changes the digest.
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return out, d, nil
}
