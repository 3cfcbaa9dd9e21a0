package gen

import (
	"strconv"
	"time"
)

// routine is one kind of everyday request and how often it occurs.
type routine struct {
	weight int
	fn     func(g *Generator, at time.Time)
}

// routines is the traffic mix of a quiet production cluster, weighted (per
// mille, roughly) as audit logs of such clusters are: leases and status
// heartbeats dominate, then operators' selector-narrowed reads, events and
// kubelet watches; failed authentication and handler panics are rare.
func routines() []routine {
	return []routine{
		{220, (*Generator).nodeLease},
		{140, (*Generator).leaderLease},
		{100, (*Generator).podStatusPatch},
		{40, (*Generator).nodeStatusPatch},
		{70, (*Generator).kubeletObjectWatch},
		{20, (*Generator).kubeletPodWatch},
		{30, (*Generator).kubeletSecretGet},
		{40, (*Generator).kubeletTokenRequest},
		{30, (*Generator).createPod},
		{20, (*Generator).bindPod},
		{120, (*Generator).operatorCall},
		{80, (*Generator).createEvent},
		{30, (*Generator).tokenReview},
		{20, (*Generator).accessReview},
		{30, (*Generator).kubectl},
		{3, (*Generator).kubectlExec},
		{40, (*Generator).healthProbe},
		{4, (*Generator).expiredCredential},
		{1, (*Generator).panicked},
	}
}

// ms returns a latency between lo and hi milliseconds, with microseconds.
func (g *Generator) ms(lo, hi int) time.Duration {
	return time.Duration(g.r.between(lo*1000, hi*1000)) * time.Microsecond
}

// rv returns a plausible etcd resourceVersion.
func (g *Generator) rv() string {
	return strconv.Itoa(48_000_000 + g.r.intn(2_000_000))
}

func (g *Generator) nodeLease(at time.Time) {
	n := pick(g.r, g.w.nodes)
	verb := "update"
	if g.r.chance(0.05) {
		verb = "get" // after a conflict the lease controller re-reads
	}
	g.submit(&request{
		level: "Metadata", verb: verb,
		uri:  "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + n.name + "?timeout=10s",
		user: n.kubelet.user, ip: n.ip, ua: n.kubelet.ua,
		ref:  objRef{resource: "leases", ns: "kube-node-lease", name: n.name, group: "coordination.k8s.io", version: "v1"},
		code: 200, authz: allow(""), received: at, latency: g.ms(1, 9),
	})
}

func (g *Generator) leaderLease(at time.Time) {
	id, name := g.w.kcm, "kube-controller-manager"
	if g.r.chance(0.5) {
		id, name = g.w.sched, "kube-scheduler"
	}
	verb := "get"
	if g.r.chance(0.5) {
		verb = "update"
	}
	g.submit(&request{
		level: "Metadata", verb: verb,
		uri:  "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/" + name + "?timeout=5s",
		user: id.user, ip: id.ip, ua: id.ua,
		ref:  objRef{resource: "leases", ns: "kube-system", name: name, group: "coordination.k8s.io", version: "v1"},
		code: 200, received: at, latency: g.ms(1, 6),
		authz: allow(`RBAC: allowed by ClusterRoleBinding "system:` + name + `" of ClusterRole "system:` + name + `" to User "system:` + name + `"`),
	})
}

// anyPod returns a running pod of the cluster.
func (g *Generator) anyPod() *pod {
	for {
		n := pick(g.r, g.w.nodes)
		if len(n.pods) > 0 {
			return pick(g.r, n.pods)
		}
	}
}

func (g *Generator) podStatusPatch(at time.Time) {
	p := g.anyPod()
	g.submit(&request{
		level: "Request", verb: "patch",
		uri:  "/api/v1/namespaces/" + p.w.ns + "/pods/" + p.name + "/status",
		user: p.node.kubelet.user, ip: p.node.ip, ua: p.node.kubelet.ua,
		ref:  objRef{resource: "pods", ns: p.w.ns, name: p.name, version: "v1", subresource: "status"},
		code: 200, authz: allow(""), received: at, latency: g.ms(3, 15),
		reqObj: podStatusPatchJSON(g.r, p, at),
	})
}

