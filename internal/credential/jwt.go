package credential

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// Values of JWTRecord.Redacted and SecretRecord.Redacted: they tell a reader
// which record a redacted field holds.
const (
	KindJWT    = "jwt"
	KindSecret = "secret"
)

// Values of JWTRecord.Signature.
const (
	SignaturePresent = "present"
	SignatureAbsent  = "absent"
)

// Values of JWTRecord.Verified.
const (
	// VerifiedYes: the signature verifies with a key of the configured JWKS.
	VerifiedYes = "yes"
	// VerifiedNo: a JWKS is configured and the signature does not verify
	// with it (VerifyError says why), or the token cannot verify at all
	// (alg none, no signature, unparseable header).
	VerifiedNo = "no"
	// VerifiedUnknown: no JWKS was configured, so nothing was checked.
	VerifiedUnknown = "unknown"
)

// JWTRecord replaces a JSON Web Token in a redacted audit event. It keeps
// what detectors judge a token by and nothing that would let a reader use
// it: the signature bytes and any claim not listed here are dropped. The
// JSON form is what ingest writes in place of the token string, e.g.
//
//	{"redacted":"jwt","header":{"alg":"RS256","kid":"abc"},
//	 "claims":{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:ns:sa",
//	   "aud":["https://kubernetes.default.svc"],"exp":1700031536,"iat":1700027929,"jti":"…",
//	   "kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"sa","uid":"…"},"warnafter":1700031536}},
//	 "signature":"present","verified":"yes","sha256":"…","length":912}
type JWTRecord struct {
	// Redacted is always KindJWT.
	Redacted string    `json:"redacted"`
	Header   JWTHeader `json:"header"`
	Claims   JWTClaims `json:"claims"`
	// Signature is SignaturePresent or SignatureAbsent (empty third
	// segment, the shape of an alg "none" token).
	Signature string `json:"signature"`
	// Verified is VerifiedYes, VerifiedNo or VerifiedUnknown.
	Verified string `json:"verified"`
	// VerifyError says why Verified is "no": one of the VerifyErr*
	// constants, or a parse problem.
	VerifyError string `json:"verify_error,omitempty"`
	// ParseError is set when the token is not a well-formed JWS; the
	// fields above hold whatever could still be read.
	ParseError string `json:"parse_error,omitempty"`
	// SHA256 is the hex SHA-256 of the token as presented, so the same
	// token can be recognised across events (and matched against a token
	// an operator holds) without storing it.
	SHA256 string `json:"sha256"`
	// Length is the token's length in bytes.
	Length int `json:"length"`
}

// JWTHeader is the JOSE header of a redacted token.
type JWTHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
	// Other names any further header parameters, sorted (for example jwk,
	// jku or x5u, which ask a verifier to trust a key the token brings
	// along). Their values are not kept.
	Other []string `json:"other,omitempty"`
}

// JWTClaims are the registered claims and Kubernetes' own claims of a
// redacted token. Times are seconds since the epoch; a nil pointer means
// the claim was absent.
type JWTClaims struct {
	Iss        string         `json:"iss,omitempty"`
	Sub        string         `json:"sub,omitempty"`
	Aud        []string       `json:"aud,omitempty"`
	Exp        *int64         `json:"exp,omitempty"`
	Iat        *int64         `json:"iat,omitempty"`
	Nbf        *int64         `json:"nbf,omitempty"`
	Jti        string         `json:"jti,omitempty"`
	Kubernetes *JWTKubernetes `json:"kubernetes.io,omitempty"`
}

// JWTKubernetes holds the service-account claims. Bound tokens carry them
// under "kubernetes.io"; legacy secret-based tokens as flat
// "kubernetes.io/serviceaccount/…" claims, which are mapped here too.
type JWTKubernetes struct {
	Namespace      string        `json:"namespace,omitempty"`
	ServiceAccount *JWTObjectRef `json:"serviceaccount,omitempty"`
	Pod            *JWTObjectRef `json:"pod,omitempty"`
	Node           *JWTObjectRef `json:"node,omitempty"`
	Secret         *JWTObjectRef `json:"secret,omitempty"`
	// WarnAfter is when the apiserver starts annotating uses of the token
	// as stale: set on the one-year tokens it issues to pods in place of
	// the one hour they asked for.
	WarnAfter *int64 `json:"warnafter,omitempty"`
}

// JWTObjectRef names the object a token is bound to.
type JWTObjectRef struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
}

