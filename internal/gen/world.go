package gen

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
)

// The simulated cluster: a small production cluster with a control plane,
// a handful of worker nodes, application workloads pulling from a private
// registry, and the usual operators. Everything is drawn from the seeded
// RNG once in newWorld, so identities (pod UIDs, token JTIs, pod IPs) stay
// stable for the whole stream, as they do in a real cluster; detectors that
// correlate a credential with its source IP would otherwise fire on
// routine traffic.

// Versions in user agents; one release for the whole cluster.
const (
	kubeVersion = "v1.34.1"
	kubeCommit  = "93248f9ae092f571eb870b7664c534bfc7d00f03"
	kubeShort   = "93248f9"
	apiServerIP = "10.0.0.10"
	podAudience = "https://kubernetes.default.svc.cluster.local"
)

// identity is a client of the apiserver: its user JSON is rendered once.
type identity struct {
	username string
	user     []byte // the "user" object as the apiserver writes it
	ua       string
	ip       string
}

// userJSON renders an authentication.k8s.io/v1 UserInfo. extra must be
// given with keys already sorted, as encoding/json writes map keys.
func userJSON(username, uid string, groups []string, extra []kv) []byte {
	b := []byte(`{"username":`)
	b = appendString(b, username)
	if uid != "" {
		b = append(b, `,"uid":`...)
		b = appendString(b, uid)
	}
	if len(groups) > 0 {
		b = append(b, `,"groups":[`...)
		for i, g := range groups {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, g)
		}
		b = append(b, ']')
	}
	if len(extra) > 0 {
		b = append(b, `,"extra":{`...)
		for i, e := range extra {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, e.k)
			b = append(b, `:[`...)
			b = appendString(b, e.v)
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// node is a worker node and its kubelet.
type node struct {
	name    string
	uid     string
	ip      string
	podCIDR int // third octet of the node's pod CIDR 10.244.<n>.0/24
	kubelet identity
	pods    []*pod
	nextIP  int
}

// workload is a Deployment (or the ReplicaSet it owns) and its pod template.
type workload struct {
	ns, name, sa string
	saUID        string
	image        string
	port         int
	pullSecret   string // "" for public images, which need none
	pullPolicy   string // "" leaves it to defaulting
	runtimeAA    bool   // pod-level appArmorProfile RuntimeDefault
	rsHash       string
	rsUID        string
	ua           string // user agent of the workload's own API calls
	pssLevel     string // pod-security enforce level of the namespace, "" when unlabelled
	configMap    string
	env          []kv
	cpu, mem     string
	calls        []apiCall // what the workload does against the API, if anything
}

// pod is a running pod of a workload, with its bound service account token.
type pod struct {
	w    *workload
	name string
	uid  string
	ip   string
	node *node
	sa   identity // the pod's service account as bound-token requests show it
	jti  string
}

// apiCall is a request an operator makes routinely.
type apiCall struct {
	verb, uri                  string
	resource, ns, name, group  string
	version, subresource       string
	level                      string
	code                       int
	latencyMinMS, latencyMaxMS int
}

// human is a person using kubectl through the OIDC authenticator.
type human struct {
	id    identity
	calls []apiCall
	rbac  string // the binding that allows them, for the reason annotation
}

type world struct {
	cluster    string
	kid        string // key id of the service-account signing key
	nodes      []*node
	workloads  []*workload
	operators  []*pod // pods whose workloads call the API
	humans     []human
	kcm, sched identity
	rsCtrl     identity
	metricsSrv *pod
	lbIPs      []string
}

func newWorld(r *rng, cluster string) *world {
	w := &world{cluster: cluster}
	sum := sha256.Sum256([]byte("sa-signing-key/" + cluster))
	w.kid = b64url.EncodeToString(sum[:]) // 43 characters, as in-tree kids are

	w.kcm = identity{
		username: "system:kube-controller-manager",
		user:     userJSON("system:kube-controller-manager", "", []string{"system:authenticated"}, nil),
		ua:       "kube-controller-manager/" + kubeVersion + " (linux/amd64) kubernetes/" + kubeShort + "/leader-election",
		ip:       apiServerIP,
	}
	w.sched = identity{
		username: "system:kube-scheduler",
		user:     userJSON("system:kube-scheduler", "", []string{"system:authenticated"}, nil),
		ua:       "kube-scheduler/" + kubeVersion + " (linux/amd64) kubernetes/" + kubeShort + "/scheduler",
		ip:       apiServerIP,
	}
	// With --use-service-account-credentials each controller has its own
	// service account; its token is not bound to a pod, so only the
	// credential-id is in user.extra.
	rsSA := "system:serviceaccount:kube-system:replicaset-controller"
	w.rsCtrl = identity{
		username: rsSA,
		user: userJSON(rsSA, r.uuid(), []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			[]kv{{"authentication.kubernetes.io/credential-id", "JTI=" + r.uuid()}}),
		ua: "kube-controller-manager/" + kubeVersion + " (linux/amd64) kubernetes/" + kubeShort + "/system:serviceaccount:kube-system:replicaset-controller",
		ip: apiServerIP,
	}
	w.lbIPs = []string{"10.0.0.4", "10.0.0.5"}

	pools := []string{"general", "general", "general", "general", "memory", "memory"}
	for i, pool := range pools {
		n := &node{
			name:    fmt.Sprintf("%s-%s-%s", cluster, pool, r.suffix(5)),
			uid:     r.uuid(),
			ip:      fmt.Sprintf("10.0.1.%d", 11+i*7),
			podCIDR: i + 1,
			nextIP:  2,
		}
		username := "system:node:" + n.name
		// From 1.32 x509 clients carry a credential-id too: a detector must
		// not mistake it for a service-account token.
		cert := sha256.Sum256([]byte("kubelet-client/" + n.name))
		n.kubelet = identity{
			username: username,
			user: userJSON(username, "", []string{"system:nodes", "system:authenticated"},
				[]kv{{"authentication.kubernetes.io/credential-id", "X509SHA256=" + fmt.Sprintf("%x", cert)}}),
			ua: "kubelet/" + kubeVersion + " (linux/amd64) kubernetes/" + kubeShort,
			ip: n.ip,
		}
		w.nodes = append(w.nodes, n)
	}

	w.workloads = []*workload{
		{ns: "payments", name: "api", sa: "payments-api", image: "registry.internal.example.com/payments/api:1.4.2", port: 8080,
			pullSecret: "regcred", runtimeAA: true, pssLevel: "restricted", configMap: "api-config", cpu: "250m", mem: "256Mi",
			env: []kv{{"DB_HOST", "payments-db.payments.svc.cluster.local"}, {"LOG_LEVEL", "info"}, {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4317"}}},
		{ns: "payments", name: "ledger-worker", sa: "ledger-worker", image: "registry.internal.example.com/payments/ledger-worker:2.0.7", port: 9090,
			pullSecret: "regcred", runtimeAA: true, pssLevel: "restricted", configMap: "ledger-config", cpu: "500m", mem: "1Gi",
			env: []kv{{"KAFKA_BROKERS", "kafka-0.kafka.data:9092,kafka-1.kafka.data:9092"}, {"LEDGER_PARTITIONS", "12"}}},
		{ns: "checkout", name: "web", sa: "default", image: "registry.internal.example.com/checkout/web:3.12.0", port: 3000,
			pullSecret: "registry-pull", pssLevel: "baseline", configMap: "web-config", cpu: "100m", mem: "128Mi",
			env: []kv{{"NODE_ENV", "production"}, {"API_BASE_URL", "http://api.payments.svc.cluster.local:8080"}}},
		{ns: "checkout", name: "cart", sa: "cart", image: "registry.internal.example.com/checkout/cart:1.9.1", port: 8080,
			pullSecret: "registry-pull", pullPolicy: "Always", pssLevel: "baseline", configMap: "cart-config", cpu: "200m", mem: "256Mi",
			env: []kv{{"REDIS_ADDR", "redis-master.checkout:6379"}}},
		{ns: "checkout", name: "redis", sa: "default", image: "redis:7.4.0", port: 6379,
			configMap: "redis-config", cpu: "100m", mem: "256Mi", env: []kv{{"REDIS_PORT", "6379"}}},
		{ns: "search", name: "indexer", sa: "indexer", image: "registry.internal.example.com/search/indexer:0.22.4@sha256:3b1f6c0e94a7d2c85f6e1b2a9d7c4e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9", port: 8081,
			pullSecret: "regcred", runtimeAA: true, configMap: "indexer-config", cpu: "1", mem: "2Gi",
			env: []kv{{"OPENSEARCH_URL", "https://opensearch.search:9200"}}},
		{ns: "ingress-nginx", name: "ingress-nginx-controller", sa: "ingress-nginx", image: "registry.k8s.io/ingress-nginx/controller:v1.11.2@sha256:d5f8217feeac4887cb1ed21f27c2674e58be06bd8f5184cacea2a69abaf78dce", port: 80,
			configMap: "ingress-nginx-controller", cpu: "100m", mem: "90Mi", ua: "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/46e76e5916813cfca2a9b0bfdc34b69a0000f6b9",
			env: []kv{{"POD_NAMESPACE", "ingress-nginx"}, {"LD_PRELOAD", "/usr/local/lib/libmimalloc.so"}}},
		{ns: "monitoring", name: "prometheus-operator", sa: "prometheus-operator", image: "quay.io/prometheus-operator/prometheus-operator:v0.76.0", port: 8080,
			configMap: "", cpu: "100m", mem: "128Mi", ua: "PrometheusOperator/0.76.0 (linux/amd64) prometheus-operator/6b9b8e4",
			env: []kv{{"GOGC", "30"}}},
		{ns: "cert-manager", name: "cert-manager", sa: "cert-manager", image: "quay.io/jetstack/cert-manager-controller:v1.15.3", port: 9402,
			cpu: "10m", mem: "32Mi", ua: "cert-manager-controller/v1.15.3 (linux/amd64) cert-manager/2a2fa6cc5b8f5b5c0bf3d2a9f8a5b3c7b3e4f0c1",
			env: []kv{{"POD_NAMESPACE", "cert-manager"}}},
		{ns: "argocd", name: "argocd-application-controller", sa: "argocd-application-controller", image: "quay.io/argoproj/argocd:v2.12.3", port: 8082,
			cpu: "250m", mem: "512Mi", ua: "argocd-application-controller/v2.12.3 (linux/amd64) kubernetes/6b9cd82",
			env: []kv{{"ARGOCD_CONTROLLER_REPLICAS", "1"}}},
		{ns: "kube-system", name: "metrics-server", sa: "metrics-server", image: "registry.k8s.io/metrics-server/metrics-server:v0.7.2", port: 10250,
			cpu: "100m", mem: "200Mi", ua: "metrics-server/v0.7.2 (linux/amd64) kubernetes/$Format"},
	}
	for _, wl := range w.workloads {
		wl.saUID = r.uuid()
		wl.rsHash = r.suffix(9)
		wl.rsUID = r.uuid()
		wl.calls = operatorCalls(wl)
		replicas := 2
		if wl.calls != nil {
			replicas = 1
		}
		for range replicas {
			p := w.newPod(r, wl, pick(r, w.nodes))
			if wl.calls != nil {
				w.operators = append(w.operators, p)
			}
			if wl.name == "metrics-server" {
				w.metricsSrv = p
			}
		}
	}

	w.humans = []human{
		{
			id: identity{username: "alice@example.com",
				user: userJSON("alice@example.com", "", []string{"platform-admins", "system:authenticated"}, nil),
				ua:   "kubectl/v1.34.0 (darwin/arm64) kubernetes/f28b4c9", ip: "192.168.50.23"},
			rbac: `RBAC: allowed by ClusterRoleBinding "platform-admins" of ClusterRole "cluster-admin" to Group "platform-admins"`,
			calls: []apiCall{
				{verb: "list", uri: "/apis/apps/v1/namespaces/payments/deployments?limit=500", resource: "deployments", ns: "payments", group: "apps", version: "v1", level: "Metadata", code: 200, latencyMinMS: 4, latencyMaxMS: 20},
				{verb: "list", uri: "/api/v1/namespaces/checkout/pods?labelSelector=app%3Dweb&limit=500", resource: "pods", ns: "checkout", version: "v1", level: "Metadata", code: 200, latencyMinMS: 3, latencyMaxMS: 15},
				{verb: "list", uri: "/api/v1/nodes?limit=500", resource: "nodes", version: "v1", level: "Metadata", code: 200, latencyMinMS: 5, latencyMaxMS: 30},
			},
		},
		{
			id: identity{username: "bob@example.com",
				user: userJSON("bob@example.com", "", []string{"developers", "system:authenticated"}, nil),
				ua:   "kubectl/v1.33.3 (linux/amd64) kubernetes/80779bd", ip: "192.168.50.41"},
			rbac: `RBAC: allowed by RoleBinding "developers/payments" of ClusterRole "edit" to Group "developers"`,
			calls: []apiCall{
				{verb: "list", uri: "/api/v1/namespaces/payments/pods?labelSelector=app%3Dapi&limit=500", resource: "pods", ns: "payments", version: "v1", level: "Metadata", code: 200, latencyMinMS: 3, latencyMaxMS: 15},
				{verb: "get", uri: "/apis/apps/v1/namespaces/payments/deployments/api", resource: "deployments", ns: "payments", name: "api", group: "apps", version: "v1", level: "Metadata", code: 200, latencyMinMS: 2, latencyMaxMS: 8},
				{verb: "list", uri: "/api/v1/namespaces/payments/events?fieldSelector=involvedObject.name%3Dapi&limit=500", resource: "events", ns: "payments", version: "v1", level: "Metadata", code: 200, latencyMinMS: 3, latencyMaxMS: 12},
			},
		},
	}
	return w
}

// newPod schedules a pod of wl on n and mints its bound token.
func (w *world) newPod(r *rng, wl *workload, n *node) *pod {
	p := makePod(r, wl, n, "10.244."+strconv.Itoa(n.podCIDR)+"."+strconv.Itoa(n.nextIP))
	n.nextIP++
	n.pods = append(n.pods, p)
	return p
}

// makePod builds a pod of wl on n with the given IP, without registering
// it with the node.
func makePod(r *rng, wl *workload, n *node, ip string) *pod {
	p := &pod{
		w:    wl,
		name: wl.name + "-" + wl.rsHash + "-" + r.suffix(5),
		uid:  r.uuid(),
		ip:   ip,
		node: n,
		jti:  r.uuid(),
	}
	username := "system:serviceaccount:" + wl.ns + ":" + wl.sa
	ua := wl.ua
	if ua == "" {
		ua = wl.name + "/" + imageTag(wl.image) + " (linux/amd64) kubernetes/$Format"
	}
	p.sa = identity{
		username: username,
		user: userJSON(username, wl.saUID,
			[]string{"system:serviceaccounts", "system:serviceaccounts:" + wl.ns, "system:authenticated"},
			boundExtra(p.jti, n.name, n.uid, p.name, p.uid)),
		ua: ua,
		ip: p.ip,
	}
	return p
}

// boundExtra is user.extra of a pod-bound service-account token, keys sorted.
func boundExtra(jti, nodeName, nodeUID, podName, podUID string) []kv {
	return []kv{
		{"authentication.kubernetes.io/credential-id", "JTI=" + jti},
		{"authentication.kubernetes.io/node-name", nodeName},
		{"authentication.kubernetes.io/node-uid", nodeUID},
		{"authentication.kubernetes.io/pod-name", podName},
		{"authentication.kubernetes.io/pod-uid", podUID},
	}
}

// imageTag returns the tag of an image reference, or "latest".
func imageTag(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		return image[i+1:]
	}
	return "latest"
}

// operatorCalls is what each operator-like workload routinely asks the API:
// reads narrowed by label selectors, its own leader-election lease, and
// status updates of its own resources.
func operatorCalls(wl *workload) []apiCall {
	m := func(verb, uri, resource, ns, name, group, version string, lo, hi int) apiCall {
		code := 200
		if verb == "create" {
			code = 201
		}
		return apiCall{verb: verb, uri: uri, resource: resource, ns: ns, name: name, group: group, version: version,
			level: "Metadata", code: code, latencyMinMS: lo, latencyMaxMS: hi}
	}
	switch wl.name {
	case "prometheus-operator":
		return []apiCall{
			m("list", "/apis/monitoring.coreos.com/v1/servicemonitors?labelSelector=release%3Dkube-prometheus-stack&limit=500&resourceVersion=0", "servicemonitors", "", "", "monitoring.coreos.com", "v1", 3, 25),
			m("list", "/api/v1/namespaces/monitoring/secrets?labelSelector=managed-by%3Dprometheus-operator&limit=500&resourceVersion=0", "secrets", "monitoring", "", "", "v1", 3, 18),
			m("list", "/api/v1/namespaces/monitoring/configmaps?labelSelector=prometheus-name%3Dk8s&limit=500&resourceVersion=0", "configmaps", "monitoring", "", "", "v1", 3, 18),
			m("get", "/api/v1/namespaces/monitoring/secrets/prometheus-k8s-web-config", "secrets", "monitoring", "prometheus-k8s-web-config", "", "v1", 2, 8),
			m("update", "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheuses/k8s/status", "prometheuses", "monitoring", "k8s", "monitoring.coreos.com", "v1", 4, 20),
		}
	case "cert-manager":
		return []apiCall{
			m("list", "/api/v1/secrets?labelSelector=controller.cert-manager.io%2Ffao%3Dtrue&limit=500&resourceVersion=0", "secrets", "", "", "", "v1", 5, 40),
			m("get", "/apis/cert-manager.io/v1/namespaces/payments/certificates/api-tls", "certificates", "payments", "api-tls", "cert-manager.io", "v1", 2, 8),
			m("get", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/cert-manager-controller", "leases", "kube-system", "cert-manager-controller", "coordination.k8s.io", "v1", 1, 5),
			m("update", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/cert-manager-controller", "leases", "kube-system", "cert-manager-controller", "coordination.k8s.io", "v1", 2, 8),
		}
	case "argocd-application-controller":
		return []apiCall{
			m("list", "/apis/apps/v1/namespaces/checkout/deployments?labelSelector=app.kubernetes.io%2Finstance%3Dcheckout&limit=500", "deployments", "checkout", "", "apps", "v1", 3, 20),
			m("list", "/api/v1/namespaces/payments/pods?labelSelector=app.kubernetes.io%2Finstance%3Dpayments&limit=500", "pods", "payments", "", "", "v1", 4, 30),
			m("patch", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/payments", "applications", "argocd", "payments", "argoproj.io", "v1alpha1", 5, 25),
			m("get", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/checkout", "applications", "argocd", "checkout", "argoproj.io", "v1alpha1", 2, 6),
		}
	case "ingress-nginx-controller":
		return []apiCall{
			m("list", "/apis/discovery.k8s.io/v1/namespaces/checkout/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb&limit=500&resourceVersion=0", "endpointslices", "checkout", "", "discovery.k8s.io", "v1", 2, 12),
			m("get", "/apis/coordination.k8s.io/v1/namespaces/ingress-nginx/leases/ingress-nginx-leader", "leases", "ingress-nginx", "ingress-nginx-leader", "coordination.k8s.io", "v1", 1, 5),
			m("update", "/apis/coordination.k8s.io/v1/namespaces/ingress-nginx/leases/ingress-nginx-leader", "leases", "ingress-nginx", "ingress-nginx-leader", "coordination.k8s.io", "v1", 2, 8),
			m("list", "/apis/networking.k8s.io/v1/ingresses?limit=500&resourceVersion=0", "ingresses", "", "", "networking.k8s.io", "v1", 3, 15),
		}
	case "metrics-server":
		// Its TokenReviews and SubjectAccessReviews are generated with bodies
		// elsewhere; here are its plain reads.
		return []apiCall{
			m("list", "/api/v1/nodes?limit=500&resourceVersion=0", "nodes", "", "", "", "v1", 3, 20),
			m("get", "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", "configmaps", "kube-system", "extension-apiserver-authentication", "", "v1", 1, 5),
		}
	}
	return nil
}
