package ingest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/auditpipe/auditpipe/internal/prom"
)

// Metric names for authentication.
const (
	// MetricAuthFailures counts requests refused with 401 by reason:
	// no_credentials, bad_token, untrusted_certificate,
	// certificate_without_cluster, bad_access_key (Firehose).
	MetricAuthFailures = "auditpipe_ingest_auth_failures_total"
	// MetricAuthenticated counts authenticated requests by method (mtls,
	// token, none for the insecure listener's anonymous callers).
	MetricAuthenticated = "auditpipe_ingest_authenticated_requests_total"
)

// Authentication methods recorded in Identity.Method.
const (
	MethodMTLS  = "mtls"
	MethodToken = "token"
)

// Reasons for refusing a request, the values of MetricAuthFailures' label.
const (
	ReasonNoCredentials             = "no_credentials"
	ReasonBadToken                  = "bad_token"
	ReasonUntrustedCertificate      = "untrusted_certificate"
	ReasonCertificateWithoutCluster = "certificate_without_cluster"
)

// minTokenLength refuses tokens a person would type: a webhook token is
// generated (openssl rand -hex 32), and a short one can be guessed.
const minTokenLength = 16

// publicPaths are served without credentials: they reveal nothing about
// the audit stream, and probes and scrapers carry no webhook credential.
var publicPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// AuthConfig says where the credentials live. Both files are optional and
// re-read when their content changes.
type AuthConfig struct {
	// TokenFile lists bearer tokens, each with a name and a cluster, as
	// YAML (tokens: [{name, token, cluster}]) or as lines of
	// "token,name[,cluster]" ('#' starts a comment).
	TokenFile string
	// ClusterMapFile binds credentials to clusters, as strict YAML:
	// clients: [{cn, cluster}] for client certificates, tokens: [{name,
	// cluster}] for tokens listed without a cluster in TokenFile. A client
	// certificate's CN not listed here is its cluster when it is a valid
	// cluster name.
	ClusterMapFile string
	// FirehoseAccessKeyFile lists the access keys Kinesis Data Firehose
	// streams present on the Firehose path, in TokenFile's format, each
	// bound to a cluster.
	FirehoseAccessKeyFile string
	// ReloadInterval bounds how often the files are checked. Default
	// DefaultReloadInterval.
	ReloadInterval time.Duration

	now func() time.Time
}

