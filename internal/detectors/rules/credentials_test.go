package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/redact"
)

// credentialEvent is an audit event as the apiserver writes it: user is
// the user object's JSON, body the members after responseStatus
// (requestObject, responseObject), each with a leading comma, or "".
func credentialEvent(level, stage, verb, uri, user, objectRef string, code int, body string) string {
	decision := "allow"
	if code == 403 {
		decision = "forbid"
	}
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":%q,"auditID":"c-1","stage":%q,"requestURI":%q,"verb":%q,
"user":%s,"sourceIPs":["192.168.50.41"],"userAgent":"kubectl/v1.34.1 (linux/amd64) kubernetes/93248f9","objectRef":%s,
"responseStatus":{"metadata":{},"code":%d}%s,"requestReceivedTimestamp":"2026-11-27T11:40:31.004512Z","stageTimestamp":"2026-11-27T11:40:31.061877Z",
"annotations":{"authorization.k8s.io/decision":%q}}`, level, stage, uri, verb, user, objectRef, code, body, decision)
}

const (
	userBob     = `{"username":"bob@example.com","groups":["developers","system:authenticated"]}`
	userNode1   = `{"username":"system:node:node-1","groups":["system:nodes","system:authenticated"]}`
	userKCM     = `{"username":"system:kube-controller-manager","groups":["system:authenticated"]}`
	userAppSA   = `{"username":"system:serviceaccount:payments:payments-api","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"]}`
	userAddonSA = `{"username":"system:serviceaccount:kube-system:metrics-server","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]}`
	userCSRCtrl = `{"username":"system:serviceaccount:kube-system:certificate-controller","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]}`
	// A compact JWT standing in for a minted token in a TokenRequest
	// response; ingest replaces it with a record.
	mintedJWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cGF5bWVudHM6cGF5bWVudHMtYXBpIn0.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
)

