// Package redacttest mints real service-account-like JWTs and JWKS files for
// tests of the redactor and of the code around it.
package redacttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Key is a signing key with the kid the apiserver would give it.
type Key struct {
	Signer crypto.Signer
	KID    string
	Alg    string
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error
)

// RSAKey returns an RS256 key. Generating a 2048-bit key takes a while on a
// busy machine, so one key is shared by every test of the process.
func RSAKey(t testing.TB) *Key {
	t.Helper()
	rsaOnce.Do(func() { rsaKey, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return &Key{Signer: rsaKey, KID: KID(t, &rsaKey.PublicKey), Alg: "RS256"}
}

// ECKey returns a fresh key for alg ES256, ES384 or ES512.
func ECKey(t testing.TB, alg string) *Key {
	t.Helper()
	curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
	if curve == nil {
		t.Fatalf("no curve for %s", alg)
	}
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{Signer: k, KID: KID(t, &k.PublicKey), Alg: alg}
}

// KID computes the key id kube-apiserver assigns: the unpadded base64url
// SHA-256 of the PKIX-encoded public key.
func KID(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// WriteJWKS writes the public keys as a /openid/v1/jwks document into a
// temporary file and returns its path.
func WriteJWKS(t testing.TB, keys ...*Key) string {
	t.Helper()
	enc := base64.RawURLEncoding
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	for _, k := range keys {
		switch pub := k.Signer.Public().(type) {
		case *rsa.PublicKey:
			doc.Keys = append(doc.Keys, map[string]string{
				"use": "sig", "kty": "RSA", "kid": k.KID, "alg": "RS256",
				"n": enc.EncodeToString(pub.N.Bytes()),
				"e": enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			})
		case *ecdsa.PublicKey:
			size := (pub.Curve.Params().BitSize + 7) / 8
			raw, err := pub.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			doc.Keys = append(doc.Keys, map[string]string{
				"use": "sig", "kty": "EC", "kid": k.KID, "alg": k.Alg, "crv": pub.Curve.Params().Name,
				"x": enc.EncodeToString(raw[1 : 1+size]),
				"y": enc.EncodeToString(raw[1+size:]),
			})
		}
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Header returns the header an in-tree signer writes with k.
func (k *Key) Header() map[string]any {
	return map[string]any{"alg": k.Alg, "kid": k.KID}
}

// Sign signs header.claims with k, whatever alg header names (so tests can
// lie about it).
func (k *Key) Sign(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	input := segment(t, header) + "." + segment(t, claims)
	var sig []byte
	var err error
	switch s := k.Signer.(type) {
	case *rsa.PrivateKey:
		d := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s, crypto.SHA256, d[:])
	case *ecdsa.PrivateKey:
		size := (s.Curve.Params().BitSize + 7) / 8
		var digest []byte
		switch size {
		case 32:
			d := sha256.Sum256([]byte(input))
			digest = d[:]
		case 48:
			d := sha512.Sum384([]byte(input))
			digest = d[:]
		default:
			d := sha512.Sum512([]byte(input))
			digest = d[:]
		}
		var r, ss *big.Int
		r, ss, err = ecdsa.Sign(rand.Reader, s, digest)
		if err == nil {
			sig = make([]byte, 2*size)
			r.FillBytes(sig[:size])
			ss.FillBytes(sig[size:])
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Token signs claims with k under its in-tree header.
func (k *Key) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	return k.Sign(t, k.Header(), claims)
}

// Unsigned returns an alg "none" token: header.claims. with no signature.
func Unsigned(t testing.TB, claims map[string]any) string {
	t.Helper()
	return segment(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + segment(t, claims) + "."
}

// HS256 returns a token MACed with secret: the classic key-confusion forgery
// in which the verifier's public key is used as the HMAC secret.
func HS256(t testing.TB, kid string, secret []byte, claims map[string]any) string {
	t.Helper()
	input := segment(t, map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}) + "." + segment(t, claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func segment(t testing.TB, v map[string]any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Issuer is the issuer of the tokens minted here, the default of kubeadm.
const Issuer = "https://kubernetes.default.svc.cluster.local"

// PodClaims are the claims of the token the kubelet requests for a
// projected volume: 3607 seconds asked for, a one-year exp granted (the
// apiserver's --service-account-extend-token-expiration), and warnafter at
// the hour.
func PodClaims(iat time.Time) map[string]any {
	n := iat.Unix()
	return map[string]any{
		"aud": []string{Issuer},
		"exp": n + 365*24*3600,
		"iat": n,
		"iss": Issuer,
		"jti": "0c6e9a62-0b5f-4f4e-9d11-5f0b4b1d9e3a",
		"nbf": n,
		"sub": "system:serviceaccount:shop:checkout",
		"kubernetes.io": map[string]any{
			"namespace":      "shop",
			"node":           map[string]any{"name": "worker-2", "uid": "5b6d1c58-8f3b-4b5e-a0a4-0f6b8f0e3c11"},
			"pod":            map[string]any{"name": "checkout-7d9f8b6c5-x2x9q", "uid": "a3c2e1f0-1111-4a4a-9b9b-123456789abc"},
			"serviceaccount": map[string]any{"name": "checkout", "uid": "f1e2d3c4-2222-4b4b-8c8c-abcdefabcdef"},
			"warnafter":      n + 3607,
		},
	}
}

// TokenRequestClaims are the claims of a token minted by `kubectl create
// token` with the given lifetime: no pod, no warnafter.
func TokenRequestClaims(iat time.Time, lifetime time.Duration) map[string]any {
	n := iat.Unix()
	return map[string]any{
		"aud": []string{Issuer},
		"exp": n + int64(lifetime/time.Second),
		"iat": n,
		"iss": Issuer,
		"jti": "7a1b2c3d-3333-4c4c-8d8d-0123456789ab",
		"nbf": n,
		"sub": "system:serviceaccount:ci:deployer",
		"kubernetes.io": map[string]any{
			"namespace":      "ci",
			"serviceaccount": map[string]any{"name": "deployer", "uid": "0a0b0c0d-4444-4d4d-8e8e-0f0e0d0c0b0a"},
		},
	}
}

// LegacyClaims are the claims of a pre-1.24 secret-based token: no exp, no
// aud, flat kubernetes.io/serviceaccount/… claims.
func LegacyClaims() map[string]any {
	return map[string]any{
		"iss":                                    "kubernetes/serviceaccount",
		"kubernetes.io/serviceaccount/namespace": "ci",
		"kubernetes.io/serviceaccount/secret.name":          "deployer-token-7xk2p",
		"kubernetes.io/serviceaccount/service-account.name": "deployer",
		"kubernetes.io/serviceaccount/service-account.uid":  "0a0b0c0d-4444-4d4d-8e8e-0f0e0d0c0b0a",
		"sub": "system:serviceaccount:ci:deployer",
	}
}
