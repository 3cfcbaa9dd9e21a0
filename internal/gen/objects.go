package gen

import (
	"strconv"
	"strings"
	"time"
)

// Request and response bodies, written field for field in the order the
// apiserver serializes them (Go struct order; map keys sorted; empty
// fields omitted).

// podOpts describes a pod for podJSON.
type podOpts struct {
	ns, name, generateName string
	labels                 []kv // sorted
	owner                  *workload
	container              string
	image                  string
	pullPolicy             string // "" leaves it to defaulting
	command                []string
	port                   int
	env                    []kv
	cpu, mem               string
	sa                     string
	pullSecret             string
	nodeName               string
	podAppArmor            string // pod-level appArmorProfile.type, "" for none
	containerAppArmor      string // container-level appArmorProfile.type
	restricted             bool   // container hardened as Pod Security "restricted" requires
	// templated is true when the client sent a defaulted template (a
	// controller creating from a ReplicaSet), false for kubectl run.
	templated bool
	// response is true for the stored object: metadata filled in, defaults
	// applied, the service-account token volume injected.
	response bool
	uid, rv  string
	created  time.Time
	tokenVol string // kube-api-access-<5> volume name
	manager  string // managedFields manager, "" for none
}

// defaultPullPolicy is the apiserver's defaulting: Always for :latest or
// no tag, IfNotPresent otherwise (digests included).
func defaultPullPolicy(image string) string {
	if strings.IndexByte(image, '@') < 0 && imageTag(image) == "latest" {
		return "Always"
	}
	return "IfNotPresent"
}

