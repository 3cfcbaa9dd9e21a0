// Package redact removes credentials from audit events before they leave
// ingest.
//
// The apiserver writes bearer tokens and Secret contents into audit events
// at Request and RequestResponse level: the token a TokenReview asks about,
// the token a TokenRequest returns, every value of a Secret and the copy of
// them kubectl keeps in the last-applied-configuration annotation. An audit
// pipeline that stores those turns its Kafka topics and ClickHouse tables
// into a credential store. Ingest therefore passes every event through
// Redactor.Event, which replaces each such value with a record describing
// it (JWTRecord, SecretRecord) and leaves every other byte of the event as
// it was.
package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Config configures a Redactor.
type Config struct {
	// JWKSFile is a copy of the cluster's /openid/v1/jwks. With it, each
	// token's signature is checked and JWTRecord.Verified is "yes" or
	// "no"; without it, "unknown". Optional.
	JWKSFile string `json:"jwks_file"`
	// FingerprintKey keys the HMAC written into SecretRecords so that equal
	// secret values can be matched across events. Optional: without it
	// secret values get no fingerprint. JWTs always get a plain SHA-256,
	// as their signature makes them unguessable.
	FingerprintKey string `json:"fingerprint_key"`
}

// verifyCacheSize bounds the memory of verification results. Clients reuse
// a token for up to an hour, so a TokenReview-heavy cluster presents the same
// few thousand tokens over and over; an RSA verification costs tens of
// microseconds, a map lookup nothing. When full the cache is simply cleared:
// the cost of that is a burst of re-verification, not a wrong answer.
const verifyCacheSize = 4096

// Redactor replaces credentials in audit events. It is safe for concurrent
// use.
type Redactor struct {
	keys  *KeySet
	fpKey []byte

	mu    sync.Mutex
	cache map[[sha256.Size]byte]verifyResult
}

type verifyResult struct{ verified, why string }

// New builds a Redactor, loading cfg.JWKSFile if set.
func New(cfg Config) (*Redactor, error) {
	r := &Redactor{cache: make(map[[sha256.Size]byte]verifyResult)}
	if cfg.JWKSFile != "" {
		ks, err := LoadJWKS(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("building redactor: %w", err)
		}
		r.keys = ks
	}
	if cfg.FingerprintKey != "" {
		r.fpKey = []byte(cfg.FingerprintKey)
	}
	return r, nil
}

// ErrNotObject reports an event that is not a JSON object.
var ErrNotObject = errors.New("event is not a JSON object")

// Event returns raw with every credential replaced. When raw holds none it
// returns raw itself and changed is false, without allocating. When err is
// non-nil (raw is not valid JSON), out is nil and the event must not be
// forwarded: the redactor could not tell where its secrets are.
//
// raw is never modified; a changed event is a new slice.
func (r *Redactor) Event(raw []byte) (out []byte, changed bool, err error) {
	if !mayHoldSecret(raw) {
		return raw, false, nil
	}
	if !json.Valid(raw) {
		return nil, false, errors.New("redacting event: not valid JSON")
	}
	start := skipWS(raw, 0)
	if raw[start] != '{' {
		return nil, false, fmt.Errorf("redacting event: %w", ErrNotObject)
	}
	p := pass{r: r}
	var bodies []member
	var resource, group string
	members(raw, start, func(m member) {
		switch {
		case fieldIs(m.key, "requestURI"):
			p.uri(raw, m)
		case fieldIs(m.key, "objectRef"):
			// Read it the way encoding/json (and so pipeline.DecodeEvent)
			// does when a key repeats: null clears the reference, a later
			// object updates only the fields it has, and a value of the
			// wrong type changes nothing.
			if string(raw[m.start:m.end]) == "null" {
				resource, group = "", ""
			}
			members(raw, m.start, func(f member) {
				switch {
				case fieldIs(f.key, "resource"):
					setString(&resource, raw, f)
				case fieldIs(f.key, "apiGroup"):
					setString(&group, raw, f)
				}
			})
		case fieldIs(m.key, "requestObject"), fieldIs(m.key, "responseObject"):
			bodies = append(bodies, m)
		}
	})
	secrets := resource == "secrets" && group == ""
	for _, m := range bodies {
		p.body(raw, m.start, m.end, secrets)
	}
	if len(p.edits) == 0 {
		return raw, false, nil
	}
	out, err = apply(raw, p.edits)
	if err != nil {
		return nil, false, fmt.Errorf("redacting event: %w", err)
	}
	return out, true, nil
}

