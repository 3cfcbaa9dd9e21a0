package redact_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/redact/redacttest"
)

// issued is when the test tokens were minted: the events' own day.
var issued = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// fill reads testdata/name and substitutes each placeholder with its value,
// inserted as is.
func fill(t testing.TB, name string, vars map[string]string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(data))
	for k, v := range vars {
		s = strings.ReplaceAll(s, k, v)
	}
	return []byte(s)
}

func newRedactor(t testing.TB, cfg redact.Config) *redact.Redactor {
	t.Helper()
	r, err := redact.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustRedact runs the redactor and checks what every redacted event must
// satisfy: it changed, it still decodes as the pipeline decodes, and no
// secret in secrets survives in any encoding the event could carry it.
func mustRedact(t *testing.T, r *redact.Redactor, raw []byte, secrets ...string) []byte {
	t.Helper()
	out, changed, err := r.Event(raw)
	if err != nil {
		t.Fatalf("redacting: %v", err)
	}
	if !changed {
		t.Fatalf("event not changed:\n%s", raw)
	}
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
		t.Fatalf("redacted event does not decode: %v\n%s", err, out)
	}
	for _, s := range secrets {
		for _, enc := range []string{s, base64.StdEncoding.EncodeToString([]byte(s))} {
			if bytes.Contains(out, []byte(enc)) {
				t.Errorf("secret %.20q… survived redaction:\n%s", enc, out)
			}
		}
	}
	if credential.ContainsJWT(out) {
		t.Errorf("output still contains a JWT:\n%s", out)
	}
	return out
}

// tokenBody is the part of a TokenReview or TokenRequest the records sit in.
type tokenBody struct {
	Spec   struct{ Token json.RawMessage } `json:"spec"`
	Status struct{ Token json.RawMessage } `json:"status"`
}

func bodyRecord(t *testing.T, raw json.RawMessage, status bool) credential.JWTRecord {
	t.Helper()
	var b tokenBody
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	tok := b.Spec.Token
	if status {
		tok = b.Status.Token
	}
	rec, ok := credential.ParseJWTRecord(tok)
	if !ok {
		t.Fatalf("token field is not a JWT record: %s", tok)
	}
	return rec
}

func TestRedactTokenReview(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	es256, es384, es512 := redacttest.ECKey(t, "ES256"), redacttest.ECKey(t, "ES384"), redacttest.ECKey(t, "ES512")
	stranger := redacttest.ECKey(t, "ES256") // not in the JWKS
	jwks := redacttest.WriteJWKS(t, rsaKey, es256, es384, es512)
	withKeys := newRedactor(t, redact.Config{JWKSFile: jwks})
	noKeys := newRedactor(t, redact.Config{})

	pod := redacttest.PodClaims(issued)
	good := rsaKey.Token(t, pod)
	// A token whose claims were edited after signing.
	parts := strings.Split(good, ".")
	forgedClaims := redacttest.Unsigned(t, redacttest.TokenRequestClaims(issued, 10*365*24*time.Hour))
	tampered := parts[0] + "." + strings.Split(forgedClaims, ".")[1] + "." + parts[2]
	pubDER, _ := json.Marshal(rsaKey.Signer.Public())

	f := func(name string, r *redact.Redactor, tok, wantVerified, wantWhy string, wantParseErr bool) {
		t.Run(name, func(t *testing.T) {
			raw := fill(t, "tokenreview_request.json", map[string]string{"TOKEN": tok})
			out := mustRedact(t, r, raw, tok)
			// Every byte around the token is kept.
			i := bytes.Index(raw, []byte(tok))
			if !bytes.HasPrefix(out, raw[:i-1]) || !bytes.HasSuffix(out, raw[i+len(tok)+1:]) {
				t.Errorf("bytes outside the token changed:\n%s", out)
			}
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
				t.Fatal(err)
			}
			rec := bodyRecord(t, ev.RequestObject.Raw, false)
			if rec.Verified != wantVerified || rec.VerifyError != wantWhy {
				t.Errorf("verified = %q (%q), want %q (%q)", rec.Verified, rec.VerifyError, wantVerified, wantWhy)
			}
			if (rec.ParseError != "") != wantParseErr {
				t.Errorf("parse error = %q, want one: %v", rec.ParseError, wantParseErr)
			}
			if rec.Length != len(tok) || len(rec.SHA256) != 64 {
				t.Errorf("fingerprint = %q, length %d", rec.SHA256, rec.Length)
			}
		})
	}
	f("RS256 in-tree", withKeys, good, credential.VerifiedYes, "", false)
	f("ES256", withKeys, es256.Token(t, pod), credential.VerifiedYes, "", false)
	f("ES384", withKeys, es384.Token(t, pod), credential.VerifiedYes, "", false)
	f("ES512", withKeys, es512.Token(t, pod), credential.VerifiedYes, "", false)
	f("no jwks", noKeys, good, credential.VerifiedUnknown, "", false)
	f("alg none", withKeys, redacttest.Unsigned(t, pod), credential.VerifiedNo, "alg none", false)
	f("alg none without jwks", noKeys, redacttest.Unsigned(t, pod), credential.VerifiedNo, "alg none", false)
	f("HS256 keyed with the public key", withKeys, redacttest.HS256(t, rsaKey.KID, pubDER, pod), credential.VerifiedNo, credential.VerifyErrAlg, false)
	f("tampered claims", withKeys, tampered, credential.VerifiedNo, credential.VerifyErrBadSignature, false)
	f("unknown kid", withKeys, stranger.Token(t, pod), credential.VerifiedNo, credential.VerifyErrUnknownKID, false)
	f("ES256 signed, RS256 claimed", withKeys, es256.Sign(t, map[string]any{"alg": "RS256", "kid": es256.KID}, pod), credential.VerifiedNo, credential.VerifyErrBadSignature, false)
	f("no kid", withKeys, rsaKey.Sign(t, map[string]any{"alg": "RS256"}, pod), credential.VerifiedYes, "", false)
	f("malformed", withKeys, "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.bm90IGpzb24.c2lnbmF0dXJl", credential.VerifiedNo, credential.VerifyErrUnknownKID, true)
}