// WithDefaults returns c with unset fields set to their defaults.
func (c AuthConfig) WithDefaults() AuthConfig {
	if c.ReloadInterval == 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Validate checks c, naming the key of each problem.
func (c AuthConfig) Validate() error {
	if c.ReloadInterval < 0 {
		return errors.New("auth.reload_interval must not be negative")
	}
	return nil
}

// CAPool supplies the client CAs a certificate must chain to; *TLS is one.
type CAPool interface {
	ClientCAs() *x509.CertPool
}

// Authenticator establishes who posts to the webhook and which cluster
// that caller may write for.
type Authenticator struct {
	cas   CAPool
	state *reloader[authState] // nil when neither file is configured
	// firehose holds the Firehose access keys; nil when none are
	// configured.
	firehose *reloader[authState]
	log      *slog.Logger
	m        authMetrics
	now      func() time.Time
	// pubsub verifies Pub/Sub push OIDC tokens; pubsubOn enables the
	// Pub/Sub credentials at all (see WithPubSub).
	pubsub   *PubSubAuth
	pubsubOn bool

	// Failures are logged at most once per reason per logEvery; a scanner
	// or a misconfigured apiserver retrying must not flood the log.
	logMu      sync.Mutex
	lastLogged map[string]time.Time
	suppressed map[string]int
}

const logEvery = 10 * time.Second

type authMetrics struct {
	failures      *prometheus.CounterVec
	authenticated *prometheus.CounterVec
}

// NewAuthenticator loads the credential files; they must be valid at
// start. cas may be nil (no mTLS); log and reg too.
func NewAuthenticator(cfg AuthConfig, cas CAPool, log *slog.Logger, reg prometheus.Registerer) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{
		cas: cas, log: log, now: cfg.now,
		m: authMetrics{
			failures:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAuthFailures, Help: "Webhook requests refused with 401, by reason."}, []string{"reason"}),
			authenticated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAuthenticated, Help: "Webhook requests authenticated, by method."}, []string{"method"}),
		},
		lastLogged: map[string]time.Time{},
		suppressed: map[string]int{},
	}
	for _, r := range []string{ReasonNoCredentials, ReasonBadToken, ReasonUntrustedCertificate, ReasonCertificateWithoutCluster, ReasonBadAccessKey} {
		a.m.failures.WithLabelValues(r)
	}
	reloads, err := registerReloads(reg)
	if err != nil {
		return nil, err
	}
	// prom.Register hands back the collector already registered under the
	// same name, so a second Authenticator on one registry adds to the
	// same series instead of panicking.
	if a.m.failures, err = prom.Register(reg, a.m.failures); err != nil {
		return nil, fmt.Errorf("registering authentication metrics: %w", err)
	}
	if a.m.authenticated, err = prom.Register(reg, a.m.authenticated); err != nil {
		return nil, fmt.Errorf("registering authentication metrics: %w", err)
	}

	if a.firehose, err = newFirehoseKeys(cfg.FirehoseAccessKeyFile, cfg.ReloadInterval, cfg.now, log, reloads); err != nil {
		return nil, err
	}
	var paths []string
	if cfg.TokenFile != "" {
		paths = append(paths, cfg.TokenFile)
	}
	if cfg.ClusterMapFile != "" {
		paths = append(paths, cfg.ClusterMapFile)
	}
	if len(paths) > 0 {
		a.state, err = newReloader("tokens", paths, cfg.ReloadInterval, cfg.now, log, reloads, func(b [][]byte) (*authState, error) {
			var tokens, cmap []byte
			if cfg.TokenFile != "" {
				tokens, b = b[0], b[1:]
			}
			if cfg.ClusterMapFile != "" {
				cmap = b[0]
			}
			return buildAuthState(cfg.TokenFile, tokens, cfg.ClusterMapFile, cmap)
		})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Require authenticates every request except to the public paths and
// answers 401 to the rest: the TLS listener.
func (a *Authenticator) Require(next http.Handler) http.Handler {
	return a.middleware(next, false)
}

// Optional lets requests without credentials through with an empty
// Identity, but still authenticates (and refuses wrong) credentials that
// are presented: the plain-HTTP --insecure-listen listener.
func (a *Authenticator) Optional(next http.Handler) http.Handler {
	return a.middleware(next, true)
}

func (a *Authenticator) middleware(next http.Handler, anonymous bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if publicPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		authenticate := a.authenticate
		if isFirehosePath(r.URL.Path) {
			authenticate = a.authenticateFirehose
		}
		id, reason, err := authenticate(r)
		// Nothing downstream needs the credential; dropping it keeps it
		// out of anything that might dump the request.
		r.Header.Del("Authorization")
		r.Header.Del(HeaderFirehoseAccessKey)
		switch {
		case reason == ReasonNoCredentials && anonymous:
			a.m.authenticated.WithLabelValues("none").Inc()
		case err != nil:
			a.refuse(w, r, reason, err)
			return
		default:
			a.m.authenticated.WithLabelValues(id.Method).Inc()
			a.log.Debug("authenticated webhook caller", "method", id.Method, "name", id.Name, "cluster", id.Cluster)
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// authenticate returns the caller's identity, or the reason and an error
// fit to show the caller. The error never contains a presented token.
//
// A presented client certificate decides alone: if it does not verify the
// request is refused even if it also carries a token, so that a broken
// mTLS setup is noticed instead of silently falling back.
func (a *Authenticator) authenticate(r *http.Request) (Identity, string, error) {
	var st *authState
	if a.state != nil {
		st = a.state.get()
	}
	if id, reason, ok, err := a.authenticatePubSub(r, st); ok {
		return id, reason, err
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return a.verifyCertificate(r.TLS.PeerCertificates, st)
	}
	header := r.Header.Get("Authorization")
	if header == "" {
		return Identity{}, ReasonNoCredentials, errors.New("authentication required: present a client certificate signed by the configured client CA or an Authorization: Bearer token")
	}
	scheme, token, _ := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, ReasonBadToken, errors.New("invalid Authorization header: use Bearer <token>")
	}
	if st == nil {
		return Identity{}, ReasonBadToken, errors.New("invalid bearer token")
	}
	e, ok := st.lookup(token)
	if !ok {
		return Identity{}, ReasonBadToken, errors.New("invalid bearer token")
	}
	return Identity{Method: MethodToken, Name: e.name, Cluster: e.cluster}, "", nil
}

func (a *Authenticator) verifyCertificate(chain []*x509.Certificate, st *authState) (Identity, string, error) {
	var roots *x509.CertPool
	if a.cas != nil {
		roots = a.cas.ClientCAs()
	}
	if roots == nil {
		return Identity{}, ReasonUntrustedCertificate, errors.New("client certificate not trusted: no client CA configured")
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   a.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(opts); err != nil {
		return Identity{}, ReasonUntrustedCertificate, fmt.Errorf("client certificate %q not trusted: %w", leaf.Subject.CommonName, err)
	}
	cn := leaf.Subject.CommonName
	cluster, mapped := "", false
	if st != nil {
		cluster, mapped = st.clients[cn]
	}
	if !mapped {
		if ValidateCluster(cn) != nil {
			return Identity{}, ReasonCertificateWithoutCluster, fmt.Errorf("client certificate %q names no cluster: map its CN under clients in the cluster map, or issue it with the cluster name as CN", cn)
		}
		cluster = cn
	}
	return Identity{Method: MethodMTLS, Name: cn, Cluster: cluster}, "", nil
}

func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, reason string, err error) {
	a.m.failures.WithLabelValues(reason).Inc()
	a.logFailure(r, reason, err)
	if isFirehosePath(r.URL.Path) {
		// Firehose reads only its own answer format.
		writeFirehose(w, http.StatusUnauthorized, firehoseRequestID(r), err.Error(), 0)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("WWW-Authenticate", `Bearer realm="auditpipe"`)
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(Response{Error: err.Error()})
}

func (a *Authenticator) logFailure(r *http.Request, reason string, err error) {
	a.logMu.Lock()
	now := a.now()
	if now.Sub(a.lastLogged[reason]) < logEvery {
		a.suppressed[reason]++
		a.logMu.Unlock()
		return
	}
	suppressed := a.suppressed[reason]
	a.lastLogged[reason], a.suppressed[reason] = now, 0
	a.logMu.Unlock()
	a.log.Warn("refusing unauthenticated webhook request", "reason", reason, "remote", r.RemoteAddr, "path", r.URL.Path, "suppressed", suppressed, "err", err)
}

// tokenEntry is one configured token; only its digest is kept.
type tokenEntry struct {
	digest  [sha256.Size]byte
	name    string
	cluster string
}

// authState is one consistent reading of the token file and cluster map.
type authState struct {
	tokens  []tokenEntry
	clients map[string]string // CN → cluster
}

// lookup finds the entry for token in time independent of the token and of
// which entry matches: the presented token is hashed to a fixed length and
// its digest compared with every entry's, without stopping at a match.
func (s *authState) lookup(token string) (tokenEntry, bool) {
	d := sha256.Sum256([]byte(token))
	found := 0
	idx := 0
	for i := range s.tokens {
		eq := subtle.ConstantTimeCompare(d[:], s.tokens[i].digest[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return tokenEntry{}, false
	}
	return s.tokens[idx], true
}

// credentialName keeps token and client names printable in logs.
var credentialName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// tokenSpec is one token as configured.
type tokenSpec struct {
	Name    string `json:"name"`
	Token   string `json:"token"`
	Cluster string `json:"cluster,omitempty"`
}

type tokenFile struct {
	Tokens []tokenSpec `json:"tokens"`
}

// ClusterMap binds credentials to clusters (the --cluster-map-file).
type ClusterMap struct {
	Clients []ClientBinding `json:"clients,omitempty"`
	Tokens  []TokenBinding  `json:"tokens,omitempty"`
}

// ClientBinding binds a client certificate's CN to a cluster.
type ClientBinding struct {
	CN      string `json:"cn"`
	Cluster string `json:"cluster"`
}

// TokenBinding binds the token with the given name to a cluster.
type TokenBinding struct {
	Name    string `json:"name"`
	Cluster string `json:"cluster"`
}

// Validate checks m, naming each bad entry.
func (m ClusterMap) Validate() error {
	var errs []error
	cns := map[string]bool{}
	for i, c := range m.Clients {
		switch {
		case c.CN == "":
			errs = append(errs, fmt.Errorf("clients[%d].cn is required", i))
		case cns[c.CN]:
			errs = append(errs, fmt.Errorf("clients[%d].cn %q is listed twice", i, c.CN))
		}
		cns[c.CN] = true
		if err := ValidateCluster(c.Cluster); err != nil {
			errs = append(errs, fmt.Errorf("clients[%d].cluster: %w", i, err))
		}
	}
	names := map[string]bool{}
	for i, t := range m.Tokens {
		switch {
		case !credentialName.MatchString(t.Name):
			errs = append(errs, fmt.Errorf("tokens[%d].name %q: use 1-128 letters, digits, '.', '_', ':', '@' or '-'", i, t.Name))
		case names[t.Name]:
			errs = append(errs, fmt.Errorf("tokens[%d].name %q is listed twice", i, t.Name))
		}
		names[t.Name] = true
		if err := ValidateCluster(t.Cluster); err != nil {
			errs = append(errs, fmt.Errorf("tokens[%d].cluster: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// buildAuthState parses and cross-checks the token file and the cluster
// map. Its errors name files, lines, entries and token names, never a
// token.
func buildAuthState(tokenPath string, tokens []byte, mapPath string, cmap []byte) (*authState, error) {
	var m ClusterMap
	if mapPath != "" {
		if err := yaml.UnmarshalStrict(cmap, &m); err != nil {
			return nil, fmt.Errorf("parsing cluster map %s: %w", mapPath, err)
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("cluster map %s: %w", mapPath, err)
		}
	}
	st := &authState{clients: map[string]string{}}
	for _, c := range m.Clients {
		st.clients[c.CN] = c.Cluster
	}
	if tokenPath == "" {
		if len(m.Tokens) > 0 {
			return nil, fmt.Errorf("cluster map %s: tokens are bound to clusters but no --token-file is configured", mapPath)
		}
		return st, nil
	}
	specs, err := parseTokens(tokens)
	if err != nil {
		return nil, fmt.Errorf("parsing token file %s: %w", tokenPath, err)
	}
	bound := map[string]string{}
	for _, t := range m.Tokens {
		bound[t.Name] = t.Cluster
	}
	var errs []error
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]string{}
	for i, s := range specs {
		at := fmt.Sprintf("tokens[%d]", i)
		if !credentialName.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("%s.name %q: use 1-128 letters, digits, '.', '_', ':', '@' or '-'", at, s.Name))
			continue
		}
		at = fmt.Sprintf("%s (%s)", at, s.Name)
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("%s: name listed twice", at))
		}
		names[s.Name] = true
		if len(s.Token) < minTokenLength {
			errs = append(errs, fmt.Errorf("%s: token shorter than %d characters: generate one with openssl rand -hex 32", at, minTokenLength))
		}
		if strings.ContainsFunc(s.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("%s: token contains whitespace or control characters", at))
		}
		d := sha256.Sum256([]byte(s.Token))
		if other, dup := digests[d]; dup {
			errs = append(errs, fmt.Errorf("%s: same token as %s", at, other))
		}
		digests[d] = s.Name
		cluster := s.Cluster
		if c, ok := bound[s.Name]; ok {
			if cluster != "" && cluster != c {
				errs = append(errs, fmt.Errorf("%s: bound to cluster %q in the token file and %q in the cluster map", at, cluster, c))
			}
			cluster = c
		}
		if cluster == "" {
			errs = append(errs, fmt.Errorf("%s: no cluster: give one in the token file or under tokens in the cluster map", at))
		} else if err := ValidateCluster(cluster); err != nil {
			errs = append(errs, fmt.Errorf("%s.cluster: %w", at, err))
		}
		st.tokens = append(st.tokens, tokenEntry{digest: d, name: s.Name, cluster: cluster})
	}
	for _, t := range m.Tokens {
		if !names[t.Name] {
			errs = append(errs, fmt.Errorf("cluster map %s: tokens entry %q names no token in %s", mapPath, t.Name, tokenPath))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("token file %s: %w", tokenPath, err)
	}
	return st, nil
}

// parseTokens reads the YAML form when the first meaningful line opens a
// "tokens:" key, and the line form otherwise.
func parseTokens(b []byte) ([]tokenSpec, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	yamlForm := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		yamlForm = line == "tokens:" || strings.HasPrefix(line, "tokens: ")
		break
	}
	if yamlForm {
		var f tokenFile
		if err := yaml.UnmarshalStrict(b, &f); err != nil {
			// sigs.k8s.io/yaml names lines and fields, not values.
			return nil, fmt.Errorf("decoding YAML: %w", err)
		}
		return f.Tokens, nil
	}
	var specs []tokenSpec
	sc = bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ",")
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("line %d: want token,name[,cluster]", n)
		}
		s := tokenSpec{Token: strings.TrimSpace(fields[0]), Name: strings.TrimSpace(fields[1])}
		if len(fields) == 3 {
			s.Cluster = strings.TrimSpace(fields[2])
		}
		specs = append(specs, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading lines: %w", err)
	}
	return specs, nil
}

// Compile-time check that *TLS supplies client CAs.
var _ CAPool = (*TLS)(nil)
