package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// podSecurityRules are the default-pack rules that judge pod specs; the
// tests below compare exactly which of them fire, so that one write
// raises one finding per signal, whatever other rules the pack holds.
var podSecurityRules = []string{
	"untrusted-image-in-kube-namespace", "privileged-daemonset-in-kube-system",
	"dangerous-capability-added", "container-runs-as-root", "privilege-escalation-allowed",
	"unmasked-proc-mount", "host-port-pod",
	"privileged-pod", "sensitive-hostpath-mount", "hostpath-volume", "host-network-pod", "host-pid-pod", "host-ipc-pod",
	"pod-in-kube-namespace", "seccomp-unconfined-pod",
}

// podWrite describes one write of a pod or workload; zero fields take the
// values of a successful kubectl create of a pod in "shop" by a person,
// audited at Request level.
type podWrite struct {
	verb, resource, sub, ns, name string
	user                          string
	level, stage                  string
	code                          int
	query                         string
	// req is the request body; resp the stored object, written at
	// RequestResponse level (req is used when resp is empty).
	req, resp string
}

// groups maps each resource to its API group, as the apiserver reports it.
var podWriteGroups = map[string]string{
	"pods": "", "replicationcontrollers": "",
	"deployments": "apps", "daemonsets": "apps", "statefulsets": "apps", "replicasets": "apps",
	"jobs": "batch", "cronjobs": "batch",
}

// event renders w as the apiserver writes it and decodes it through the
// pipeline.
func (w podWrite) event(t *testing.T) *pipeline.Event {
	t.Helper()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&w.verb, "create")
	def(&w.resource, "pods")
	def(&w.ns, "shop")
	def(&w.name, "api")
	def(&w.user, "alice@example.com")
	def(&w.level, "Request")
	if w.code == 0 {
		w.code = 201
		if w.verb != "create" {
			w.code = 200
		}
	}
	group := podWriteGroups[w.resource]
	uri := "/api/v1"
	if group != "" {
		uri = "/apis/" + group + "/v1"
	}
	uri += "/namespaces/" + w.ns + "/" + w.resource
	if w.verb != "create" || w.sub != "" {
		uri += "/" + w.name
	}
	if w.sub != "" {
		uri += "/" + w.sub
	}
	if w.query != "" {
		uri += "?" + w.query
	}
	groups := []string{"platform-admins", "system:authenticated"}
	ua := "kubectl/v1.34.0 (linux/amd64) kubernetes/f28b4c9"
	switch {
	case strings.HasPrefix(w.user, "system:serviceaccount:"):
		groups = []string{"system:serviceaccounts", "system:authenticated"}
		ua = "kube-controller-manager/v1.34.0 (linux/amd64) kubernetes/f28b4c9/" + w.user[strings.LastIndexByte(w.user, ':')+1:]
	case strings.HasPrefix(w.user, "system:node:"):
		groups = []string{"system:nodes", "system:authenticated"}
		ua = "kubelet/v1.34.0 (linux/amd64) kubernetes/f28b4c9"
	}
	ref := map[string]any{"resource": w.resource, "namespace": w.ns, "name": w.name, "apiVersion": "v1"}
	if group != "" {
		ref["apiGroup"] = group
	}
	if w.sub != "" {
		ref["subresource"] = w.sub
	}
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": w.level,
		"auditID": fmt.Sprintf("5f0c2a4e-0000-4000-8000-%012x", len(t.Name())), "requestURI": uri, "verb": w.verb,
		"user": map[string]any{"username": w.user, "groups": groups}, "sourceIPs": []string{"192.168.50.23"},
		"userAgent": ua, "objectRef": ref,
		"requestReceivedTimestamp": "2026-11-27T10:02:14.381247Z", "stageTimestamp": "2026-11-27T10:02:14.402958Z",
		"annotations": map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
	}
	if w.stage != "none" {
		def(&w.stage, "ResponseComplete")
		ev["stage"] = w.stage
	}
	if w.stage != "RequestReceived" {
		ev["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": w.code}
	}
	if w.level != "Metadata" && w.req != "" {
		ev["requestObject"] = json.RawMessage(w.req)
	}
	if w.level == "RequestResponse" && w.stage != "RequestReceived" {
		resp := w.resp
		if resp == "" {
			resp = w.req
		}
		if resp != "" {
			ev["responseObject"] = json.RawMessage(resp)
		}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, string(b))
}