// Certificate requests made with openssl req -new -newkey ec (P-256),
// base64 as in spec.request.
const (
	csrBobMasters = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIdU1JR1ZBZ0VBTURNeEdEQVdCZ05WQkFNTUQySnZZa0JsZUdGdGNHeGxMbU52YlRFWE1CVUdBMVVFQ2d3TwpjM2x6ZEdWdE9tMWhjM1JsY25Nd1dUQVRCZ2NxaGtqT1BRSUJCZ2dxaGtqT1BRTUJCd05DQUFSSUIwY1pnL2l2CmFQUnZ2VnkvRUxUQnhjME5CVmRKeGxaUFdOQVdZWm5FelFnSXJKNEJMYllFQWJxd2dXdTRDOUwyNndtQUZtaDcKWWZJeUU3RDBaKy8vb0FBd0NnWUlLb1pJemowRUF3SURTQUF3UlFJaEFQNkh0RzdJREpPTWJCZGpmVDJGOUV0cQpuRGF2NXFDMFpuTTdISkY5WDR1eEFpQkZDbVhia1VhTUhUd01iWDZBR3N1MVJBQUlXMGltdTVjZmRhVDl3aE5WCllBPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg=="
	csrNode9      = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIdU1JR1dBZ0VBTURReEd6QVpCZ05WQkFNTUVuTjVjM1JsYlRwdWIyUmxPbTV2WkdVdE9URVZNQk1HQTFVRQpDZ3dNYzNsemRHVnRPbTV2WkdWek1Ga3dFd1lIS29aSXpqMENBUVlJS29aSXpqMERBUWNEUWdBRVk3Y05QLy9WCmp6T2ZsWGtJaG4yUjdnT3NHcXU1ejRZQUJZOHhoUnN1VEt3MXU1OEpsMnVVWmUyVzJJQXBEOUlkYzU0NlVTUXoKeTRvYTVwMkM3aDY1ajZBQU1Bb0dDQ3FHU000OUJBTUNBMGNBTUVRQ0lBdmxXcGZHb1EyWUVPd2hNcG1pdDdPZAo2aUpwaC9HVEJXM3Rud241bkVpSUFpQnlLNGdqdStibmNCY3NDc290b2U1RTZwclVHUmFVRjg1SkVZVzdzdmhSCm9BPT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg=="
	csrNode2      = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIdk1JR1dBZ0VBTURReEd6QVpCZ05WQkFNTUVuTjVjM1JsYlRwdWIyUmxPbTV2WkdVdE1qRVZNQk1HQTFVRQpDZ3dNYzNsemRHVnRPbTV2WkdWek1Ga3dFd1lIS29aSXpqMENBUVlJS29aSXpqMERBUWNEUWdBRWdyUlpFL0pGCjUzOTZ4Q21ET3RtcTFnMjVNM1lJaGRRQ00rL05hbTB2WVZqTkt4OFZlcVUwS3lQSGNYMHFhYzFRbzRlWDg2ZS8KNnJDQW1KeGYzdUY2cnFBQU1Bb0dDQ3FHU000OUJBTUNBMGdBTUVVQ0lRREV6VlNCbGhjcHlEdUlyUWt2OXB1dwpERlZMQS9uWTdMQi9TVkdQQjdEV3dnSWdPdGo1ZC9NTit1UTBxTUlsczVUTDgwOTB0cTRydHB2Y1hrZEQxcGorCnJGbz0KLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg=="
	csrNode1      = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIdk1JR1dBZ0VBTURReEd6QVpCZ05WQkFNTUVuTjVjM1JsYlRwdWIyUmxPbTV2WkdVdE1URVZNQk1HQTFVRQpDZ3dNYzNsemRHVnRPbTV2WkdWek1Ga3dFd1lIS29aSXpqMENBUVlJS29aSXpqMERBUWNEUWdBRWphVTFSdDFkCkVNZEY2L094eWQ5bklsd0dHbXJaVkRDU1lJaXFVREl4WnV0OGZ2SENxbEhLNlpraFFQMk04WmR1Q0RHR0FLaVcKWnA3bVBjR2FDWW1MYktBQU1Bb0dDQ3FHU000OUJBTUNBMGdBTUVVQ0lRRG54cEdMMSsweXoxZU9UNkdQMm1kYQptWjRHK28zSW5HSUZpRUxaWDR4U3RnSWdjeG5mQXc3RzZ4MlpEMENpN0s0SnZnckc0OXhvcHVMelFOM3RmK0VvClNyVT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg=="
	csrBobDevs    = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIcU1JR1JBZ0VBTUM4eEdEQVdCZ05WQkFNTUQySnZZa0JsZUdGdGNHeGxMbU52YlRFVE1CRUdBMVVFQ2d3SwpaR1YyWld4dmNHVnljekJaTUJNR0J5cUdTTTQ5QWdFR0NDcUdTTTQ5QXdFSEEwSUFCS2xSOXFsMHlCMm0zZUFoClJPV1dJTXU1ckhCcWlmSWhnbWFBVE5ZUnNkSHkxUFhjdlFRallOaDdDQTl2RTFKRUVxVFBiV0Zla0JEK2lDZmcKQjJKZVluT2dBREFLQmdncWhrak9QUVFEQWdOSUFEQkZBaUVBbXJhdEVnallwdUYzRkwzOGs1VEV4WkRnU1MxcgpUblhnTVYvSWZ3b1dqZU1DSUZSYitMTCsweWZpVjUvRFZkcHlsZkFOS2lXalcvSTF3dVZtKzAyMCtKdzUKLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg=="
)

// checkFired redacts js as ingest does, decodes it, runs the default pack
// and compares the rules that fired with want (rule names, any order).
func checkFired(t *testing.T, s *Set, r *redact.Redactor, name, js string, want ...string) {
	t.Helper()
	out, _, err := r.Event([]byte(js))
	if err != nil {
		t.Fatalf("%s: redacting: %v", name, err)
	}
	ev := decode(t, string(out))
	if errs := evalErrors(s, ev); len(errs) > 0 {
		t.Errorf("%s: rules failed:\n  %s", name, strings.Join(errs, "\n  "))
	}
	got := fired(s, ev)
	for i := range want {
		want[i] = "rule:" + want[i]
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: fired %v, want %v", name, got, want)
	}
}