func TestRedactTokenReviewResponse(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	r := newRedactor(t, redact.Config{JWKSFile: redacttest.WriteJWKS(t, rsaKey)})
	tok := rsaKey.Token(t, redacttest.PodClaims(issued))
	raw := fill(t, "tokenreview_response.json", map[string]string{
		"TOKEN":  tok,
		"STATUS": `{"authenticated":true,"user":{"username":"system:serviceaccount:shop:checkout","uid":"f1e2d3c4-2222-4b4b-8c8c-abcdefabcdef","groups":["system:serviceaccounts","system:serviceaccounts:shop","system:authenticated"]},"audiences":["https://kubernetes.default.svc.cluster.local"]}`,
	})
	out := mustRedact(t, r, raw, tok)
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
		t.Fatal(err)
	}
	for _, body := range []json.RawMessage{ev.RequestObject.Raw, ev.ResponseObject.Raw} {
		if rec := bodyRecord(t, body, false); rec.Verified != credential.VerifiedYes || rec.Claims.Sub != "system:serviceaccount:shop:checkout" {
			t.Errorf("record = %+v", rec)
		}
	}
	// Non-secret parts of the body stay: the status and the managed fields.
	for _, keep := range []string{`"authenticated":true`, `"f:token":{}`} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("lost %s", keep)
		}
	}
}

func TestRedactTokenRequest(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	r := newRedactor(t, redact.Config{JWKSFile: redacttest.WriteJWKS(t, rsaKey)})
	tok := rsaKey.Token(t, redacttest.PodClaims(issued))
	out := mustRedact(t, r, fill(t, "tokenrequest.json", map[string]string{"TOKEN": tok}), tok)
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
		t.Fatal(err)
	}
	rec := bodyRecord(t, ev.ResponseObject.Raw, true)
	k := rec.Claims.Kubernetes
	if rec.Verified != credential.VerifiedYes || rec.Header.Kid != rsaKey.KID || k == nil || k.WarnAfter == nil ||
		*k.WarnAfter != issued.Unix()+3607 || k.Pod == nil || k.Pod.Name != "checkout-7d9f8b6c5-x2x9q" ||
		*rec.Claims.Exp != issued.Unix()+365*24*3600 {
		t.Errorf("record = %+v, kubernetes.io = %+v", rec, k)
	}
	// The empty status.token of the request is not a secret and stays.
	if !bytes.Contains(out, []byte(`"status":{"token":"","expirationTimestamp":null}`)) {
		t.Errorf("request body changed:\n%s", out)
	}
}

