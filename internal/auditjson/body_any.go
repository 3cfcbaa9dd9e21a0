package auditjson

import (
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// maxBodyDepth is encoding/json's limit on nesting: a body nested deeper
// does not decode, as it would not with json.Unmarshal.
const maxBodyDepth = 10000

// decodeBody decodes a request or response body into what json.Unmarshal
// into an any yields (map[string]any, []any, string, float64, bool, nil),
// equal value for equal value, or reports false where json.Unmarshal
// fails: invalid JSON, a number out of float64's range, nesting past
// 10,000 levels. It walks the body once with the project's scanner
// instead of encoding/json's validate-then-decode with reflection: the
// body decode was a third of detect's time per event on the realistic
// stream. Linear in the body, depth bounded.
func decodeBody(data []byte) (any, bool) {
	b := bodyDecoders.Get().(*bodyDecoder)
	defer b.release()
	b.d = jsonscan.Scanner{Data: data}
	if _, err := b.d.Peek(); err != nil {
		return nil, false
	}
	v, ok := b.value(0)
	if !ok {
		return nil, false
	}
	if b.d.WS(); b.d.Pos != len(b.d.Data) {
		return nil, false
	}
	return v, true
}

// emptyBodyObject is every {} of every body: one map, never written
// (decoded bodies are read-only, see pipeline.Event.RequestBody). Half the
// objects of a stored pod are empty: managedFields' "f:name":{} leaves,
// 53 of 105 per pod on the generated stream, a map allocation each.
var emptyBodyObject any = map[string]any{}

// bodyDecoders keeps bodyDecoders' stacks from body to body: grown once,
// they cost no allocation per body.
var bodyDecoders = sync.Pool{New: func() any { return new(bodyDecoder) }}

// release returns b to bodyDecoders, holding no reference to the body or
// its values (a failed decode leaves members on the stacks). Stacks an
// attacker-sized body grew past 64 KiB are dropped rather than kept.
func (b *bodyDecoder) release() {
	b.d = jsonscan.Scanner{}
	clear(b.keys)
	clear(b.vals)
	b.keys, b.vals = b.keys[:0], b.vals[:0]
	if cap(b.vals) > 4096 || cap(b.keys) > 4096 || cap(b.scratch) > 64<<10 {
		return
	}
	bodyDecoders.Put(b)
}

// bodyDecoder holds one body decode's scratch space. Bodies were most of
// detect's allocations per event: a map grown entry by entry, an array
// grown element by element, and two allocations per string (its bytes and
// the interface header). The members of objects and arrays are collected
// on shared stacks and each container is allocated once at its final size;
// Kubernetes' common keys and enum values come from immutable tables.
type bodyDecoder struct {
	d       jsonscan.Scanner
	scratch []byte   // unquoted strings, until looked up or copied
	keys    []string // keys of the objects being decoded, innermost last
	vals    []any    // members of the containers being decoded
}

// value decodes the value at d.Pos (not whitespace), depth being the
// containers it is inside.
func (b *bodyDecoder) value(depth int) (any, bool) {
	d := &b.d
	switch c := d.Data[d.Pos]; {
	case c == '{':
		if depth >= maxBodyDepth {
			return nil, false
		}
		base := len(b.keys)
		more, err := d.ObjectStart()
		for err == nil && more {
			var k []byte
			if k, err = d.StrScratch(&b.scratch); err != nil {
				break
			}
			if err = b.colon(); err != nil {
				break
			}
			key, ok := bodyKeys[string(k)]
			if !ok {
				key = string(k)
			}
			b.keys = append(b.keys, key)
			var v any
			if c := d.Data[d.Pos]; key == "fieldsV1" && c == '{' {
				v, ok = b.cached(depth+1, &fieldsV1Cache)
			} else if (c == '{' || c == '[') && workloadKeys[key] {
				v, ok = b.cached(depth+1, &workloadCache)
			} else {
				v, ok = b.value(depth + 1)
			}
			if !ok {
				return nil, false
			}
			b.vals = append(b.vals, v)
			more, err = d.ObjectNext()
		}
		if err != nil {
			return nil, false
		}
		if len(b.keys) == base {
			return emptyBodyObject, true
		}
		// Members keep their order, so a repeated key's last value wins,
		// as with encoding/json.
		keys, vals := b.keys[base:], b.vals[len(b.vals)-(len(b.keys)-base):]
		m := make(map[string]any, len(keys))
		for i, k := range keys {
			m[k] = vals[i]
		}
		clear(vals) // the stack must not keep the body alive
		b.vals = b.vals[:len(b.vals)-len(keys)]
		b.keys = b.keys[:base]
		return m, true
	case c == '[':
		if depth >= maxBodyDepth {
			return nil, false
		}
		base := len(b.vals)
		more, err := d.ArrayStart()
		for err == nil && more {
			v, ok := b.value(depth + 1)
			if !ok {
				return nil, false
			}
			b.vals = append(b.vals, v)
			more, err = d.ArrayNext()
		}
		if err != nil {
			return nil, false
		}
		// Never nil: encoding/json makes an empty []any for [].
		s := append(make([]any, 0, len(b.vals)-base), b.vals[base:]...)
		clear(b.vals[base:])
		b.vals = b.vals[:base]
		return s, true
	case c == '"':
		s, err := d.StrScratch(&b.scratch)
		if err != nil {
			return nil, false
		}
		if v, ok := bodyValues[string(s)]; ok {
			return v, true
		}
		return string(s), true
	case c == '-' || jsonscan.IsDigit(c):
		num, err := d.Number()
		if err != nil {
			return nil, false
		}
		if n, ok := smallUint(num); ok {
			return bodySmallNumbers[n], true
		}
		f, err := strconv.ParseFloat(string(num), 64)
		return f, err == nil
	case c == 't' || c == 'f' || c == 'n':
		if err := d.Literal(); err != nil {
			return nil, false
		}
		switch c {
		case 't':
			return true, true
		case 'f':
			return false, true
		}
		return nil, true
	}
	return nil, false
}

// cached is value for an object or array taken from c when the same bytes
// decoded before. fieldsV1Cache holds managedFields entries' fieldsV1
// objects, workloadCache the parts of an object that the objects of one
// workload repeat (see workloadKeys). A stored object's
// managedFields are most of its objects (a map per field it names, a third
// of a pod's bytes) and repeat whole: every pod of a ReplicaSet has the
// same fields set by the same managers (on the realistic stream 763
// fieldsV1 objects of 2,000 pod writes are 6 distinct ones). The object is
// first skipped to find its bytes: Skip checks syntax and depth as value
// does at the same depth, so it fails where value would; a cached entry
// decoded from the same bytes, so value would succeed and yield an equal
// value, which is shared (decoded bodies are read-only). A miss decodes
// the bytes again, and stores them the second time in a row they miss in
// their slot, as the map caches do (decode_mapcache.go).
func (b *bodyDecoder) cached(depth int, c *subtreeCache) (any, bool) {
	d := &b.d
	start := d.Pos
	if err := d.Skip(depth); err != nil {
		return nil, false
	}
	raw := d.Data[start:d.Pos]
	if len(raw) > maxSubtreeBytes {
		d.Pos = start
		return b.value(depth)
	}
	h := maphash.Bytes(cacheSeed, raw)
	i := h >> (64 - subtreeCacheBits)
	if e := c.slots[i].Load(); e != nil && e.raw == string(raw) {
		return e.v, true
	}
	d.Pos = start
	v, ok := b.value(depth)
	if !ok {
		return nil, false
	}
	if c.missed[i].Swap(h) == h {
		c.slots[i].Store(&subtreeEntry{raw: string(raw), v: v})
	}
	return v, true
}

// The fieldsV1 cache's bounds: subtreeCacheSlots entries of at most
// maxSubtreeBytes of JSON each (a pod's fieldsV1 objects are 0.3 to 3 KiB).
const (
	subtreeCacheBits  = 8
	subtreeCacheSlots = 1 << subtreeCacheBits
	maxSubtreeBytes   = 8 << 10
)

// subtreeEntry is one cached decoded value and its JSON, immutable once
// stored.
type subtreeEntry struct {
	raw string
	v   any
}

// subtreeCache is direct-mapped by the hash of the raw JSON; missed holds
// per slot the hash of the last value that missed there.
type subtreeCache struct {
	slots  [subtreeCacheSlots]atomic.Pointer[subtreeEntry]
	missed [subtreeCacheSlots]atomic.Uint64
}

var fieldsV1Cache, workloadCache subtreeCache

// workloadKeys are the members whose values the objects of one workload
// (the pods of a ReplicaSet, Job or DaemonSet, their templates) repeat
// byte for byte: containers, volumes, scheduling constraints, labels and
// owners. Decoding a pod's containers and volumes allocated a map per
// object and a string per value not in bodyValues: most of what a pod's
// body cost once managedFields came from fieldsV1Cache. A pod's volumes
// and containers miss when they name its service-account token volume
// (kube-api-access-<random>, in volumes and in every volumeMounts), but
// that volume's projected source is the same in every pod of the cluster:
// ten maps of about 25 in a generated pod, whose decode it made 27 %
// faster (pod bodies of the finding-heavy stream, 4.4 against 3.2 µs).
// Inside such a container, its ports, env, resources and probes still
// repeat, as does a new pod's status (Pending, its QoS class): caching
// them too took the realistic stream's pod bodies from 7.0–8.4 to
// 5.0–5.2 µs and their allocations from 55 to 33.
var workloadKeys = map[string]bool{
	"containers": true, "initContainers": true, "volumes": true,
	"tolerations": true, "affinity": true, "nodeSelector": true,
	"labels": true, "ownerReferences": true, "securityContext": true,
	"imagePullSecrets": true, "projected": true,
	"livenessProbe": true, "readinessProbe": true, "startupProbe": true,
	"resources": true, "env": true, "ports": true, "status": true,
}

// colon consumes the ':' after an object key and the whitespace after it,
// as jsonscan.Scanner.Key does.
func (b *bodyDecoder) colon() error {
	d := &b.d
	c, err := d.Peek()
	if err != nil {
		return err
	}
	if c != ':' {
		return d.Syntax("after object key")
	}
	d.Pos++
	_, err = d.Peek()
	return err
}

// smallUint reads num, a valid JSON number, as an integer below
// len(bodySmallNumbers), or reports false when it is not one (a sign, a
// fraction, an exponent or more digits).
func smallUint(num []byte) (int, bool) {
	if len(num) == 0 || len(num) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range num {
		if !jsonscan.IsDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n < len(bodySmallNumbers)
}

// bodySmallNumbers holds float64(i) as an any for small integers (ports,
// counts, modes, seconds): boxing a float64 allocates.
var bodySmallNumbers = func() []any {
	t := make([]any, 1000)
	for i := range t {
		t[i] = float64(i)
	}
	return t
}()

// bodyKeys holds the object keys Kubernetes objects repeat (metadata, pod
// specs, status, managedFields' fieldsV1 paths), so that decoding one
// allocates no string. Immutable after init: concurrent decoders share it.
var bodyKeys = func() map[string]string {
	words := strings.Fields(`
		apiVersion kind metadata name generateName namespace uid resourceVersion
		generation creationTimestamp deletionTimestamp labels annotations
		ownerReferences controller blockOwnerDeletion finalizers managedFields
		manager operation time fieldsType fieldsV1 subresource
		spec status items type path key value values operator effect
		tolerationSeconds tolerations containers initContainers
		ephemeralContainers image imagePullPolicy imagePullSecrets command
		args workingDir env envFrom valueFrom fieldRef fieldPath secretKeyRef
		configMapKeyRef resources limits requests cpu memory
		ephemeral-storage volumeMounts mountPath subPath readOnly
		recursiveReadOnly volumes hostPath projected sources
		serviceAccountToken expirationSeconds audience configMap secret
		secretName downwardAPI defaultMode emptyDir persistentVolumeClaim
		claimName securityContext privileged runAsUser runAsGroup
		runAsNonRoot fsGroup allowPrivilegeEscalation capabilities add drop
		readOnlyRootFilesystem seccompProfile appArmorProfile localhostProfile
		procMount restartPolicy dnsPolicy serviceAccountName serviceAccount
		automountServiceAccountToken nodeName nodeSelector hostNetwork
		hostPID hostIPC hostUsers schedulerName priority priorityClassName
		enableServiceLinks preemptionPolicy terminationGracePeriodSeconds
		terminationMessagePath terminationMessagePolicy livenessProbe
		readinessProbe startupProbe httpGet tcpSocket exec port scheme host
		initialDelaySeconds timeoutSeconds periodSeconds successThreshold
		failureThreshold ports containerPort hostPort protocol template
		selector matchLabels matchExpressions replicas strategy
		rollingUpdate maxSurge maxUnavailable revisionHistoryLimit
		progressDeadlineSeconds phase conditions lastTransitionTime
		lastProbeTime lastHeartbeatTime reason message qosClass hostIP
		hostIPs podIP podIPs ip startTime containerStatuses
		initContainerStatuses containerID imageID lastState ready
		restartCount started state running waiting terminated startedAt
		finishedAt exitCode names sizeBytes data stringData binaryData
		immutable rules apiGroups verbs resourceNames nonResourceURLs
		subjects roleRef apiGroup user username groups extra token
		audiences authenticated boundObjectRef expirationTimestamp
		propagationPolicy gracePeriodSeconds dryRun details code group
		version resource verb target resourceAttributes
		nonResourceAttributes allowed denied evaluationError
		$setElementOrder/conditions $patch $retainKeys
		. f:metadata f:labels f:annotations f:name f:namespace
		f:generateName f:ownerReferences f:spec f:status f:containers
		f:initContainers f:image f:imagePullPolicy f:imagePullSecrets
		f:command f:args f:env f:value f:valueFrom f:ports f:containerPort
		f:protocol f:resources f:limits f:requests f:cpu f:memory
		f:livenessProbe f:readinessProbe f:startupProbe f:httpGet f:path
		f:port f:scheme f:failureThreshold f:periodSeconds
		f:successThreshold f:timeoutSeconds f:initialDelaySeconds
		f:terminationMessagePath f:terminationMessagePolicy f:dnsPolicy
		f:enableServiceLinks f:restartPolicy f:schedulerName
		f:securityContext f:serviceAccount f:serviceAccountName
		f:terminationGracePeriodSeconds f:volumeMounts f:volumes
		f:mountPath f:readOnly f:conditions f:replicas f:selector
		f:template f:strategy f:data f:type f:app f:pod-template-hash
		app pod-template-hash kubernetes.io/metadata.name
	`)
	t := make(map[string]string, len(words))
	for _, w := range words {
		t[w] = w
	}
	return t
}()

// bodyValues holds, boxed as an any, the string values Kubernetes objects
// repeat (enums, API versions, kinds, well-known names): decoding one
// allocates neither the string nor its interface header. Immutable after
// init: concurrent decoders share it.
var bodyValues = func() map[string]any {
	words := strings.Fields(`
		v1 apps/v1 batch/v1 policy/v1 rbac.authorization.k8s.io/v1
		authentication.k8s.io/v1 authorization.k8s.io/v1
		admissionregistration.k8s.io/v1 admissionregistration.k8s.io
		networking.k8s.io/v1 storage.k8s.io/v1 coordination.k8s.io/v1
		certificates.k8s.io/v1 apiextensions.k8s.io/v1 meta.k8s.io/v1
		Pod ReplicaSet Deployment StatefulSet DaemonSet Job CronJob
		Service Secret ConfigMap ServiceAccount Namespace Node Role
		RoleBinding ClusterRole ClusterRoleBinding TokenReview TokenRequest
		SubjectAccessReview SelfSubjectAccessReview SelfSubjectRulesReview
		Status DeleteOptions Lease Event Success Failure
		Always IfNotPresent Never OnFailure ClusterFirst
		ClusterFirstWithHostNet Default Exists Equal NoExecute NoSchedule
		PreferNoSchedule File FallbackToLogsOnError /dev/termination-log
		default-scheduler default kube-root-ca.crt ca.crt token namespace
		metadata.namespace metadata.name node.kubernetes.io/not-ready
		node.kubernetes.io/unreachable PreemptLowerPriority
		PreemptNever Pending Running Succeeded Failed Unknown True False
		Ready ContainersReady Initialized PodScheduled
		PodReadyToStartContainers MemoryPressure DiskPressure PIDPressure
		NetworkUnavailable BestEffort Burstable Guaranteed RuntimeDefault
		Localhost Unconfined unconfined Disabled Background Foreground
		Orphan TCP UDP SCTP HTTP HTTPS http https RollingUpdate Recreate
		Update Apply FieldsV1 kubectl kubectl-client-side-apply
		kube-controller-manager kube-scheduler kubelet ALL NET_ADMIN
		SYS_ADMIN NET_RAW SYS_PTRACE Directory DirectoryOrCreate
		FileOrCreate Socket CharDevice BlockDevice Controller
	`)
	t := make(map[string]any, len(words)+1)
	for _, w := range words {
		t[w] = w
	}
	t[""] = ""
	return t
}()
