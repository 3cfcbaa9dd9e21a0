package gen

import (
	"slices"
	"strconv"
	"time"
)

// The cluster's life over days, for baselines (Config.Lifecycle): pods that
// restart with new IPs, sometimes on other nodes; rolling deploys that
// replace a workload's pods; CI pipelines every 90 minutes, each in a fresh
// namespace with its own short-lived service account, deploying through a
// long-lived deployer account from the CI network; a nightly backup CronJob
// at 02:00 on whatever node it lands on; a developer reading the secrets of
// the namespace they own. First-seen rules must stay quiet on all of it once
// they have learned a day of it.

// Intervals of the lifecycle, in event time.
const (
	churnEvery  = 30 * time.Minute
	deployEvery = 6 * time.Hour
	ciEvery     = 90 * time.Minute
	secretEvery = 3 * time.Hour
	cronHour    = 2
)

// lifecycle is the state of Config.Lifecycle: when each recurring job is due.
type lifecycle struct {
	churn, deploy, ci, secret, cron int64 // unix nanoseconds
	ciRun                           int
}

// ciDeployer is the long-lived account CI pipelines deploy with, from the
// CI runners' network outside the cluster.
var ciDeployer = identity{
	username: "system:serviceaccount:ci:deployer",
	user: userJSON("system:serviceaccount:ci:deployer", "5f0c2a1e-8c1d-4d7b-9a3e-2b6f1c0d9e84",
		[]string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"},
		[]kv{{"authentication.kubernetes.io/credential-id", "JTI=0e6c1d2b-3a4f-4b5c-8d6e-7f8091a2b3c4"}}),
	ua: "Helm/3.15.4",
}

func (g *Generator) startLifecycle() {
	at := g.next
	g.life = &lifecycle{
		churn: at + int64(churnEvery), deploy: at + int64(deployEvery), ci: at + int64(ciEvery)/3,
		secret: at + int64(secretEvery)/2, cron: nextCron(at),
	}
}

// nextCron is the next 02:00 UTC after at.
func nextCron(at int64) int64 {
	t := time.Unix(0, at).UTC()
	c := time.Date(t.Year(), t.Month(), t.Day(), cronHour, 0, 0, 0, time.UTC)
	if !c.After(t) {
		c = c.AddDate(0, 0, 1)
	}
	return c.UnixNano()
}

// lifecycleDue runs the recurring jobs due at at. It reports whether one
// ran (and so took this request slot).
func (g *Generator) lifecycleDue(at time.Time) bool {
	l, now := g.life, at.UnixNano()
	switch {
	case now >= l.churn:
		l.churn = now + int64(churnEvery)
		g.restartPod(at, false)
	case now >= l.deploy:
		l.deploy = now + int64(deployEvery)
		g.restartPod(at, true)
	case now >= l.ci:
		l.ci = now + int64(ciEvery)
		l.ciRun++
		g.ciPipeline(at, l.ciRun)
	case now >= l.secret:
		l.secret = now + int64(secretEvery)
		g.ownerSecretRead(at)
	case now >= l.cron:
		l.cron = nextCron(now)
		g.nightlyBackup(at)
	default:
		return false
	}
	return true
}

// restartPod replaces an operator's pod: a restart (a new IP, on the same
// node seven times in ten) or, with rollout, a rolling deploy (a new
// ReplicaSet hash, on any node). The new pod's first request comes with it.
func (g *Generator) restartPod(at time.Time, rollout bool) {
	i := g.r.intn(len(g.w.operators))
	old := g.w.operators[i]
	wl := old.w
	n := old.node
	if rollout {
		wl.rsHash = g.r.suffix(9)
		n = pick(g.r, g.w.nodes)
	} else if g.r.chance(0.3) {
		n = pick(g.r, g.w.nodes)
	}
	old.node.pods = slices.DeleteFunc(old.node.pods, func(p *pod) bool { return p == old })
	p := g.w.newPod(g.r, wl, n)
	g.w.operators[i] = p
	if g.w.metricsSrv == old {
		g.w.metricsSrv = p
	}
	g.operatorCallBy(at, p)
}

// operatorCallBy is one of p's routine calls.
func (g *Generator) operatorCallBy(at time.Time, p *pod) {
	if len(p.w.calls) == 0 {
		return
	}
	c := pick(g.r, p.w.calls)
	g.submit(&request{
		level: c.level, verb: c.verb, uri: c.uri,
		user: p.sa.user, ip: p.sa.ip, ua: p.sa.ua,
		ref:  objRef{resource: c.resource, ns: c.ns, name: c.name, group: c.group, version: c.version, subresource: c.subresource},
		code: c.code, received: at, latency: g.ms(c.latencyMinMS, c.latencyMaxMS),
		authz: allow(`RBAC: allowed by ClusterRoleBinding "` + p.w.name + `" of ClusterRole "` + p.w.name + `" to ServiceAccount "` + p.w.sa + "/" + p.w.ns + `"`),
	})
}

