package redacttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
)

// The helpers below build credentials in the odd shapes the redactor must
// still recognise: JWTs whose header JSON is not what encoding/json writes
// (so the base64url starts "ew" or "eyAi" rather than "eyJ"), and PEM
// private keys. Tests plant them with a unique marker and grep for it.

// SignRaw signs the given header and claims JSON byte for byte, whitespace
// included, with k. Header segments starting "ewog" (`{\n  "alg"`) or
// "eyAi" (`{ "alg"`) come from here.
func (k *Key) SignRaw(t testing.TB, header, claims string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	var sig []byte
	var err error
	d := sha256.Sum256([]byte(input))
	switch s := k.Signer.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, s, crypto.SHA256, d[:])
	case *ecdsa.PrivateKey:
		if s.Curve != elliptic.P256() {
			t.Fatalf("SignRaw: only P-256 EC keys, got %s", s.Curve.Params().Name)
		}
		var r, ss *big.Int
		r, ss, err = ecdsa.Sign(rand.Reader, s, d[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			ss.FillBytes(sig[32:])
		}
	default:
		t.Fatalf("SignRaw: unsupported key %T", k.Signer)
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Forged returns header.claims.signature where signature is n bytes derived
// from seed: the shape of an RS256 token (n = 256) without a key, and the
// same string on every run, which fuzz targets need to be deterministic.
func Forged(header, claims, seed string, n int) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims)) + "." + enc.EncodeToString(PseudoRandom(seed, n))
}

// PseudoRandom returns n bytes derived from seed by SHA-256 in counter mode:
// random-looking, and the same on every run.
func PseudoRandom(seed string, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	var ctr [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		h := sha256.New()
		h.Write([]byte(seed))
		h.Write(ctr[:])
		out = h.Sum(out)
	}
	return out[:n]
}

// PEM block types of private keys as tools write them.
const (
	PEMRSA   = "RSA PRIVATE KEY" // PKCS#1, openssl genrsa
	PEMEC    = "EC PRIVATE KEY"  // SEC 1, openssl ecparam -genkey
	PEMPKCS8 = "PRIVATE KEY"     // PKCS#8, openssl genpkey, cert-manager
)

// PrivateKeyPEM returns a real private key in the given PEM block type:
// PEMRSA is the shared RSAKey (so it costs nothing), PEMEC and PEMPKCS8 a
// fresh P-256 key, so each call gives a unique body.
func PrivateKeyPEM(t testing.TB, blockType string) string {
	t.Helper()
	var der []byte
	var err error
	switch blockType {
	case PEMRSA:
		der = x509.MarshalPKCS1PrivateKey(RSAKey(t).Signer.(*rsa.PrivateKey))
	case PEMEC, PEMPKCS8:
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if blockType == PEMEC {
			der, err = x509.MarshalECPrivateKey(k)
		} else {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	default:
		t.Fatalf("PrivateKeyPEM: unknown block type %q", blockType)
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}))
}

// FakePrivateKeyPEM returns a PEM block of the given type whose body is a
// DER SEQUENCE header followed by bytes derived from seed: it looks like a
// key to anything that does not parse it, and is the same on every run.
func FakePrivateKeyPEM(blockType, seed string, n int) string {
	body := append([]byte{0x30, 0x82, byte(n >> 8), byte(n), 0x02, 0x01, 0x00}, PseudoRandom(seed, n)...)
	return string(pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: body}))
}

// PEMBodyLines returns the base64 lines of a PEM block, without the BEGIN
// and END lines: any of them surviving is part of the key leaking.
func PEMBodyLines(p string) []string {
	var out []string
	for _, l := range strings.Split(p, "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// JWTParts returns what of a compact JWT must not survive redaction: the
// token, its payload segment and its signature segment (when not empty).
// The header segment is left out: it is the same for every token of a key.
func JWTParts(tok string) []string {
	parts := strings.Split(tok, ".")
	out := []string{tok}
	if len(parts) >= 2 && parts[1] != "" {
		out = append(out, parts[1])
	}
	if len(parts) >= 3 && parts[2] != "" {
		out = append(out, parts[2])
	}
	return out
}
