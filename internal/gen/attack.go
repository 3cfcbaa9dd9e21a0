package gen

import (
	"strconv"
	"time"
)

// Attack scenario names. Each is named after the detector it exercises
// (the ids in /work/shared/KEPS.md); Event.Expect says exactly which
// detectors must fire on each event.
const (
	ScenarioAnonymousAccess       = "anonymous-access"
	ScenarioStaleToken            = "stale-token"
	ScenarioLegacyToken           = "legacy-token"
	ScenarioTokenReplay           = "token-replay"
	ScenarioUnsecuredImagePull    = "unsecured-image-pull"
	ScenarioUnsignedJWT           = "unsigned-jwt"
	ScenarioBroadSelector         = "broad-selector"
	ScenarioAppArmorUnconfined    = "apparmor-unconfined"
	ScenarioAdmissionPolicyChange = "admission-policy-change"
)

// LookalikePrefix starts the Scenario of benign traffic built to resemble
// an attack: detectors must stay quiet on it.
const LookalikePrefix = "lookalike:"

// Scenarios lists the attack scenario names the generator emits.
func Scenarios() []string {
	return []string{
		ScenarioAnonymousAccess, ScenarioStaleToken, ScenarioLegacyToken, ScenarioTokenReplay,
		ScenarioUnsecuredImagePull, ScenarioUnsignedJWT, ScenarioBroadSelector,
		ScenarioAppArmorUnconfined, ScenarioAdmissionPolicyChange,
	}
}

// attacks are the scenario starters, drawn uniformly for each attack slot.
// Anonymous access has two (a successful read and a probing run), so it is
// the most common, as it is on clusters exposed to the internet.
func attacks() []func(g *Generator, at time.Time) {
	return []func(g *Generator, at time.Time){
		(*Generator).anonymousSecrets,
		(*Generator).anonymousProbe,
		(*Generator).staleToken,
		(*Generator).legacyToken,
		(*Generator).tokenReplay,
		(*Generator).unsecuredImagePull,
		(*Generator).unsignedJWT,
		(*Generator).broadSelector,
		(*Generator).appArmorUnconfined,
		(*Generator).admissionPolicyChange,
	}
}

// externalIP returns an address from the documentation ranges, standing in
// for the internet.
func (g *Generator) externalIP() string {
	if g.r.chance(0.5) {
		return "203.0.113." + strconv.Itoa(g.r.between(2, 254))
	}
	return "198.51.100." + strconv.Itoa(g.r.between(2, 254))
}

var scannerUAs = []string{"python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1", "kube-hunter/0.6.8"}

// anonymousSecrets is the attack of KEP-4633's motivation: a binding grants
// system:unauthenticated read on secrets, and someone from the internet
// reads kube-system's. Listing them is also an unnarrowed list of secrets.
func (g *Generator) anonymousSecrets(at time.Time) {
	rq := &request{
		level: "Metadata", verb: "list", user: anonymousUser,
		uri: "/api/v1/namespaces/kube-system/secrets",
		ip:  g.externalIP(), ua: pick(g.r, scannerUAs),
		ref:  objRef{resource: "secrets", ns: "kube-system", version: "v1"},
		code: 200, received: at, latency: g.ms(4, 30),
		authz:    allow(`RBAC: allowed by RoleBinding "debug-secrets/kube-system" of Role "secret-reader" to Group "system:unauthenticated"`),
		scenario: ScenarioAnonymousAccess,
		expect:   []string{ScenarioAnonymousAccess, ScenarioBroadSelector},
	}
	if g.r.chance(0.5) {
		name := "bootstrap-token-" + g.r.suffix(6)
		rq.verb, rq.uri, rq.ref.name = "get", rq.uri+"/"+name, name
		rq.expect = []string{ScenarioAnonymousAccess}
	}
	g.submit(rq)
}

// probe is one path an unauthenticated scanner tries.
type probe struct {
	uri, verb string
	ref       objRef
	message   string
	details   string
}