// podNamespaces lists the namespaces with running pods, sorted.
func (g *Generator) podNamespaces() []string {
	var out []string
	for _, n := range g.w.nodes {
		for _, p := range n.pods {
			if !slices.Contains(out, p.w.ns) {
				out = append(out, p.w.ns)
			}
		}
	}
	slices.Sort(out)
	return out
}

// ciPipeline is one CI run: the deployer creates a namespace and a
// Deployment in it, a job pod there with its own service account reads its
// config and reports, and the deployer deletes the namespace. Spread over
// a few minutes.
func (g *Generator) ciPipeline(at time.Time, run int) {
	ns := "ci-" + strconv.Itoa(run)
	ip := "10.20.3." + strconv.Itoa(g.r.between(10, 40))
	deployerReason := `RBAC: allowed by ClusterRoleBinding "ci-deployer" of ClusterRole "ci-deployer" to ServiceAccount "deployer/ci"`
	dep := func(at time.Time, verb, uri, resource, ns, name, group string, code int) {
		g.submit(&request{
			level: "Metadata", verb: verb, uri: uri,
			user: ciDeployer.user, ip: ip, ua: ciDeployer.ua,
			ref:  objRef{resource: resource, ns: ns, name: name, group: group, version: "v1"},
			code: code, received: at, latency: g.ms(3, 30), authz: allow(deployerReason),
		})
	}
	dep(at, "create", "/api/v1/namespaces", "namespaces", "", ns, "", 201)
	dep(at.Add(2*time.Second), "create", "/apis/apps/v1/namespaces/"+ns+"/deployments", "deployments", ns, "app", "apps", 201)
	dep(at.Add(4*time.Second), "get", "/apis/apps/v1/namespaces/"+ns+"/deployments/app", "deployments", ns, "app", "apps", 200)
	dep(at.Add(6*time.Second), "list", "/api/v1/namespaces/"+ns+"/pods?labelSelector=app%3Dapp", "pods", ns, "", "", 200)

	wl := &workload{ns: ns, name: "ci-job", sa: "runner", saUID: g.r.uuid(), image: "registry.internal.example.com/ci/runner:2.1.0",
		rsHash: g.r.suffix(9), rsUID: g.r.uuid(), ua: "ci-runner/2.1.0 (linux/amd64)"}
	n := pick(g.r, g.w.nodes)
	p := makePod(g.r, wl, n, "10.244."+strconv.Itoa(n.podCIDR)+"."+strconv.Itoa(g.r.between(100, 250)))
	reason := `RBAC: allowed by RoleBinding "runner/` + ns + `" of ClusterRole "edit" to ServiceAccount "runner/` + ns + `"`
	for i, c := range []struct{ verb, uri, resource, name string }{
		{"get", "/api/v1/namespaces/" + ns + "/configmaps/ci-config", "configmaps", "ci-config"},
		{"list", "/api/v1/namespaces/" + ns + "/pods?labelSelector=app%3Dapp", "pods", ""},
		{"create", "/api/v1/namespaces/" + ns + "/events", "events", ""},
	} {
		code := 200
		if c.verb == "create" {
			code = 201
		}
		g.submit(&request{
			level: "Metadata", verb: c.verb, uri: c.uri,
			user: p.sa.user, ip: p.sa.ip, ua: p.sa.ua,
			ref:  objRef{resource: c.resource, ns: ns, name: c.name, version: "v1"},
			code: code, received: at.Add(time.Duration(30+60*i) * time.Second), latency: g.ms(2, 15), authz: allow(reason),
		})
	}
	dep(at.Add(4*time.Minute), "delete", "/api/v1/namespaces/"+ns, "namespaces", "", ns, "", 200)
}

