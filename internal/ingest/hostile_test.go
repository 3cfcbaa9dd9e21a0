package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact/redacttest"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// answerBackstop bounds how long a hostile request may take to be answered.
// It is not a performance target (benchmarks show the redactor's scans are
// linear): it only turns "ingest is stuck on this body" into a failure
// instead of a hung test. The quadratic JWT scan took 14 s on the eyJ row.
const answerBackstop = 10 * time.Second

// maxHostileAnswer is the largest answer a refused batch may get: the list
// of rejections is capped, so that a body of 300,000 bad items does not
// turn into tens of megabytes of answer.
const maxHostileAnswer = 64 << 10

// TestHostileInputs sends bodies built to exhaust ingest (quadratic scans,
// millions of items, answers listing every one of them) or to slip past its
// validation, and checks the answer and what reached the spool.
func TestHostileInputs(t *testing.T) {
	type outcome struct {
		code   int
		raw    []byte
		resp   hostileResponse
		stored []hostileRecord
	}
	rows := []struct {
		name string
		// cfg adjusts the handler's config; nil keeps the defaults.
		cfg   func(c *Config)
		body  func(t *testing.T) string
		check func(t *testing.T, got outcome)
		// then runs after the check against the same server, to show
		// ingest is still serving.
		then bool
	}{
		{
			// Each "eyJ" starts a would-be JWT that runs to the end of
			// the string: a scan restarting at each is quadratic.
			name: "eyJ x 60000 in requestURI",
			body: func(t *testing.T) string {
				return eventList(hostileEdit(t, item(301, "alice@example.com", ""), func(ev map[string]any) {
					ev["requestURI"] = "/api/v1/namespaces/default/pods/" + strings.Repeat("eyJ", 60_000)
				}))
			},
			check: func(t *testing.T, got outcome) {
				if got.code != http.StatusOK && got.code != http.StatusBadRequest {
					t.Errorf("code %d, want 200 or 400: %s", got.code, hostileTrunc(got.raw))
				}
			},
			then: true,
		},
		{
			name: "1,000,000 empty items",
			body: func(t *testing.T) string {
				return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` +
					strings.TrimSuffix(strings.Repeat("{},", 1_000_000), ",") + `]}`
			},
			check: func(t *testing.T, got outcome) {
				if got.code != http.StatusRequestEntityTooLarge {
					t.Errorf("code %d, want 413 (too many events in one request): %s", got.code, hostileTrunc(got.raw))
				}
				if got.resp.Error == "" {
					t.Errorf("413 without an error saying which limit: %s", hostileTrunc(got.raw))
				}
				if len(got.stored) != 0 {
					t.Errorf("%d events stored, want none", len(got.stored))
				}
			},
		},
		{
			name: "300,000 items of 1",
			// The row is about the answer to many bad items, not the
			// cap on items: room for all of them.
			cfg: func(c *Config) { hostileSetMaxEvents(c, 400_000) },
			body: func(t *testing.T) string {
				return eventList(strings.TrimSuffix(strings.Repeat("1,", 300_000), ","))
			},
			check: func(t *testing.T, got outcome) {
				if got.code != http.StatusBadRequest {
					t.Errorf("code %d, want 400", got.code)
				}
				if len(got.raw) >= maxHostileAnswer {
					t.Errorf("answer of %d bytes, want under %d", len(got.raw), maxHostileAnswer)
				}
				if n := len(got.resp.Rejected); n > 100 || n == 0 {
					t.Errorf("answer lists %d rejections, want 1 to 100", n)
				}
				switch {
				case got.resp.RejectedCount == nil:
					t.Errorf("answer has no rejected_count")
				case *got.resp.RejectedCount != 300_000:
					t.Errorf("rejected_count %d, want 300000", *got.resp.RejectedCount)
				}
				if got.resp.Accepted != 0 || len(got.stored) != 0 {
					t.Errorf("accepted %d, stored %d, want none", got.resp.Accepted, len(got.stored))
				}
			},
		},
		{
			name: "incomplete events refused one by one",
			body: func(t *testing.T) string { return eventList(hostileIncompleteItems(t)...) },
			check: func(t *testing.T, got outcome) {
				if got.code != http.StatusBadRequest {
					t.Errorf("code %d, want 400", got.code)
				}
				byIndex := map[int]Rejection{}
				for _, r := range got.resp.Rejected {
					byIndex[r.Index] = r
				}
				for _, w := range hostileIncompleteWant {
					r, ok := byIndex[w.index]
					if !ok {
						t.Errorf("item %d (%s) not rejected", w.index, w.what)
						continue
					}
					if msg := r.Reason + " " + r.Error; !w.reason.MatchString(msg) {
						t.Errorf("item %d (%s) rejected with %q, want a reason matching %s", w.index, w.what, msg, w.reason)
					}
				}
				for i := range byIndex {
					if slices.Contains(hostileIncompleteValid, i) {
						t.Errorf("valid item %d rejected: %+v", i, byIndex[i])
					}
				}
				// Exactly the valid items are stored.
				var want, stored []string
				for _, i := range hostileIncompleteValid {
					want = append(want, fmt.Sprintf("6c1b6f4e-0000-4000-8000-%012d", 100+i))
				}
				for _, r := range got.stored {
					stored = append(stored, hostileAuditID(r.Value))
				}
				slices.Sort(stored)
				if !slices.Equal(stored, want) {
					t.Errorf("stored events %q, want exactly the valid ones %q", stored, want)
				}
				if got.resp.Accepted != len(hostileIncompleteValid) {
					t.Errorf("accepted %d, want %d", got.resp.Accepted, len(hostileIncompleteValid))
				}
			},
		},
		{
			name: "audit.k8s.io/v1beta1 EventList",
			body: func(t *testing.T) string { return hostileV1beta1List(t) },
			check: func(t *testing.T, got outcome) {
				if got.code != http.StatusOK || got.resp.Accepted != 2 {
					t.Fatalf("code %d, accepted %d, want 200 with 2 accepted: %s", got.code, got.resp.Accepted, hostileTrunc(got.raw))
				}
				var ids []string
				for _, r := range got.stored {
					var ev auditv1.Event
					if err := auditjson.DecodeEvent(r.Value, &ev); err != nil {
						t.Errorf("stored event is not audit.k8s.io/v1: %v\n%s", err, r.Value)
						continue
					}
					var tm struct{ APIVersion string }
					_ = json.Unmarshal(r.Value, &tm)
					if tm.APIVersion != "" && tm.APIVersion != auditjson.AuditAPIVersion {
						t.Errorf("stored event says apiVersion %q", tm.APIVersion)
					}
					ids = append(ids, string(ev.AuditID))
				}
				slices.Sort(ids)
				want := []string{"6c1b6f4e-0000-4000-8000-000000000201", "6c1b6f4e-0000-4000-8000-000000000202"}
				if !slices.Equal(ids, want) {
					t.Errorf("stored auditIDs %q, want %q", ids, want)
				}
			},
		},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			cfg := Config{}
			if row.cfg != nil {
				row.cfg(&cfg)
			}
			sink := newHostileSpool(t)
			srv, _ := hostileServer(t, cfg, sink.w)
			ctx, cancel := context.WithTimeout(t.Context(), answerBackstop)
			defer cancel()
			code, raw, resp, err := hostilePost(ctx, srv.URL+"/audit/prod-eu1", []byte(row.body(t)))
			if err != nil {
				t.Fatalf("no answer within %s: %v", answerBackstop, err)
			}
			row.check(t, outcome{code: code, raw: raw, resp: resp, stored: sink.records(t)})
			if row.then {
				code, raw, _, err := hostilePost(ctx, srv.URL+"/audit/prod-eu1", []byte(eventList(item(999, "bob@example.com", ""))))
				if err != nil || code != http.StatusOK {
					t.Fatalf("ordinary event afterwards: code %d, err %v: %s", code, err, raw)
				}
			}
		})
	}
}

// hostileIncompleteWant are the items of hostileIncompleteItems that must be refused,
// each with what its reason must name.
var hostileIncompleteWant = []struct {
	index  int
	what   string
	reason *regexp.Regexp
}{
	// Empty: anything it lacks will do.
	{1, "{}", regexp.MustCompile(`(?i)auditID|\bstage\b|\blevel\b|timestamp|\bverb\b|requestURI`)},
	// A bad stage and nothing else: the stage, or anything it lacks.
	{2, `{"stage":"Bogus","verb":"get"}`, regexp.MustCompile(`(?i)\bstage\b|Bogus|auditID|\blevel\b|timestamp|requestURI`)},
	// The rest are complete events with exactly one fault.
	{4, "stage Bogus", regexp.MustCompile(`(?i)\bstage\b|Bogus`)},
	{5, "no auditID", regexp.MustCompile(`(?i)auditID`)},
	{6, "no requestReceivedTimestamp", regexp.MustCompile(`(?i)requestReceivedTimestamp`)},
	{7, "no stageTimestamp", regexp.MustCompile(`(?i)\bstageTimestamp\b`)},
	{8, "level Verbose", regexp.MustCompile(`(?i)\blevel\b|Verbose`)},
}

// hostileIncompleteValid are the indexes of hostileIncompleteItems that are valid.
var hostileIncompleteValid = []int{0, 3, 9}

// hostileIncompleteItems interleaves valid items (auditID ...100+index) with
// items each missing or spoiling one field validation must require.
func hostileIncompleteItems(t *testing.T) []string {
	one := func(i int, edit func(ev map[string]any)) string {
		return hostileEdit(t, item(100+i, "alice@example.com", ""), edit)
	}
	keep := func(map[string]any) {}
	return []string{
		0: one(0, keep),
		1: `{}`,
		2: `{"stage":"Bogus","verb":"get"}`,
		3: one(3, keep),
		4: one(4, func(ev map[string]any) { ev["stage"] = "Bogus" }),
		5: one(5, func(ev map[string]any) { delete(ev, "auditID") }),
		6: one(6, func(ev map[string]any) { delete(ev, "requestReceivedTimestamp") }),
		7: one(7, func(ev map[string]any) { delete(ev, "stageTimestamp") }),
		8: one(8, func(ev map[string]any) { ev["level"] = "Verbose" }),
		9: one(9, keep),
	}
}

// hostileV1beta1List is an EventList as a pre-1.24 apiserver (or a shipper still
// configured for v1beta1) sends it: the list and one item say
// audit.k8s.io/v1beta1, and the items carry v1beta1's metadata and
// timestamp.
func hostileV1beta1List(t *testing.T) string {
	beta := func(n int, typed bool) string {
		return hostileEdit(t, item(n, "alice@example.com", ""), func(ev map[string]any) {
			ev["metadata"] = map[string]any{"creationTimestamp": "2026-11-27T09:15:01Z"}
			ev["timestamp"] = "2026-11-27T09:15:01Z"
			if typed {
				ev["kind"], ev["apiVersion"] = "Event", "audit.k8s.io/v1beta1"
			}
		})
	}
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","metadata":{},"items":[` + beta(201, false) + "," + beta(202, true) + `]}`
}

func hostileTrunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// hostileSecretCase is one event carrying a credential somewhere the redactor must
// find it.
type hostileSecretCase struct {
	name  string
	event string
	// sent are strings that appear verbatim in the event as sent (the
	// control) and must appear nowhere downstream.
	sent []string
	// derived are decoded forms (a base64 value's plaintext, a token
	// with its dots) that must not appear downstream either.
	derived []string
	// jwt: the stored event must not contain anything JWT-shaped.
	jwt bool
	// dataKeys are Secret data keys that must survive redaction.
	dataKeys []string
}

// hostileSecretCases builds one event per place a credential hides.
func hostileSecretCases(t *testing.T) []hostileSecretCase {
	key := redacttest.RSAKey(t)
	now := time.Date(2026, 11, 27, 9, 20, 0, 0, time.UTC)
	n := 0
	var cases []hostileSecretCase
	// add builds the n-th carrier event.
	add := func(c hostileSecretCase, edit func(ev map[string]any)) {
		n++
		c.event = hostileCarrier(t, n, edit)
		cases = append(cases, c)
	}
	// token mints a signed pod token whose payload is unique to name.
	token := func(name string) string {
		claims := redacttest.PodClaims(now)
		claims["auditpipe.test/marker"] = "marker-" + name
		return key.Token(t, claims)
	}
	// rawToken signs a header written with whitespace encoding/json never
	// writes, so the header segment does not start "eyJ".
	rawToken := func(header, name string) string {
		return key.SignRaw(t, fmt.Sprintf(header, key.KID), fmt.Sprintf(`{"iss":%q,"sub":"system:serviceaccount:ci:deployer","auditpipe.test/marker":"marker-%s"}`, redacttest.Issuer, name))
	}
	const ewHeader = "{\n  \"alg\": \"RS256\",\n  \"kid\": %q\n}"
	const eyAiHeader = `{ "alg": "RS256", "kid": %q }`
	parts := redacttest.JWTParts
	secretsRef := map[string]any{"resource": "secrets", "namespace": "payments", "apiVersion": "v1"}
	crRef := map[string]any{"resource": "pipelineruns", "namespace": "ci", "name": "deploy-7f9c2", "apiGroup": "tekton.dev", "apiVersion": "v1"}
	// pipelineRun is a custom resource with one string parameter.
	pipelineRun := func(value string) map[string]any {
		return map[string]any{
			"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
			"metadata": map[string]any{"name": "deploy-7f9c2", "namespace": "ci"},
			"spec": map[string]any{
				"pipelineRef": map[string]any{"name": "deploy"},
				"params":      []any{map[string]any{"name": "registry-auth", "value": value}},
			},
		}
	}
	createCR := func(value string) func(ev map[string]any) {
		return func(ev map[string]any) {
			ev["verb"], ev["requestURI"], ev["objectRef"] = "create", "/apis/tekton.dev/v1/namespaces/ci/pipelineruns", crRef
			ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": 201}
			ev["requestObject"] = pipelineRun(value)
		}
	}
	// configMap creates a ConfigMap holding one data value.
	configMap := func(name, value string) func(ev map[string]any) {
		return func(ev map[string]any) {
			ev["verb"], ev["requestURI"] = "create", "/api/v1/namespaces/ci/configmaps"
			ev["objectRef"] = map[string]any{"resource": "configmaps", "namespace": "ci", "name": name, "apiVersion": "v1"}
			ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": 201}
			ev["requestObject"] = map[string]any{"kind": "ConfigMap", "apiVersion": "v1",
				"metadata": map[string]any{"name": name, "namespace": "ci"}, "data": map[string]any{"config": value}}
		}
	}
	proxyURI := "/api/v1/namespaces/auth/services/https:token-verifier:8443/proxy/"
	proxy := func(uri string) func(ev map[string]any) {
		return func(ev map[string]any) {
			ev["requestURI"] = uri
			ev["objectRef"] = map[string]any{"resource": "services", "namespace": "auth", "name": "https:token-verifier:8443", "apiVersion": "v1", "subresource": "proxy"}
		}
	}

	{
		pw := "tbl-ledger-pw-Q8v2Lk9x"
		add(hostileSecretCase{name: "Secret in a meta.k8s.io Table", sent: []string{hostileB64(pw)}, derived: []string{pw}, dataKeys: []string{"ledger-db-password"}},
			func(ev map[string]any) {
				ev["verb"], ev["requestURI"], ev["objectRef"] = "list", "/api/v1/namespaces/payments/secrets?limit=500", secretsRef
				ev["responseObject"] = hostileObj(t, fmt.Sprintf(`{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"918273"},"columnDefinitions":[{"name":"Name","type":"string","format":"name","description":"Name must be unique within a namespace.","priority":0},{"name":"Type","type":"string","format":"","description":"","priority":0},{"name":"Data","type":"string","format":"","description":"","priority":0},{"name":"Age","type":"string","format":"","description":"","priority":0}],"rows":[{"cells":["ledger-db","Opaque",1,"12d"],"object":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"ledger-db","namespace":"payments","uid":"3f1e2d4c-5b6a-4789-9abc-def012345678","resourceVersion":"918270","creationTimestamp":"2026-11-15T08:00:00Z"},"type":"Opaque","data":{"ledger-db-password":%q}}}]}`, hostileB64(pw)))
			})
	}
	{
		apiKey := "list-stripe-key-sk_live_7Hq2Zp4M"
		add(hostileSecretCase{name: "v1 List of Secrets under a configmaps objectRef", sent: []string{hostileB64(apiKey)}, derived: []string{apiKey}, dataKeys: []string{"stripe-api-key"}},
			func(ev map[string]any) {
				ev["verb"], ev["requestURI"] = "list", "/api/v1/namespaces/payments/configmaps"
				ev["objectRef"] = map[string]any{"resource": "configmaps", "namespace": "payments", "apiVersion": "v1"}
				ev["responseObject"] = hostileObj(t, fmt.Sprintf(`{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":""},"items":[{"kind":"Secret","apiVersion":"v1","metadata":{"name":"stripe","namespace":"payments"},"type":"Opaque","data":{"stripe-api-key":%q}}]}`, hostileB64(apiKey)))
			})
	}
	for _, v := range []struct{ kind, apiVersion string }{{"Secret", ""}, {"secret", "v1"}, {"SECRET", ""}} {
		pw := "restore-pw-" + v.kind + "-Zr8mW3"
		add(hostileSecretCase{name: fmt.Sprintf("kind %q apiVersion %q without objectRef", v.kind, v.apiVersion), sent: []string{hostileB64(pw)}, derived: []string{pw}, dataKeys: []string{"restore-password"}},
			func(ev map[string]any) {
				delete(ev, "objectRef")
				ev["verb"], ev["requestURI"] = "create", "/apis/backup.example.com/v1/namespaces/payments/restores"
				ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": 201}
				body := map[string]any{"kind": v.kind, "metadata": map[string]any{"name": "restore-creds", "namespace": "payments"},
					"type": "Opaque", "data": map[string]any{"restore-password": hostileB64(pw)}}
				if v.apiVersion != "" {
					body["apiVersion"] = v.apiVersion
				}
				ev["requestObject"] = body
			})
	}
	{
		tok := token("tokenreview-in-list")
		add(hostileSecretCase{name: "TokenReview inside a List", sent: parts(tok), jwt: true}, func(ev map[string]any) {
			ev["level"], ev["verb"], ev["requestURI"] = "Request", "create", "/apis/authentication.k8s.io/v1/tokenreviews"
			ev["objectRef"] = map[string]any{"resource": "tokenreviews", "apiGroup": "authentication.k8s.io", "apiVersion": "v1"}
			ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": 201}
			ev["requestObject"] = hostileObj(t, fmt.Sprintf(`{"kind":"List","items":[{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":%q}}]}`, tok))
		})
	}
	for _, version := range []string{"v1", "v1beta1"} {
		tok := token("tokenrequest-" + version)
		add(hostileSecretCase{name: "TokenRequest status.token authentication.k8s.io/" + version, sent: parts(tok), jwt: true}, func(ev map[string]any) {
			ev["verb"], ev["requestURI"] = "create", "/api/v1/namespaces/ci/serviceaccounts/deployer/token"
			ev["objectRef"] = map[string]any{"resource": "serviceaccounts", "namespace": "ci", "name": "deployer", "apiVersion": "v1", "subresource": "token"}
			ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": 201}
			ev["requestObject"] = hostileObj(t, fmt.Sprintf(`{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/%s","spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600}}`, version))
			ev["responseObject"] = hostileObj(t, fmt.Sprintf(`{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/%s","spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600},"status":{"token":%q,"expirationTimestamp":"2026-11-27T10:20:01Z"}}`, version, tok))
		})
	}
	{
		tok := token("annotation")
		add(hostileSecretCase{name: "JWT in an annotation value", sent: parts(tok), jwt: true}, func(ev map[string]any) {
			ev["annotations"].(map[string]any)["gateway.example.com/forwarded-authorization"] = tok
		})
	}
	{
		tok := token("user-extra")
		add(hostileSecretCase{name: "JWT in user.extra", sent: parts(tok), jwt: true}, func(ev map[string]any) {
			ev["user"] = map[string]any{"username": "oidc:alice", "groups": []any{"system:authenticated"},
				"extra": map[string]any{"gateway.example.com/id-token": []any{tok}}}
		})
	}
	{
		tok := token("impersonated-extra")
		add(hostileSecretCase{name: "JWT in impersonatedUser.extra", sent: parts(tok), jwt: true}, func(ev map[string]any) {
			ev["impersonatedUser"] = map[string]any{"username": "system:serviceaccount:ci:deployer", "groups": []any{"system:serviceaccounts"},
				"extra": map[string]any{"gateway.example.com/id-token": []any{tok}}}
		})
	}
	{
		tok := token("status-message")
		add(hostileSecretCase{name: "JWT in responseStatus.message", sent: parts(tok), jwt: true}, func(ev map[string]any) {
			ev["verb"] = "create"
			ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "status": "Failure", "reason": "Forbidden", "code": 403,
				"message": fmt.Sprintf(`admission webhook "tokens.example.com" denied the request: token %s is expired`, tok)}
		})
	}
	{
		tok := token("cr-around")
		add(hostileSecretCase{name: "JWT with whitespace around it in a custom resource", sent: parts(tok), jwt: true}, createCR("\n  "+tok+" \n"))
	}
	{
		tok := token("cr-inside")
		// Folded the way YAML and terminals wrap it: a line break after
		// each dot.
		folded := strings.ReplaceAll(tok, ".", ".\n    ")
		add(hostileSecretCase{name: "JWT folded over lines in a custom resource", sent: parts(tok)[1:], derived: []string{tok}, jwt: true}, createCR(folded))
	}
	{
		tok := token("cr-bearer")
		add(hostileSecretCase{name: "BEARER JWT in a custom resource", sent: parts(tok), jwt: true}, createCR("BEARER "+tok))
	}
	kubeconfig := func(user string) string {
		return "apiVersion: v1\nkind: Config\nclusters:\n- name: prod-eu1\n  cluster:\n    server: https://10.0.0.10:6443\n    certificate-authority-data: " +
			hostileB64("-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n") +
			"\ncontexts:\n- name: deployer@prod-eu1\n  context:\n    cluster: prod-eu1\n    user: deployer\ncurrent-context: deployer@prod-eu1\nusers:\n- name: deployer\n  user:\n" + user
	}
	{
		opaque := "kcfgT0kenQ4w7Zr2Xy9Vb6Nm3Lp8"
		add(hostileSecretCase{name: "kubeconfig token in a ConfigMap", sent: []string{opaque}}, configMap("ci-kubeconfig", kubeconfig("    token: "+opaque+"\n")))
	}
	{
		keyData := hostileB64(redacttest.PrivateKeyPEM(t, redacttest.PEMEC))
		add(hostileSecretCase{name: "kubeconfig client-key-data in a ConfigMap", sent: []string{keyData, keyData[len(keyData)/2-16 : len(keyData)/2+16]}},
			configMap("ci-kubeconfig-x509", kubeconfig("    client-certificate-data: "+hostileB64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")+"\n    client-key-data: "+keyData+"\n")))
	}
	{
		pw := "kcfg-Tr0ub4dor-staple-9f3k2q"
		add(hostileSecretCase{name: "kubeconfig password in a ConfigMap", sent: []string{pw}}, configMap("ci-kubeconfig-basic", kubeconfig("    username: admin\n    password: "+pw+"\n")))
	}
	for _, dot := range []string{"%2E", "%2e"} {
		tok := token("uri-" + dot)
		enc := strings.ReplaceAll(tok, ".", dot)
		add(hostileSecretCase{name: "JWT with dots encoded as " + dot + " in the URI path", sent: append([]string{enc}, parts(tok)[1:]...), derived: []string{tok}, jwt: true},
			proxy(proxyURI+"verify/"+enc))
	}
	for _, h := range []struct{ name, header string }{{"ew", ewHeader}, {"eyAi", eyAiHeader}} {
		tok := rawToken(h.header, "uri-"+h.name)
		if !strings.HasPrefix(tok, h.name) {
			t.Fatalf("token header starts %.6q, want %q", tok, h.name)
		}
		add(hostileSecretCase{name: "JWT with header " + h.name + " in the URI path", sent: parts(tok), jwt: true}, proxy(proxyURI+"verify/"+tok))
		tok = rawToken(h.header, "cr-"+h.name)
		add(hostileSecretCase{name: "JWT with header " + h.name + " in a custom resource", sent: parts(tok), jwt: true}, createCR(tok))
	}
	{
		opaque := "qryBearerOpq5Xk8Wm2Rv7Tz4"
		add(hostileSecretCase{name: "authorization=Bearer in the query", sent: []string{opaque}}, proxy(proxyURI+"healthz?authorization=Bearer%20"+opaque))
	}
	{
		p := redacttest.PrivateKeyPEM(t, redacttest.PEMRSA)
		add(hostileSecretCase{name: "RSA PRIVATE KEY in a ConfigMap", sent: redacttest.PEMBodyLines(p)}, configMap("signing-key", p))
	}
	{
		p := redacttest.PrivateKeyPEM(t, redacttest.PEMEC)
		add(hostileSecretCase{name: "EC PRIVATE KEY in a custom resource", sent: redacttest.PEMBodyLines(p)}, createCR(p))
	}
	{
		p := redacttest.PrivateKeyPEM(t, redacttest.PEMPKCS8)
		add(hostileSecretCase{name: "PKCS#8 PRIVATE KEY in an annotation", sent: redacttest.PEMBodyLines(p)}, func(ev map[string]any) {
			ev["annotations"].(map[string]any)["debug.example.com/tls-key"] = p
		})
	}
	{
		pass := "basicPw-Hx7q2Lz9"
		cred := hostileB64("registry-bot:" + pass)
		add(hostileSecretCase{name: "Basic credentials in a custom resource", sent: []string{cred}, derived: []string{"registry-bot:" + pass, pass}}, createCR("Basic "+cred))
	}

	// The places covered before: TokenReview spec.token, TokenRequest
	// status.token, Secret data and stringData, last-applied-configuration.
	items, secrets := secretEvents(t)
	old := []string{"TokenReview spec.token", "TokenRequest status.token", "Secret create with last-applied-configuration"}
	for i, ev := range items {
		c := hostileSecretCase{name: old[i], event: ev, jwt: true}
		for j, s := range secrets {
			if strings.Contains(ev, s) && j < 5 {
				c.sent = append(c.sent, s)
			}
		}
		if i == 2 {
			c.derived = secrets[5:]
			c.dataKeys = []string{"password", "token", "api-key"}
		}
		cases = append(cases, c)
	}
	{
		tok := token("access-token-query")
		cases = append(cases, hostileSecretCase{name: "access_token in the query", sent: parts(tok), jwt: true,
			event: hostileCarrier(t, 1000, proxy(proxyURI+"api?access_token="+tok))})
	}
	return cases
}

// TestHostileSecretsNeverLeaveIngest sends one event per hiding place of a
// credential through the webhook into the spool and into Kafka, with debug
// logging, then finds none of the credentials in what was stored or
// logged, and the events themselves stored with their Secret data keys.
func TestHostileSecretsNeverLeaveIngest(t *testing.T) {
	cases := hostileSecretCases(t)
	// The control: each secret really is in what the apiserver sends.
	var events []string
	for _, c := range cases {
		for _, s := range c.sent {
			if !strings.Contains(c.event, s) {
				t.Fatalf("%s: fixture lacks its secret %.12q", c.name, s)
			}
		}
		if id := hostileAuditID([]byte(c.event)); id == "" {
			t.Fatalf("%s: fixture has no auditID", c.name)
		}
		events = append(events, c.event)
	}
	// The same events made malformed (verb must be a string), so that the
	// rejection path, which quotes decoding errors into answers and logs,
	// runs on them too.
	var malformed []string
	for _, ev := range events {
		malformed = append(malformed, hostileEdit(t, ev, func(m map[string]any) { m["verb"] = 7 }))
	}

	send := func(t *testing.T, prod pipeline.Producer) (accepted int, logs *hostileLogs) {
		t.Helper()
		srv, logs := hostileServer(t, Config{}, prod)
		ctx, cancel := context.WithTimeout(t.Context(), answerBackstop)
		defer cancel()
		code, raw, resp, err := hostilePost(ctx, srv.URL+"/audit/prod-eu1", []byte(eventList(events...)))
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusOK || resp.Accepted != len(events) {
			// Valid events carrying credentials are stored redacted,
			// not dropped: an audit trail missing the request that
			// read a Secret is its own failure. The per-case checks
			// below say which.
			t.Errorf("got %d with %d of %d accepted: %s", code, resp.Accepted, len(events), hostileTrunc(raw))
		}
		if _, _, _, err := hostilePost(ctx, srv.URL+"/audit/prod-eu1", []byte(eventList(malformed...))); err != nil {
			t.Fatal(err)
		}
		return resp.Accepted, logs
	}
	check := func(t *testing.T, where string, recs []hostileRecord, logs []byte) {
		if credential.ContainsJWT(logs) {
			t.Errorf("something JWT-shaped reached the logs")
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				id := hostileAuditID([]byte(c.event))
				var mine []byte
				for _, r := range recs {
					if hostileAuditID(r.Value) == id {
						mine = r.Value
					}
				}
				if mine == nil {
					t.Errorf("event %s not stored in %s", id, where)
				}
				for _, s := range append(slices.Clone(c.sent), c.derived...) {
					for _, r := range recs {
						if bytes.Contains(r.Value, []byte(s)) {
							t.Errorf("secret %.12q… (%d bytes) reached %s (event %s)", s, len(s), where, hostileAuditID(r.Value))
						}
						if bytes.Contains(r.Key, []byte(s)) {
							t.Errorf("secret %.12q… (%d bytes) reached a %s key", s, len(s), where)
						}
					}
					if bytes.Contains(logs, []byte(s)) {
						t.Errorf("secret %.12q… (%d bytes) reached the logs", s, len(s))
					}
				}
				if c.jwt && mine != nil && credential.ContainsJWT(mine) {
					t.Errorf("stored event still holds something JWT-shaped")
				}
				for _, k := range c.dataKeys {
					if mine != nil && !hostileHasDataKey(mine, k) {
						t.Errorf("Secret data key %q lost: keys are not secret and must survive", k)
					}
				}
			})
		}
	}

	t.Run("spool", func(t *testing.T) {
		sink := newHostileSpool(t)
		_, logs := send(t, sink.w)
		check(t, "the spool", sink.records(t), logs.Bytes())
	})

	t.Run("kafka", func(t *testing.T) {
		kc := kafkatest.Start(t, "audit-events", 2)
		prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: kc.Brokers, Topic: kc.Topic}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		accepted, logs := send(t, prod)
		cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: kc.Brokers, Topic: kc.Topic, GroupID: "hostile-secrets-test"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		var recs []hostileRecord
		for i := range accepted {
			rec, err := cons.Fetch(ctx)
			if err != nil {
				t.Fatalf("fetching message %d of %d: %v", i, accepted, err)
			}
			recs = append(recs, hostileRecord{Key: rec.Key, Value: rec.Value})
		}
		check(t, "Kafka", recs, logs.Bytes())
	})
}