// podBody renders a body of the given resource whose pod spec is spec (a
// JSON object), at the place that resource keeps it.
func podBody(resource, ns, name, spec string) string {
	kinds := map[string]string{"pods": "Pod", "replicationcontrollers": "ReplicationController", "deployments": "Deployment",
		"daemonsets": "DaemonSet", "statefulsets": "StatefulSet", "replicasets": "ReplicaSet", "jobs": "Job", "cronjobs": "CronJob"}
	meta := fmt.Sprintf(`"metadata":{"name":%q,"namespace":%q}`, name, ns)
	switch resource {
	case "pods":
		return fmt.Sprintf(`{"kind":"Pod","apiVersion":"v1",%s,"spec":%s}`, meta, spec)
	case "cronjobs":
		return fmt.Sprintf(`{"kind":"CronJob","apiVersion":"batch/v1",%s,"spec":{"schedule":"*/5 * * * *","jobTemplate":{"spec":{"template":{"metadata":{"labels":{"app":%q}},"spec":%s}}}}}`, meta, name, spec)
	}
	return fmt.Sprintf(`{"kind":%q,%s,"spec":{"selector":{"matchLabels":{"app":%q}},"template":{"metadata":{"labels":{"app":%q}},"spec":%s}}}`,
		kinds[resource], meta, name, name, spec)
}

// podRuleCheck returns an f-test that renders a write, runs the set on it
// and compares the pod-spec rules that fired with want, in any order.
func podRuleCheck(t *testing.T, s *Set) func(name string, w podWrite, want ...string) {
	return func(name string, w podWrite, want ...string) {
		t.Helper()
		ev := w.event(t)
		if errs := evalErrors(s, ev); len(errs) > 0 {
			t.Errorf("%s: rules failed:\n  %s", name, strings.Join(errs, "\n  "))
		}
		var got []string
		for _, id := range fired(s, ev) {
			if r := strings.TrimPrefix(id, "rule:"); slices.Contains(podSecurityRules, r) {
				got = append(got, r)
			}
		}
		want = slices.Sorted(slices.Values(want))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: fired %v, want %v", name, got, want)
		}
	}
}

var podTemplateResources = []string{"pods", "deployments", "daemonsets", "statefulsets", "replicasets", "jobs", "cronjobs", "replicationcontrollers"}