var probes = []probe{
	{uri: "/apis", verb: "get", message: `forbidden: User "system:anonymous" cannot get path "/apis"`, details: `{}`},
	{uri: "/metrics", verb: "get", message: `forbidden: User "system:anonymous" cannot get path "/metrics"`, details: `{}`},
	{uri: "/debug/pprof/", verb: "get", message: `forbidden: User "system:anonymous" cannot get path "/debug/pprof/"`, details: `{}`},
	{uri: "/logs/", verb: "get", message: `forbidden: User "system:anonymous" cannot get path "/logs/"`, details: `{}`},
	{uri: "/openapi/v2", verb: "get", message: `forbidden: User "system:anonymous" cannot get path "/openapi/v2"`, details: `{}`},
	{uri: "/api/v1/namespaces", verb: "list", ref: objRef{resource: "namespaces", version: "v1"},
		message: `namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" at the cluster scope`, details: `{"kind":"namespaces"}`},
	{uri: "/api/v1/nodes", verb: "list", ref: objRef{resource: "nodes", version: "v1"},
		message: `nodes is forbidden: User "system:anonymous" cannot list resource "nodes" in API group "" at the cluster scope`, details: `{"kind":"nodes"}`},
	{uri: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", verb: "list", ref: objRef{resource: "clusterrolebindings", group: "rbac.authorization.k8s.io", version: "v1"},
		message: `clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "system:anonymous" cannot list resource "clusterrolebindings" in API group "rbac.authorization.k8s.io" at the cluster scope`,
		details: `{"group":"rbac.authorization.k8s.io","kind":"clusterrolebindings"}`},
}

// anonymousProbe is a scanner enumerating paths from one address: each
// request is denied (403), and each is a finding of medium severity.
func (g *Generator) anonymousProbe(at time.Time) {
	ip, ua := g.externalIP(), pick(g.r, scannerUAs)
	order := g.r.r.Perm(len(probes))[:g.r.between(4, 6)]
	for i, idx := range order {
		p := &probes[idx]
		f := func(g *Generator, at time.Time) {
			g.submit(&request{
				level: "Metadata", verb: p.verb, uri: p.uri, user: anonymousUser,
				ip: ip, ua: ua, ref: p.ref,
				code: 403, status: statusJSON(p.message, "Forbidden", p.details, 403),
				received: at, latency: g.ms(0, 2), authz: forbid(""),
				scenario: ScenarioAnonymousAccess, expect: []string{ScenarioAnonymousAccess},
			})
		}
		if i == 0 {
			f(g, at)
			continue
		}
		g.then(f)
	}
}

// scenarioPod returns a fresh pod of a workload that exists only for one
// scenario instance, so its credential is not shared with routine traffic
// or with another instance.
func (g *Generator) scenarioPod(ns, name, sa, image string) *pod {
	wl := &workload{ns: ns, name: name, sa: sa, saUID: g.r.uuid(), image: image, rsHash: g.r.suffix(9), rsUID: g.r.uuid()}
	n := pick(g.r, g.w.nodes)
	// .40-.99 of the node's pod range: apart from routine pods (from .2) and
	// from the in-cluster addresses a replay comes from (.100 up), so a
	// replay never shares the victim's address by chance.
	return makePod(g.r, wl, n, "10.244."+strconv.Itoa(n.podCIDR)+"."+strconv.Itoa(g.r.between(40, 99)))
}

// staleToken is a workload presenting its pod-bound token after the token's
// warnafter: from minutes (not reloading it) to days (likely stolen).
func (g *Generator) staleToken(at time.Time) {
	p := g.scenarioPod("reporting", "nightly-export", "nightly-export", "registry.internal.example.com/reporting/exporter:3.2.0")
	secs := pick(g.r, []int{g.r.between(30, 900), g.r.between(3600, 20000), g.r.between(86400, 400000)})
	g.submit(&request{
		level: "Metadata", verb: "get",
		uri:  "/api/v1/namespaces/reporting/configmaps/export-config",
		user: p.sa.user, ip: p.sa.ip, ua: p.sa.ua,
		ref:  objRef{resource: "configmaps", ns: "reporting", name: "export-config", version: "v1"},
		code: 200, received: at, latency: g.ms(1, 5),
		authn: []kv{{"authentication.k8s.io/stale-token",
			"subject: system:serviceaccount:reporting:nightly-export, seconds after warning threshold: " + strconv.Itoa(secs)}},
		authz:    allow(`RBAC: allowed by RoleBinding "nightly-export/reporting" of Role "export-reader" to ServiceAccount "nightly-export/reporting"`),
		scenario: ScenarioStaleToken, expect: []string{ScenarioStaleToken},
	})
}

