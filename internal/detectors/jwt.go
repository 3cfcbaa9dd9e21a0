package detectors

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// JWTConfig configures the unsigned-jwt detector (KEP-740). It judges the
// JWTRecords ingest writes in place of tokens (see package redact); it never
// sees a raw token.
type JWTConfig struct {
	// JWKSFile is a copy of the cluster's /openid/v1/jwks, the same file
	// ingest verifies signatures with. Here only its key ids are used: a
	// token naming a kid outside it is flagged. Default "" (no kid check;
	// the verified flag ingest computed is still judged).
	JWKSFile string `json:"jwks_file"`
	// AllowedAlgs are the signing algorithms a token may use. Default RS256,
	// ES256, ES384, ES512: what in-tree signing and KEP-740 external signers
	// produce. "none" can never be allowed.
	AllowedAlgs []string `json:"allowed_algs"`
	// MaxLifetime is the longest exp - iat accepted. Pod-bound tokens,
	// issued for a year with a warnafter claim an hour in, are judged by
	// warnafter - iat instead. Default 24h, the TokenRequest detector's
	// default maximum expirationSeconds.
	MaxLifetime Duration `json:"max_lifetime"`
	// ExternalIssuers are token issuers (iss) whose tokens are signed by
	// other keys, such as an OIDC identity provider whose tokens reach
	// TokenReviews; their tokens skip the kid and signature checks. Default
	// none.
	ExternalIssuers []string `json:"external_issuers"`
}

// jwtAlgs are the JOSE signature algorithms allowed_algs may name.
var jwtAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"}

func defaultJWTConfig() JWTConfig {
	return JWTConfig{
		AllowedAlgs: []string{"RS256", "ES256", "ES384", "ES512"},
		MaxLifetime: Duration(24 * time.Hour),
	}
}

func (c JWTConfig) validate(prefix string) error {
	var errs []error
	if len(c.AllowedAlgs) == 0 {
		errs = append(errs, fmt.Errorf("%s.allowed_algs must not be empty", prefix))
	}
	for _, a := range c.AllowedAlgs {
		if !slices.Contains(jwtAlgs, a) {
			errs = append(errs, fmt.Errorf("%s.allowed_algs: unknown algorithm %q (want one of %s)", prefix, a, strings.Join(jwtAlgs, ", ")))
		}
	}
	if c.MaxLifetime <= 0 {
		errs = append(errs, fmt.Errorf("%s.max_lifetime must be positive", prefix))
	}
	return errors.Join(errs...)
}

func buildJWT(cfg Config) ([]Detector, error) {
	c := cfg.UnsignedJWT
	d := &jwtDetector{
		allowed:     c.AllowedAlgs,
		maxLifetime: int64(time.Duration(c.MaxLifetime) / time.Second),
		external:    c.ExternalIssuers,
	}
	if c.JWKSFile != "" {
		ks, err := credential.LoadJWKS(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("unsigned_jwt.jwks_file: %w", err)
		}
		d.keys = ks
	}
	return []Detector{d}, nil
}

// jwtDetectorID is the unsigned-jwt detector's id.
const jwtDetectorID = "unsigned-jwt"

// MITRE ATT&CK techniques of unsigned-jwt findings: a token that was not
// minted by the cluster's signer is a forged credential; a genuine token
// that lives too long is alternate authentication material waiting to be
// stolen.
const (
	jwtMITREForge = "T1606"     // Forge Web Credentials
	jwtMITREToken = "T1550.001" // Use Alternate Authentication Material: Application Access Token
)

// jwtPodYear is the lifetime the apiserver gives pod-bound tokens in place
// of the hour the kubelet asks for (--service-account-extend-token-
// expiration), plus an hour of slack for the 3607 s request.
const jwtPodYear = 365*24*3600 + 3600

// jwtDetector flags tokens the cluster's signer did not mint, or minted to
// live too long, as they pass through TokenReviews, TokenRequests and
// service-account-token Secrets.
type jwtDetector struct {
	allowed     []string
	maxLifetime int64 // seconds
	keys        *credential.KeySet
	external    []string
}

func (d *jwtDetector) ID() string { return jwtDetectorID }

// jwtSite is where a token was read: what the finding's evidence names.
type jwtSite struct {
	what   string // "TokenReview", "TokenRequest", "Secret"
	field  string // e.g. "requestObject.spec.token"
	source string // pipeline.FromRequest or FromResponse
	// tok is the token field's decoded value: a string (a raw token) or an
	// object (ingest's credential.JWTRecord); present is false when the field
	// is absent.
	tok     any
	present bool
	base64  bool
	// reviewErr is a TokenReview response's status.error.
	reviewErr string
}

