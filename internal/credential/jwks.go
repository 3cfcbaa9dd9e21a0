package credential

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
)

// KeySet is the public half of a cluster's service-account signing keys, as
// served at /openid/v1/jwks. The apiserver never audits that endpoint, so
// operators hand auditpipe a copy of it.
type KeySet struct {
	keys []publicKey
}

type publicKey struct {
	kid string
	alg string // optional in a JWK; when set, a token must use exactly it
	pub crypto.PublicKey
}

// jwk is the subset of RFC 7517 fields the apiserver writes for its keys.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// LoadJWKS reads a JWKS document from path; see ParseJWKS.
func LoadJWKS(path string) (*KeySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading jwks: %w", err)
	}
	ks, err := ParseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

// ParseJWKS reads a JWKS document ({"keys":[…]}). RSA and EC (P-256, P-384,
// P-521) signing keys are kept; keys of other types or with use "enc" are
// skipped, since no service-account token can be verified with them. A
// document with no usable key is an error: verifying against an empty set
// would call every token forged.
func ParseJWKS(data []byte) (*KeySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing jwks: %w", err)
	}
	ks := &KeySet{}
	var errs []error
	for i, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			errs = append(errs, fmt.Errorf("parsing jwks key %d (kid %q): %w", i, k.Kid, err))
			continue
		}
		if pub == nil {
			continue
		}
		ks.keys = append(ks.keys, publicKey{kid: k.Kid, alg: k.Alg, pub: pub})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("parsing jwks: no RSA or EC signing key")
	}
	return ks, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64Int(k.N)
		if err != nil {
			return nil, fmt.Errorf("decoding n: %w", err)
		}
		e, err := b64Int(k.E)
		if err != nil {
			return nil, fmt.Errorf("decoding e: %w", err)
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, errors.New("unsupported RSA exponent")
		}
		if n.BitLen() < 1024 {
			return nil, fmt.Errorf("RSA modulus of %d bits is too short", n.BitLen())
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64Fixed(k.X, size)
		if err != nil {
			return nil, fmt.Errorf("decoding x: %w", err)
		}
		y, err := b64Fixed(k.Y, size)
		if err != nil {
			return nil, fmt.Errorf("decoding y: %w", err)
		}
		// ParseUncompressedPublicKey also checks the point is on the curve.
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, err
		}
		return pub, nil
	}
	return nil, nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := b64(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	return new(big.Int).SetBytes(b), nil
}

func b64Fixed(s string, size int) ([]byte, error) {
	b, err := b64(s)
	if err != nil {
		return nil, err
	}
	if len(b) > size {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), size)
	}
	// Some encoders drop leading zero bytes; put them back.
	if len(b) < size {
		b = append(make([]byte, size-len(b)), b...)
	}
	return b, nil
}

// b64 decodes base64url with or without padding, as JOSE producers differ.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// KIDs returns the key ids in the set, sorted, without duplicates.
func (s *KeySet) KIDs() []string {
	if s == nil {
		return nil
	}
	ids := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		ids = append(ids, k.kid)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// HasKID reports whether some key in the set has id kid.
func (s *KeySet) HasKID(kid string) bool {
	if s == nil {
		return false
	}
	for _, k := range s.keys {
		if k.kid == kid {
			return true
		}
	}
	return false
}

// Reasons a signature did not verify, written into JWTRecord.VerifyError.
const (
	VerifyErrUnknownKID   = "kid not in jwks"
	VerifyErrAlg          = "alg not verifiable with jwks keys"
	VerifyErrNoSignature  = "no signature"
	VerifyErrBadSignature = "signature does not verify"
)

// verify checks sig over signingInput with the key named kid, or with every
// key when kid is empty (the apiserver's own verifier also tries them all).
// It returns "" when the signature verifies, else one of the VerifyErr*.
func (s *KeySet) verify(alg, kid string, signingInput, sig []byte) string {
	if len(sig) == 0 {
		return VerifyErrNoSignature
	}
	h, family := algHash(alg)
	if family == 0 {
		return VerifyErrAlg
	}
	digest := hashOf(h, signingInput)
	tried := false
	for _, k := range s.keys {
		if kid != "" && k.kid != kid {
			continue
		}
		if k.alg != "" && k.alg != alg {
			continue
		}
		tried = true
		if verifyWith(k.pub, family, h, digest, sig) {
			return ""
		}
	}
	if !tried && kid != "" && !s.HasKID(kid) {
		return VerifyErrUnknownKID
	}
	return VerifyErrBadSignature
}

// Signature families of the JOSE algorithms verified here.
const (
	famRSA = iota + 1
	famPSS
	famEC
)

func algHash(alg string) (crypto.Hash, int) {
	switch alg {
	case "RS256":
		return crypto.SHA256, famRSA
	case "RS384":
		return crypto.SHA384, famRSA
	case "RS512":
		return crypto.SHA512, famRSA
	case "PS256":
		return crypto.SHA256, famPSS
	case "PS384":
		return crypto.SHA384, famPSS
	case "PS512":
		return crypto.SHA512, famPSS
	case "ES256":
		return crypto.SHA256, famEC
	case "ES384":
		return crypto.SHA384, famEC
	case "ES512":
		return crypto.SHA512, famEC
	}
	return 0, 0
}

func hashOf(h crypto.Hash, data []byte) []byte {
	switch h {
	case crypto.SHA256:
		s := sha256.Sum256(data)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(data)
		return s[:]
	default:
		s := sha512.Sum512(data)
		return s[:]
	}
}

func verifyWith(pub crypto.PublicKey, family int, h crypto.Hash, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch family {
		case famRSA:
			return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
		case famPSS:
			return rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
	case *ecdsa.PublicKey:
		if family != famEC {
			return false
		}
		// ES256 must use P-256 and so on (RFC 7518 §3.4): a P-521 key
		// must not accept an ES256 token.
		size := (k.Curve.Params().BitSize + 7) / 8
		if size != ecSize(h) || len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// ecSize is the coordinate size in bytes of the curve each ES algorithm
// requires: P-256, P-384, P-521.
func ecSize(h crypto.Hash) int {
	switch h {
	case crypto.SHA256:
		return 32
	case crypto.SHA384:
		return 48
	}
	return 66
}
