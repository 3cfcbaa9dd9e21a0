package credential

import (
	"encoding/base64"
	"testing"
)

// podTokenHeader and podTokenClaims are a pod-bound service-account
// token's segments as the apiserver mints them (and internal/gen
// generates them): RS256 with a 43-character in-tree kid, a one-year
// lifetime with warnafter an hour in, and the pod, node and service
// account it is bound to.
const (
	podTokenHeader = `{"alg":"RS256","kid":"bGlTnZ1Uy0lxZ4aVqk7oN8sZQ2pX3m5rT6uW9yB1cD4"}`
	podTokenClaims = `{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":1796563536,"iat":1765027536,` +
		`"iss":"https://kubernetes.default.svc.cluster.local","jti":"5b0e3f0e-7f1c-4c53-9b1e-3a6f8f2d4c11",` +
		`"kubernetes.io":{"namespace":"shop","node":{"name":"ip-10-0-12-34.eu-west-1.compute.internal",` +
		`"uid":"0f6a4e2c-1b7d-4e8a-9c3f-5d2b8a7e6f10"},"pod":{"name":"checkout-7d9f8b6c5d-x2k4q",` +
		`"uid":"a3c5e7f9-2b4d-4f6a-8c0e-1d3f5b7a9c2e"},"serviceaccount":{"name":"checkout",` +
		`"uid":"9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"},"warnafter":1765031143},"nbf":1765027536,` +
		`"sub":"system:serviceaccount:shop:checkout"}`
)

// podToken is a token with podTokenHeader and podTokenClaims and an
// RSA-2048-sized signature.
func podToken() []byte {
	sig := make([]byte, 256)
	for i := range sig {
		sig[i] = byte(i * 7)
	}
	enc := base64.RawURLEncoding
	return []byte(enc.EncodeToString([]byte(podTokenHeader)) + "." +
		enc.EncodeToString([]byte(podTokenClaims)) + "." + enc.EncodeToString(sig))
}

// BenchmarkParseJWT parses a realistic pod-bound token, as the
// unsigned-jwt detector does for every TokenRequest and TokenReview.
func BenchmarkParseJWT(b *testing.B) {
	tok := podToken()
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		rec := ParseJWT(tok)
		if rec.ParseError != "" || rec.Claims.Kubernetes == nil {
			b.Fatalf("ParseJWT: %+v", rec)
		}
	}
}

// BenchmarkNewJWTRecord is ParseJWT plus the hash and verification
// result, without a key set (the detector's default).
func BenchmarkNewJWTRecord(b *testing.B) {
	tok := podToken()
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		rec := NewJWTRecord(tok, nil)
		if rec.ParseError != "" || rec.Claims.Kubernetes == nil {
			b.Fatalf("NewJWTRecord: %+v", rec)
		}
	}
}