// legacyToken is a CI job deploying with a long-lived secret-based token;
// a quarter of the time the secret has been invalidated and the request
// fails authentication.
func (g *Generator) legacyToken(at time.Time) {
	const sub = "system:serviceaccount:ci:deployer"
	if g.r.chance(0.25) {
		g.submit(&request{
			level: "Metadata", verb: "get",
			uri: "/apis/apps/v1/namespaces/payments/deployments/api",
			ip:  "10.20.3.14", ua: "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
			ref:  objRef{resource: "deployments", ns: "payments", name: "api", group: "apps", version: "v1"},
			code: 401, status: failedAuthStatus("Authentication failed, attempted: bearer"),
			shape: shapeFailedAuth, received: at, latency: g.ms(0, 1),
			authn:    []kv{{"authentication.k8s.io/legacy-token-invalidated", "deployer-token/ci"}},
			scenario: ScenarioLegacyToken, expect: []string{ScenarioLegacyToken},
		})
		return
	}
	secretKey := "authentication.k8s.io/legacy-token-manual-secret"
	if g.r.chance(0.3) {
		secretKey = "authentication.k8s.io/legacy-token-autogenerated-secret"
	}
	g.submit(&request{
		level: "Request", verb: "patch",
		uri:  "/apis/apps/v1/namespaces/payments/deployments/api?fieldManager=kubectl-rollout",
		user: userJSON(sub, "5f0c2a1e-8c1d-4d7b-9a3e-2b6f1c0d9e84", []string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"}, nil),
		ip:   "10.20.3.14", ua: "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
		ref:  objRef{resource: "deployments", ns: "payments", name: "api", group: "apps", version: "v1"},
		code: 200, received: at, latency: g.ms(5, 25),
		// kubectl rollout restart: a patch that touches no image, so that
		// only the token detector has anything to say about it.
		reqObj:   []byte(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"` + at.UTC().Format(time.RFC3339) + `"}}}}}`),
		authn:    []kv{{"authentication.k8s.io/legacy-token", sub}, {secretKey, "deployer-token"}},
		authz:    allow(`RBAC: allowed by RoleBinding "deployer/payments" of ClusterRole "edit" to ServiceAccount "deployer/ci"`),
		scenario: ScenarioLegacyToken, expect: []string{ScenarioLegacyToken},
	})
}

// tokenReplay is a pod-bound token stolen from a pod (through a file read
// or SSRF) and replayed with curl from outside the cluster. The pod's own
// use comes first and is quiet; the replay is the finding.
func (g *Generator) tokenReplay(at time.Time) {
	p := g.scenarioPod("payments", "batch-reconciler", "batch-reconciler", "registry.internal.example.com/payments/reconciler:0.9.3")
	reason := `RBAC: allowed by RoleBinding "batch-reconciler/payments" of Role "reconciler" to ServiceAccount "batch-reconciler/payments"`
	g.submit(&request{
		level: "Metadata", verb: "get",
		uri:  "/api/v1/namespaces/payments/secrets/payments-db",
		user: p.sa.user, ip: p.sa.ip, ua: p.sa.ua,
		ref:  objRef{resource: "secrets", ns: "payments", name: "payments-db", version: "v1"},
		code: 200, received: at, latency: g.ms(1, 5), authz: allow(reason),
		scenario: ScenarioTokenReplay,
	})
	g.then(func(g *Generator, at time.Time) {
		ip, ua := g.externalIP(), "curl/8.5.0"
		if g.r.chance(0.3) {
			// Replayed from another pod: a different in-cluster IP and a
			// Python client instead of the workload's own.
			ip, ua = "10.244."+strconv.Itoa(g.r.between(1, 6))+"."+strconv.Itoa(g.r.between(100, 250)), "python-requests/2.32.3"
		}
		g.submit(&request{
			level: "Metadata", verb: "get",
			uri:  "/api/v1/namespaces/payments/secrets/payments-db",
			user: p.sa.user, ip: ip, ua: ua,
			ref:  objRef{resource: "secrets", ns: "payments", name: "payments-db", version: "v1"},
			code: 200, received: at, latency: g.ms(1, 5), authz: allow(reason),
			scenario: ScenarioTokenReplay, expect: []string{ScenarioTokenReplay},
		})
	})
}

// unsecuredImagePull is a pod that runs a private image with IfNotPresent
// and no pull secret: on a node that already pulled it for another tenant,
// it starts without ever proving access to the registry.
func (g *Generator) unsecuredImagePull(at time.Time) {
	h := g.w.humans[1]
	o := podOpts{
		ns: "payments", name: "debug-" + g.r.suffix(5),
		labels:    []kv{{"run", "debug"}},
		container: "debug", image: "registry.internal.example.com/payments/api:1.4.2", pullPolicy: "IfNotPresent",
		command: []string{"sleep", "infinity"}, sa: "default",
	}
	if g.r.chance(0.5) {
		o.nodeName = pick(g.r, g.w.nodes).name // aimed at the node that has the image
	}
	req := podJSON(&o)
	o.response, o.uid, o.rv, o.created = true, g.r.uuid(), g.rv(), at
	o.tokenVol = "kube-api-access-" + g.r.suffix(5)
	g.submit(&request{
		level: "RequestResponse", verb: "create",
		uri:  "/api/v1/namespaces/payments/pods?fieldManager=kubectl-run",
		user: h.id.user, ip: h.id.ip, ua: h.id.ua,
		ref:  objRef{resource: "pods", ns: "payments", version: "v1"},
		code: 201, received: at, latency: g.ms(8, 30),
		reqObj: req, respObj: podJSON(&o),
		authz:    append(allow(h.rbac), kv{"pod-security.kubernetes.io/enforce-policy", "baseline:latest"}),
		scenario: ScenarioUnsecuredImagePull, expect: []string{ScenarioUnsecuredImagePull},
	})
}

// unsignedJWT is a forged token (alg none) presented to metrics-server,
// which asks the apiserver to review it.
func (g *Generator) unsignedJWT(at time.Time) {
	ms := g.w.metricsSrv
	g.submit(&request{
		level: "Request", verb: "create",
		uri:  "/apis/authentication.k8s.io/v1/tokenreviews",
		user: ms.sa.user, ip: ms.sa.ip, ua: ms.sa.ua,
		ref:  objRef{resource: "tokenreviews", group: "authentication.k8s.io", version: "v1"},
		code: 201, received: at, latency: g.ms(1, 4),
		reqObj:   tokenReviewJSON(unsignedToken(at, g.r.uuid())),
		authz:    allow(`RBAC: allowed by ClusterRoleBinding "metrics-server:system:auth-delegator" of ClusterRole "system:auth-delegator" to ServiceAccount "metrics-server/kube-system"`),
		scenario: ScenarioUnsignedJWT, expect: []string{ScenarioUnsignedJWT},
	})
}

// broadSelector is a contractor's account harvesting every secret in the
// cluster: kubectl get secrets -A -w, a list then a watch, neither narrowed.
func (g *Generator) broadSelector(at time.Time) {
	id := identity{
		username: "jane.doe@example.com",
		user:     userJSON("jane.doe@example.com", "", []string{"contractors", "system:authenticated"}, nil),
		ua:       "kubectl/v1.32.1 (windows/amd64) kubernetes/e9c9be4", ip: "192.168.50." + strconv.Itoa(g.r.between(60, 90)),
	}
	reason := `RBAC: allowed by ClusterRoleBinding "contractors-view-secrets" of ClusterRole "secret-reader" to Group "contractors"`
	g.submit(&request{
		level: "Metadata", verb: "list", uri: "/api/v1/secrets?limit=500",
		user: id.user, ip: id.ip, ua: id.ua,
		ref:  objRef{resource: "secrets", version: "v1"},
		code: 200, received: at, latency: g.ms(20, 120), authz: allow(reason),
		scenario: ScenarioBroadSelector, expect: []string{ScenarioBroadSelector},
	})
	rv := g.rv()
	g.then(func(g *Generator, at time.Time) {
		g.submit(&request{
			level: "Metadata", verb: "watch", uri: "/api/v1/secrets?resourceVersion=" + rv + "&watch=true",
			user: id.user, ip: id.ip, ua: id.ua,
			ref:  objRef{resource: "secrets", version: "v1"},
			code: 200, received: at, authz: allow(reason),
			shape: shapeLong, started: g.ms(1, 5), latency: time.Duration(g.r.between(60, 1800)) * time.Second,
			scenario: ScenarioBroadSelector, expect: []string{ScenarioBroadSelector},
		})
	})
}

// appArmorUnconfined is a pod that opts out of AppArmor, at pod or
// container level, in a namespace Pod Security does not enforce.
func (g *Generator) appArmorUnconfined(at time.Time) {
	h := g.w.humans[0]
	o := podOpts{
		ns: "tools", name: "netshoot-" + g.r.suffix(5),
		labels:    []kv{{"run", "netshoot"}},
		container: "netshoot", image: "busybox:1.36", command: []string{"sleep", "3600"}, sa: "default",
	}
	if g.r.chance(0.5) {
		o.podAppArmor = "Unconfined"
	} else {
		o.containerAppArmor = "Unconfined"
	}
	req := podJSON(&o)
	o.response, o.uid, o.rv, o.created = true, g.r.uuid(), g.rv(), at
	o.tokenVol = "kube-api-access-" + g.r.suffix(5)
	g.submit(&request{
		level: "RequestResponse", verb: "create",
		uri:  "/api/v1/namespaces/tools/pods?fieldManager=kubectl-create&fieldValidation=Strict",
		user: h.id.user, ip: h.id.ip, ua: h.id.ua,
		ref:  objRef{resource: "pods", ns: "tools", version: "v1"},
		code: 201, received: at, latency: g.ms(8, 30),
		reqObj: req, respObj: podJSON(&o), authz: allow(h.rbac),
		scenario: ScenarioAppArmorUnconfined, expect: []string{ScenarioAppArmorUnconfined},
	})
}

// admissionPolicyChange is a developer removing the policy that blocks
// unpinned images: a control deleted by someone who is not a cluster admin.
func (g *Generator) admissionPolicyChange(at time.Time) {
	h := g.w.humans[1]
	resource, name := "validatingadmissionpolicies", "require-image-digest"
	if g.r.chance(0.4) {
		resource, name = "validatingadmissionpolicybindings", "require-image-digest-binding"
	}
	const group = "admissionregistration.k8s.io"
	g.submit(&request{
		level: "RequestResponse", verb: "delete",
		uri:  "/apis/" + group + "/v1/" + resource + "/" + name,
		user: h.id.user, ip: h.id.ip, ua: h.id.ua,
		ref:  objRef{resource: resource, name: name, group: group, version: "v1"},
		code: 200, received: at, latency: g.ms(5, 20),
		reqObj:   deleteOptionsJSON(group + "/v1"),
		respObj:  successStatusJSON(name, group, resource, g.r.uuid()),
		authz:    allow(`RBAC: allowed by ClusterRoleBinding "policy-editors" of ClusterRole "admission-policy-editor" to Group "developers"`),
		scenario: ScenarioAdmissionPolicyChange, expect: []string{ScenarioAdmissionPolicyChange},
	})
}