// SecretRecord replaces a secret value that is not a JWT: Secret data and
// stringData values, opaque bearer tokens, a Secret's last-applied copy.
type SecretRecord struct {
	// Redacted is always KindSecret.
	Redacted string `json:"redacted"`
	// Length is the value's length in bytes (after base64 decoding for
	// Secret data).
	Length int `json:"length"`
	// HMACSHA256 is the hex HMAC-SHA256 of the value under
	// Config.FingerprintKey, present only when a key is configured: a
	// plain hash of a short password could be reversed by guessing.
	HMACSHA256 string `json:"hmac_sha256,omitempty"`
}

// ParseJWTRecord decodes a redacted field; ok is false when raw is not a
// JWTRecord (a SecretRecord, a raw string, or anything else).
func ParseJWTRecord(raw []byte) (rec JWTRecord, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return JWTRecord{}, false
	}
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Redacted != KindJWT {
		return JWTRecord{}, false
	}
	return rec, true
}

// IsJWT reports whether tok has the shape of a compact JWS or JWE: at least
// three dot-separated segments, the first base64url of a JSON object. It is
// deliberately loose, so that a malformed token is still handled as one.
func IsJWT(tok []byte) bool {
	tok = bytes.TrimSpace(tok)
	if bytes.Count(tok, []byte{'.'}) < 2 {
		return false
	}
	if bytes.HasPrefix(tok, []byte("eyJ")) || bytes.HasPrefix(tok, []byte("ew")) {
		return true
	}
	head, _, _ := bytes.Cut(tok, []byte{'.'})
	dec, err := b64(string(head))
	return err == nil && bytes.HasPrefix(bytes.TrimLeft(dec, " \t\r\n"), []byte("{"))
}

// ContainsJWT reports whether b holds anything that looks like a JWT, by
// the same linear search the redactor uses on text. Tests of other
// packages use it to prove no token got through.
func ContainsJWT(b []byte) bool {
	found := false
	FindJWTs(b, func(int, int) { found = true })
	return found
}

// NewJWTRecord builds the record for tok, verifying its signature against
// keys when keys is non-nil. tok is only read.
func NewJWTRecord(tok []byte, keys *KeySet) JWTRecord {
	sum := sha256.Sum256(tok)
	rec := ParseJWT(tok)
	rec.SHA256 = hex.EncodeToString(sum[:])
	rec.Verified, rec.VerifyError = VerifyJWT(tok, &rec, keys)
	return rec
}

// ParseJWT fills everything but SHA256 and the verification result.
func ParseJWT(tok []byte) JWTRecord {
	rec := JWTRecord{Redacted: KindJWT, Length: len(tok), Signature: SignatureAbsent}
	var buf [3]string
	problems := buf[:0]
	tok = bytes.TrimSpace(tok)
	// The first three dot-separated segments, without splitting the token
	// into a slice of all of them.
	n := bytes.Count(tok, []byte{'.'}) + 1
	head, rest, _ := bytes.Cut(tok, []byte{'.'})
	claims, rest, _ := bytes.Cut(rest, []byte{'.'})
	sig, _, _ := bytes.Cut(rest, []byte{'.'})
	switch {
	case n == 5:
		problems = append(problems, "5 segments: an encrypted JWE, not a signed token")
	case n != 3:
		problems = append(problems, fmt.Sprintf("%d segments, want 3", n))
	}
	if n >= 3 && len(sig) > 0 {
		rec.Signature = SignaturePresent
	}
	if p := parseHeader(head, &rec.Header); p != "" {
		problems = append(problems, p)
	}
	if n >= 2 {
		if p := parseClaims(claims, &rec.Claims); p != "" {
			problems = append(problems, p)
		}
	}
	rec.ParseError = strings.Join(problems, "; ")
	return rec
}

// VerifyJWT decides rec.Verified. Tokens that cannot verify whatever the
// keys (alg none, no signature, a header that does not parse) are "no"
// even without a JWKS, so that a detector need not re-derive that.
func VerifyJWT(tok []byte, rec *JWTRecord, keys *KeySet) (verified, why string) {
	switch {
	case strings.EqualFold(rec.Header.Alg, "none"):
		return VerifiedNo, "alg none"
	case rec.Signature == SignatureAbsent:
		return VerifiedNo, VerifyErrNoSignature
	case rec.ParseError != "" && rec.Header.Alg == "":
		return VerifiedNo, "unparseable header"
	case keys == nil:
		return VerifiedUnknown, ""
	}
	tok = bytes.TrimSpace(tok)
	dot := bytes.LastIndexByte(tok, '.')
	sig, err := b64(string(tok[dot+1:]))
	if err != nil {
		return VerifiedNo, "signature is not base64url"
	}
	if why := keys.verify(rec.Header.Alg, rec.Header.Kid, tok[:dot], sig); why != "" {
		return VerifiedNo, why
	}
	return VerifiedYes, ""
}