// TestPodSecurityRules runs the pod-spec rules of the default pack over
// writes of every template kind, at every audit level and stage a write
// can be judged from: each bad case fires its rules and only those, its
// look-alike stays quiet, and no rule fails to evaluate.
func TestPodSecurityRules(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := podRuleCheck(t, s)

	// Item 4: every signal in every template kind, at Request and
	// RequestResponse level; never at Metadata level (no body) and never
	// from a stage that is not judged.
	signals := []struct {
		name, spec, quiet string
		rule              string
		// quietRule is the rule the look-alike raises instead, if any.
		quietRule string
	}{
		{"SYS_ADMIN added",
			`{"containers":[{"name":"c","image":"docker.io/library/ubuntu:24.04","securityContext":{"capabilities":{"add":["SYS_ADMIN"]}}}]}`,
			`{"containers":[{"name":"c","image":"docker.io/library/ubuntu:24.04","securityContext":{"capabilities":{"add":["NET_BIND_SERVICE"],"drop":["SYS_ADMIN","ALL"]}}}]}`,
			"dangerous-capability-added", ""},
		{"cap_bpf added to an init container, lower case with the CAP_ prefix",
			`{"initContainers":[{"name":"i","image":"docker.io/library/busybox:1.37","securityContext":{"capabilities":{"add":["cap_bpf"]}}}],"containers":[{"name":"c","image":"docker.io/library/nginx:1.27"}]}`,
			`{"initContainers":[{"name":"istio-init","image":"docker.io/istio/proxyv2:1.24.0","securityContext":{"capabilities":{"add":["NET_ADMIN","NET_RAW"]},"runAsUser":0,"runAsNonRoot":false}}],"containers":[{"name":"c","image":"docker.io/library/nginx:1.27"}]}`,
			"dangerous-capability-added", ""},
		{"runAsUser 0 for the pod",
			`{"securityContext":{"runAsUser":0},"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}]}`,
			`{"securityContext":{"runAsUser":0},"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"runAsUser":1000}}]}`,
			"container-runs-as-root", ""},
		{"runAsNonRoot false without a user",
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"runAsNonRoot":false}}]}`,
			`{"securityContext":{"runAsNonRoot":false,"runAsUser":65534},"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}]}`,
			"container-runs-as-root", ""},
		{"allowPrivilegeEscalation true",
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"allowPrivilegeEscalation":true}}]}`,
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"allowPrivilegeEscalation":false}}]}`,
			"privilege-escalation-allowed", ""},
		{"procMount Unmasked",
			`{"hostUsers":false,"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"procMount":"Unmasked"}}]}`,
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"procMount":"Default"}}]}`,
			"unmasked-proc-mount", ""},
		{"hostPort",
			`{"containers":[{"name":"c","image":"docker.io/library/nginx:1.27","ports":[{"containerPort":8080,"hostPort":8080}]}]}`,
			`{"hostNetwork":true,"containers":[{"name":"c","image":"registry.k8s.io/kube-proxy:v1.34.0","ports":[{"containerPort":10256,"hostPort":10256}]}]}`,
			"host-port-pod", ""},
		{"the kubelet's pod directory mounted",
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}],"volumes":[{"name":"v","hostPath":{"path":"/var/lib/kubelet/pods"}}]}`,
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}],"volumes":[{"name":"v","hostPath":{"path":"/var/log"}},{"name":"ca","hostPath":{"path":"/etc/ssl/certs"}}]}`,
			"sensitive-hostpath-mount", "hostpath-volume"},
		{"the containerd socket's directory mounted",
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}],"volumes":[{"name":"v","hostPath":{"path":"/run/containerd/"}}]}`,
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}],"volumes":[{"name":"v","hostPath":{"path":"/run/xtables.lock","type":"FileOrCreate"}}]}`,
			"sensitive-hostpath-mount", "hostpath-volume"},
		{"/etc/shadow mounted",
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}],"volumes":[{"name":"v","hostPath":{"path":"/etc/shadow","type":"File"}}]}`,
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}],"volumes":[{"name":"v","hostPath":{"path":"/etc/localtime","type":"File"}}]}`,
			"sensitive-hostpath-mount", "hostpath-volume"},
		{"privileged",
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"privileged":true,"allowPrivilegeEscalation":true,"capabilities":{"add":["SYS_ADMIN"]},"runAsUser":0,"procMount":"Unmasked"}}]}`,
			`{"containers":[{"name":"c","image":"registry.k8s.io/kube-proxy:v1.34.0","securityContext":{"privileged":true}}]}`,
			"privileged-pod", ""},
		{"hostNetwork",
			`{"hostNetwork":true,"containers":[{"name":"c","image":"docker.io/nicolaka/netshoot:v0.13"}]}`,
			`{"hostNetwork":false,"containers":[{"name":"c","image":"docker.io/nicolaka/netshoot:v0.13"}]}`,
			"host-network-pod", ""},
		{"hostPID",
			`{"hostPID":true,"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}]}`,
			`{"hostPID":false,"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}]}`,
			"host-pid-pod", ""},
		{"hostIPC",
			`{"hostIPC":true,"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}]}`,
			`{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20"}]}`,
			"host-ipc-pod", ""},
	}
	for _, sig := range signals {
		for _, res := range podTemplateResources {
			bad, quiet := podBody(res, "shop", "w", sig.spec), podBody(res, "shop", "w", sig.quiet)
			for _, level := range []string{"Request", "RequestResponse"} {
				f(sig.name+" in "+res+" at "+level, podWrite{resource: res, level: level, req: bad}, sig.rule)
				var quietWant []string
				if sig.quietRule != "" {
					quietWant = []string{sig.quietRule}
				}
				f("look-alike: "+sig.name+" in "+res+" at "+level, podWrite{resource: res, level: level, req: quiet}, quietWant...)
			}
			f(sig.name+" in "+res+", an export without stage", podWrite{resource: res, stage: "none", req: bad}, sig.rule)
			f(sig.name+" in "+res+" at Metadata level", podWrite{resource: res, level: "Metadata", req: bad})
			f(sig.name+" in "+res+" at RequestReceived", podWrite{resource: res, stage: "RequestReceived", req: bad})
			f(sig.name+" in "+res+", refused by admission", podWrite{resource: res, code: 403, req: bad})
			f(sig.name+" in "+res+", a server-side dry run", podWrite{resource: res, query: "dryRun=All", req: bad})
		}
	}

	// Missing fields never disable a rule: a container without image or a
	// null container still lets another container fire.
	f("capability on a container without image", podWrite{req: podBody("pods", "shop", "p",
		`{"containers":[null,{"name":"c","securityContext":{"capabilities":{"add":["NET_ADMIN"]}}}]}`)},
		"dangerous-capability-added")
	f("hostPID patch at Request level naming no container", podWrite{verb: "patch", resource: "daemonsets", name: "agent",
		req: `{"spec":{"template":{"spec":{"hostPID":true}}}}`}, "host-pid-pod")
	f("sensitive mount patch naming no container", podWrite{verb: "patch", resource: "deployments", name: "agent",
		req: `{"spec":{"template":{"spec":{"volumes":[{"name":"sock","hostPath":{"path":"/var/run/cri-dockerd.sock"}}]}}}}`}, "sensitive-hostpath-mount")
	// A JSON patch (an array) at Request level holds no pod spec to read;
	// at RequestResponse the stored object is judged.
	jsonPatch := `[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"capabilities":{"add":["SYS_PTRACE"]}}}]`
	f("JSON patch at Request level", podWrite{verb: "patch", resource: "deployments", req: jsonPatch})
	f("JSON patch at RequestResponse level", podWrite{verb: "patch", resource: "deployments", level: "RequestResponse", req: jsonPatch,
		resp: podBody("deployments", "shop", "api", `{"containers":[{"name":"api","image":"registry.example.com/shop/api:1.4.2","securityContext":{"capabilities":{"add":["SYS_PTRACE"]}}}]}`)},
		"dangerous-capability-added")

	// Who writes: a person's change fires, the controllers' rewrites of
	// what they own do not, their creates do.
	capSpec := `{"containers":[{"name":"c","image":"docker.io/library/ubuntu:24.04","securityContext":{"capabilities":{"add":["SYS_MODULE"]}}}]}`
	f("a person updates a Deployment", podWrite{verb: "update", resource: "deployments", req: podBody("deployments", "shop", "api", capSpec)},
		"dangerous-capability-added")
	f("the deployment controller updates its ReplicaSet", podWrite{verb: "update", resource: "replicasets",
		user: "system:serviceaccount:kube-system:deployment-controller", req: podBody("replicasets", "shop", "api-5c7f8", capSpec)})
	f("the deployment controller creates a ReplicaSet", podWrite{resource: "replicasets",
		user: "system:serviceaccount:kube-system:deployment-controller", req: podBody("replicasets", "shop", "api-5c7f8", capSpec)},
		"dangerous-capability-added")
	f("the ReplicaSet controller creates the pod", podWrite{user: "system:serviceaccount:kube-system:replicaset-controller",
		req: podBody("pods", "shop", "api-5c7f8-x2k9p", capSpec)}, "dangerous-capability-added")
	f("a pod's status is updated", podWrite{verb: "update", sub: "status", req: podBody("pods", "shop", "api", capSpec)})

	// Ephemeral containers: only the ones added are judged, not the
	// pod's own containers nor its pod-level fields.
	f("kubectl debug adds a privileged ephemeral container", podWrite{verb: "patch", sub: "ephemeralcontainers",
		req: `{"spec":{"ephemeralContainers":[{"name":"debugger-x","image":"docker.io/library/busybox:1.37","targetContainerName":"api","securityContext":{"privileged":true}}]}}`},
		"privileged-pod")
	f("kubectl debug adds SYS_PTRACE, stored pod at RequestResponse", podWrite{verb: "update", sub: "ephemeralcontainers", level: "RequestResponse",
		req: podBody("pods", "shop", "api", `{"hostNetwork":true,"containers":[{"name":"api","image":"registry.example.com/shop/api:1.4.2","securityContext":{"runAsUser":0}}],"ephemeralContainers":[{"name":"debugger-x","image":"docker.io/library/busybox:1.37","securityContext":{"capabilities":{"add":["SYS_PTRACE"]}}}]}`)},
		"dangerous-capability-added")
	f("kubectl debug with the default profile on a hostNetwork root pod", podWrite{verb: "update", sub: "ephemeralcontainers", level: "RequestResponse",
		req: podBody("pods", "shop", "api", `{"hostNetwork":true,"containers":[{"name":"api","image":"registry.example.com/shop/api:1.4.2","securityContext":{"runAsUser":0,"privileged":true}}],"ephemeralContainers":[{"name":"debugger-x","image":"docker.io/library/busybox:1.37"}]}`)})
}