// edit replaces b[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

func apply(b []byte, edits []edit) ([]byte, error) {
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	n := len(b)
	for i, e := range edits {
		if i > 0 && e.start < edits[i-1].end {
			// Cannot happen with the rules below; refuse rather than
			// emit an event with a secret half-replaced.
			return nil, errors.New("overlapping redactions")
		}
		n += len(e.repl) - (e.end - e.start)
	}
	out := make([]byte, 0, n)
	prev := 0
	for _, e := range edits {
		out = append(out, b[prev:e.start]...)
		out = append(out, e.repl...)
		prev = e.end
	}
	return append(out, b[prev:]...), nil
}

// pass collects the edits for one buffer (an event, or the JSON held in a
// last-applied-configuration annotation).
type pass struct {
	r     *Redactor
	edits []edit
}

func (p *pass) replace(start, end int, v any) {
	repl, err := json.Marshal(v)
	if err != nil {
		// Records are plain structs and strings: Marshal cannot fail. Fall
		// back to null so the secret is still removed.
		repl = []byte("null")
	}
	p.edits = append(p.edits, edit{start: start, end: end, repl: repl})
}

// body redacts a requestObject or responseObject. Token fields are redacted
// in every body whatever its resource: spec.token only exists in
// TokenReview and status.token only in TokenRequest, so doing it everywhere
// costs nothing and survives a missing or odd objectRef.
func (p *pass) body(b []byte, start, end int, secrets bool) {
	p.tokenFields(b, start)
	if secrets || isSecretKind(b, start) {
		p.secretBody(b, start, end)
	}
}

func isSecretKind(b []byte, start int) bool {
	var kind, version string
	members(b, start, func(m member) {
		switch {
		case fieldIs(m.key, "kind"):
			setString(&kind, b, m)
		case fieldIs(m.key, "apiVersion"):
			setString(&version, b, m)
		}
	})
	return version == "v1" && (kind == "Secret" || kind == "SecretList")
}

// tokenFields redacts spec.token (TokenReview) and status.token
// (TokenRequest).
func (p *pass) tokenFields(b []byte, start int) {
	members(b, start, func(m member) {
		if !fieldIs(m.key, "spec") && !fieldIs(m.key, "status") {
			return
		}
		members(b, m.start, func(f member) {
			if !fieldIs(f.key, "token") {
				return
			}
			if s, ok := stringValue(b, f.start, f.end); ok && s != "" {
				p.replace(f.start, f.end, p.r.record([]byte(s)))
			}
		})
	})
}

// secretBody redacts a Secret, a SecretList, or a patch of a Secret.
func (p *pass) secretBody(b []byte, start, end int) {
	switch b[start] {
	case '{':
		p.secretObject(b, start)
	case '[':
		p.jsonPatch(b, start)
	case '"':
		// Not a JSON object: the only sane reading is a patch in some
		// other encoding. All of it may be secret.
		p.secretValue(b, start, end, false)
	}
}

// lastApplied is the annotation in which kubectl apply keeps the whole
// object it last applied, data included.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func (p *pass) secretObject(b []byte, start int) {
	members(b, start, func(m member) {
		switch {
		case fieldIs(m.key, "data"):
			p.secretMap(b, m.start, true)
		case fieldIs(m.key, "stringData"):
			p.secretMap(b, m.start, false)
		case fieldIs(m.key, "items"):
			elements(b, m.start, func(s, _ int) { p.secretObject(b, s) })
		case fieldIs(m.key, "metadata"):
			members(b, m.start, func(md member) {
				if !fieldIs(md.key, "annotations") {
					return
				}
				members(b, md.start, func(a member) {
					if mapKeyIs(a.key, lastApplied) {
						p.lastApplied(b, a.start, a.end)
					}
				})
			})
		}
	})
}

// secretMap redacts every value of a data or stringData map, keeping the
// keys: which keys a Secret has is useful and not secret.
func (p *pass) secretMap(b []byte, start int, base64Values bool) {
	members(b, start, func(m member) {
		if string(b[m.start:m.end]) != "null" {
			p.secretValue(b, m.start, m.end, base64Values)
		}
	})
}

