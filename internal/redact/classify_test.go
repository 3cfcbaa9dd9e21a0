package redact

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// classifySlow is classify without its fast ways: every name matched with
// keyIs and every prefix and suffix tried, as encoding/json matches field
// names. classify must agree with it on every name.
func classifySlow(key []byte) member {
	var m member
	for name, r := range roleNames {
		if keyIs(key, name) {
			m.role = r
		}
	}
	m.kind, m.path, m.value, m.token = keyIs(key, "kind"), keyIs(key, "path"), keyIs(key, "value"), keyIs(key, "token")
	for _, prefix := range ownAnnotations {
		if len(key) > len(prefix) && bytes.EqualFold(key[:len(prefix)], []byte(prefix)) {
			return m
		}
	}
	for _, name := range kvKeys {
		if len(key) >= len(name) && bytes.EqualFold(key[len(key)-len(name):], []byte(name)) {
			m.credential = true
		}
	}
	m.hashable = m.credential && len(key) >= 5 && bytes.EqualFold(key[len(key)-5:], []byte("token"))
	return m
}

func TestClassify(t *testing.T) {
	f := func(name string, want member) {
		t.Helper()
		if got := classify([]byte(name)); got != want {
			t.Errorf("classify(%q) = %+v, want %+v", name, got, want)
		}
		if slow := classifySlow([]byte(name)); slow != want {
			t.Errorf("classifySlow(%q) = %+v, want %+v", name, slow, want)
		}
	}
	f("", member{})
	f("data", member{role: roleData})
	f("StringData", member{role: roleStringData})
	f("RESPONSEOBJECT", member{role: roleBody})
	f("responseObjects", member{})
	f("objectRef", member{role: roleObjectRef})
	f("Kind", member{kind: true})
	f("path", member{path: true})
	f("value", member{value: true})
	f("token", member{token: true, credential: true, hashable: true})
	f("TOKEN", member{token: true, credential: true, hashable: true})
	f("tokens", member{})
	f("access_token", member{credential: true, hashable: true})
	f("password", member{credential: true})
	f("db.Password", member{credential: true})
	f("apiKey", member{credential: true})
	// Annotation keys, longer than any role: only the suffix counts, and
	// the apiserver's own annotations are never credentials.
	f("example.com/very-long-annotation-name-with-a-token", member{credential: true, hashable: true})
	f("example.com/very-long-annotation-name-with-a-tokens", member{})
	f("authentication.k8s.io/legacy-token", member{})
	f("Authentication.K8s.io/legacy-TOKEN", member{})
	f("kubectl.kubernetes.io/last-applied-configuration", member{})
	f("my-client-secret", member{credential: true})
	// Unicode folding: the Kelvin sign folds to k, the long s to s.
	f("\u212aind", member{kind: true})
	f("\u017fpec", member{role: roleSpec})
	// As a suffix only bytes compare: the three-byte sign is no k there.
	f("to\u212aen", member{token: true})
	f("\u212aubectl.kubernetes.io/last-applied-configuration-password", member{credential: true})
	f("pa\u017f\u017fword", member{})
	f("caf\u00e9-token", member{credential: true, hashable: true})
}

// TestClassifyAgrees compares classify with classifySlow on names built
// from pieces of every name classify knows, in mixed case.
func TestClassifyAgrees(t *testing.T) {
	pieces := []string{"", "x", "X", "-", "/", ".", "\u212a", "\u017f", "é", "data", "DATA", "spec", "token", "Token", "password", "api_key", "authentication.k8s.io/", "audit.k8s.io/", "requestobject", "kind", "value"}
	for _, a := range pieces {
		for _, b := range pieces {
			for _, c := range pieces {
				name := []byte(a + b + c)
				if got, want := classify(name), classifySlow(name); got != want {
					t.Errorf("classify(%q) = %+v, slow way %+v", name, got, want)
				}
			}
		}
	}
}

// TestTriggers checks that the one-pass and the vectorised trigger
// searches agree, so that a string's length never decides whether a
// credential in it is looked for.
func TestTriggers(t *testing.T) {
	f := func(s string, want uint8, wantDots int) {
		t.Helper()
		trig, dots := shortTriggers([]byte(s))
		if trig&^(trigDot|trigPercent) != want || min(dots, 2) != wantDots {
			t.Errorf("shortTriggers(%q) = %b, %d dots; want %b, %d", s, trig, dots, want, wantDots)
		}
		trig, dots = longTriggers([]byte(s))
		if trig != want || dots != wantDots {
			t.Errorf("longTriggers(%q) = %b, %d dots; want %b, %d", s, trig, dots, want, wantDots)
		}
	}
	f("", 0, 0)
	f("kube-system", trigB, 0)
	f("a.c", 0, 1)
	f("eyJhbGciOiJub25lIn0.e30.", trigB, 2)
	f("v1.2.3", 0, 2)
	f("Authorization: Bearer x", trigB|trigSep, 0)
	f("api_key=1", trigSep, 0)
	f("-----BEGIN RSA PRIVATE KEY-----", trigB|trigP, 0)
	f("https://u:p@host", trigSep|trigAt, 0)
	f("https://h/p?a%3Db", trigB|trigSep, 0)
}

// TestRecordCache checks that a token's record is the same whether built
// or taken from the cache, that a small one is cached and a large one is
// not kept.
func TestRecordCache(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	jwt := func(sub string) []byte {
		payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://kubernetes.default.svc","sub":"` + sub + `"}`))
		return []byte("eyJhbGciOiJub25lIn0." + payload + ".")
	}
	small, large := jwt("system:serviceaccount:ns:sa"), jwt(strings.Repeat("x", 4<<10))
	for _, tc := range []struct {
		tok    []byte
		cached bool
	}{{small, true}, {large, false}} {
		first := r.recordJSON(tc.tok)
		second := r.recordJSON(bytes.Clone(tc.tok))
		if !bytes.Equal(first, second) {
			t.Errorf("record from the cache differs:\n%s\n%s", first, second)
		}
		if !bytes.Contains(first, []byte(`"redacted":"jwt"`)) || bytes.Contains(first, tc.tok) {
			t.Errorf("not a JWT record without the token: %s", first)
		}
		if same := &first[0] == &second[0]; same != tc.cached {
			t.Errorf("record of %d bytes shared from the cache: %v, want %v", len(first), same, tc.cached)
		}
	}
	other := r.recordJSON(jwt("system:serviceaccount:ns:other"))
	if bytes.Equal(other, r.recordJSON(small)) {
		t.Error("two tokens share a record")
	}
}