// TestCredentialMinting covers TokenRequests and certificate signing
// requests at every audit level they are logged with, after redaction.
func TestCredentialMinting(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tokenRef := func(ns, sa string) string {
		return fmt.Sprintf(`{"resource":"serviceaccounts","namespace":%q,"name":%q,"apiVersion":"v1","subresource":"token"}`, ns, sa)
	}
	tokenURI := func(ns, sa string) string { return "/api/v1/namespaces/" + ns + "/serviceaccounts/" + sa + "/token" }
	unbound := `,"requestObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":null,"expirationSeconds":3600,"boundObjectRef":null},"status":{"token":"","expirationTimestamp":null}}`
	podBound := `,"requestObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":["https://kubernetes.default.svc.cluster.local"],"expirationSeconds":3607,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"api-7d4b9c6f8-x2k9p","uid":"8f4a2c6e-1b3d-4f5a-9e7c-6d2b8a0f1c35"}},"status":{"token":"","expirationTimestamp":null}}`
	// At RequestResponse the response carries the minted token.
	podBoundRR := podBound + `,"responseObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"name":"payments-api","namespace":"payments","creationTimestamp":"2026-11-27T11:40:31Z"},"spec":{"audiences":["https://kubernetes.default.svc.cluster.local"],"expirationSeconds":3607,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"api-7d4b9c6f8-x2k9p","uid":"8f4a2c6e-1b3d-4f5a-9e7c-6d2b8a0f1c35"}},"status":{"token":"` + mintedJWT + `","expirationTimestamp":"2026-11-27T12:40:38Z"}}`
	unboundRR := unbound + `,"responseObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"name":"payments-api","namespace":"payments","creationTimestamp":"2026-11-27T11:40:31Z"},"spec":{"audiences":["https://kubernetes.default.svc.cluster.local"],"expirationSeconds":3600,"boundObjectRef":null},"status":{"token":"` + mintedJWT + `","expirationTimestamp":"2026-11-27T12:40:31Z"}}`
	f := func(name, js string, want ...string) { t.Helper(); checkFired(t, s, r, name, js, want...) }
	const rc = "ResponseComplete"

	// TokenRequests outside the control plane.
	for level, body := range map[string]string{"Metadata": "", "Request": unbound, "RequestResponse": unboundRR} {
		f("person mints an app token, "+level, credentialEvent(level, rc, "create", tokenURI("payments", "payments-api"), userBob, tokenRef("payments", "payments-api"), 201, body),
			"token-request-for-other-account")
		f("app account mints its own token, "+level, credentialEvent(level, rc, "create", tokenURI("payments", "payments-api"), userAppSA, tokenRef("payments", "payments-api"), 201, body))
		f("kube-controller-manager mints outside kube-system, "+level, credentialEvent(level, rc, "create", tokenURI("production", "app-sa"), userKCM, tokenRef("production", "app-sa"), 201, body),
			"token-request-for-other-account")
		f("refused TokenRequest, "+level, credentialEvent(level, rc, "create", tokenURI("payments", "payments-api"), userBob, tokenRef("payments", "payments-api"), 403, ""))
	}
	for level, body := range map[string]string{"Metadata": "", "Request": podBound, "RequestResponse": podBoundRR} {
		f("kubelet mints a pod-bound token, "+level, credentialEvent(level, rc, "create", tokenURI("payments", "payments-api"), userNode1, tokenRef("payments", "payments-api"), 201, body))
	}
	f("node mints an unbound token", credentialEvent("Request", rc, "create", tokenURI("payments", "payments-api"), userNode1, tokenRef("payments", "payments-api"), 201, unbound),
		"token-request-for-other-account")
	f("node mints an unbound token, RequestResponse", credentialEvent("RequestResponse", rc, "create", tokenURI("payments", "payments-api"), userNode1, tokenRef("payments", "payments-api"), 201, unboundRR),
		"token-request-for-other-account")
	f("TokenRequest without a stage's worth of body: spec missing", credentialEvent("Request", rc, "create", tokenURI("payments", "payments-api"), userBob, tokenRef("payments", "payments-api"), 201,
		`,"requestObject":{"kind":"TokenRequest"}`), "token-request-for-other-account")

	// TokenRequests in the control plane: one rule each, never both.
	for level, body := range map[string]string{"Metadata": "", "Request": unbound} {
		f("kube-system add-on mints a controller's token, "+level, credentialEvent(level, rc, "create", tokenURI("kube-system", "namespace-controller"), userAddonSA, tokenRef("kube-system", "namespace-controller"), 201, body),
			"kube-system-token-request")
		f("person mints a controller's token, "+level, credentialEvent(level, rc, "create", tokenURI("kube-system", "namespace-controller"), userBob, tokenRef("kube-system", "namespace-controller"), 201, body),
			"kube-system-token-request")
		f("kube-controller-manager mints its controller's token, "+level, credentialEvent(level, rc, "create", tokenURI("kube-system", "deployment-controller"), userKCM, tokenRef("kube-system", "deployment-controller"), 201, body))
	}
	f("kubelet mints a CoreDNS pod's token", credentialEvent("Request", rc, "create", tokenURI("kube-system", "coredns"), userNode1, tokenRef("kube-system", "coredns"), 201, podBound))

	// Certificate signing requests and their approval.
	csrRef := `{"resource":"certificatesigningrequests","apiGroup":"certificates.k8s.io","apiVersion":"v1"}`
	const csrURI = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
	const pemCSR = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQ1ZqQ0NBVDRDQVFBd0VURVBNQTBHQTFVRUF3d0dZVzVuWld4aE1JSUJJakFOQmdrcWhraUc5dzBCQVFFRgotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"
	csrOf := func(request, signer string, usages ...string) string {
		us := `"` + strings.Join(usages, `","`) + `"`
		spec := fmt.Sprintf(`{"request":%q,"signerName":%q,"usages":[%s]}`, request, signer, us)
		return fmt.Sprintf(`,"requestObject":{"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"name":"x","creationTimestamp":null},"spec":%s,"status":{}}`, spec)
	}
	csr := func(signer string, usages ...string) string { return csrOf(pemCSR, signer, usages...) }
	bootstrap := `{"username":"system:bootstrap:abcdef","groups":["system:bootstrappers","system:bootstrappers:kubeadm:default-node-token","system:authenticated"]}`
	f("person requests a kube-apiserver-client certificate", credentialEvent("Request", rc, "create", csrURI, userBob, csrRef, 201, csr("kubernetes.io/kube-apiserver-client", "client auth")),
		"client-certificate-requested")
	f("node requests a kube-apiserver-client certificate", credentialEvent("Request", rc, "create", csrURI, userNode1, csrRef, 201, csr("kubernetes.io/kube-apiserver-client", "client auth")),
		"client-certificate-requested")
	f("app account requests a kubelet client certificate", credentialEvent("Request", rc, "create", csrURI, userAppSA, csrRef, 201, csr("kubernetes.io/kube-apiserver-client-kubelet", "digital signature", "client auth")),
		"client-certificate-requested")
	f("person requests client auth from a custom signer", credentialEvent("Request", rc, "create", csrURI, userBob, csrRef, 201, csr("example.com/internal", "client auth")),
		"client-certificate-requested")
	f("person creates a CSR, body not logged", credentialEvent("Metadata", rc, "create", csrURI, userBob, csrRef, 201, ""),
		"client-certificate-requested")
	f("kube-controller-manager requests a kube-apiserver-client certificate", credentialEvent("Request", rc, "create", csrURI, userKCM, csrRef, 201, csr("kubernetes.io/kube-apiserver-client", "client auth")))
	f("kube-system add-on requests client auth from a custom signer", credentialEvent("Request", rc, "create", csrURI, userAddonSA, csrRef, 201, csr("example.com/internal", "client auth")))
	f("kubelet renews its client certificate", credentialEvent("Request", rc, "create", csrURI, userNode1, csrRef, 201, csr("kubernetes.io/kube-apiserver-client-kubelet", "digital signature", "client auth")))
	f("kubelet CSR, body not logged", credentialEvent("Metadata", rc, "create", csrURI, userNode1, csrRef, 201, ""))
	f("bootstrapping kubelet", credentialEvent("Request", rc, "create", csrURI, bootstrap, csrRef, 201,
		csr("kubernetes.io/kube-apiserver-client-kubelet", "digital signature", "client auth")))
	f("person requests a serving certificate", credentialEvent("Request", rc, "create", csrURI, userBob, csrRef, 201, csr("example.com/internal-serving", "server auth")))
	f("refused CSR", credentialEvent("Request", rc, "create", csrURI, userBob, csrRef, 403, csr("kubernetes.io/kube-apiserver-client", "client auth")))

	// The subject requested, read from the request itself.
	for level, resp := range map[string]bool{"Request": false, "RequestResponse": true} {
		body := func(request, signer string) string {
			b := csrOf(request, signer, "client auth")
			if resp {
				b += strings.Replace(b, `"requestObject"`, `"responseObject"`, 1)
			}
			return b
		}
		at := " (" + level + ")"
		f("person asks for system:masters"+at, credentialEvent(level, rc, "create", csrURI, userBob, csrRef, 201, body(csrBobMasters, "kubernetes.io/kube-apiserver-client")),
			"csr-for-privileged-group")
		f("node asks for system:masters"+at, credentialEvent(level, rc, "create", csrURI, userNode1, csrRef, 201, body(csrBobMasters, "kubernetes.io/kube-apiserver-client")),
			"csr-for-privileged-group")
		f("app account asks for a node identity"+at, credentialEvent(level, rc, "create", csrURI, userAppSA, csrRef, 201, body(csrNode9, "kubernetes.io/kube-apiserver-client-kubelet")),
			"csr-for-privileged-group")
		f("node asks for another node's identity"+at, credentialEvent(level, rc, "create", csrURI, userNode1, csrRef, 201, body(csrNode2, "kubernetes.io/kube-apiserver-client-kubelet")),
			"csr-for-privileged-group")
		f("node renews its own identity"+at, credentialEvent(level, rc, "create", csrURI, userNode1, csrRef, 201, body(csrNode1, "kubernetes.io/kube-apiserver-client-kubelet")))
		f("bootstrapping kubelet asks for its identity"+at, credentialEvent(level, rc, "create", csrURI, bootstrap, csrRef, 201, body(csrNode9, "kubernetes.io/kube-apiserver-client-kubelet")))
		f("person asks for an ordinary group"+at, credentialEvent(level, rc, "create", csrURI, userBob, csrRef, 201, body(csrBobDevs, "kubernetes.io/kube-apiserver-client")),
			"client-certificate-requested")
	}
	f("request that is not base64", credentialEvent("Request", rc, "create", csrURI, userBob, csrRef, 201, csrOf("not base64!", "kubernetes.io/kube-apiserver-client", "client auth")),
		"client-certificate-requested")
	f("request that is base64 of garbage", credentialEvent("Request", rc, "create", csrURI, userBob, csrRef, 201, csrOf("Z2FyYmFnZQ==", "kubernetes.io/kube-apiserver-client", "client auth")),
		"client-certificate-requested")

	approvalRef := `{"resource":"certificatesigningrequests","name":"x","apiGroup":"certificates.k8s.io","apiVersion":"v1","subresource":"approval"}`
	const approvalURI = csrURI + "/x/approval"
	verdict := func(signer, condition string) string {
		return fmt.Sprintf(`,"requestObject":{"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"name":"x"},"spec":{"request":%q,"signerName":%q,"usages":["client auth"],"username":"bob@example.com"},"status":{"conditions":[{"type":%q,"status":"True","reason":"Kubectl","lastUpdateTime":"2026-11-27T11:36:40Z","lastTransitionTime":null}]}}`,
			pemCSR, signer, condition)
	}
	f("person approves a client certificate", credentialEvent("Request", rc, "update", approvalURI, userBob, approvalRef, 200, verdict("kubernetes.io/kube-apiserver-client", "Approved")),
		"csr-approved-by-user")
	f("person approves, Metadata level", credentialEvent("Metadata", rc, "update", approvalURI, userBob, approvalRef, 200, ""),
		"csr-approved-by-user")
	f("person approves with a patch", credentialEvent("Request", rc, "patch", approvalURI, userBob, approvalRef, 200, `,"requestObject":{"status":{"conditions":[{"type":"Approved","status":"True"}]}}`),
		"csr-approved-by-user")
	verdictOf := func(request, condition string) string {
		return fmt.Sprintf(`,"requestObject":{"kind":"CertificateSigningRequest","apiVersion":"certificates.k8s.io/v1","metadata":{"name":"x"},"spec":{"request":%q,"signerName":"kubernetes.io/kube-apiserver-client","usages":["client auth"],"username":"bob@example.com"},"status":{"conditions":[{"type":%q,"status":"True"}]}}`,
			request, condition)
	}
	f("person approves system:masters", credentialEvent("Request", rc, "update", approvalURI, userBob, approvalRef, 200, verdictOf(csrBobMasters, "Approved")),
		"csr-for-privileged-group")
	f("controller approves system:masters", credentialEvent("Request", rc, "update", approvalURI, userCSRCtrl, approvalRef, 200, verdictOf(csrBobMasters, "Approved")),
		"csr-for-privileged-group")
	f("person denies system:masters", credentialEvent("Request", rc, "update", approvalURI, userBob, approvalRef, 200, verdictOf(csrBobMasters, "Denied")))
	f("person approves an ordinary group", credentialEvent("Request", rc, "update", approvalURI, userBob, approvalRef, 200, verdictOf(csrBobDevs, "Approved")),
		"csr-approved-by-user")
	f("person denies", credentialEvent("Request", rc, "update", approvalURI, userBob, approvalRef, 200, verdict("kubernetes.io/kube-apiserver-client", "Denied")))
	f("person approves a kubelet serving certificate", credentialEvent("Request", rc, "update", approvalURI, userBob, approvalRef, 200, verdict("kubernetes.io/kubelet-serving", "Approved")))
	f("certificate controller approves", credentialEvent("Metadata", rc, "update", approvalURI, userCSRCtrl, approvalRef, 200, ""))
	f("refused approval", credentialEvent("Metadata", rc, "update", approvalURI, userBob, approvalRef, 403, ""))
}