func (g *Generator) nodeStatusPatch(at time.Time) {
	n := pick(g.r, g.w.nodes)
	g.submit(&request{
		level: "Request", verb: "patch",
		uri:  "/api/v1/nodes/" + n.name + "/status?timeout=10s",
		user: n.kubelet.user, ip: n.ip, ua: n.kubelet.ua,
		ref:  objRef{resource: "nodes", name: n.name, version: "v1", subresource: "status"},
		code: 200, authz: allow(""), received: at, latency: g.ms(3, 20),
		reqObj: nodeStatusPatchJSON(g.r, g.w, at, g.r.chance(0.25)),
	})
}

// kubeletObjectWatch is the kubelet watching (or first listing) one
// configmap or secret a pod on its node mounts: narrowed to that object by
// a metadata.name field selector, which also fills objectRef.name.
func (g *Generator) kubeletObjectWatch(at time.Time) {
	p := g.anyPod()
	resource, name := "configmaps", "kube-root-ca.crt"
	switch {
	case p.w.pullSecret != "" && g.r.chance(0.4):
		resource, name = "secrets", p.w.name+"-env"
	case p.w.configMap != "" && g.r.chance(0.5):
		name = p.w.configMap
	}
	rq := &request{
		level: "Metadata",
		user:  p.node.kubelet.user, ip: p.node.ip, ua: p.node.kubelet.ua,
		ref:  objRef{resource: resource, ns: p.w.ns, name: name, version: "v1"},
		code: 200, authz: allow(""), received: at,
	}
	base := "/api/v1/namespaces/" + p.w.ns + "/" + resource
	if g.r.chance(0.25) {
		rq.verb = "list"
		rq.uri = base + "?fieldSelector=metadata.name%3D" + name + "&limit=500&resourceVersion=0"
		rq.latency = g.ms(1, 6)
	} else {
		timeout, secs := watchTimeout(g.r)
		rq.verb = "watch"
		rq.uri = base + "?allowWatchBookmarks=true&fieldSelector=metadata.name%3D" + name +
			"&resourceVersion=" + g.rv() + "&timeout=" + timeout + "&timeoutSeconds=" + strconv.Itoa(secs) + "&watch=true"
		rq.shape = shapeLong
		rq.started = g.ms(1, 4)
		rq.latency = time.Duration(secs)*time.Second + g.ms(0, 50)
	}
	g.submit(rq)
}

// kubeletPodWatch is the kubelet's watch of the pods bound to its node.
func (g *Generator) kubeletPodWatch(at time.Time) {
	n := pick(g.r, g.w.nodes)
	timeout, secs := watchTimeout(g.r)
	g.submit(&request{
		level: "Metadata", verb: "watch",
		uri: "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3D" + n.name +
			"&resourceVersion=" + g.rv() + "&timeout=" + timeout + "&timeoutSeconds=" + strconv.Itoa(secs) + "&watch=true",
		user: n.kubelet.user, ip: n.ip, ua: n.kubelet.ua,
		ref:  objRef{resource: "pods", version: "v1"},
		code: 200, authz: allow(""), received: at,
		shape: shapeLong, started: g.ms(1, 4), latency: time.Duration(secs)*time.Second + g.ms(0, 50),
	})
}

// kubeletSecretGet is the kubelet fetching a pod's image pull secret.
func (g *Generator) kubeletSecretGet(at time.Time) {
	p := g.anyPod()
	name := p.w.pullSecret
	if name == "" {
		name = p.w.name + "-env"
	}
	g.submit(&request{
		level: "Metadata", verb: "get",
		uri:  "/api/v1/namespaces/" + p.w.ns + "/secrets/" + name,
		user: p.node.kubelet.user, ip: p.node.ip, ua: p.node.kubelet.ua,
		ref:  objRef{resource: "secrets", ns: p.w.ns, name: name, version: "v1"},
		code: 200, authz: allow(""), received: at, latency: g.ms(1, 5),
	})
}

// kubeletTokenRequest is the kubelet refreshing a pod's projected token.
func (g *Generator) kubeletTokenRequest(at time.Time) {
	p := g.anyPod()
	jti := g.r.uuid()
	rq := &request{
		level: "Request", verb: "create",
		uri:  "/api/v1/namespaces/" + p.w.ns + "/serviceaccounts/" + p.w.sa + "/token",
		user: p.node.kubelet.user, ip: p.node.ip, ua: p.node.kubelet.ua,
		ref:  objRef{resource: "serviceaccounts", ns: p.w.ns, name: p.w.sa, version: "v1", subresource: "token"},
		code: 201, received: at, latency: g.ms(2, 10),
		authz: append(allow(""), kv{"authentication.kubernetes.io/issued-credential-id", "JTI=" + jti}),
	}
	rq.reqObj = tokenRequestJSON(p.name, p.uid, false, "", time.Time{})
	if g.r.chance(0.2) {
		// Some policies log token requests in full: the minted JWT is in
		// the response, which is why ingest must redact it.
		rq.level = "RequestResponse"
		tok := g.podToken(&tokenClaims{ns: p.w.ns, sa: p.w.sa, saUID: p.w.saUID, podName: p.name, podUID: p.uid,
			nodeName: p.node.name, nodeUID: p.node.uid, jti: jti, iat: at})
		rq.respObj = tokenRequestJSON(p.name, p.uid, true, tok, at.Add(3607*time.Second))
	}
	g.submit(rq)
}

