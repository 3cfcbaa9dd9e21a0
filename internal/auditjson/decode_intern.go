package auditjson

import "strings"

// internTable holds the strings audit events repeat on nearly every line:
// levels, stages, verbs, the built-in API's resources and groups, system
// identities and the well-known annotation and extra keys. Decoding one of
// them returns the table's copy instead of allocating a new string; the
// lookup m[string(b)] does not allocate either. The table is immutable
// after init, so concurrent decoders share it safely.
var internTable = func() map[string]string {
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
	m := make(map[string]string, len(words))
	for _, w := range words {
		m[w] = w
	}
	return m
}()

// intern returns b as a string, from the table when it is a common one.
func intern(b []byte) string {
	if s, ok := internTable[string(b)]; ok {
		return s
	}
	return string(b)
}
