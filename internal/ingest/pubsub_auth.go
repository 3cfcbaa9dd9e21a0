package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/auditpipe/auditpipe/internal/credential"
)

// Authentication methods of Pub/Sub push requests, in Identity.Method.
const (
	// MethodOIDC: the push subscription's Google-signed OIDC token.
	MethodOIDC = "oidc"
	// MethodQueryToken: a --token-file token in the push endpoint's
	// ?token= query parameter, for subscriptions without authentication.
	MethodQueryToken = "query_token"
)

// ReasonBadOIDCToken is MetricAuthFailures' reason for a push OIDC token
// that does not verify: bad signature, alg, issuer, audience, email,
// expiry, or no binding to a cluster. The 401's message says which.
const ReasonBadOIDCToken = "bad_oidc_token"

// PubSubPathPrefix is where Pub/Sub push requests arrive; only there are
// OIDC tokens and ?token= accepted.
const PubSubPathPrefix = "/pubsub"

// Limits of OIDC token verification.
const (
	// DefaultOIDCClockSkew is how far the token's exp and iat may be off
	// ingest's clock. Google's tokens live an hour and are minted just
	// before the push; a minute covers an ordinary NTP-synced host.
	DefaultOIDCClockSkew = time.Minute
	// maxOIDCTokenBytes bounds the work a presented token can cause: a
	// Google ID token is about 1 KiB. The header limit bounds it anyway;
	// this keeps the JSON decodes small.
	maxOIDCTokenBytes = 16 << 10
	// maxOIDCLifetime refuses tokens valid for longer than Google issues
	// them (one hour), with room for skew: a long-lived token is not one
	// Pub/Sub minted.
	maxOIDCLifetime = time.Hour + 5*time.Minute
)

// googleIssuers are the iss values of Google-signed ID tokens; Google's
// documentation and its libraries accept both spellings.
var googleIssuers = map[string]bool{"https://accounts.google.com": true, "accounts.google.com": true}

// PubSubAuthConfig says where the push subscriptions' OIDC trust lives.
// Both files are re-read when their content changes.
type PubSubAuthConfig struct {
	// JWKSFile is Google's signing keys as a JWKS document: a copy of
	// https://www.googleapis.com/oauth2/v3/certs, refreshed by the
	// operator (Google rotates them every few weeks, publishing the next
	// key ahead of use).
	JWKSFile string
	// BindingsFile binds each (audience, service-account email) pair a
	// push subscription signs with to a cluster, as strict YAML:
	// bindings: [{name, audience, email, cluster}].
	BindingsFile string
	// ReloadInterval bounds how often the files are checked. Default
	// DefaultReloadInterval.
	ReloadInterval time.Duration
	// ClockSkew is DefaultOIDCClockSkew when zero.
	ClockSkew time.Duration

	now func() time.Time
}

// Validate checks c, naming each bad setting by its flag.
func (c PubSubAuthConfig) Validate() error {
	var errs []error
	if (c.JWKSFile == "") != (c.BindingsFile == "") {
		errs = append(errs, errors.New("--pubsub-jwks-file and --pubsub-bindings-file go together: pass both to accept Pub/Sub OIDC push tokens"))
	}
	if c.ReloadInterval < 0 {
		errs = append(errs, errors.New("credential-reload-interval must not be negative"))
	}
	if c.ClockSkew < 0 || c.ClockSkew > 10*time.Minute {
		errs = append(errs, fmt.Errorf("pubsub clock skew must be between 0 and 10m, got %s", c.ClockSkew))
	}
	return errors.Join(errs...)
}

// PubSubBinding binds the OIDC tokens a push subscription sends (its
// --push-auth-token-audience and --push-auth-service-account) to a
// cluster.
type PubSubBinding struct {
	Name     string `json:"name"`
	Audience string `json:"audience"`
	Email    string `json:"email"`
	Cluster  string `json:"cluster"`
}

type pubSubBindings struct {
	Bindings []PubSubBinding `json:"bindings"`
}

// pubSubState is one consistent reading of the JWKS and bindings files.
type pubSubState struct {
	keys     *credential.KeySet
	bindings map[[2]string]PubSubBinding // (audience, email) → binding
}

// PubSubAuth verifies Pub/Sub push OIDC tokens. Install it on an
// Authenticator with WithPubSub.
type PubSubAuth struct {
	state *reloader[pubSubState]
	skew  time.Duration
	now   func() time.Time
}