// TestCredentialExec covers commands run in pods: the command is in the
// request URI (kubectl over SPDY sends create, over websockets get), or in
// a PodExecOptions body an exporter adds. Every URI here must pass
// redaction unchanged, since a rule cannot read what redaction removed.
func TestCredentialExec(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	podRef := `{"resource":"pods","namespace":"payments","name":"api-1","apiVersion":"v1","subresource":"exec"}`
	exec := func(verb, query string, code int) string {
		uri := "/api/v1/namespaces/payments/pods/api-1/exec?" + query + "&container=api&stderr=true&stdout=true"
		return credentialEvent("Metadata", "ResponseStarted", verb, uri, userBob, podRef, code, "")
	}
	f := func(name, js string, want ...string) {
		t.Helper()
		if _, changed, err := r.Event([]byte(js)); err != nil || changed {
			t.Errorf("%s: redaction changed the event (err %v)", name, err)
		}
		checkFired(t, s, r, name, js, want...)
	}
	for _, verb := range []string{"create", "get"} {
		f("cat token, "+verb, exec(verb, "command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken", 101),
			"exec-into-pod", "exec-reads-credentials")
		f("ls interactive shell, "+verb, exec(verb, "command=sh&stdin=true&tty=true", 101), "exec-into-pod")
		f("refused token read, "+verb, exec(verb, "command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken", 403))
	}
	f("EKS IRSA token through sh -c", exec("get", "command=sh&command=-c&command=cat+%2Fvar%2Frun%2Fsecrets%2Feks.amazonaws.com%2Fserviceaccount%2Ftoken", 101),
		"exec-into-pod", "exec-reads-credentials")
	f("token path not percent-encoded", exec("get", "command=cat&command=/run/secrets/kubernetes.io/serviceaccount/token", 101),
		"exec-into-pod", "exec-reads-credentials")
	f("token path in upper-case escapes", exec("get", "command=cat&command=%2fvar%2frun%2fsecrets%2fkubernetes.io%2fserviceaccount%2ftoken", 101),
		"exec-into-pod", "exec-reads-credentials")
	f("aws credentials with ~ escaped", exec("get", "command=cat&command=%7E%2F.aws%2Fcredentials", 101),
		"exec-into-pod", "exec-reads-credentials")
	f("token sent to the apiserver with curl", exec("get", "command=curl&command=-H&command=Authorization%3A+Bearer+%24%28cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken%29&command=https%3A%2F%2Fkubernetes.default.svc%2Fapi", 101),
		"exec-into-pod", "exec-reads-credentials")
	f("kubeconfig", exec("create", "command=cat&command=%2Froot%2F.kube%2Fconfig", 101),
		"exec-into-pod", "exec-reads-credentials")
	inKubeSystem := func(user string) string {
		ref := `{"resource":"pods","namespace":"kube-system","name":"coredns-1","apiVersion":"v1","subresource":"exec"}`
		uri := "/api/v1/namespaces/kube-system/pods/coredns-1/exec?command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=coredns&stdout=true"
		return credentialEvent("Metadata", "ResponseStarted", "create", uri, user, ref, 101, "")
	}
	f("kube-system controller reads a token in kube-system", inKubeSystem(userAddonSA), "exec-into-pod")
	f("person reads a token in kube-system", inKubeSystem(userBob), "exec-into-pod", "exec-reads-credentials")
	f("kube-system controller reads a token elsewhere", credentialEvent("Metadata", "ResponseStarted", "create",
		"/api/v1/namespaces/payments/pods/api-1/exec?command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=api&stdout=true",
		userAddonSA, podRef, 101, ""), "exec-into-pod", "exec-reads-credentials")
	f("tar archive written inside the pod", exec("get", "command=tar&command=czf&command=backup.tar.gz&command=%2Fapp%2Fdata", 101), "exec-into-pod")
	f("reading an application file", exec("get", "command=cat&command=%2Fetc%2Fnginx%2Fnginx.conf", 101), "exec-into-pod")
	f("IMDS", exec("get", "command=curl&command=http%3A%2F%2F169.254.169.254%2Flatest%2Fapi%2Ftoken&command=-X&command=PUT", 101),
		"exec-into-pod", "exec-queries-metadata-service")
	f("IMDS over IPv6", exec("get", "command=curl&command=http%3A%2F%2F%5Bfd00%3Aec2%3A%3A254%5D%2Flatest%2Fmeta-data%2F", 101),
		"exec-into-pod", "exec-queries-metadata-service")
	f("ECS task credentials", exec("create", "command=sh&command=-c&command=curl+169.254.170.2%24AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", 101),
		"exec-into-pod", "exec-queries-metadata-service")
	f("curl to a service", exec("get", "command=curl&command=http%3A%2F%2Fpayments.payments.svc%3A8080%2Fhealthz", 101), "exec-into-pod")
	f("kubectl cp out", exec("get", "command=tar&command=cf&command=-&command=%2Fvar%2Flib%2Fapp%2Fdata.db", 101),
		"exec-into-pod", "kubectl-cp-from-pod")
	f("kubectl cp out, compressed", exec("get", "command=tar&command=czf&command=-&command=%2Fvar%2Flib%2Fapp", 101),
		"exec-into-pod", "kubectl-cp-from-pod")
	f("kubectl cp of the token directory", exec("get", "command=tar&command=cf&command=-&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount", 101),
		"exec-into-pod", "kubectl-cp-from-pod", "exec-reads-credentials")
	f("kubectl cp in", exec("get", "command=tar&command=-xmf&command=-&command=-C&command=%2Ftmp", 101), "exec-into-pod")
	f("tar listing", exec("get", "command=tar&command=tf&command=%2Ftmp%2Fa.tar", 101), "exec-into-pod")

	// An exporter that records PodExecOptions as the request body.
	body := `,"requestObject":{"kind":"PodExecOptions","apiVersion":"v1","stdout":true,"stderr":true,"container":"api","command":["sh","-c","cat /var/run/secrets/kubernetes.io/serviceaccount/token"]}`
	f("command in the request body", credentialEvent("Request", "ResponseStarted", "create", "/api/v1/namespaces/payments/pods/api-1/exec", userBob, podRef, 101, body),
		"exec-into-pod", "exec-reads-credentials")
	body = `,"requestObject":{"kind":"PodExecOptions","apiVersion":"v1","command":["tar","cf","-","/data"]}`
	f("kubectl cp in the request body", credentialEvent("Request", "ResponseStarted", "create", "/api/v1/namespaces/payments/pods/api-1/exec", userBob, podRef, 101, body),
		"exec-into-pod", "kubectl-cp-from-pod")

	// The kubelet API through nodes/proxy.
	nodeRef := `{"resource":"nodes","name":"node-1","apiVersion":"v1","subresource":"proxy"}`
	f("kubelet run endpoint", credentialEvent("Metadata", "ResponseStarted", "create", "/api/v1/nodes/node-1/proxy/run/payments/api-1/api?cmd=cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken", userBob, nodeRef, 200, ""),
		"exec-reads-credentials")
	f("kubelet metrics through the proxy", credentialEvent("Metadata", "ResponseStarted", "get", "/api/v1/nodes/node-1/proxy/metrics", userBob, nodeRef, 200, ""))
	f("kubelet pods listing mentioning secrets", credentialEvent("Metadata", "ResponseStarted", "get", "/api/v1/nodes/node-1/proxy/pods?x=%2Fvar%2Frun%2Fsecrets", userBob, nodeRef, 200, ""))

	// The other stages of the same exec: RequestReceived is never judged
	// (authorization has not run); ResponseComplete, the only stage left
	// with omitStages: [ResponseStarted], and an event without a stage are
	// judged whenever the pipeline judges them (pipeline.StageGate keeps a
	// request from being reported twice), and then read the same way.
	for _, stage := range []string{"RequestReceived", "ResponseComplete", ""} {
		uri := "/api/v1/namespaces/payments/pods/api-1/exec?command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=api&stdout=true"
		js := credentialEvent("Metadata", stage, "create", uri, userBob, podRef, 101, "")
		if stage == "" {
			js = strings.Replace(js, `"stage":"",`, "", 1)
		}
		var want []string
		if decode(t, js).IsAuthoritative() {
			want = []string{"exec-into-pod", "exec-reads-credentials"}
		} else if stage != "RequestReceived" {
			t.Logf("stage %q is not judged for exec by this pipeline", stage)
		}
		f("cat token at stage "+stage, js, want...)
	}
}

