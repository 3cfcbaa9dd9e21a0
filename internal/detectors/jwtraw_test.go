package detectors

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"k8s.io/apimachinery/pkg/runtime"
)

// jwtRawPaths are the fields unsigned-jwt reads.
var jwtRawPaths = [][2]string{{"spec", "token"}, {"status", "token"}, {"data", "token"}, {"status", "error"}}

// jwtTokenOf is what record and the TokenReview error read of a token
// field's value, whichever reader produced it: the record and whether it
// is one, or the string.
func jwtTokenOf(v any) any {
	switch t := v.(type) {
	case map[string]any:
		rec, ok := jwtRecordFromBody(t)
		return jwtDecoded{rec, ok}
	case jwtDecoded, string:
		return t
	}
	return nil
}

// jwtRawDiff compares jwtRawField with jwtField of the body as
// json.Unmarshal decodes it (what pipeline.Event's bodies are held to),
// for every field unsigned-jwt reads; "" when they agree or the raw
// reader declined.
func jwtRawDiff(raw []byte) (diff string, declined int) {
	var body any
	if err := json.Unmarshal(raw, &body); err != nil {
		body = nil
	}
	for _, p := range jwtRawPaths {
		v, present, ok := jwtRawField(raw, p[0], p[1])
		if !ok {
			declined++
			continue
		}
		wv, wpresent := jwtField(body, p[0], p[1])
		if present != wpresent || !reflect.DeepEqual(jwtTokenOf(v), jwtTokenOf(wv)) {
			return fmt.Sprintf("%s.%s: raw %#v (present %v), decoded %#v (present %v)", p[0], p[1], jwtTokenOf(v), present, jwtTokenOf(wv), wpresent), declined
		}
	}
	return "", declined
}

// redactedBodies are the request and response bodies of a generated
// stream, tokens redacted as ingest writes them.
func redactedBodies(t testing.TB, n int) [][]byte {
	t.Helper()
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g := gen.New(gen.Config{Seed: 5, AttackRatio: 0.5})
	var bodies [][]byte
	for len(bodies) < n {
		out, _, err := red.Event(g.Next().JSON)
		if err != nil {
			t.Fatal(err)
		}
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", out); err != nil {
			t.Fatal(err)
		}
		for _, u := range []*[]byte{rawBody(ev.RequestObject), rawBody(ev.ResponseObject)} {
			if u != nil {
				bodies = append(bodies, append([]byte(nil), *u...))
			}
		}
	}
	return bodies
}

var jwtRawEdgeCases = []string{
	`{"spec":{"token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}}`,
	`{"spec":{"token":{"redacted":"jwt","header":{"alg":"none"},"claims":{"sub":"x","exp":1e3,"aud":"a"}}}}`,
	`{"spec":{"token":{"redacted":"jwt","claims":{"exp":1.5}}}}`,
	`{"spec":{"token":{"redacted":"jwt","claims":{"exp":9223372036854775808}}}}`,
	`{"spec":{"token":{"redacted":"jwt","claims":{"exp":-9223372036854775808,"aud":["a",null]}}}}`,
	`{"spec":{"token":{"redacted":"jwt","claims":{"aud":["a",1]}}}}`,
	`{"spec":{"token":{"redacted":"jwt","header":"x"}}}`,
	`{"spec":{"token":{"redacted":"jwt","header":null,"claims":{"kubernetes.io":{}}}}}`,
	`{"spec":{"token":{"redacted":"jwt","claims":{"kubernetes.io":{"pod":null,"node":{"name":"n"},"secret":"s"}}}}}`,
	`{"spec":{"token":{"redacted":"jwt","length":3,"length":4}}}`,
	`{"spec":{"token":{"redacted":"jwt","header":{"alg":1,"alg":"RS256"}}}}`,
	`{"spec":{"token":{"redacted":"jwt"},"token":"x"}}`,
	`{"spec":{"token":"a"},"spec":{"token":"b"}}`,
	`{"sp\u0065c":{"token":"a"}}`,
	`{"spec":{"t\u006fken":"a"}}`,
	`{"spec":{"token":"a"},"n":1e999}`,
	`{"spec":{"token":"a"},"n":1e-999}`,
	`{"spec":{"token":"a"},"n":1` + strings.Repeat("0", 308) + `}`,
	`{"spec":{"token":"a"},"n":-1` + strings.Repeat("0", 309) + `}`,
	`{"spec":{"token":"a"},"n":1` + strings.Repeat("0", 299) + `}`,
	`{"spec":{"token":"a"}} x`,
	`{"spec":{"token":"a"}`,
	`{"spec":"token"}`,
	`{"spec":null}`,
	`{"spec":{"token":null}}`,
	`{"spec":{"token":[1]}}`,
	`[{"spec":{"token":"a"}}]`,
	` { "spec" : { "token" : { "redacted" : "jwt" , "sha256" : "\u00e9" } } } `,
	`{"status":{"error":"invalid bearer token","user":{}}}`,
	`{"status":{"error":7}}`,
	`{"data":{"token":"ZXlKaGJHY2lPaUp1YjI1bEluMC5leUp6ZFdJaU9pSjRJbjAu"}}`,
	`{"spec":{"token":{"redacted":"jwt","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}}`,
}

// TestJWTRawFieldMatchesDecoded: on generated bodies and edge cases, the
// raw reader gives what the decoded body gives, or declines; it declines
// none of the generated bodies, so unsigned-jwt does take the fast path.
func TestJWTRawFieldMatchesDecoded(t *testing.T) {
	for _, c := range jwtRawEdgeCases {
		if d, _ := jwtRawDiff([]byte(c)); d != "" {
			t.Errorf("%s: %s", c, d)
		}
	}
	for i, b := range redactedBodies(t, 3000) {
		d, declined := jwtRawDiff(b)
		if d != "" {
			t.Fatalf("body %d %.200s: %s", i, b, d)
		}
		if declined > 0 {
			t.Fatalf("body %d declined: %.300s", i, b)
		}
	}
}

func FuzzJWTRawField(f *testing.F) {
	for _, c := range jwtRawEdgeCases {
		f.Add([]byte(c))
	}
	for _, b := range redactedBodies(f, 200) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if d, _ := jwtRawDiff(raw); d != "" {
			t.Fatalf("%q: %s", raw, d)
		}
	})
}

func rawBody(u *runtime.Unknown) *[]byte {
	if u == nil || len(u.Raw) == 0 {
		return nil
	}
	return &u.Raw
}