func podJSON(o *podOpts) []byte {
	b := make([]byte, 0, 4096)
	b = append(b, `{"kind":"Pod","apiVersion":"v1","metadata":{`...)
	if o.response || o.name != "" {
		b = append(b, `"name":"`...)
		b = append(b, o.name...)
		b = append(b, `",`...)
	}
	if o.generateName != "" {
		b = append(b, `"generateName":"`...)
		b = append(b, o.generateName...)
		b = append(b, `",`...)
	}
	if o.response {
		b = append(b, `"namespace":"`...)
		b = append(b, o.ns...)
		b = append(b, `","uid":"`...)
		b = append(b, o.uid...)
		b = append(b, `","resourceVersion":"`...)
		b = append(b, o.rv...)
		b = append(b, `","creationTimestamp":`...)
		b = appendSecond(b, o.created)
	} else {
		b = append(b, `"creationTimestamp":null`...)
	}
	b = append(b, `,"labels":`...)
	b = appendSortedMap(b, o.labels)
	if o.response && o.containerAppArmor == "Unconfined" {
		// 1.30+ mirrors the field into the deprecated annotation on create:
		// the user never wrote it.
		b = append(b, `,"annotations":{"container.apparmor.security.beta.kubernetes.io/`...)
		b = append(b, o.container...)
		b = append(b, `":"unconfined"}`...)
	}
	if o.owner != nil {
		b = append(b, `,"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"`...)
		b = append(b, o.owner.name...)
		b = append(b, '-')
		b = append(b, o.owner.rsHash...)
		b = append(b, `","uid":"`...)
		b = append(b, o.owner.rsUID...)
		b = append(b, `","controller":true,"blockOwnerDeletion":true}]`...)
	}
	if o.response && o.manager != "" {
		b = appendManagedFields(b, o)
	}
	b = append(b, `},"spec":{`...)
	if o.response {
		b = append(b, `"volumes":[{"name":"`...)
		b = append(b, o.tokenVol...)
		b = append(b, `","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},{"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}],"defaultMode":420}}],`...)
	}
	b = append(b, `"containers":[{"name":"`...)
	b = append(b, o.container...)
	b = append(b, `","image":`...)
	b = appendString(b, o.image)
	if len(o.command) > 0 {
		b = append(b, `,"command":[`...)
		for i, c := range o.command {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, c)
		}
		b = append(b, ']')
	}
	if o.port != 0 {
		b = append(b, `,"ports":[{"name":"http","containerPort":`...)
		b = appendInt(b, int64(o.port))
		b = append(b, `,"protocol":"TCP"}]`...)
	}
	if len(o.env) > 0 {
		b = append(b, `,"env":[`...)
		for i, e := range o.env {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendString(b, e.k)
			b = append(b, `,"value":`...)
			b = appendString(b, e.v)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if o.cpu != "" {
		b = append(b, `,"resources":{"limits":{"memory":"`...)
		b = append(b, o.mem...)
		b = append(b, `"},"requests":{"cpu":"`...)
		b = append(b, o.cpu...)
		b = append(b, `","memory":"`...)
		b = append(b, o.mem...)
		b = append(b, `"}}`...)
	} else {
		b = append(b, `,"resources":{}`...)
	}
	if o.response {
		b = append(b, `,"volumeMounts":[{"name":"`...)
		b = append(b, o.tokenVol...)
		b = append(b, `","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}]`...)
	}
	if o.port != 0 && (o.templated || o.response) {
		b = append(b, `,"livenessProbe":{"httpGet":{"path":"/healthz","port":"http","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3},"readinessProbe":{"httpGet":{"path":"/ready","port":"http","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":5,"successThreshold":1,"failureThreshold":3}`...)
	}
	if o.templated || o.response {
		b = append(b, `,"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"`...)
	}
	policy := o.pullPolicy
	if policy == "" && (o.templated || o.response) {
		policy = defaultPullPolicy(o.image)
	}
	if policy != "" {
		b = append(b, `,"imagePullPolicy":"`...)
		b = append(b, policy...)
		b = append(b, '"')
	}
	if o.restricted || o.containerAppArmor != "" {
		b = append(b, `,"securityContext":{`...)
		if o.restricted {
			b = append(b, `"capabilities":{"drop":["ALL"]},"runAsNonRoot":true,"readOnlyRootFilesystem":true,"allowPrivilegeEscalation":false,"seccompProfile":{"type":"RuntimeDefault"}`...)
		}
		if o.containerAppArmor != "" {
			if o.restricted {
				b = append(b, ',')
			}
			b = append(b, `"appArmorProfile":{"type":"`...)
			b = append(b, o.containerAppArmor...)
			b = append(b, `"}`...)
		}
		b = append(b, '}')
	}
	b = append(b, `}]`...)
	if o.templated || o.response {
		b = append(b, `,"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst"`...)
	} else {
		b = append(b, `,"restartPolicy":"Always","dnsPolicy":"ClusterFirst"`...)
	}
	if o.sa != "" && (o.templated || o.response) {
		b = append(b, `,"serviceAccountName":"`...)
		b = append(b, o.sa...)
		b = append(b, `","serviceAccount":"`...)
		b = append(b, o.sa...)
		b = append(b, '"')
	}
	if o.nodeName != "" {
		b = append(b, `,"nodeName":"`...)
		b = append(b, o.nodeName...)
		b = append(b, '"')
	}
	if o.templated || o.response || o.podAppArmor != "" {
		b = append(b, `,"securityContext":{`...)
		if o.podAppArmor != "" {
			b = append(b, `"appArmorProfile":{"type":"`...)
			b = append(b, o.podAppArmor...)
			b = append(b, `"}`...)
		}
		b = append(b, '}')
	}
	if o.pullSecret != "" {
		b = append(b, `,"imagePullSecrets":[{"name":"`...)
		b = append(b, o.pullSecret...)
		b = append(b, `"}]`...)
	}
	if o.templated || o.response {
		b = append(b, `,"schedulerName":"default-scheduler"`...)
	}
	if o.response {
		b = append(b, `,"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Pending","qosClass":"`...)
		if o.cpu != "" {
			b = append(b, "Burstable"...)
		} else {
			b = append(b, "BestEffort"...)
		}
		b = append(b, `"}}`...)
		return b
	}
	return append(b, `},"status":{}}`...)
}

// appendManagedFields writes the server-side-apply bookkeeping a
// controller-created pod carries: it is most of the bytes of a real pod.
func appendManagedFields(b []byte, o *podOpts) []byte {
	b = append(b, `,"managedFields":[{"manager":"`...)
	b = append(b, o.manager...)
	b = append(b, `","operation":"Update","apiVersion":"v1","time":`...)
	b = appendSecond(b, o.created)
	b = append(b, `,"fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:generateName":{},"f:labels":{".":{}`...)
	for _, l := range o.labels {
		b = append(b, `,"f:`...)
		b = append(b, l.k...)
		b = append(b, `":{}`...)
	}
	b = append(b, `},"f:ownerReferences":{".":{},"k:{\"uid\":\"`...)
	if o.owner != nil {
		b = append(b, o.owner.rsUID...)
	}
	b = append(b, `\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"`...)
	b = append(b, o.container...)
	b = append(b, `\"}":{".":{},"f:env":{".":{}`...)
	for _, e := range o.env {
		b = append(b, `,"k:{\"name\":\"`...)
		b = append(b, e.k...)
		b = append(b, `\"}":{".":{},"f:name":{},"f:value":{}}`...)
	}
	b = append(b, `},"f:image":{},"f:imagePullPolicy":{},"f:livenessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":`...)
	b = appendInt(b, int64(o.port))
	b = append(b, `,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:readinessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:imagePullSecrets":{".":{},"k:{\"name\":\"`...)
	b = append(b, o.pullSecret...)
	b = append(b, `\"}":{}},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{}}}}]`...)
	return b
}

// tokenRequestJSON is a TokenRequest as the kubelet sends it: bound to the
// pod, 3607 seconds (an hour plus the kubelet's jitter allowance).
func tokenRequestJSON(podName, podUID string, response bool, token string, expires time.Time) []byte {
	b := make([]byte, 0, 1536)
	b = append(b, `{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":["`...)
	b = append(b, podAudience...)
	b = append(b, `"],"expirationSeconds":3607,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"`...)
	b = append(b, podName...)
	b = append(b, `","uid":"`...)
	b = append(b, podUID...)
	b = append(b, `"}},"status":{`...)
	if response {
		b = append(b, `"token":"`...)
		b = append(b, token...)
		b = append(b, `","expirationTimestamp":`...)
		b = appendSecond(b, expires)
	} else {
		b = append(b, `"token":"","expirationTimestamp":null`...)
	}
	return append(b, `}}`...)
}

// tokenReviewJSON is the TokenReview an aggregated API server or webhook
// sends to authenticate a bearer token presented to it.
func tokenReviewJSON(token string) []byte {
	b := make([]byte, 0, 1400)
	b = append(b, `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"token":"`...)
	b = append(b, token...)
	b = append(b, `"},"status":{"user":{}}}`...)
	return b
}

// sarJSON is a SubjectAccessReview an aggregated API server sends to ask
// whether the user it authenticated may read its resources.
func sarJSON(user, uid, ns string) []byte {
	b := make([]byte, 0, 600)
	b = append(b, `{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"resourceAttributes":{"namespace":"`...)
	b = append(b, ns...)
	b = append(b, `","verb":"list","group":"metrics.k8s.io","version":"v1beta1","resource":"pods"},"user":"`...)
	b = append(b, user...)
	b = append(b, `","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"],"uid":"`...)
	b = append(b, uid...)
	b = append(b, `"},"status":{"allowed":false}}`...)
	return b
}

// bindingJSON is the Binding the scheduler posts to place a pod.
func bindingJSON(podName, ns, podUID, nodeName string) []byte {
	b := make([]byte, 0, 300)
	b = append(b, `{"kind":"Binding","apiVersion":"v1","metadata":{"name":"`...)
	b = append(b, podName...)
	b = append(b, `","namespace":"`...)
	b = append(b, ns...)
	b = append(b, `","uid":"`...)
	b = append(b, podUID...)
	b = append(b, `","creationTimestamp":null},"target":{"kind":"Node","name":"`...)
	b = append(b, nodeName...)
	return append(b, `"}}`...)
}

// podConditions in the order the kubelet writes them.
var podConditions = []string{"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"}

// podStatusPatchJSON is the strategic-merge patch the kubelet sends when a
// pod's status changes.
func podStatusPatchJSON(r *rng, p *pod, at time.Time) []byte {
	b := make([]byte, 0, 1400)
	b = append(b, `{"metadata":{"uid":"`...)
	b = append(b, p.uid...)
	b = append(b, `"},"status":{"$setElementOrder/conditions":[`...)
	for i, c := range podConditions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"`...)
		b = append(b, c...)
		b = append(b, `"}`...)
	}
	since := at.Add(-time.Duration(r.between(5, 600)) * time.Second)
	b = append(b, `],"conditions":[{"lastTransitionTime":`...)
	b = appendSecond(b, since)
	b = append(b, `,"status":"True","type":"Ready"},{"lastTransitionTime":`...)
	b = appendSecond(b, since)
	b = append(b, `,"status":"True","type":"ContainersReady"}],"containerStatuses":[{"containerID":"containerd://`...)
	b = r.appendHex(b, 64)
	b = append(b, `","image":`...)
	b = appendString(b, p.w.image)
	b = append(b, `,"imageID":`...)
	repo := p.w.image
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	b = append(b, '"')
	b = append(b, repo...)
	b = append(b, `@sha256:`...)
	b = r.appendHex(b, 64)
	b = append(b, `","lastState":{},"name":"`...)
	b = append(b, p.w.name...)
	b = append(b, `","ready":true,"restartCount":`...)
	b = appendInt(b, int64(r.intn(3)))
	b = append(b, `,"started":true,"state":{"running":{"startedAt":`...)
	b = appendSecond(b, since.Add(-3*time.Second))
	b = append(b, `}},"volumeMounts":[{"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","name":"kube-api-access-`...)
	b = append(b, p.uid[:5]...)
	b = append(b, `","readOnly":true,"recursiveReadOnly":"Disabled"}]}]}}`...)
	return b
}