// createPod is the ReplicaSet controller creating a pod from its template,
// logged at RequestResponse: the request is the template, the response the
// stored pod after defaulting and the ServiceAccount admission plugin.
func (g *Generator) createPod(at time.Time) {
	var wl *workload
	for wl == nil || wl.calls != nil {
		wl = pick(g.r, g.w.workloads)
	}
	o := podOpts{
		ns: wl.ns, generateName: wl.name + "-" + wl.rsHash + "-",
		labels: []kv{{"app", wl.name}, {"pod-template-hash", wl.rsHash}},
		owner:  wl, container: wl.name, image: wl.image, pullPolicy: wl.pullPolicy,
		port: wl.port, env: wl.env, cpu: wl.cpu, mem: wl.mem, sa: wl.sa, pullSecret: wl.pullSecret,
		restricted: wl.pssLevel == "restricted", templated: true,
	}
	if wl.runtimeAA {
		o.podAppArmor = "RuntimeDefault"
	}
	req := podJSON(&o)
	o.response = true
	o.name = o.generateName + g.r.suffix(5)
	o.uid = g.r.uuid()
	o.rv = g.rv()
	o.created = at
	o.tokenVol = "kube-api-access-" + g.r.suffix(5)
	o.manager = "kube-controller-manager"
	resp := podJSON(&o)
	rq := &request{
		level: "RequestResponse", verb: "create",
		uri:  "/api/v1/namespaces/" + wl.ns + "/pods",
		user: g.w.rsCtrl.user, ip: g.w.rsCtrl.ip, ua: g.w.rsCtrl.ua,
		ref:  objRef{resource: "pods", ns: wl.ns, version: "v1"},
		code: 201, received: at, latency: g.ms(8, 40),
		reqObj: req, respObj: resp,
		authz: allow(`RBAC: allowed by ClusterRoleBinding "system:controller:replicaset-controller" of ClusterRole "system:controller:replicaset-controller" to ServiceAccount "replicaset-controller/kube-system"`),
	}
	if wl.pssLevel != "" {
		rq.authz = append(rq.authz, kv{"pod-security.kubernetes.io/enforce-policy", wl.pssLevel + ":latest"})
	}
	g.submit(rq)
}

func (g *Generator) bindPod(at time.Time) {
	p := g.anyPod()
	n := pick(g.r, g.w.nodes)
	g.submit(&request{
		level: "Request", verb: "create",
		uri:  "/api/v1/namespaces/" + p.w.ns + "/pods/" + p.name + "/binding",
		user: g.w.sched.user, ip: g.w.sched.ip, ua: g.w.sched.ua,
		ref:  objRef{resource: "pods", ns: p.w.ns, name: p.name, version: "v1", subresource: "binding"},
		code: 201, received: at, latency: g.ms(2, 8),
		reqObj: bindingJSON(p.name, p.w.ns, g.r.uuid(), n.name),
		authz:  allow(`RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole "system:kube-scheduler" to User "system:kube-scheduler"`),
	})
}

// operatorCall is an operator's routine read or status write, made with
// its pod-bound token from its pod IP.
func (g *Generator) operatorCall(at time.Time) {
	p := pick(g.r, g.w.operators)
	c := pick(g.r, p.w.calls)
	rq := &request{
		level: c.level, verb: c.verb, uri: c.uri,
		user: p.sa.user, ip: p.sa.ip, ua: p.sa.ua,
		ref:  objRef{resource: c.resource, ns: c.ns, name: c.name, group: c.group, version: c.version, subresource: c.subresource},
		code: c.code, received: at, latency: g.ms(c.latencyMinMS, c.latencyMaxMS),
		authz: allow(`RBAC: allowed by ClusterRoleBinding "` + p.w.name + `" of ClusterRole "` + p.w.name + `" to ServiceAccount "` + p.w.sa + "/" + p.w.ns + `"`),
	}
	if c.verb == "patch" {
		rq.level = "Request"
		rq.reqObj = appPatchJSON(at, g.r.hex(40))
	}
	g.submit(rq)
}

