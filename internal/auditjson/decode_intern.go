package auditjson

import (
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// internTable holds the strings audit events repeat on nearly every line:
// levels, stages, verbs, the built-in API's resources and groups, system
// identities and the well-known annotation and extra keys. Decoding one of
// them returns the table's copy instead of allocating a new string. It is
// an open-addressing hash table keyed by the cache's hash, so that a string
// it does not hold goes on to the cache (see cached) without being hashed
// twice; it is immutable after init, so concurrent decoders share it
// safely.
var internTable = func() *[internSlots]string {
	words := strings.Fields(`
		Event EventList audit.k8s.io/v1 Status v1
		None Metadata Request RequestResponse
		RequestReceived ResponseStarted ResponseComplete Panic
		get list watch create update patch delete deletecollection
		proxy connect impersonate approve bind escalate use

		pods pods/exec pods/log pods/status pods/eviction pods/binding
		services endpoints endpointslices nodes namespaces secrets configmaps
		serviceaccounts events leases deployments replicasets statefulsets
		daemonsets jobs cronjobs ingresses networkpolicies
		persistentvolumes persistentvolumeclaims storageclasses
		volumeattachments csinodes csidrivers roles rolebindings clusterroles
		clusterrolebindings tokenreviews subjectaccessreviews
		selfsubjectaccessreviews selfsubjectrulesreviews
		localsubjectaccessreviews certificatesigningrequests
		customresourcedefinitions apiservices
		mutatingwebhookconfigurations validatingwebhookconfigurations
		validatingadmissionpolicies validatingadmissionpolicybindings
		mutatingadmissionpolicies mutatingadmissionpolicybindings
		priorityclasses runtimeclasses poddisruptionbudgets
		horizontalpodautoscalers resourcequotas limitranges
		podtemplates controllerrevisions flowschemas
		prioritylevelconfigurations
		status exec attach portforward log binding eviction token scale
		ephemeralcontainers finalize approval proxy

		apps batch policy autoscaling coordination.k8s.io events.k8s.io
		discovery.k8s.io networking.k8s.io storage.k8s.io node.k8s.io
		rbac.authorization.k8s.io authentication.k8s.io
		authorization.k8s.io certificates.k8s.io admissionregistration.k8s.io
		apiextensions.k8s.io apiregistration.k8s.io scheduling.k8s.io
		flowcontrol.apiserver.k8s.io resource.k8s.io
		v1beta1 v1beta2 v1beta3 v1alpha1 v2

		default kube-system kube-public kube-node-lease

		system:authenticated system:unauthenticated system:masters
		system:nodes system:serviceaccounts system:serviceaccounts:kube-system
		system:bootstrappers system:monitoring system:anonymous
		system:kube-scheduler system:kube-controller-manager system:kube-proxy
		system:apiserver system:admin kubernetes-admin

		authorization.k8s.io/decision authorization.k8s.io/reason
		allow forbid
		authentication.k8s.io/legacy-token
		authentication.k8s.io/legacy-token-invalidated
		authentication.k8s.io/legacy-token-manual-secret
		authentication.k8s.io/stale-token
		authentication.kubernetes.io/issued-credential-id
		pod-security.kubernetes.io/enforce-policy
		pod-security.kubernetes.io/audit-violations
		pod-security.kubernetes.io/exempt
		mutation.webhook.admission.k8s.io/round_0_index_0
		apiserver.latency.k8s.io/total
		apiserver.latency.k8s.io/etcd
		apiserver.latency.k8s.io/serialize-response-object
		apiserver.latency.k8s.io/response-write
		apiserver.latency.k8s.io/decode-response-object
		apiserver.latency.k8s.io/apf-queue-wait
		apiserver.latency.k8s.io/transform-response-object
		authentication.kubernetes.io/credential-id
		authentication.kubernetes.io/pod-name
		authentication.kubernetes.io/pod-uid
		authentication.kubernetes.io/node-name
		authentication.kubernetes.io/node-uid

		Success Failure Unauthorized Forbidden NotFound AlreadyExists
		Conflict Gone Invalid ServerTimeout Timeout TooManyRequests
		BadRequest MethodNotAllowed NotAcceptable RequestEntityTooLarge
		UnsupportedMediaType InternalError Expired ServiceUnavailable
	`)
	// The kube-controller-manager's controllers each use their own service
	// account in kube-system; their usernames are among the most frequent.
	for _, c := range strings.Fields(`
		attachdetach-controller certificate-controller clusterrole-aggregation-controller
		cronjob-controller daemon-set-controller deployment-controller
		disruption-controller endpoint-controller endpointslice-controller
		endpointslicemirroring-controller ephemeral-volume-controller
		expand-controller generic-garbage-collector horizontal-pod-autoscaler
		job-controller namespace-controller node-controller
		persistent-volume-binder pod-garbage-collector pv-protection-controller
		pvc-protection-controller replicaset-controller
		replication-controller resourcequota-controller root-ca-cert-publisher
		service-account-controller service-controller statefulset-controller
		ttl-after-finished-controller ttl-controller coredns kube-proxy
	`) {
		words = append(words, "system:serviceaccount:kube-system:"+c)
	}
	if 2*len(words) > internSlots {
		panic("auditjson: internTable is over half full")
	}
	var t [internSlots]string
	for _, w := range words {
		if len(w) > maxCached {
			panic("auditjson: internTable word longer than maxCached: " + w)
		}
		i := maphash.String(cacheSeed, w) & (internSlots - 1)
		for t[i] != "" && t[i] != w {
			i = (i + 1) & (internSlots - 1)
		}
		t[i] = w
	}
	return &t
}()

// internSlots is internTable's size: a power of two, at least twice the
// number of words so that probe sequences stay short.
const internSlots = 1 << 10

// intern returns b as a string, from the table when it is a common one,
// else from the cache of recent strings.
func intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxCached {
		return string(b)
	}
	h := maphash.Bytes(cacheSeed, b)
	for i := h & (internSlots - 1); internTable[i] != ""; i = (i + 1) & (internSlots - 1) {
		if internTable[i] == string(b) {
			return internTable[i]
		}
	}
	return cachedHash(b, h)
}