// secretValue replaces one secret value with a JWTRecord when it is a JWT
// (the token of a kubernetes.io/service-account-token Secret), else with a
// SecretRecord.
func (p *pass) secretValue(b []byte, start, end int, base64Value bool) {
	var val []byte
	if s, ok := stringValue(b, start, end); ok {
		val = []byte(s)
		if base64Value {
			if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
				val = dec
			}
		}
	} else {
		val = b[start:end]
	}
	if IsJWT(val) {
		p.replace(start, end, p.r.record(val))
		return
	}
	p.replace(start, end, p.r.secretRecord(val))
}

// jsonPatch redacts the values of a JSON Patch (RFC 6902) against a Secret.
// Every value is redacted whatever its path: a patch may replace /data, or
// /metadata with its annotations, or the whole object.
func (p *pass) jsonPatch(b []byte, start int) {
	elements(b, start, func(s, _ int) {
		var path string
		members(b, s, func(m member) {
			if fieldIs(m.key, "path") {
				path, _ = stringValue(b, m.start, m.end)
			}
		})
		members(b, s, func(m member) {
			if fieldIs(m.key, "value") && string(b[m.start:m.end]) != "null" {
				p.secretValue(b, m.start, m.end, strings.HasPrefix(path, "/data/"))
			}
		})
	})
}

// lastApplied redacts the Secret held as a JSON string in the
// last-applied-configuration annotation. The annotation stays a string (of
// the redacted object) so that metadata still decodes as map[string]string.
func (p *pass) lastApplied(b []byte, start, end int) {
	s, ok := stringValue(b, start, end)
	if !ok || s == "" {
		return
	}
	inner := []byte(s)
	i := skipWS(inner, 0)
	if !json.Valid(inner) || i >= len(inner) || inner[i] != '{' {
		rec, _ := json.Marshal(p.r.secretRecord(inner))
		p.replace(start, end, string(rec))
		return
	}
	q := pass{r: p.r}
	q.tokenFields(inner, i)
	q.secretObject(inner, i)
	if len(q.edits) == 0 {
		return
	}
	red, err := apply(inner, q.edits)
	if err != nil {
		rec, _ := json.Marshal(p.r.secretRecord(inner))
		red = rec
	}
	p.replace(start, end, string(red))
}

// tokenParams are query parameters that carry bearer tokens (RFC 6750
// §2.3, OpenID Connect), redacted whatever their value looks like.
var tokenParams = []string{"access_token", "id_token", "token"}

// uri redacts bearer tokens in the request URI: values of the tokenParams
// and anything JWT-shaped, in the query or the path. Requests proxied to
// services (…/services/x/proxy/…) carry whatever the client put there.
func (p *pass) uri(b []byte, m member) {
	s, ok := stringValue(b, m.start, m.end)
	if !ok {
		return
	}
	path, query, hasQuery := strings.Cut(s, "?")
	newPath := scrubJWTs(path)
	var sb strings.Builder
	if hasQuery {
		for i, kv := range strings.Split(query, "&") {
			if i > 0 {
				sb.WriteByte('&')
			}
			name, val, hasVal := strings.Cut(kv, "=")
			dname, err := url.QueryUnescape(name)
			if err != nil {
				dname = name
			}
			dval, err := url.QueryUnescape(val)
			if err != nil {
				dval = val
			}
			secret := hasVal && val != "" && (IsJWT([]byte(dval)) || ContainsJWT([]byte(dval)) ||
				slices.ContainsFunc(tokenParams, func(t string) bool { return strings.EqualFold(t, dname) }))
			if !secret {
				sb.WriteString(scrubJWTs(kv))
				continue
			}
			sum := sha256.Sum256([]byte(dval))
			sb.WriteString(name)
			sb.WriteString("=redacted:sha256:")
			sb.WriteString(hex.EncodeToString(sum[:]))
		}
	}
	out := newPath
	if hasQuery {
		out += "?" + sb.String()
	}
	if out != s {
		p.replace(m.start, m.end, out)
	}
}

// scrubJWTs replaces every JWT-looking run in s with its fingerprint.
func scrubJWTs(s string) string {
	b := []byte(s)
	var out []byte
	prev, from := 0, 0
	for {
		st, en, ok := findJWT(b, from)
		if !ok {
			break
		}
		sum := sha256.Sum256(b[st:en])
		out = append(out, b[prev:st]...)
		out = append(out, "redacted:sha256:"...)
		out = hex.AppendEncode(out, sum[:])
		prev, from = en, en
	}
	if out == nil {
		return s
	}
	return string(append(out, b[prev:]...))
}

