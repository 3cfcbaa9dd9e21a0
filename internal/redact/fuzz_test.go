package redact_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/redact/redacttest"
)

// refBody reads a body the way downstream consumers do, with encoding/json's
// case-insensitive field matching, to find secrets the redactor missed.
type refBody struct {
	Kind       string                     `json:"kind"`
	APIVersion string                     `json:"apiVersion"`
	Spec       struct{ Token any }        `json:"spec"`
	Status     struct{ Token any }        `json:"status"`
	Data       map[string]json.RawMessage `json:"data"`
	StringData map[string]json.RawMessage `json:"stringData"`
	Items      []refBody                  `json:"items"`
	Metadata   struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

type refEvent struct {
	ObjectRef *struct {
		Resource string `json:"resource"`
		APIGroup string `json:"apiGroup"`
	} `json:"objectRef"`
	RequestObject  json.RawMessage `json:"requestObject"`
	ResponseObject json.RawMessage `json:"responseObject"`
}

// leaks lists the secrets a body still holds in clear: non-empty token
// strings, and for Secrets any string value of data or stringData.
func (b *refBody) leaks(secret bool) []string {
	var out []string
	for _, tok := range []any{b.Spec.Token, b.Status.Token} {
		if s, ok := tok.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	if !secret && !(b.APIVersion == "v1" && (b.Kind == "Secret" || b.Kind == "SecretList")) {
		return out
	}
	for _, m := range []map[string]json.RawMessage{b.Data, b.StringData} {
		for _, v := range m {
			var s string
			if json.Unmarshal(v, &s) == nil {
				out = append(out, s)
			}
		}
	}
	for i := range b.Items {
		out = append(out, b.Items[i].leaks(true)...)
	}
	if la := b.Metadata.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; la != "" {
		var inner refBody
		if json.Unmarshal([]byte(la), &inner) == nil {
			out = append(out, inner.leaks(true)...)
		}
	}
	return out
}

func eventLeaks(raw []byte) []string {
	var ev refEvent
	_ = json.Unmarshal(raw, &ev) // type errors leave the rest decoded, as for consumers
	secret := ev.ObjectRef != nil && ev.ObjectRef.Resource == "secrets" && ev.ObjectRef.APIGroup == ""
	var out []string
	for _, body := range []json.RawMessage{ev.RequestObject, ev.ResponseObject} {
		var b refBody
		if len(body) > 0 && body[0] == '{' {
			_ = json.Unmarshal(body, &b)
			out = append(out, b.leaks(secret)...)
		}
	}
	return out
}

// FuzzRedact checks that the redactor never panics, and that whatever
// encoding/json would read as a token or a Secret value in an event the
// redactor accepted is gone from its output.
func FuzzRedact(f *testing.F) {
	rsaKey := redacttest.RSAKey(f)
	tok := rsaKey.Token(f, redacttest.PodClaims(issued))
	b64 := base64.StdEncoding.EncodeToString([]byte(tok))
	la, _ := json.Marshal(`{"apiVersion":"v1","data":{"token":"` + b64 + `"},"kind":"Secret"}`)
	vars := map[string]string{
		"TOKEN": tok, "TOKEN_B64": b64, "CACRT_B64": "Y2E=", `"LASTAPPLIED"`: string(la),
		"STATUS": `{"authenticated":false,"error":"[invalid bearer token, square/go-jose: error in cryptographic primitive]"}`,
	}
	for _, name := range []string{
		"tokenreview_request.json", "tokenreview_response.json", "tokenrequest.json", "secret_sa_token.json",
		"secret_opaque.json", "secret_list.json", "secret_jsonpatch.json", "pod_metadata.json",
		"configmap_create.json", "proxy_access_token.json",
	} {
		f.Add(fill(f, name, vars))
	}
	f.Add([]byte(`{"requestObject":{"Spec":{"ToKen":"eyJhbGciOiJub25lIn0.e30."}}}`))
	f.Add([]byte(`{"objectRef":{"resource":"secrets"},"requestObject":{"data":{"a":"c2VjcmV0"}}}`))
	r, err := redact.New(redact.Config{JWKSFile: redacttest.WriteJWKS(f, rsaKey)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		in := bytes.Clone(raw)
		out, changed, err := r.Event(raw)
		if !bytes.Equal(raw, in) {
			t.Fatal("input modified")
		}
		if err != nil {
			if json.Valid(raw) && bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
				t.Fatalf("valid event refused: %v", err)
			}
			return
		}
		if !changed && !bytes.Equal(out, raw) {
			t.Fatal("unchanged but different")
		}
		for _, s := range eventLeaks(out) {
			t.Fatalf("secret %q survived in\n%s", s, out)
		}
		// A token the input held in a token field must not appear
		// anywhere in the output (unless it also sat elsewhere).
		for _, s := range eventLeaks(raw) {
			if len(s) >= 16 && bytes.Count(raw, []byte(s)) == 1 && bytes.Contains(out, []byte(s)) &&
				!strings.Contains(string(out), `redacted`) {
				t.Fatalf("secret %q copied to output", s)
			}
		}
	})
}

func BenchmarkRedact(b *testing.B) {
	rsaKey := redacttest.RSAKey(b)
	r, err := redact.New(redact.Config{JWKSFile: redacttest.WriteJWKS(b, rsaKey)})
	if err != nil {
		b.Fatal(err)
	}
	tok := rsaKey.Token(b, redacttest.PodClaims(issued))
	for _, bc := range []struct {
		name string
		raw  []byte
	}{
		{"metadata", fill(b, "pod_metadata.json", nil)},
		{"configmap-body", fill(b, "configmap_create.json", nil)},
		{"tokenreview", fill(b, "tokenreview_request.json", map[string]string{"TOKEN": tok})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.raw)))
			for b.Loop() {
				if _, _, err := r.Event(bc.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