// NewPubSubAuth loads the JWKS and bindings files; they must be valid at
// start. It returns nil, nil when neither is configured.
func NewPubSubAuth(cfg PubSubAuthConfig, log *slog.Logger, reg prometheus.Registerer) (*PubSubAuth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.JWKSFile == "" {
		return nil, nil
	}
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = DefaultReloadInterval
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultOIDCClockSkew
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &PubSubAuth{skew: cfg.ClockSkew, now: cfg.now}
	reloads, err := registerReloads(reg)
	if err != nil {
		return nil, err
	}
	p.state, err = newReloader("pubsub", []string{cfg.JWKSFile, cfg.BindingsFile}, cfg.ReloadInterval, cfg.now, log, reloads,
		func(b [][]byte) (*pubSubState, error) {
			return buildPubSubState(cfg.JWKSFile, b[0], cfg.BindingsFile, b[1])
		})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func buildPubSubState(jwksPath string, jwks []byte, bindingsPath string, bindings []byte) (*pubSubState, error) {
	keys, err := credential.ParseJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", jwksPath, err)
	}
	var f pubSubBindings
	if err := yaml.UnmarshalStrict(bindings, &f); err != nil {
		return nil, fmt.Errorf("parsing pubsub bindings %s: %w", bindingsPath, err)
	}
	st := &pubSubState{keys: keys, bindings: map[[2]string]PubSubBinding{}}
	var errs []error
	names := map[string]bool{}
	for i, b := range f.Bindings {
		at := fmt.Sprintf("bindings[%d]", i)
		if !credentialName.MatchString(b.Name) {
			errs = append(errs, fmt.Errorf("%s.name %q: use 1-128 letters, digits, '.', '_', ':', '@' or '-'", at, b.Name))
		} else if names[b.Name] {
			errs = append(errs, fmt.Errorf("%s.name %q is listed twice", at, b.Name))
		}
		names[b.Name] = true
		if b.Audience == "" {
			errs = append(errs, fmt.Errorf("%s.audience is required: the subscription's --push-auth-token-audience (by default its push endpoint URL)", at))
		}
		if !strings.Contains(b.Email, "@") {
			errs = append(errs, fmt.Errorf("%s.email %q: the subscription's --push-auth-service-account", at, b.Email))
		}
		if err := ValidateCluster(b.Cluster); err != nil {
			errs = append(errs, fmt.Errorf("%s.cluster: %w", at, err))
		}
		k := [2]string{b.Audience, b.Email}
		if other, dup := st.bindings[k]; dup {
			errs = append(errs, fmt.Errorf("%s: same audience and email as %q", at, other.Name))
		}
		st.bindings[k] = b
	}
	if len(f.Bindings) == 0 {
		errs = append(errs, errors.New("no bindings: list at least one {name, audience, email, cluster}"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pubsub bindings %s: %w", bindingsPath, err)
	}
	return st, nil
}

// oidcClaims are the claims of a Pub/Sub push token Google documents.
type oidcClaims struct {
	Iss           string          `json:"iss"`
	Aud           json.RawMessage `json:"aud"`
	Email         string          `json:"email"`
	EmailVerified json.RawMessage `json:"email_verified"`
	Exp           *float64        `json:"exp"`
	Iat           *float64        `json:"iat"`
}

// verify checks a push OIDC token and returns the identity of the binding
// it matches. Errors name the failed check and never contain the token.
func (p *PubSubAuth) verify(token string) (Identity, error) {
	if len(token) > maxOIDCTokenBytes {
		return Identity{}, errors.New("OIDC token too large")
	}
	h, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return Identity{}, errors.New("OIDC token is not a JWS compact serialization")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(h, &header); err != nil {
		return Identity{}, fmt.Errorf("decoding OIDC token header: %w", err)
	}
	// Google signs push tokens with RS256 only. Pinning it refuses alg
	// none, HMAC with a public key as secret, and every downgrade.
	if header.Alg != "RS256" {
		return Identity{}, fmt.Errorf("OIDC token alg %s: only RS256 is accepted", quoteShort(header.Alg))
	}
	sigBytes, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(sigBytes) == 0 {
		return Identity{}, errors.New("OIDC token signature is not base64url")
	}
	st := p.state.get()
	if err := st.keys.Verify(header.Alg, header.Kid, []byte(token[:len(h)+1+len(payload)]), sigBytes); err != nil {
		return Identity{}, fmt.Errorf("OIDC token signature: %w (kid %s; refresh --pubsub-jwks-file from https://www.googleapis.com/oauth2/v3/certs if Google rotated its keys)", err, quoteShort(header.Kid))
	}
	// Only a verified payload is looked at.
	var c oidcClaims
	if err := decodeSegment(payload, &c); err != nil {
		return Identity{}, fmt.Errorf("decoding OIDC token claims: %w", err)
	}
	if !googleIssuers[c.Iss] {
		return Identity{}, fmt.Errorf("OIDC token iss %s is not Google's", quoteShort(c.Iss))
	}
	now := p.now()
	if c.Exp == nil || c.Iat == nil {
		return Identity{}, errors.New("OIDC token lacks exp or iat")
	}
	exp, iat := unixTime(*c.Exp), unixTime(*c.Iat)
	switch {
	case !now.Before(exp.Add(p.skew)):
		return Identity{}, fmt.Errorf("OIDC token expired at %s", exp.UTC().Format(time.RFC3339))
	case iat.After(now.Add(p.skew)):
		return Identity{}, fmt.Errorf("OIDC token issued in the future (%s): check the clocks", iat.UTC().Format(time.RFC3339))
	case exp.Sub(iat) > maxOIDCLifetime:
		return Identity{}, fmt.Errorf("OIDC token valid for %s, longer than Google issues push tokens", exp.Sub(iat).Round(time.Second))
	}
	if !jsonTrue(c.EmailVerified) {
		return Identity{}, errors.New("OIDC token email is not verified (email_verified)")
	}
	var auds []string
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		auds = []string{one}
	} else if json.Unmarshal(c.Aud, &auds) != nil {
		return Identity{}, errors.New("OIDC token aud is neither a string nor a list of strings")
	}
	for _, aud := range auds {
		if b, ok := st.bindings[[2]string{aud, c.Email}]; ok {
			return Identity{Method: MethodOIDC, Name: b.Name, Cluster: b.Cluster}, nil
		}
	}
	return Identity{}, fmt.Errorf("no pubsub binding for OIDC token audience %s and email %s: add one to --pubsub-bindings-file", quoteShort(strings.Join(auds, ",")), quoteShort(c.Email))
}

// unixTime turns a NumericDate into a time, clamping absurd values so the
// comparisons above cannot overflow.
func unixTime(v float64) time.Time {
	const limit = 1 << 40 // about 36,000 years
	switch {
	case v != v: // NaN
		v = 0
	case v > limit:
		v = limit
	case v < -limit:
		v = -limit
	}
	return time.Unix(int64(v), 0)
}

// jsonTrue accepts true and "true": Google's tokens carry a boolean, some
// issuers a string.
func jsonTrue(raw json.RawMessage) bool {
	s := string(bytes.TrimSpace(raw))
	return s == "true" || s == `"true"`
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// isJWT reports a token shaped like a JWS compact serialization: three
// base64url segments. Pub/Sub's push tokens are; ingest's own tokens
// (openssl rand -hex 32) are not.
func isJWT(token string) bool {
	return strings.Count(token, ".") == 2 && strings.HasPrefix(token, "eyJ")
}

// WithPubSub makes a accept Pub/Sub push requests under PubSubPathPrefix:
// a Google-signed OIDC token verified by p (which may be nil: then such
// tokens are refused with a message saying what to configure), or a
// --token-file token in the ?token= query parameter. It returns a.
func (a *Authenticator) WithPubSub(p *PubSubAuth) *Authenticator {
	a.pubsub, a.pubsubOn = p, true
	a.m.failures.WithLabelValues(ReasonBadOIDCToken)
	return a
}

// authenticatePubSub authenticates a request to PubSubPathPrefix. handled
// is false when the request carries no Pub/Sub credential, so that the
// usual checks (client certificate, bearer token) apply. It runs before
// the client-certificate check so that a ?token= is always stripped. The ?token=
// parameter is removed from r either way: nothing downstream needs it,
// and nothing may log it.
func (a *Authenticator) authenticatePubSub(r *http.Request, st *authState) (id Identity, reason string, handled bool, err error) {
	if !a.pubsubOn || (r.URL.Path != PubSubPathPrefix && !strings.HasPrefix(r.URL.Path, PubSubPathPrefix+"/")) {
		return Identity{}, "", false, nil
	}
	q := r.URL.Query()
	if q.Has("token") {
		token := q.Get("token")
		q.Del("token")
		r.URL.RawQuery = q.Encode()
		// The raw request line keeps it too; nothing here logs it, but a
		// handler wrapped around ingest might.
		r.RequestURI = r.URL.RequestURI()
		if st == nil || token == "" {
			return Identity{}, ReasonBadToken, true, errors.New("invalid token query parameter")
		}
		e, ok := st.lookup(token)
		if !ok {
			return Identity{}, ReasonBadToken, true, errors.New("invalid token query parameter")
		}
		return Identity{Method: MethodQueryToken, Name: e.name, Cluster: e.cluster}, "", true, nil
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || !isJWT(token) {
		return Identity{}, "", false, nil
	}
	if a.pubsub == nil {
		return Identity{}, ReasonBadOIDCToken, true, errors.New("OIDC push tokens are not accepted: configure --pubsub-jwks-file and --pubsub-bindings-file")
	}
	id, err = a.pubsub.verify(token)
	if err != nil {
		return Identity{}, ReasonBadOIDCToken, true, err
	}
	return id, "", true, nil
}