// TestKubeNamespaceRules covers item 3 of issue 13: images from outside
// the trusted registries in the control plane's namespaces, whoever
// writes them, and a person's privileged or hostPID DaemonSet there.
func TestKubeNamespaceRules(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := podRuleCheck(t, s)
	plain := func(image string) string {
		return fmt.Sprintf(`{"containers":[{"name":"c","image":%q}]}`, image)
	}
	const cm = "system:serviceaccount:kube-system:replicaset-controller"
	for _, ns := range []string{"kube-system", "kube-public", "kube-node-lease"} {
		for _, res := range podTemplateResources {
			user := "system:serviceaccount:argocd:argocd-application-controller"
			// pod-in-kube-namespace reports who created a pod there, at low,
			// when its images are trusted or unknown; an untrusted image is
			// untrusted-image-in-kube-namespace's alone.
			var who []string
			if res == "pods" {
				who = []string{"pod-in-kube-namespace"}
			}
			for _, level := range []string{"Request", "RequestResponse"} {
				f("Docker Hub image in "+ns+"/"+res+" at "+level, podWrite{resource: res, ns: ns, user: user, level: level,
					req: podBody(res, ns, "agent", plain("docker.io/attacker/miner:1.2"))}, "untrusted-image-in-kube-namespace")
			}
			f("Docker Hub image in "+ns+"/"+res+" at Metadata level", podWrite{resource: res, ns: ns, user: user, level: "Metadata",
				req: podBody(res, ns, "agent", plain("docker.io/attacker/miner:1.2"))}, who...)
			for _, image := range []string{
				"registry.k8s.io/coredns/coredns:v1.11.3",
				"k8s.gcr.io/kube-proxy:v1.23.17",
				"gcr.io/google-containers/prometheus-to-sd:v0.11.1",
				"registry.k8s.io/pause@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097",
				"602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon-k8s-cni:v1.19.0",
				"mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.31.1",
				"gke.gcr.io/gke-metadata-server:20241115",
				"quay.io/cilium/cilium:v1.16.3",
				"calico/node:v3.29.0",
				"kope/kube-apiserver-healthcheck:1.30.0",
			} {
				f("trusted "+image+" in "+ns+"/"+res, podWrite{resource: res, ns: ns, user: user,
					req: podBody(res, ns, "agent", plain(image))}, who...)
			}
		}
	}
	for _, image := range []string{
		"registry.k8s.io.evil.example/coredns:v1.11.3",            // look-alike host
		"602401143452.dkr.ecr.evil.example/x.amazonaws.com/cni:1", // look-alike of the ECR pattern
		"gke.gcr.io.example.com/kube-proxy:v1",
		"quay.io/cilium/cilium-evil:v1.16.3", // look-alike repository
		"busybox",
	} {
		f("untrusted "+image+" created by the ReplicaSet controller", podWrite{ns: "kube-system", user: cm,
			req: podBody("pods", "kube-system", "agent-x", plain(image))}, "untrusted-image-in-kube-namespace")
	}
	f("a container without image beside an untrusted one", podWrite{ns: "kube-system", user: cm,
		req: podBody("pods", "kube-system", "agent-x", `{"containers":[{"name":"a"},{"name":"b","image":"ghcr.io/x/y:1"}]}`)},
		"untrusted-image-in-kube-namespace")
	f("a patch of resources naming no image", podWrite{verb: "patch", resource: "deployments", ns: "kube-system", name: "coredns",
		req: `{"spec":{"template":{"spec":{"containers":[{"name":"coredns","resources":{"limits":{"memory":"256Mi"}}}]}}}}`})
	f("the kubelet's mirror pod from an untrusted image: a static pod manifest on the node", podWrite{ns: "kube-system", name: "backdoor-cp-1",
		user: "system:node:cp-1", req: `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"backdoor-cp-1","namespace":"kube-system","annotations":{"kubernetes.io/config.mirror":"9d3c","kubernetes.io/config.source":"file"}},"spec":{"hostNetwork":true,"nodeName":"cp-1","containers":[{"name":"c","image":"docker.io/attacker/miner:1.2"}],"volumes":[{"name":"etc","hostPath":{"path":"/etc/kubernetes"}}]}}`},
		"untrusted-image-in-kube-namespace")
	f("the kubelet's mirror pod of kube-apiserver", podWrite{ns: "kube-system", name: "kube-apiserver-cp-1",
		user: "system:node:cp-1", req: `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"kube-apiserver-cp-1","namespace":"kube-system","annotations":{"kubernetes.io/config.mirror":"9d3c","kubernetes.io/config.source":"file"}},"spec":{"hostNetwork":true,"nodeName":"cp-1","containers":[{"name":"kube-apiserver","image":"registry.k8s.io/kube-apiserver:v1.34.0"}],"volumes":[{"name":"k8s-certs","hostPath":{"path":"/etc/kubernetes/pki"}}]}}`})

	// A person's privileged or hostPID DaemonSet in kube-system is one
	// critical finding: privileged-pod and host-pid-pod defer to it.
	priv := `{"containers":[{"name":"c","image":"docker.io/library/alpine:3.20","securityContext":{"privileged":true}}]}`
	hostPID := `{"hostPID":true,"containers":[{"name":"c","image":"registry.k8s.io/e2e-test-images/agnhost:2.52"}]}`
	for _, level := range []string{"Request", "RequestResponse"} {
		for _, verb := range []string{"create", "update", "patch"} {
			f("a person "+verb+"s a privileged DaemonSet at "+level, podWrite{verb: verb, resource: "daemonsets", ns: "kube-system", name: "node-shell",
				level: level, req: podBody("daemonsets", "kube-system", "node-shell", priv)},
				"privileged-daemonset-in-kube-system", "untrusted-image-in-kube-namespace")
			f("a person "+verb+"s a hostPID DaemonSet of a trusted image at "+level, podWrite{verb: verb, resource: "daemonsets", ns: "kube-system", name: "node-shell",
				level: level, req: podBody("daemonsets", "kube-system", "node-shell", hostPID)},
				"privileged-daemonset-in-kube-system")
		}
	}
	f("a person's privileged DaemonSet, export without stage", podWrite{resource: "daemonsets", ns: "kube-system", stage: "none",
		req: podBody("daemonsets", "kube-system", "node-shell", priv)}, "privileged-daemonset-in-kube-system", "untrusted-image-in-kube-namespace")
	f("a person's privileged DaemonSet at Metadata level", podWrite{resource: "daemonsets", ns: "kube-system", level: "Metadata",
		req: podBody("daemonsets", "kube-system", "node-shell", priv)})
	f("a person's privileged DaemonSet refused", podWrite{resource: "daemonsets", ns: "kube-system", code: 403,
		req: podBody("daemonsets", "kube-system", "node-shell", priv)})
	f("a person's privileged Deployment in kube-system is not a DaemonSet", podWrite{resource: "deployments", ns: "kube-system",
		req: podBody("deployments", "kube-system", "node-shell", priv)}, "privileged-pod", "untrusted-image-in-kube-namespace")
	f("a person's privileged DaemonSet elsewhere", podWrite{resource: "daemonsets", ns: "monitoring",
		req: podBody("daemonsets", "monitoring", "node-shell", priv)}, "privileged-pod")
	f("a GitOps service account's privileged DaemonSet in kube-system", podWrite{resource: "daemonsets", ns: "kube-system",
		user: "system:serviceaccount:argocd:argocd-application-controller", req: podBody("daemonsets", "kube-system", "node-shell", priv)},
		"privileged-pod", "untrusted-image-in-kube-namespace")
	f("kubeadm's admin creates kube-proxy", podWrite{resource: "daemonsets", ns: "kube-system", name: "kube-proxy", user: "kubernetes-admin",
		req: podBody("daemonsets", "kube-system", "kube-proxy", `{"hostNetwork":true,"containers":[{"name":"kube-proxy","image":"registry.k8s.io/kube-proxy:v1.34.0","securityContext":{"privileged":true}}]}`)})
	// The controllers' pods in the control-plane namespaces were judged as
	// their workload; only their images are judged again.
	f("the DaemonSet controller creates the privileged pod", podWrite{ns: "kube-system", name: "node-shell-x2k9p",
		user: "system:serviceaccount:kube-system:daemon-set-controller", req: podBody("pods", "kube-system", "node-shell-x2k9p", priv)},
		"untrusted-image-in-kube-namespace")
	f("the DaemonSet controller creates the vendor's NET_ADMIN hostNetwork pod", podWrite{ns: "kube-system", name: "netd-x2k9p",
		user: "system:kube-controller-manager", req: podBody("pods", "kube-system", "netd-x2k9p",
			`{"hostNetwork":true,"containers":[{"name":"netd","image":"gke.gcr.io/netd-amd64:v0.4.5-gke.10","securityContext":{"capabilities":{"add":["NET_ADMIN"]}}}],"volumes":[{"name":"cni","hostPath":{"path":"/etc/cni/net.d"}},{"name":"run","hostPath":{"path":"/var/run"}}]}`)})
	f("the same pod created by a kube-system service account that is not a controller", podWrite{ns: "kube-system", name: "netd-x2k9p",
		user: "system:serviceaccount:kube-system:default", req: podBody("pods", "kube-system", "netd-x2k9p",
			`{"hostNetwork":true,"containers":[{"name":"netd","image":"gke.gcr.io/netd-amd64:v0.4.5-gke.10","securityContext":{"capabilities":{"add":["NET_ADMIN"]}}}],"volumes":[{"name":"run","hostPath":{"path":"/var/run"}}]}`)},
		"dangerous-capability-added", "sensitive-hostpath-mount") // netd is in hostnetwork_images
}