// jwtField reads body.<obj>.<key> from a body decoded by the event's shared
// cache. A missing or mistyped parent reads as absent, as the lenient typed
// decode this replaces did.
func jwtField(body any, obj, key string) (v any, present bool) {
	top, _ := body.(map[string]any)
	m, _ := top[obj].(map[string]any)
	v, present = m[key]
	return v, present
}

func (d *jwtDetector) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	ref := ev.ObjectRef
	if ref == nil || (ev.RequestObject == nil && ev.ResponseObject == nil) {
		return out
	}
	// Read the response first, then the request: the response is what the
	// apiserver acted on. Bodies are decoded once per event, shared with
	// every other reader.
	var site jwtSite
	switch {
	case ref.Resource == "tokenreviews" && ref.APIGroup == "authentication.k8s.io" && ev.Verb == "create":
		site = jwtSite{what: "TokenReview", field: "responseObject.spec.token", source: pipeline.FromResponse}
		site.tok, site.present = jwtFieldOf(ev, pipeline.FromResponse, "spec", "token")
		if e, _ := jwtFieldOf(ev, pipeline.FromResponse, "status", "error"); e != nil {
			site.reviewErr, _ = e.(string)
		}
		if !site.present {
			site.field, site.source = "requestObject.spec.token", pipeline.FromRequest
			site.tok, site.present = jwtFieldOf(ev, pipeline.FromRequest, "spec", "token")
		}
	case ref.Resource == "serviceaccounts" && ref.Subresource == "token" && ref.APIGroup == "" && ev.Verb == "create":
		site = jwtSite{what: "TokenRequest", field: "responseObject.status.token", source: pipeline.FromResponse}
		site.tok, site.present = jwtFieldOf(ev, pipeline.FromResponse, "status", "token")
	case ref.Resource == "secrets" && ref.APIGroup == "" && ref.Subresource == "" &&
		(ev.Verb == "create" || ev.Verb == "update" || ev.Verb == "patch"):
		// Only writes: a token planted in a Secret is news when it is
		// written, not each time the Secret is read back.
		site = jwtSite{what: "Secret", field: "responseObject.data.token", source: pipeline.FromResponse, base64: true}
		site.tok, site.present = jwtFieldOf(ev, pipeline.FromResponse, "data", "token")
		if !site.present {
			site.field, site.source = "requestObject.data.token", pipeline.FromRequest
			site.tok, site.present = jwtFieldOf(ev, pipeline.FromRequest, "data", "token")
		}
	default:
		return out
	}
	rec, ok := d.record(site)
	var probs []jwtProblem
	if ok {
		probs = d.judge(rec)
	}
	if site.reviewErr != "" {
		probs = append(probs, jwtReviewProblem(site.reviewErr))
	}
	if len(probs) == 0 {
		return out
	}
	return append(out, d.finding(ev, site, rec, ok, probs))
}

// record reads the token at site. Ingest has replaced it with a JWTRecord;
// a raw token (an event that bypassed ingest's redaction, or replayed from
// before it existed) is parsed here the same way, so it is judged alike and
// still never copied into a finding.
func (d *jwtDetector) record(site jwtSite) (credential.JWTRecord, bool) {
	if !site.present {
		return credential.JWTRecord{}, false
	}
	switch t := site.tok.(type) {
	case map[string]any:
		return jwtRecordFromBody(t)
	case jwtDecoded:
		return t.rec, t.ok
	}
	s, _ := site.tok.(string)
	if s == "" {
		return credential.JWTRecord{}, false
	}
	tok := []byte(s)
	if site.base64 {
		if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
			tok = dec
		}
	}
	if !credential.IsJWT(tok) {
		return credential.JWTRecord{}, false
	}
	return credential.NewJWTRecord(tok, d.keys), true
}

// jwtProblem is one reason a token is suspect.
type jwtProblem struct {
	sev   pipeline.Severity
	text  string // a clause for the summary, e.g. "signed with HS256"
	mitre string
}