func (g *Generator) createEvent(at time.Time) {
	p := g.anyPod()
	name := p.name + "." + g.r.hex(16)
	if g.r.chance(0.6) {
		rq := &request{
			level: "Metadata", verb: "create",
			uri:  "/api/v1/namespaces/" + p.w.ns + "/events",
			user: p.node.kubelet.user, ip: p.node.ip, ua: p.node.kubelet.ua,
			ref:  objRef{resource: "events", ns: p.w.ns, name: name, version: "v1"},
			code: 201, authz: allow(""), received: at, latency: g.ms(1, 6),
		}
		if g.r.chance(0.3) {
			// A repeated event is patched with its new count.
			rq.verb, rq.code = "patch", 200
			rq.uri += "/" + name
		}
		g.submit(rq)
		return
	}
	id := g.w.sched
	reason := `RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole "system:kube-scheduler" to User "system:kube-scheduler"`
	if g.r.chance(0.5) {
		id = g.w.rsCtrl
		reason = `RBAC: allowed by ClusterRoleBinding "system:controller:replicaset-controller" of ClusterRole "system:controller:replicaset-controller" to ServiceAccount "replicaset-controller/kube-system"`
	}
	g.submit(&request{
		level: "Metadata", verb: "create",
		uri:  "/apis/events.k8s.io/v1/namespaces/" + p.w.ns + "/events",
		user: id.user, ip: id.ip, ua: id.ua,
		ref:  objRef{resource: "events", ns: p.w.ns, name: name, group: "events.k8s.io", version: "v1"},
		code: 201, received: at, latency: g.ms(1, 6), authz: allow(reason),
	})
}

// tokenReview is metrics-server (an aggregated API) authenticating a
// client's bearer token: a well-formed, RS256-signed pod-bound token.
func (g *Generator) tokenReview(at time.Time) {
	ms := g.w.metricsSrv
	client := pick(g.r, g.w.operators)
	tok := g.podToken(&tokenClaims{ns: client.w.ns, sa: client.w.sa, saUID: client.w.saUID,
		podName: client.name, podUID: client.uid, nodeName: client.node.name, nodeUID: client.node.uid,
		jti: client.jti, iat: at.Add(-time.Duration(g.r.between(60, 3000)) * time.Second)})
	g.submit(&request{
		level: "Request", verb: "create",
		uri:  "/apis/authentication.k8s.io/v1/tokenreviews",
		user: ms.sa.user, ip: ms.sa.ip, ua: ms.sa.ua,
		ref:  objRef{resource: "tokenreviews", group: "authentication.k8s.io", version: "v1"},
		code: 201, received: at, latency: g.ms(1, 4),
		reqObj: tokenReviewJSON(tok),
		authz:  allow(`RBAC: allowed by ClusterRoleBinding "metrics-server:system:auth-delegator" of ClusterRole "system:auth-delegator" to ServiceAccount "metrics-server/kube-system"`),
	})
}

func (g *Generator) accessReview(at time.Time) {
	ms := g.w.metricsSrv
	wl := pick(g.r, g.w.workloads)
	g.submit(&request{
		level: "Request", verb: "create",
		uri:  "/apis/authorization.k8s.io/v1/subjectaccessreviews",
		user: ms.sa.user, ip: ms.sa.ip, ua: ms.sa.ua,
		ref:  objRef{resource: "subjectaccessreviews", group: "authorization.k8s.io", version: "v1"},
		code: 201, received: at, latency: g.ms(1, 3),
		reqObj: sarJSON("system:serviceaccount:kube-system:horizontal-pod-autoscaler", g.r.uuid(), wl.ns),
		authz:  allow(`RBAC: allowed by ClusterRoleBinding "metrics-server:system:auth-delegator" of ClusterRole "system:auth-delegator" to ServiceAccount "metrics-server/kube-system"`),
	})
}

func (g *Generator) kubectl(at time.Time) {
	h := pick(g.r, g.w.humans)
	c := pick(g.r, h.calls)
	g.submit(&request{
		level: c.level, verb: c.verb, uri: c.uri,
		user: h.id.user, ip: h.id.ip, ua: h.id.ua,
		ref:  objRef{resource: c.resource, ns: c.ns, name: c.name, group: c.group, version: c.version},
		code: c.code, received: at, latency: g.ms(c.latencyMinMS, c.latencyMaxMS),
		authz: allow(h.rbac),
	})
}