// record builds the record for a token field: a JWTRecord when the value
// has a JWT's shape, malformed or not; else (a bootstrap or static token)
// a SecretRecord.
func (r *Redactor) record(tok []byte) any {
	if !IsJWT(tok) {
		return r.secretRecord(tok)
	}
	sum := sha256.Sum256(tok)
	rec := parseJWT(tok)
	rec.SHA256 = hex.EncodeToString(sum[:])
	r.mu.Lock()
	res, ok := r.cache[sum]
	r.mu.Unlock()
	if !ok {
		res.verified, res.why = verifyJWT(tok, &rec, r.keys)
		r.mu.Lock()
		if len(r.cache) >= verifyCacheSize {
			clear(r.cache)
		}
		r.cache[sum] = res
		r.mu.Unlock()
	}
	rec.Verified, rec.VerifyError = res.verified, res.why
	return rec
}

func (r *Redactor) secretRecord(val []byte) SecretRecord {
	rec := SecretRecord{Redacted: KindSecret, Length: len(val)}
	if r.fpKey != nil {
		m := hmac.New(sha256.New, r.fpKey)
		m.Write(val)
		rec.HMACSHA256 = hex.EncodeToString(m.Sum(nil))
	}
	return rec
}

// mayHoldSecret is the pre-check run on every event: it must never say no
// to an event with a secret, and should say no, fast and without
// allocating, to the common event without a body.
//
// Secrets live in bodies (requestObject/responseObject) or the request
// URI. A body key ends in "bject" right before its closing quote; in the
// URI a token shows as "token" in a parameter name or "eyJ" at the start of
// a JWT. encoding/json matches keys case-insensitively and decodes \u
// escapes, and URIs may percent-encode any byte, so the literal checks are
// case-insensitive and any escape that spells a letter or digit (which
// neither Go's JSON encoder nor a normal client ever writes) sends the
// event to the full scan.
func mayHoldSecret(b []byte) bool {
	return hasBodyKey(b) ||
		bytes.Contains(b, []byte("eyJ")) ||
		containsToken(b) ||
		hasOddEscape(b, '%', 2) ||
		hasOddEscape(b, 'u', 4)
}

// hasBodyKey reports whether some string in b ends in "bject", in any case.
func hasBodyKey(b []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return false
		}
		q := i + j
		if q >= 5 && bytes.EqualFold(b[q-5:q], []byte("bject")) {
			return true
		}
		i = q + 1
	}
}

// containsToken reports whether b contains "token" in any case. It anchors
// on the 'k', the rarest letter of the word in audit events, searching for
// each case separately because IndexByte is vectorised and IndexAny is not.
func containsToken(b []byte) bool {
	return tokenAround(b, 'k') || tokenAround(b, 'K')
}

func tokenAround(b []byte, k byte) bool {
	for i := 2; i < len(b)-2; {
		j := bytes.IndexByte(b[i:len(b)-2], k)
		if j < 0 {
			return false
		}
		p := i + j
		if bytes.EqualFold(b[p-2:p+3], []byte("token")) {
			return true
		}
		i = p + 1
	}
	return false
}

// hasOddEscape reports an escape no ordinary writer produces: a
// percent-escape "%XX" (lead '%', n=2) of an unreserved character, or a
// JSON "\uXXXX" (lead 'u' after a backslash, n=4) of printable ASCII other
// than the <, > and & that Go's encoder escapes.
func hasOddEscape(b []byte, lead byte, n int) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], lead)
		if j < 0 {
			return false
		}
		k := i + j
		i = k + 1
		if lead == 'u' && (k == 0 || b[k-1] != '\\') {
			continue
		}
		if k+n >= len(b) {
			return false
		}
		v := 0
		ok := true
		for _, c := range b[k+1 : k+1+n] {
			d, isHex := hexVal(c)
			if !isHex {
				ok = false
				break
			}
			v = v<<4 | d
		}
		if ok && oddEscape(lead, v) {
			return true
		}
	}
}

func hexVal(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

func oddEscape(lead byte, v int) bool {
	if lead == '%' {
		return v < 0x80 && (isB64URL(byte(v)) || v == '.' || v == '~')
	}
	return v >= 0x20 && v < 0x7f && v != '<' && v != '>' && v != '&'
}

// setString stores m's value in dst when it is a string, as encoding/json
// does for a string field (null and other types leave dst unchanged).
func setString(dst *string, b []byte, m member) {
	if v, ok := stringValue(b, m.start, m.end); ok {
		*dst = v
	}
}