// judge lists what is wrong with a token, most severe first.
func (d *jwtDetector) judge(rec credential.JWTRecord) []jwtProblem {
	var probs []jwtProblem
	add := func(sev pipeline.Severity, mitre, format string, args ...any) {
		probs = append(probs, jwtProblem{sev: sev, text: fmt.Sprintf(format, args...), mitre: mitre})
	}
	h, c := rec.Header, rec.Claims
	external := c.Iss != "" && slices.Contains(d.external, c.Iss)
	explained := false // a problem already explains why the signature cannot verify
	if rec.ParseError != "" {
		add(pipeline.SeverityMedium, jwtMITREForge, "malformed JWT (%s)", rec.ParseError)
	}
	switch {
	case strings.EqualFold(h.Alg, "none"):
		add(pipeline.SeverityCritical, jwtMITREForge, "unsigned JWT (alg %q)", h.Alg)
		explained = true
	case rec.Signature == credential.SignatureAbsent:
		add(pipeline.SeverityCritical, jwtMITREForge, "JWT with an empty signature (alg %q)", h.Alg)
		explained = true
	case !slices.Contains(d.allowed, h.Alg):
		add(pipeline.SeverityHigh, jwtMITREForge, "JWT signed with %s, outside the allowed %s", jwtQuote(h.Alg), strings.Join(d.allowed, "/"))
		explained = true
	}
	if !external {
		switch {
		case h.Kid == "":
			add(pipeline.SeverityMedium, jwtMITREForge, "JWT without a kid")
		case d.keys != nil && !d.keys.HasKID(h.Kid):
			add(pipeline.SeverityHigh, jwtMITREForge, "JWT kid %s not in the cluster's JWKS", jwtQuote(h.Kid))
			explained = true
		}
		if rec.Verified == credential.VerifiedNo && !explained {
			add(pipeline.SeverityHigh, jwtMITREForge, "JWT signature does not verify against the cluster's JWKS (%s)", rec.VerifyError)
		}
	}
	probs = append(probs, d.judgeLifetime(c)...)
	slices.SortStableFunc(probs, func(a, b jwtProblem) int { return int(b.sev) - int(a.sev) })
	return probs
}

// judgeLifetime flags tokens that live too long. Legacy secret-based
// tokens never expire by design; they are noted at low severity because the
// legacy-token detector already reports their creation and use, with more
// context (the auto-generated/manual/invalidated annotations).
func (d *jwtDetector) judgeLifetime(c credential.JWTClaims) []jwtProblem {
	if c.Iss == "kubernetes/serviceaccount" && c.Exp == nil {
		return []jwtProblem{{sev: pipeline.SeverityLow, mitre: jwtMITREToken, text: "legacy secret-based service-account token (no exp, no aud)"}}
	}
	if c.Exp == nil {
		return []jwtProblem{{sev: pipeline.SeverityMedium, mitre: jwtMITREToken, text: "JWT without exp (never expires)"}}
	}
	start := c.Iat
	if start == nil {
		start = c.Nbf
	}
	if start == nil {
		return nil
	}
	life := *c.Exp - *start
	if k := c.Kubernetes; k != nil && k.WarnAfter != nil {
		// A pod-bound token: the apiserver issued a year but warns after
		// the requested hour. Judge the hour, and the year against what
		// the apiserver would grant.
		if *k.WarnAfter-*start <= d.maxLifetime && life <= jwtPodYear {
			return nil
		}
		life = max(life, *k.WarnAfter-*start)
	}
	if life <= d.maxLifetime {
		return nil
	}
	return []jwtProblem{{sev: pipeline.SeverityMedium, mitre: jwtMITREToken,
		text: fmt.Sprintf("JWT valid for %s, above the %s maximum", jwtSeconds(life), jwtSeconds(d.maxLifetime))}}
}

// jwtReviewProblem judges a TokenReview the authenticator rejected: someone
// presented a token the cluster did not accept. An expired token is the
// common, benign case (a client that did not refresh; stale-token covers
// it), so it is medium; anything else (invalid bearer token, signature
// errors, unknown issuer) is a forgery attempt until shown otherwise.
func jwtReviewProblem(msg string) jwtProblem {
	sev := pipeline.SeverityHigh
	if strings.Contains(strings.ToLower(msg), "expired") {
		sev = pipeline.SeverityMedium
	}
	return jwtProblem{sev: sev, mitre: jwtMITREForge, text: "TokenReview rejected the token: " + jwtScrub(msg)}
}