func TestRedactSecrets(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	jwks := redacttest.WriteJWKS(t, rsaKey)
	legacy := rsaKey.Token(t, redacttest.LegacyClaims())
	tokB64 := base64.StdEncoding.EncodeToString([]byte(legacy))
	caB64 := base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n"))
	lastApplied, _ := json.Marshal(`{"apiVersion":"v1","data":{"ca.crt":"` + caB64 + `","namespace":"Y2k=","token":"` + tokB64 + `"},"kind":"Secret","metadata":{"annotations":{"kubernetes.io/service-account.name":"deployer"},"name":"deployer-token","namespace":"ci"},"type":"kubernetes.io/service-account-token"}` + "\n")

	type secretBody struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Data  map[string]json.RawMessage `json:"data"`
		Items []struct {
			Data map[string]json.RawMessage `json:"data"`
		} `json:"items"`
	}
	decode := func(t *testing.T, raw json.RawMessage) secretBody {
		t.Helper()
		var b secretBody
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("decoding body: %v\n%s", err, raw)
		}
		return b
	}

	t.Run("service-account-token with last-applied", func(t *testing.T) {
		r := newRedactor(t, redact.Config{JWKSFile: jwks})
		raw := fill(t, "secret_sa_token.json", map[string]string{
			"TOKEN_B64": tokB64, "CACRT_B64": caB64, `"LASTAPPLIED"`: string(lastApplied),
		})
		out := mustRedact(t, r, raw, legacy, caB64, "BEGIN CERTIFICATE")
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
			t.Fatal(err)
		}
		for _, raw := range []json.RawMessage{ev.RequestObject.Raw, ev.ResponseObject.Raw} {
			b := decode(t, raw)
			rec, ok := credential.ParseJWTRecord(b.Data["token"])
			if !ok || rec.Verified != credential.VerifiedYes || rec.Claims.Iss != "kubernetes/serviceaccount" ||
				rec.Claims.Kubernetes == nil || rec.Claims.Kubernetes.Secret.Name != "deployer-token-7xk2p" {
				t.Errorf("data.token = %s", b.Data["token"])
			}
			for _, k := range []string{"ca.crt", "namespace"} {
				var sr credential.SecretRecord
				if err := json.Unmarshal(b.Data[k], &sr); err != nil || sr.Redacted != credential.KindSecret || sr.Length == 0 {
					t.Errorf("data[%s] = %s", k, b.Data[k])
				}
			}
			la := b.Metadata.Annotations["kubectl.kubernetes.io/last-applied-configuration"]
			inner := decode(t, json.RawMessage(la))
			if _, ok := credential.ParseJWTRecord(inner.Data["token"]); !ok {
				t.Errorf("last-applied data.token = %s", inner.Data["token"])
			}
			if b.Metadata.Annotations["kubernetes.io/service-account.name"] != "deployer" {
				t.Errorf("other annotations changed: %v", b.Metadata.Annotations)
			}
		}
	})
	t.Run("opaque with stringData", func(t *testing.T) {
		r := newRedactor(t, redact.Config{FingerprintKey: "k8s-audit-fp"})
		raw := fill(t, "secret_opaque.json", nil)
		out := mustRedact(t, r, raw, "S3cr3t-Pa55w0rd", "UzNjcjN0LVBhNTV3MHJk", "Y2hlY2tvdXQ=", "postgres://")
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
			t.Fatal(err)
		}
		req, resp := decode(t, ev.RequestObject.Raw), decode(t, ev.ResponseObject.Raw)
		// The same password gets the same keyed fingerprint in the request
		// (base64 data) and the response.
		var a, b credential.SecretRecord
		_ = json.Unmarshal(req.Data["password"], &a)
		_ = json.Unmarshal(resp.Data["password"], &b)
		if a.HMACSHA256 == "" || a != b || a.Length != len("S3cr3t-Pa55w0rd") {
			t.Errorf("password records %+v and %+v", a, b)
		}
		if !bytes.Contains(out, []byte(`"labels":{"app":"checkout"}`)) || !bytes.Contains(out, []byte(`"stringData":{"DATABASE_URL":{"redacted":"secret"`)) {
			t.Errorf("structure lost:\n%s", out)
		}
	})
	t.Run("list", func(t *testing.T) {
		r := newRedactor(t, redact.Config{})
		out := mustRedact(t, r, fill(t, "secret_list.json", map[string]string{"TOKEN_B64": tokB64}), legacy, "UzNjcjN0LVBhNTV3MHJk")
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
			t.Fatal(err)
		}
		if b := decode(t, ev.ResponseObject.Raw); len(b.Items) != 2 {
			t.Errorf("items = %d", len(b.Items))
		} else if rec, ok := credential.ParseJWTRecord(b.Items[1].Data["token"]); !ok || rec.Verified != credential.VerifiedUnknown {
			t.Errorf("items[1].data.token = %s", b.Items[1].Data["token"])
		}
	})
	t.Run("json patch", func(t *testing.T) {
		r := newRedactor(t, redact.Config{})
		out := mustRedact(t, r, fill(t, "secret_jsonpatch.json", nil), "TjN3LVBhNTV3MHJkLTIwMjY=", "N3w-Pa55w0rd-2026", "sk_live_51HbQpLrT0k3nV4lu3")
		if !bytes.Contains(out, []byte(`"path":"/data/password"`)) {
			t.Errorf("patch paths lost:\n%s", out)
		}
	})
}