// The cache of recently decoded strings. Beyond the fixed vocabulary of
// internTable, an audit stream repeats most of its other strings too:
// on the realistic stream (internal/bench, 20,000 events) the user agents
// are 23 distinct values, usernames 22, source IPs 81, user.extra values
// 106, annotation values 428 and request URIs 1,019; only the auditID is
// new on (nearly) every event. Copying each of them into a new string was
// most of the decoder's allocations. The cache is direct-mapped: a string
// hashes to one slot, which holds the last string that hashed there, so a
// lookup is one hash and one comparison, a miss replaces the slot, and
// memory stays bounded (cacheSlots strings of at most maxCached bytes, a
// few MiB at worst) whatever the input, hostile or not. Slots are atomic
// pointers to immutable strings, so concurrent decoders share the cache
// without locks; a race between two misses only decides which string the
// slot keeps.
const (
	cacheBits  = 13
	cacheSlots = 1 << cacheBits
	// maxCached bounds the strings cached: longer ones are rarely
	// repeated byte for byte and would make the cache's worst case large.
	maxCached = 256
)

var (
	stringCache [cacheSlots]atomic.Pointer[string]
	cacheSeed   = maphash.MakeSeed()
)

// cached returns b as a string, the cache's copy when it holds one.
func cached(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxCached {
		return string(b)
	}
	return cachedHash(b, maphash.Bytes(cacheSeed, b))
}

// cachedHash is cached for b of 1 to maxCached bytes whose hash
// (maphash.Bytes with cacheSeed) is h. The slot is taken from h's high
// bits, internTable's probe from its low ones.
func cachedHash(b []byte, h uint64) string {
	slot := &stringCache[h>>(64-cacheBits)]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}

// cachedContent returns the value of a string whose raw content (between
// the quotes) is raw, through the cache; unquote says raw has escapes or
// invalid UTF-8 (jsonscan.Scanner.Content). The unquoted value is built
// on the stack unless it is long, so a cache hit allocates nothing.
func cachedContent(raw []byte, unquote bool) string {
	if !unquote {
		return cached(raw)
	}
	var buf [maxCached]byte
	return cached(jsonscan.Unquote(buf[:0], raw))
}
