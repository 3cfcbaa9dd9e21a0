package credential

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// jwtSeeds are header and claims JSON documents the differential tests and
// fuzz targets start from: real tokens' segments, then what an attacker
// varies (duplicate names, case variants of kubernetes.io's members, nulls,
// escapes, invalid UTF-8, wrong types, numbers at float64's and int64's
// limits, nesting).
var jwtSeeds = []string{
	podTokenHeader,
	podTokenClaims,
	`{"alg":"none","typ":"JWT"}`,
	`{"alg":"HS256","kid":"k1","typ":"JWT"}`,
	`{"alg":"RS256","jku":"https://evil.example/jwks","jwk":{"kty":"RSA"},"x5u":"u","x5u":"v"}`,
	`{"alg":"RS256","alg":5}`, `{"alg":5,"alg":"RS256"}`, `{"alg":"RS256","alg":null}`,
	`{"\u0061lg":"R\u0053256","k\u0069d":"a\"b","ty\u0070":"\ud83d\ude00"}`,
	"{\"alg\":\"RS\xff256\",\"\xfe\":1,\"\xff\":2}",
	`{"alg":["RS256"],"kid":{},"typ":true}`,
	`null`, ` null `, `{}`, `[]`, `"x"`, `1`, `{"alg":"RS256"} x`, `{"alg":"RS256",}`, `{"alg"`, ``,
	// A legacy secret-based token.
	`{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"default",` +
		`"kubernetes.io/serviceaccount/secret.name":"builder-token-x2x9q",` +
		`"kubernetes.io/serviceaccount/service-account.name":"builder",` +
		`"kubernetes.io/serviceaccount/service-account.uid":"2c4e6a8b-5555-4e5e-9f9f-1a2b3c4d5e6f",` +
		`"sub":"system:serviceaccount:default:builder"}`,
	// An unsigned forgery, as internal/gen makes them.
	`{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":1765113936,"iat":1765027536,` +
		`"iss":"https://kubernetes.default.svc.cluster.local","jti":"x",` +
		`"sub":"system:serviceaccount:kube-system:clusterrole-aggregation-controller"}`,
	// A TokenRequest token: no pod, no warnafter.
	`{"aud":["https://kubernetes.default.svc.cluster.local","api"],"exp":1765031136,"iat":1765027536,` +
		`"kubernetes.io":{"namespace":"ci","serviceaccount":{"name":"deployer","uid":"0a0b"}},"nbf":1765027536}`,
	// Duplicates and case variants in kubernetes.io, which folds case
	// and merges duplicate references.
	`{"kubernetes.io":{"Namespace":"a","NAMESPACE":null,"serviceaccount":{"name":"x"},"ServiceAccount":{"UID":"y"},"pod":{"name":"p"},"pod":null,"node":null,"node":{"Name":"n"}}}`,
	`{"kubernetes.io":{"ſecret":{"name":"s"},"\u017fecret":{"uid":"u"},"namespace":"ns","namespace":"ns2","serviceaccount":{"name":"x","name":null}}}`,
	"{\"kubernetes.io\":{\"serviceaccount\":{\"\u212aame\":1,\"ua\\u0130d\":\"u\",\"uıd\":\"v\",\"n\u212ame\":\"z\"}}}",
	`{"kubernetes.io":{"pod":{"name":"p"},"pod":null,"pod":{"uid":"u"},"node":{"name":"n"},"node":"bad"}}`,
	`{"kubernetes.io":{"warnafter":1.5e9},"kubernetes.io/serviceaccount/namespace":"legacy"}`,
	`{"kubernetes.io":{"warnafter":null,"WarnAfter":"1"}}`, `{"kubernetes.io":{"warnafter":"1","warnafter":null}}`,
	`{"kubernetes.io":{"warnafter":1e400}}`, `{"kubernetes.io":{"warnafter":[1]}}`, `{"kubernetes.io":{"warnafter":{}}}`,
	`{"kubernetes.io":{"namespace":5}}`, `{"kubernetes.io":{"serviceaccount":"sa"}}`, `{"kubernetes.io":{"pod":{"uid":[]}}}`,
	`{"kubernetes.io":[]}`, `{"kubernetes.io":"x"}`, `{"kubernetes.io":null}`, `{"kubernetes.io":{}}`,
	`{"kubernetes.io":{"x":{"y":[[[{"z":null}]]]}},"kubernetes.io":{"namespace":"second"}}`,
	`{"kubernetes.io":{"serviceaccount":{}},"kubernetes.io/serviceaccount/service-account.name":"legacy"}`,
	`{"kubernetes.io":{"secret":{"name":""}},"kubernetes.io/serviceaccount/secret.name":"s","kubernetes.io/serviceaccount/namespace":7}`,
	`{"Kubernetes.io":{"namespace":"case matters for claims"},"ISS":"x","Sub":"y"}`,
	// aud as a string, null, arrays with nulls and wrong types, and not
	// a string at all.
	`{"aud":"one"}`, `{"aud":null}`, `{"aud":[]}`, `{"aud":["a",null,"b"]}`, `{"aud":["a",1,{"b":2},["c"],true]}`,
	`{"aud":{"a":1}}`, `{"aud":1}`, `{"aud":true}`, `{"aud":["a"],"aud":"b"}`, `{"aud":"b","aud":[1]}`,
	// NumericDates: null, fractions, exponents, -0, int64 and float64
	// limits, wrong types, duplicates.
	`{"exp":null,"iat":1.9,"nbf":-1.9}`, `{"exp":-0,"iat":1e3,"nbf":1E+3}`,
	`{"exp":9223372036854775807,"iat":9223372036854775808,"nbf":-9223372036854775809}`,
	`{"exp":1e400,"iat":-1e400,"nbf":1e-400}`, `{"exp":123456789012345,"iat":1234567890123456,"nbf":-123456789012345}`,
	`{"exp":"1700000000","iat":true,"nbf":[1]}`, `{"exp":1,"exp":"x"}`, `{"exp":"x","exp":2}`,
	// Strings: escapes, surrogates, invalid UTF-8, nulls, wrong types.
	`{"iss":"a\/b\u0026c\n","sub":"\ud800","jti":"\udc00\ud800\udc00"}`,
	"{\"iss\":\"\xff\xfe\",\"sub\":\"ok\xe2\x82\",\"jti\":\"\xed\xa0\x80\"}",
	`{"iss":null,"sub":1,"jti":{"x":1}}`, `{"iss":"a","iss":null}`,
	// Segments past sharedMax, whose strings are copied.
	`{"x":"` + strings.Repeat("a", 3000) + `","iss":"i","sub":"s\u0041","kubernetes.io":{"namespace":"n","pod":{"name":"p"}},"aud":["a","b"]}`,
	`{"kid":"` + strings.Repeat("k", 3000) + `","alg":"RS256"}`,
	// Deep nesting inside an ignored claim.
	`{"x":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `,"sub":"s"}`,
	// Syntax errors after the members that were read.
	`{"iss":"a","sub":"b"`, `{"iss":"a"}}`, `{"iss":"a","x":[1,]}`, `{"iss":"a","x":01}`, "{\"iss\":\"a\x01\"}",
	`{"kubernetes.io":{"namespace":"a","pod":{"name":"p",}}}`,
}

// checkSegments compares the parsers with the encoding/json reference on
// doc as a header and as claims, each base64url-encoded, and seg used as
// a segment as it is.
func checkSegments(t *testing.T, doc []byte) {
	t.Helper()
	for _, seg := range [][]byte{
		[]byte(base64.RawURLEncoding.EncodeToString(doc)),
		[]byte(base64.URLEncoding.EncodeToString(doc)),
		doc,
	} {
		var h, wantH JWTHeader
		p, wantP := parseHeader(seg, &h), refParseHeader(seg, &wantH)
		if p != wantP || !reflect.DeepEqual(h, wantH) {
			t.Errorf("parseHeader(%q) = %+v, %q; encoding/json: %+v, %q", doc, h, p, wantH, wantP)
		}
		var c, wantC JWTClaims
		p, wantP = parseClaims(seg, &c), refParseClaims(seg, &wantC)
		if p != wantP || !reflect.DeepEqual(c, wantC) {
			t.Errorf("parseClaims(%q) = %s, %q; encoding/json: %s, %q", doc, claimsString(c), p, claimsString(wantC), wantP)
		}
	}
}

// claimsString prints claims with their pointers followed.
func claimsString(c JWTClaims) string {
	num := func(p *int64) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprint(*p)
	}
	ref := func(r *JWTObjectRef) string {
		if r == nil {
			return "nil"
		}
		return fmt.Sprintf("%+v", *r)
	}
	s := fmt.Sprintf("{iss:%q sub:%q jti:%q aud:%#v exp:%s iat:%s nbf:%s", c.Iss, c.Sub, c.Jti, c.Aud, num(c.Exp), num(c.Iat), num(c.Nbf))
	if k := c.Kubernetes; k != nil {
		s += fmt.Sprintf(" k8s:{ns:%q sa:%s pod:%s node:%s secret:%s warnafter:%s}", k.Namespace,
			ref(k.ServiceAccount), ref(k.Pod), ref(k.Node), ref(k.Secret), num(k.WarnAfter))
	}
	return s + "}"
}

func TestParseSegmentsMatchEncodingJSON(t *testing.T) {
	for _, doc := range jwtSeeds {
		checkSegments(t, []byte(doc))
	}
}

// TestParseClaimsCases pins what the differential test only compares:
// results that a change to both parsers alike would otherwise let
// through.
func TestParseClaimsCases(t *testing.T) {
	f := func(doc, want, wantProblem string) {
		t.Helper()
		var c JWTClaims
		p := parseClaims([]byte(base64.RawURLEncoding.EncodeToString([]byte(doc))), &c)
		if got := claimsString(c); got != want || p != wantProblem {
			t.Errorf("parseClaims(%s)\n got %s, %q\nwant %s, %q", doc, got, p, want, wantProblem)
		}
	}
	f(podTokenClaims, `{iss:"https://kubernetes.default.svc.cluster.local" sub:"system:serviceaccount:shop:checkout" `+
		`jti:"5b0e3f0e-7f1c-4c53-9b1e-3a6f8f2d4c11" aud:[]string{"https://kubernetes.default.svc.cluster.local"} `+
		`exp:1796563536 iat:1765027536 nbf:1765027536 k8s:{ns:"shop" `+
		`sa:{Name:checkout UID:9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b} `+
		`pod:{Name:checkout-7d9f8b6c5d-x2k4q UID:a3c5e7f9-2b4d-4f6a-8c0e-1d3f5b7a9c2e} `+
		`node:{Name:ip-10-0-12-34.eu-west-1.compute.internal UID:0f6a4e2c-1b7d-4e8a-9c3f-5d2b8a7e6f10} `+
		`secret:nil warnafter:1765031143}}`, "")
	// Claim names are exact; a later duplicate replaces an earlier one
	// entirely, null included.
	f(`{"ISS":"x","iss":"a","iss":null,"sub":"b","sub":7}`, `{iss:"" sub:"" jti:"" aud:[]string(nil) exp:nil iat:nil nbf:nil}`,
		"claim sub is not a string")
	// kubernetes.io's members fold case (ſ is s), and duplicates merge.
	f(`{"kubernetes.io":{"NameSpace":"a","namespace":null,"ServiceAccount":{"name":"x"},"serviceaccount":{"uid":"y"},"ſecret":{"name":"s"}}}`,
		`{iss:"" sub:"" jti:"" aud:[]string(nil) exp:nil iat:nil nbf:nil k8s:{ns:"a" sa:{Name:x UID:y} pod:nil node:nil secret:{Name:s UID:} warnafter:nil}}`, "")
	// A mistyped member anywhere in kubernetes.io discards all of it.
	f(`{"kubernetes.io":{"namespace":"a","pod":{"uid":1}},"kubernetes.io/serviceaccount/namespace":"legacy"}`,
		`{iss:"" sub:"" jti:"" aud:[]string(nil) exp:nil iat:nil nbf:nil k8s:{ns:"legacy" sa:nil pod:nil node:nil secret:nil warnafter:nil}}`,
		"claim kubernetes.io is malformed")
	// A mistyped warnafter keeps the rest.
	f(`{"kubernetes.io":{"namespace":"a","warnafter":"soon"}}`,
		`{iss:"" sub:"" jti:"" aud:[]string(nil) exp:nil iat:nil nbf:nil k8s:{ns:"a" sa:nil pod:nil node:nil secret:nil warnafter:nil}}`,
		"claim kubernetes.io.warnafter is not a number")
	// aud: null is [""], mistyped elements are "" and a problem; dates:
	// null is 0, out of float64's range a problem, past int64's clamped.
	f(`{"aud":["a",2],"exp":null,"iat":1e400,"nbf":1e300}`,
		`{iss:"" sub:"" jti:"" aud:[]string{"a", ""} exp:0 iat:nil nbf:9223372036854775807}`,
		"claim aud is not a string or list of strings; claim iat is not a number")
	f(`{"aud":null}`, `{iss:"" sub:"" jti:"" aud:[]string{""} exp:nil iat:nil nbf:nil}`, "")
	// Invalid JSON after good members keeps nothing.
	f(`{"iss":"a"} {}`, `{iss:"" sub:"" jti:"" aud:[]string(nil) exp:nil iat:nil nbf:nil}`, "claims are not a JSON object")
}

// TestClaimProblemsSorted checks that the problems come out in the order
// the encoding/json code sorted them into.
func TestClaimProblemsSorted(t *testing.T) {
	if !slices.IsSorted(claimProblems[:]) || !slices.IsSorted(headerProblems[:]) {
		t.Errorf("problems not sorted:\n%s\n%s", strings.Join(claimProblems[:], "\n"), strings.Join(headerProblems[:], "\n"))
	}
}

// TestParseDepth checks encoding/json's nesting limit: 10,000 levels
// parse, 10,001 do not, wherever the nesting is.
func TestParseDepth(t *testing.T) {
	for _, depth := range []int{9999, 10000, 10001} {
		for _, doc := range []string{
			`{"x":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`,
			`{"kubernetes.io":{"x":` + strings.Repeat("[", depth-2) + strings.Repeat("]", depth-2) + `}}`,
			`{"kubernetes.io":{"pod":{"x":` + strings.Repeat(`{"x":`, depth-3) + `1` + strings.Repeat("}", depth-3) + `}}}`,
			`{"aud":["a",` + strings.Repeat("[", depth-2) + strings.Repeat("]", depth-2) + `]}`,
		} {
			checkSegments(t, []byte(doc))
			var c JWTClaims
			p := parseClaims([]byte(base64.RawURLEncoding.EncodeToString([]byte(doc))), &c)
			if bad := p == "claims are not a JSON object"; bad != (depth > 10000) {
				t.Errorf("depth %d: problem %q", depth, p)
			}
		}
	}
}

func TestParseJWTMatchesEncodingJSON(t *testing.T) {
	h := base64.RawURLEncoding.EncodeToString([]byte(podTokenHeader))
	c := base64.RawURLEncoding.EncodeToString([]byte(podTokenClaims))
	for _, tok := range []string{
		string(podToken()), h + "." + c + ".", h + "." + c, h, "", ".", "..", "....", h + "." + c + ".s.x.y",
		" \n" + h + "." + c + ".sig\t", h + "=." + c + "==.sig", "eyJ.eyJ.x", h + ".!." + "sig",
		"e30.bnVsbA.x", "bnVsbA.e30.x", h[:10] + "\n" + h[10:] + "." + c[:20] + "\r\n" + c[20:] + ".sig",
		h[:10] + "=" + h[10:] + "." + c + ".sig",
	} {
		got, want := ParseJWT([]byte(tok)), refParseJWT([]byte(tok))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseJWT(%q) = %+v; encoding/json: %+v", tok, got, want)
		}
	}
}

// TestParseJWTAllocs pins that a real token's record costs a few
// allocations, not encoding/json's hundred.
func TestParseJWTAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	tok := podToken()
	if n := testing.AllocsPerRun(100, func() { ParseJWT(tok) }); n > 4 {
		t.Errorf("ParseJWT allocates %v times, want at most 4", n)
	}
}

func FuzzParseJWTHeader(f *testing.F) {
	for _, s := range jwtSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkSegments(t, doc) })
}

// FuzzParseJWTClaims is FuzzParseJWTHeader under its own name, so that
// each keeps a corpus of its own.
func FuzzParseJWTClaims(f *testing.F) {
	for _, s := range jwtSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkSegments(t, doc) })
}

// FuzzParseJWT compares whole tokens: segment splitting and base64url.
func FuzzParseJWT(f *testing.F) {
	f.Add(podToken())
	for _, s := range jwtSeeds[:8] {
		f.Add([]byte(base64.RawURLEncoding.EncodeToString([]byte(s)) + "." + base64.RawURLEncoding.EncodeToString([]byte(s)) + ".x"))
	}
	f.Fuzz(func(t *testing.T, tok []byte) {
		got, want := ParseJWT(tok), refParseJWT(tok)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseJWT(%q) = %+v; encoding/json: %+v", tok, got, want)
		}
	})
}