// kubectlExec is an administrator's interactive shell in a pod: the
// response starts with the protocol upgrade (101) and completes when the
// session ends.
func (g *Generator) kubectlExec(at time.Time) {
	h := g.w.humans[0]
	p := g.anyPod()
	g.submit(&request{
		level: "Metadata", verb: "create",
		uri:  "/api/v1/namespaces/" + p.w.ns + "/pods/" + p.name + "/exec?command=sh&container=" + p.w.name + "&stdin=true&stdout=true&tty=true",
		user: h.id.user, ip: h.id.ip, ua: h.id.ua,
		ref:  objRef{resource: "pods", ns: p.w.ns, name: p.name, version: "v1", subresource: "exec"},
		code: 101, received: at, authz: allow(h.rbac),
		shape: shapeLong, started: g.ms(20, 90), latency: time.Duration(g.r.between(20, 600)) * time.Second,
	})
}

// anonymousUser is how the apiserver records an unauthenticated request it
// let through to authorization.
var anonymousUser = []byte(`{"username":"system:anonymous","groups":["system:unauthenticated"]}`)

const publicInfoReason = `RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer" to Group "system:unauthenticated"`

// LookalikeAnonymousHealth labels anonymous probes of the health and
// version endpoints: allowed by default RBAC, and never a finding.
const LookalikeAnonymousHealth = LookalikePrefix + "anonymous-health-probe"

// healthProbe is a load balancer or the kubelet checking the apiserver.
func (g *Generator) healthProbe(at time.Time) {
	rq := &request{
		level: "Metadata", verb: "get", user: anonymousUser,
		code: 200, authz: allow(publicInfoReason), received: at, latency: g.ms(0, 2),
		scenario: LookalikeAnonymousHealth,
	}
	switch g.r.intn(4) {
	case 0:
		rq.uri, rq.ip, rq.ua = "/healthz", pick(g.r, g.w.lbIPs), "ELB-HealthChecker/2.0"
	case 1:
		rq.uri, rq.ip, rq.ua = "/readyz", pick(g.r, g.w.lbIPs), "ELB-HealthChecker/2.0"
	case 2:
		rq.uri, rq.ip, rq.ua = "/livez", apiServerIP, "kube-probe/1.34"
	default:
		rq.uri, rq.ip, rq.ua = "/version", pick(g.r, g.w.nodes).ip, "Go-http-client/2.0"
		rq.latency = g.ms(0, 1)
	}
	g.submit(rq)
}

// expiredCredential is a CI job still using a revoked token: a failed
// authentication, always from the same address and for the same path, so
// it is noise rather than enumeration.
func (g *Generator) expiredCredential(at time.Time) {
	g.submit(&request{
		level: "Metadata", verb: "list",
		uri: "/api/v1/namespaces/ci/configmaps?labelSelector=owner%3Dhelm&limit=500",
		ip:  "10.20.3.27", ua: "Helm/3.15.4",
		ref:  objRef{resource: "configmaps", ns: "ci", version: "v1"},
		code: 401, status: failedAuthStatus("Authentication failed, attempted: bearer"),
		shape: shapeFailedAuth, received: at, latency: g.ms(0, 1),
	})
}

// panicked is a handler panic, which the apiserver records as a Panic
// stage in place of ResponseComplete.
func (g *Generator) panicked(at time.Time) {
	p := g.w.operators[0]
	for _, o := range g.w.operators {
		if o.w.name == "argocd-application-controller" {
			p = o
		}
	}
	g.submit(&request{
		level: "Metadata", verb: "list",
		uri:  "/apis/argoproj.io/v1alpha1/applications?limit=500&resourceVersion=0",
		user: p.sa.user, ip: p.sa.ip, ua: p.sa.ua,
		ref:  objRef{resource: "applications", group: "argoproj.io", version: "v1alpha1"},
		code: 500, shape: shapePanic, received: at, latency: g.ms(2, 30),
		status: statusJSON("APIServer panic'd: runtime error: invalid memory address or nil pointer dereference", "InternalError", "", 500),
		authz:  allow(`RBAC: allowed by ClusterRoleBinding "argocd-application-controller" of ClusterRole "argocd-application-controller" to ServiceAccount "argocd-application-controller/argocd"`),
	})
}