func TestRedactURI(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	r := newRedactor(t, redact.Config{})
	jwt := rsaKey.Token(t, redacttest.PodClaims(issued))
	f := func(name, tok string) {
		t.Run(name, func(t *testing.T) {
			out := mustRedact(t, r, fill(t, "proxy_access_token.json", map[string]string{"TOKEN": tok}), tok, "Zt9rQ2wX8vB4nM7kP1sD6fH3jL5cV0aE", "glsa_second_0123456789abcdef")
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(ev.RequestURI, "/api/v1/namespaces/monitoring/services/grafana:3000/proxy/api/dashboards?orgId=1&access_token=redacted:sha256:") {
				t.Errorf("requestURI = %s", ev.RequestURI)
			}
		})
	}
	f("jwt", jwt)
	f("opaque", "glsa_Zt9rQ2wX8vB4nM7kP1sD6fH3jL5cV0aE_3b2f1a0c")
	f("percent-encoded name", "glsa_Zt9rQ2wX8vB4nM7kP1sD6fH3jL5cV0aE_3b2f1a0c\u0026x=1\u0026acc%65ss_t%6Fken=glsa_second_0123456789abcdef")
}

// TestRedactKeySpellings feeds events whose keys are spelt the way no
// apiserver writes them but encoding/json still reads as the same field:
// the redactor must read them the same way.
func TestRedactKeySpellings(t *testing.T) {
	rsaKey := redacttest.RSAKey(t)
	r := newRedactor(t, redact.Config{})
	tok := rsaKey.Token(t, redacttest.PodClaims(issued))
	f := func(name string, edit func(string) string) {
		t.Run(name, func(t *testing.T) {
			raw := []byte(edit(string(fill(t, "tokenreview_request.json", map[string]string{"TOKEN": tok}))))
			out := mustRedact(t, r, raw, tok)
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "prod-eu1", out); err != nil || ev.RequestObject == nil {
				t.Fatalf("decoding: %v", err)
			}
		})
	}
	f("upper case", func(s string) string {
		return strings.NewReplacer(`"requestObject"`, `"REQUESTOBJECT"`, `"spec"`, `"Spec"`, `"token"`, `"TOKEN"`).Replace(s)
	})
	f("unicode escapes", func(s string) string {
		return strings.NewReplacer(`"requestObject"`, `"requestObj\u0065ct"`, `"token"`, `"t\u006fken"`).Replace(s)
	})
	f("duplicate key", func(s string) string {
		return strings.Replace(s, `"spec":{"token":`, `"spec":{"token":"x","token":`, 1)
	})
}