var nodeConditions = []string{"MemoryPressure", "DiskPressure", "PIDPressure", "Ready"}

// nodeStatusPatchJSON is the kubelet's periodic node status patch. With
// images it carries the node's image list, as it does when that changed:
// the largest routine Request-level events in a real log.
func nodeStatusPatchJSON(r *rng, w *world, at time.Time, images bool) []byte {
	b := make([]byte, 0, 8192)
	b = append(b, `{"status":{"$setElementOrder/conditions":[`...)
	for i, c := range nodeConditions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"`...)
		b = append(b, c...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"conditions":[`...)
	for i, c := range nodeConditions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"lastHeartbeatTime":`...)
		b = appendSecond(b, at)
		b = append(b, `,"type":"`...)
		b = append(b, c...)
		b = append(b, `"}`...)
	}
	b = append(b, ']')
	if images {
		b = append(b, `,"images":[`...)
		for i, wl := range w.workloads {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"names":["`...)
			repo := wl.image
			if j := strings.IndexByte(repo, '@'); j >= 0 {
				repo = repo[:j]
			}
			b = append(b, repo[:max(strings.LastIndexByte(repo, ':'), 0)]...)
			b = append(b, `@sha256:`...)
			b = r.appendHex(b, 64)
			b = append(b, `","`...)
			b = append(b, repo...)
			b = append(b, `"],"sizeBytes":`...)
			b = appendInt(b, int64(r.between(8_000_000, 400_000_000)))
			b = append(b, '}')
		}
		for _, img := range systemImages {
			b = append(b, `,{"names":["`...)
			b = append(b, img[:strings.LastIndexByte(img, ':')]...)
			b = append(b, `@sha256:`...)
			b = r.appendHex(b, 64)
			b = append(b, `","`...)
			b = append(b, img...)
			b = append(b, `"],"sizeBytes":`...)
			b = appendInt(b, int64(r.between(300_000, 120_000_000)))
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, `}}`...)
}

var systemImages = []string{
	"registry.k8s.io/kube-proxy:" + kubeVersion,
	"registry.k8s.io/coredns/coredns:v1.11.3",
	"registry.k8s.io/pause:3.10",
	"docker.io/calico/node:v3.28.1",
	"docker.io/calico/cni:v3.28.1",
	"registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.11.1",
	"docker.io/fluent/fluent-bit:3.1.7",
	"quay.io/prometheus/node-exporter:v1.8.2",
}

// deleteOptionsJSON is the body kubectl sends with a delete.
func deleteOptionsJSON(apiVersion string) []byte {
	return []byte(`{"kind":"DeleteOptions","apiVersion":"` + apiVersion + `","propagationPolicy":"Background"}`)
}

// successStatusJSON is the Status a delete of a cluster-scoped object
// returns when the object is gone immediately.
func successStatusJSON(name, group, kind, uid string) []byte {
	return []byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"` + name +
		`","group":"` + group + `","kind":"` + kind + `","uid":"` + uid + `"}}`)
}

// appPatchJSON is the merge patch Argo CD sends to record a sync.
func appPatchJSON(at time.Time, revision string) []byte {
	b := make([]byte, 0, 400)
	b = append(b, `{"status":{"operationState":{"finishedAt":`...)
	b = appendSecond(b, at)
	b = append(b, `,"message":"successfully synced (all tasks run)","phase":"Succeeded","syncResult":{"revision":"`...)
	b = append(b, revision...)
	b = append(b, `"}},"reconciledAt":`...)
	b = appendSecond(b, at)
	b = append(b, `,"sync":{"status":"Synced"}}}`...)
	return b
}

// watchTimeout returns the timeout and timeoutSeconds query values client-go
// reflectors choose: a random duration between 5 and 10 minutes.
func watchTimeout(r *rng) (string, int) {
	s := r.between(300, 599)
	return strconv.Itoa(s/60) + "m" + strconv.Itoa(s%60) + "s", s
}
