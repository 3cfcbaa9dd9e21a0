package rules

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// nodeList is a kubelet credential listing pods, as the apiserver logs it at
// Metadata level; the tests vary its source addresses and identity.
const nodeList = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"3c1f0b9e-7a2d-4e6b-8c5f-9d0e1a2b3c4d","stage":"ResponseComplete","requestURI":"/api/v1/pods?limit=500","verb":"list","user":{"username":"system:node:node-1","groups":["system:nodes","system:authenticated"]},"sourceIPs":SOURCES,"userAgent":"kubectl/v1.34.1 (linux/amd64) kubernetes/93248f9","objectRef":{"resource":"pods","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T11:02:12.002781Z","stageTimestamp":"2026-11-27T11:02:12.043406Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`

// TestClusterIdentityFromPublicAddress covers what the pack's examples
// cannot hold: events without a usable address and the tuning list.
func TestClusterIdentityFromPublicAddress(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const rule = "rule:cluster-identity-from-public-address"
	f := func(name, sources string, want bool, edits ...string) {
		t.Helper()
		js := strings.Replace(nodeList, "SOURCES", sources, 1)
		js = strings.NewReplacer(edits...).Replace(js)
		if got := slices.Contains(fired(s, decode(t, js)), rule); got != want {
			t.Errorf("%s: fired %v, want %v", name, got, want)
		}
	}
	f("public IPv4", `["203.0.113.45"]`, true)
	f("public IPv6", `["2a01:4f8:c17:2d3e::1"]`, true)
	f("public client behind an in-cluster proxy", `["203.0.113.45","10.0.0.5"]`, true)
	f("RFC 1918", `["172.20.3.4"]`, false)
	f("RFC 6598", `["100.64.0.9"]`, false)
	f("loopback", `["127.0.0.1"]`, false)
	f("link-local", `["169.254.10.1"]`, false)
	f("IPv6 unique local", `["fd12:3456:789a::1"]`, false)
	f("IPv6 link-local", `["fe80::1"]`, false)
	f("IPv4-mapped private", `["::ffff:10.0.1.11"]`, false)
	f("IPv4-mapped public", `["::ffff:203.0.113.45"]`, true)
	f("172.32/16 is public", `["172.32.0.1"]`, true)
	f("no source", `[]`, false)
	f("malformed source", `["node-1.internal"]`, false)
	f("control-plane component", `["198.51.100.23"]`, true, `system:node:node-1`, `system:kube-controller-manager`)
	f("kube-system service account", `["198.51.100.23"]`, true, `system:node:node-1`, `system:serviceaccount:kube-system:replicaset-controller`)
	f("service account of another namespace", `["198.51.100.23"]`, false, `system:node:node-1`, `system:serviceaccount:ci:deployer`)
	// Each stage and export the request can arrive with.
	f("no stage (a log export)", `["203.0.113.45"]`, true, `"stage":"ResponseComplete",`, ``)
	f("watch at ResponseStarted", `["203.0.113.45"]`, true, `"verb":"list"`, `"verb":"watch"`, `"stage":"ResponseComplete"`, `"stage":"ResponseStarted"`)
	f("watch at ResponseComplete (omitStages: [ResponseStarted])", `["203.0.113.45"]`, true, `"verb":"list"`, `"verb":"watch"`)
	f("RequestReceived is not judged", `["203.0.113.45"]`, false, `"stage":"ResponseComplete"`, `"stage":"RequestReceived"`,
		`"responseStatus":{"metadata":{},"code":200},`, ``, `"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}`, `"annotations":{}`)
	f("Request level with a body", `["203.0.113.45"]`, true, `"level":"Metadata"`, `"level":"Request"`, `"verb":"list"`, `"verb":"create"`,
		`"requestURI":"/api/v1/pods?limit=500"`, `"requestURI":"/api/v1/namespaces/kube-system/pods","requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"}}`)
	f("failed authentication", `["198.51.100.23"]`, false, `"user":{"username":"system:node:node-1","groups":["system:nodes","system:authenticated"]}`, `"user":{}`,
		`"code":200`, `"code":401`, `"stage":"ResponseComplete"`, `"stage":"ResponseStarted"`)

	// A cluster whose nodes have public addresses lists them.
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	tuned, err := Load(append(files, File{Name: "site.yaml", Data: []byte(`
lists:
  - list: cluster_public_networks
    items: [203.0.113.0/24]
    override: append
`)})...)
	if err != nil {
		t.Fatal(err)
	}
	ev := decode(t, strings.Replace(nodeList, "SOURCES", `["203.0.113.45"]`, 1))
	if slices.Contains(fired(tuned, ev), rule) {
		t.Errorf("a node in cluster_public_networks: fired")
	}
}

// TestDenialWithoutDecision: exports that drop the authorization annotation
// still show a refusal in the response code, and an allowed request in a
// code below 400.
func TestDenialWithoutDecision(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const list = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef","verb":"get","user":{"username":"system:serviceaccount:payments:payments-api","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"]},"sourceIPs":["10.244.1.2"],"userAgent":"kubectl/v1.34.1 (linux/amd64) kubernetes/93248f9","objectRef":{"resource":"secrets","namespace":"kube-system","name":"bootstrap-token-abcdef","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":CODE},"requestReceivedTimestamp":"2026-11-27T10:46:51.275878Z","stageTimestamp":"2026-11-27T10:46:51.282545Z"ANNOTATIONS}`
	f := func(name, code, annotations, rule string, want bool) {
		t.Helper()
		js := strings.NewReplacer("CODE", code, "ANNOTATIONS", annotations).Replace(list)
		if got := slices.Contains(fired(s, decode(t, js)), rule); got != want {
			t.Errorf("%s: %s fired %v, want %v", name, rule, got, want)
		}
	}
	const denied = "rule:secret-access-denied"
	f("forbid annotation", "403", `,"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}`, denied, true)
	f("no annotation, 403", "403", ``, denied, true)
	f("no annotation, 404", "404", ``, denied, false)
	f("no annotation, 200", "200", ``, denied, false)
	f("allow annotation, 403 from admission", "403", `,"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}`, denied, false)

	const anon = "rule:anonymous-request-allowed"
	anonList := strings.NewReplacer(`"username":"system:serviceaccount:payments:payments-api","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"]`,
		`"username":"system:anonymous","groups":["system:unauthenticated"]`).Replace(list)
	g := func(name, code, annotations string, want bool) {
		t.Helper()
		js := strings.NewReplacer("CODE", code, "ANNOTATIONS", annotations).Replace(anonList)
		if got := slices.Contains(fired(s, decode(t, js)), anon); got != want {
			t.Errorf("%s: %s fired %v, want %v", name, anon, got, want)
		}
	}
	g("anonymous, no annotation, 200", "200", ``, true)
	g("anonymous, no annotation, 403", "403", ``, false)
	g("anonymous, allow annotation", "200", `,"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}`, true)
}