func TestRedactUnchanged(t *testing.T) {
	r := newRedactor(t, redact.Config{JWKSFile: redacttest.WriteJWKS(t, redacttest.RSAKey(t))})
	f := func(name string, raw []byte) {
		t.Run(name, func(t *testing.T) {
			out, changed, err := r.Event(raw)
			if err != nil || changed || &out[0] != &raw[0] || len(out) != len(raw) {
				t.Errorf("changed=%v err=%v: got a different slice", changed, err)
			}
		})
	}
	f("metadata level", fill(t, "pod_metadata.json", nil))
	f("configmap body", fill(t, "configmap_create.json", nil))
	f("tokenreview without token", fill(t, "tokenreview_request.json", map[string]string{"TOKEN": ""}))

	if raceEnabled {
		return
	}
	raw := fill(t, "pod_metadata.json", nil)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = r.Event(raw) }); n != 0 {
		t.Errorf("event without secrets: %v allocations, want 0", n)
	}
}

func TestRedactInvalid(t *testing.T) {
	r := newRedactor(t, redact.Config{})
	f := func(in string) {
		t.Helper()
		out, _, err := r.Event([]byte(in))
		if err == nil || out != nil {
			t.Errorf("%s: err=%v out=%s", in, err, out)
		}
	}
	f(`{"requestObject":{"spec":{"token":"eyJhbGciOiJub25lIn0.e30."}}`)
	f(`["requestObject"]`)
	f(`{"requestObject":{"spec":{"token":"eyJhbGciOiJub25lIn0.e30."}}} trailing`)
}

func TestContainsJWT(t *testing.T) {
	f := func(in string, want bool) {
		t.Helper()
		if got := credential.ContainsJWT([]byte(in)); got != want {
			t.Errorf("credential.ContainsJWT(%q) = %v, want %v", in, got, want)
		}
	}
	f(`"token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"`, true)
	f(`eyJhbGciOiJub25lIn0.e30.`, true)
	f(`eyJhbGciOiJSUzI1NiJ9`, false)
	f(`{"redacted":"jwt","sha256":"ab12"}`, false)
	f(`eyJ.eyJ.x`, false)
}

func TestParseJWKS(t *testing.T) {
	f := func(doc, wantErr string) {
		t.Helper()
		_, err := credential.ParseJWKS([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("credential.ParseJWKS(%s) = %v, want error containing %q", doc, err, wantErr)
		}
	}
	f(`{"keys":[]}`, "no RSA or EC signing key")
	f(`{"keys":[{"kty":"EC","crv":"P-192","kid":"a","x":"AA","y":"AA"}]}`, `unsupported curve "P-192"`)
	f(`{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AQ","y":"AQ"}]}`, `kid "a"`)
	f(`{"keys":[{"kty":"RSA","kid":"b","n":"AQAB","e":"AQAB"}]}`, "too short")
	f(`not json`, "parsing jwks")
}

// TestRedactLeavesLookAlikes: text that only resembles a credential, and
// the apiserver's own annotations that detectors read, pass unchanged.
func TestRedactLeavesLookAlikes(t *testing.T) {
	r := newRedactor(t, redact.Config{})
	f := func(name, field string) {
		t.Run(name, func(t *testing.T) {
			raw := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ci/pods","verb":"list",` + field + `}`)
			out, changed, err := r.Event(raw)
			if err != nil || changed {
				t.Errorf("changed=%v err=%v:\n%s", changed, err, out)
			}
		})
	}
	f("legacy-token annotation", `"annotations":{"authentication.k8s.io/legacy-token":"system:serviceaccount:ci:deployer","authentication.k8s.io/legacy-token-manual-secret":"deployer-token"}`)
	f("stale-token annotation", `"annotations":{"authentication.k8s.io/stale-token":"subject: system:serviceaccount:ci:deployer, seconds after warning threshold: 3600"}`)
	f("bearer in prose", `"responseStatus":{"code":401,"message":"invalid bearer token"}`)
	f("basic in prose", `"responseStatus":{"code":401,"message":"Basic authentication is disabled"}`)
	f("hostnames and versions", `"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46","sourceIPs":["10.0.4.7"],"objectRef":{"resource":"services","name":"kube-dns.kube-system.svc.cluster.local"}`)
	f("timestamps", `"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.131987Z"`)
	f("token count in a body", `"requestObject":{"kind":"ConfigMap","data":{"note":"tokens: 3, password rotation: monthly"}}`)
}