// nightlyBackup is a CronJob's pod: a new pod every night, on any node,
// reading the database credentials and the volumes to back up.
func (g *Generator) nightlyBackup(at time.Time) {
	wl := &workload{ns: "ops", name: "db-backup-" + strconv.FormatInt(at.Unix()/60, 10), sa: "db-backup",
		saUID: "7d6c5b4a-3928-4716-a5b4-c3d2e1f0a9b8", image: "registry.internal.example.com/ops/db-backup:1.4.0",
		rsHash: g.r.suffix(9), rsUID: g.r.uuid(), ua: "db-backup/1.4.0 (linux/amd64)"}
	n := pick(g.r, g.w.nodes)
	p := makePod(g.r, wl, n, "10.244."+strconv.Itoa(n.podCIDR)+"."+strconv.Itoa(g.r.between(100, 250)))
	reason := `RBAC: allowed by RoleBinding "db-backup/ops" of Role "db-backup" to ServiceAccount "db-backup/ops"`
	for i, c := range []struct{ verb, uri, resource, ns, name string }{
		{"get", "/api/v1/namespaces/payments/secrets/payments-db", "secrets", "payments", "payments-db"},
		{"list", "/api/v1/namespaces/payments/persistentvolumeclaims", "persistentvolumeclaims", "payments", ""},
		{"create", "/api/v1/namespaces/ops/configmaps", "configmaps", "ops", "last-backup"},
	} {
		code := 200
		if c.verb == "create" {
			code = 201
		}
		g.submit(&request{
			level: "Metadata", verb: c.verb, uri: c.uri,
			user: p.sa.user, ip: p.sa.ip, ua: p.sa.ua,
			ref:  objRef{resource: c.resource, ns: c.ns, name: c.name, version: "v1"},
			code: code, received: at.Add(time.Duration(20+90*i) * time.Second), latency: g.ms(2, 20), authz: allow(reason),
		})
	}
}

// ownerSecretRead is the payments developer reading a secret of their own
// namespace while debugging.
func (g *Generator) ownerSecretRead(at time.Time) {
	h := g.w.humans[1]
	name := pick(g.r, []string{"api-db-credentials", "ledger-kafka-credentials", "regcred"})
	g.submit(&request{
		level: "Metadata", verb: "get", uri: "/api/v1/namespaces/payments/secrets/" + name,
		user: h.id.user, ip: h.id.ip, ua: h.id.ua,
		ref:  objRef{resource: "secrets", ns: "payments", name: name, version: "v1"},
		code: 200, received: at, latency: g.ms(2, 10), authz: allow(h.rbac),
	})
}

// FirstSeenPrefix starts the scenario of first-seen injections: requests
// that look routine one by one and are new for their principal. Inject
// adds one; its events carry the scenario FirstSeenPrefix+kind and, on the
// judged stage, the first-seen rules that must report it.
const FirstSeenPrefix = "first-seen:"

// FirstSeenKinds are the kinds Inject knows, one per shipped first-seen
// rule.
var FirstSeenKinds = []string{"sa-new-network", "sa-new-user-agent", "human-secret-read-new-namespace", "exec-new-namespace", "principal-new-verb-resource"}