// TestCredentialExecRedaction covers exec commands that hold a credential
// ingest redacts: an assignment to a credential-named variable loses its
// value (TOKEN=$(cat /var/run/secrets/...) keeps no path), and a literal
// token is replaced; the redacted: marker left in their place is what
// exec-reads-credentials sees.
func TestCredentialExecRedaction(t *testing.T) {
	r, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	podRef := `{"resource":"pods","namespace":"payments","name":"api-1","apiVersion":"v1","subresource":"exec"}`
	f := func(name, query string, want ...string) {
		t.Helper()
		uri := "/api/v1/namespaces/payments/pods/api-1/exec?" + query + "&container=api&stdout=true"
		js := credentialEvent("Metadata", "ResponseStarted", "get", uri, userBob, podRef, 101, "")
		out, changed, err := r.Event([]byte(js))
		if err != nil || !changed {
			t.Fatalf("%s: redaction left the command alone (err %v): %s", name, err, out)
		}
		checkFired(t, s, r, name, js, want...)
	}
	f("TOKEN=$(cat token)", "command=sh&command=-c&command=TOKEN%3D%24%28cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken%29%3B+curl+-k+https%3A%2F%2Fkubernetes.default.svc%2Fapi",
		"exec-into-pod", "exec-reads-credentials")
	f("literal bearer token", "command=curl&command=-H&command=Authorization%3A+Bearer+"+mintedJWT+"&command=https%3A%2F%2Fkubernetes.default.svc%2Fapi",
		"exec-into-pod", "exec-reads-credentials")
	f("password on the command line", "command=psql&command=postgresql%3A%2F%2Fapp%3Ahunter2hunter2%40db%3A5432%2Fapp",
		"exec-into-pod", "exec-reads-credentials")
}

// TestCSRSubject reads the subject of real requests, and nothing from
// input that is not one.
func TestCSRSubject(t *testing.T) {
	f := func(request, cn string, orgs ...string) {
		t.Helper()
		got := csrSubject(request)
		if got.CommonName != cn || !slices.Equal(got.Organizations, orgs) {
			t.Errorf("csrSubject(%.40q) = %+v, want CN %q O %q", request, got, cn, orgs)
		}
	}
	f(csrBobMasters, "bob@example.com", "system:masters")
	f(csrNode2, "system:node:node-2", "system:nodes")
	f("", "")
	f("%%%", "")
	f("Z2FyYmFnZQ==", "")
	// A PEM block of another type, and one that does not parse.
	f("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=", "")
	f("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQgotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "")
	f(strings.Repeat("A", maxCSRRequest+4), "")
}