func (d *jwtDetector) finding(ev *pipeline.Event, site jwtSite, rec credential.JWTRecord, isJWT bool, probs []jwtProblem) pipeline.Finding {
	slices.SortStableFunc(probs, func(a, b jwtProblem) int { return int(b.sev) - int(a.sev) })
	top := probs[0]
	f := pipeline.NewFinding(jwtDetectorID, ev, site.source+":"+site.field+":"+rec.SHA256)
	f.Severity, f.MITRE = top.sev, top.mitre

	var sb strings.Builder
	sb.WriteString(jwtCapitalize(top.text))
	fmt.Fprintf(&sb, " in a %s", site.what)
	switch site.what {
	case "TokenReview":
		fmt.Fprintf(&sb, " sent by %s", jwtOr(ev.User.Username, "an unknown user"))
	case "TokenRequest":
		fmt.Fprintf(&sb, " issued to %s", jwtOr(ev.User.Username, "an unknown user"))
	default:
		fmt.Fprintf(&sb, " %s/%s written by %s", ev.ObjectRef.Namespace, ev.ObjectRef.Name, jwtOr(ev.User.Username, "an unknown user"))
	}
	if isJWT {
		fmt.Fprintf(&sb, ": token for %s (alg %s, kid %s, sha256 %.12s)", jwtOr(rec.Claims.Sub, "no subject"), jwtQuote(rec.Header.Alg), jwtQuote(jwtShort(rec.Header.Kid)), rec.SHA256)
	}
	if len(probs) > 1 {
		fmt.Fprintf(&sb, "; %d more problem(s)", len(probs)-1)
	}
	f.Summary = sb.String()

	// Room for every piece of evidence below: grown by append, the slice
	// was copied three or four times per finding.
	f.Evidence = make([]pipeline.Evidence, 0, len(probs)+13)
	ev2 := func(field, value string) {
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: field, Value: value, Source: site.source})
	}
	for _, p := range probs {
		ev2("problem", p.sev.String()+": "+p.text)
	}
	if isJWT {
		ev2(site.field+".header.alg", rec.Header.Alg)
		ev2(site.field+".header.kid", jwtShort(rec.Header.Kid))
		if rec.Header.Typ != "" {
			ev2(site.field+".header.typ", rec.Header.Typ)
		}
		if len(rec.Header.Other) > 0 {
			ev2(site.field+".header.other", strings.Join(rec.Header.Other, ","))
		}
		ev2(site.field+".signature", rec.Signature)
		ev2(site.field+".verified", strings.TrimSuffix(rec.Verified+" "+rec.VerifyError, " "))
		ev2(site.field+".sha256", rec.SHA256)
		c := rec.Claims
		if c.Iss != "" {
			ev2(site.field+".claims.iss", c.Iss)
		}
		if c.Sub != "" {
			ev2(site.field+".claims.sub", c.Sub)
		}
		if c.Jti != "" {
			ev2(site.field+".claims.jti", c.Jti)
		}
		for name, v := range map[string]*int64{"exp": c.Exp, "iat": c.Iat} {
			if v != nil {
				ev2(site.field+".claims."+name, time.Unix(*v, 0).UTC().Format(time.RFC3339))
			}
		}
		slices.SortStableFunc(f.Evidence, func(a, b pipeline.Evidence) int { return jwtEvidenceRank(a) - jwtEvidenceRank(b) })
	}
	if site.reviewErr != "" {
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "responseObject.status.error", Value: jwtScrub(site.reviewErr), Source: pipeline.FromResponse})
	}
	return f
}

// jwtEvidenceRank keeps problems first and the rest in insertion order,
// except that the exp/iat pair (added from a map) is ordered exp, iat.
func jwtEvidenceRank(e pipeline.Evidence) int {
	switch {
	case e.Field == "problem":
		return 0
	case strings.HasSuffix(e.Field, ".claims.exp"):
		return 2
	case strings.HasSuffix(e.Field, ".claims.iat"):
		return 3
	}
	return 1
}

// jwtScrub removes anything JWT-shaped from free text copied into a
// finding: the apiserver's messages do not quote tokens, but a webhook
// authenticator's might.
func jwtScrub(s string) string {
	if credential.ContainsJWT([]byte(s)) {
		return "[message withheld: it contains a token]"
	}
	return s
}

func jwtQuote(s string) string { return strconv.Quote(s) }

// jwtShort caps attacker-chosen header values (a kid may be up to 1 KiB)
// so a summary stays readable in Slack.
func jwtShort(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func jwtOr(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func jwtCapitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// jwtSeconds renders a lifetime in the largest whole unit that reads well.
func jwtSeconds(s int64) string {
	switch {
	case s%86400 == 0:
		return strconv.FormatInt(s/86400, 10) + "d"
	case s%3600 == 0:
		return strconv.FormatInt(s/3600, 10) + "h"
	}
	return (time.Duration(s) * time.Second).String()
}