// Inject submits a first-seen request of kind (one of FirstSeenKinds)
// arriving at at, which must not be before the last event returned by
// Next. Each call of a kind makes a term its earlier calls did not (another
// network, client, namespace or verb and resource, or another principal),
// for dozens of calls of each kind.
func (g *Generator) Inject(kind string, at time.Time) {
	if g.injected == nil {
		g.injected = map[string]int{}
	}
	nth := g.injected[kind]
	g.injected[kind]++
	// Operators in turn, so that repeated injections vary the principal.
	opN := func(n int) *pod { return g.w.operators[n%len(g.w.operators)] }
	namespaces := []string{"kube-system", "checkout", "search", "monitoring", "cert-manager", "argocd", "ingress-nginx", "kube-public", "default", "ops", "ci", "vault"}
	rq := &request{level: "Metadata", received: at, latency: g.ms(2, 20), scenario: FirstSeenPrefix + kind, expect: []string{"rule:" + kind}}
	switch kind {
	case "sa-new-network":
		// The prometheus operator's own request, from outside the cluster:
		// its token was copied out of the pod.
		// A fresh /24 of the benchmarking range 198.18.0.0/15 each time.
		p := opN(nth)
		c := p.w.calls[0]
		ip := "198.18." + strconv.Itoa(nth%256) + "." + strconv.Itoa(g.r.between(2, 254))
		rq.verb, rq.uri, rq.user, rq.ip, rq.ua, rq.code = c.verb, c.uri, p.sa.user, ip, p.sa.ua, c.code
		rq.ref = objRef{resource: c.resource, ns: c.ns, name: c.name, group: c.group, version: c.version}
		rq.authz = allow(`RBAC: allowed by ClusterRoleBinding "` + p.w.name + `" of ClusterRole "` + p.w.name + `" to ServiceAccount "` + p.w.sa + "/" + p.w.ns + `"`)
	case "sa-new-user-agent":
		// cert-manager's token, from its pod, driven by kubectl.
		// Operators in turn, each with each of the clients in turn.
		uas := []string{"kubectl/v1.34.0 (linux/amd64) kubernetes/f28b4c9", "curl/8.5.0", "python-requests/2.32.3", "Wget/1.21.4", "kube-hunter/0.6.8", "rakkess/v0.5.1"}
		p := opN(nth)
		c := p.w.calls[0]
		rq.verb, rq.uri, rq.user, rq.ip, rq.ua, rq.code = c.verb, c.uri, p.sa.user, p.sa.ip, uas[(nth/len(g.w.operators))%len(uas)], c.code
		rq.ref = objRef{resource: c.resource, ns: c.ns, name: c.name, group: c.group, version: c.version}
		rq.authz = allow(`RBAC: allowed by ClusterRoleBinding "` + p.w.name + `" of ClusterRole "` + p.w.name + `" to ServiceAccount "` + p.w.sa + "/" + p.w.ns + `"`)
	case "human-secret-read-new-namespace":
		h := g.w.humans[nth/len(namespaces)%len(g.w.humans)]
		ns := namespaces[nth%len(namespaces)]
		rq.verb, rq.uri, rq.user, rq.ip, rq.ua, rq.code = "get", "/api/v1/namespaces/"+ns+"/secrets/bootstrap-token-abcdef", h.id.user, h.id.ip, h.id.ua, 200
		rq.ref = objRef{resource: "secrets", ns: ns, name: "bootstrap-token-abcdef", version: "v1"}
		rq.authz = allow(`RBAC: allowed by ClusterRoleBinding "developers-secrets" of ClusterRole "secret-reader" to Group "developers"`)
	case "exec-new-namespace":
		// The developer, who never opens shells, into a pod of payments:
		// also the first create on pods/exec they ever made.
		// The developer, then people never seen before, each into the
		// namespaces with pods in turn.
		nss := g.podNamespaces()
		ns := nss[nth%len(nss)]
		h := g.w.humans[1]
		if k := nth / len(nss); k > 0 {
			name := "oncall-" + strconv.Itoa(k) + "@example.com"
			h = human{id: identity{username: name, user: userJSON(name, "", []string{"oncall", "system:authenticated"}, nil),
				ua: "kubectl/v1.34.0 (linux/amd64) kubernetes/f28b4c9", ip: "192.168.50." + strconv.Itoa(100+k)},
				rbac: `RBAC: allowed by ClusterRoleBinding "oncall" of ClusterRole "cluster-admin" to Group "oncall"`}
		}
		p := g.anyPod()
		for p.w.ns != ns {
			p = g.anyPod()
		}
		rq.verb, rq.uri, rq.user, rq.ip, rq.ua, rq.code = "create",
			"/api/v1/namespaces/"+p.w.ns+"/pods/"+p.name+"/exec?command=sh&container="+p.w.name+"&stdin=true&stdout=true&tty=true",
			h.id.user, h.id.ip, h.id.ua, 101
		rq.ref = objRef{resource: "pods", ns: p.w.ns, name: p.name, version: "v1", subresource: "exec"}
		rq.shape, rq.started, rq.latency = shapeLong, g.ms(20, 90), time.Duration(g.r.between(20, 600))*time.Second
		rq.authz = allow(h.rbac)
		if nth == 0 {
			rq.expect = append(rq.expect, "rule:principal-new-verb-resource")
		}
	case "principal-new-verb-resource":
		// Operators outside kube-system (the rule leaves the cluster's own
		// accounts alone) in turn, each with each write in turn.
		var ops []*pod
		for _, o := range g.w.operators {
			if o.w.ns != "kube-system" {
				ops = append(ops, o)
			}
		}
		p := ops[nth%len(ops)]
		writes := []struct{ verb, resource, group string }{
			{"create", "clusterrolebindings", "rbac.authorization.k8s.io"}, {"create", "rolebindings", "rbac.authorization.k8s.io"},
			{"patch", "validatingwebhookconfigurations", "admissionregistration.k8s.io"}, {"delete", "networkpolicies", "networking.k8s.io"},
			{"create", "certificatesigningrequests", "certificates.k8s.io"},
		}
		w := writes[(nth/len(ops))%len(writes)]
		rq.verb, rq.uri, rq.user, rq.ip, rq.ua, rq.code = w.verb, "/apis/"+w.group+"/v1/"+w.resource+"/injected", p.sa.user, p.sa.ip, p.sa.ua, 201
		rq.ref = objRef{resource: w.resource, name: "injected", group: w.group, version: "v1"}
		rq.authz = allow(`RBAC: allowed by ClusterRoleBinding "argocd-application-controller" of ClusterRole "argocd-application-controller" to ServiceAccount "argocd-application-controller/argocd"`)
	default:
		panic("gen: unknown first-seen kind " + kind)
	}
	g.submit(rq)
}
