package detectors

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// admissionTestConfig is the default config with a platform team as admins
// and Istio's injector vetted, as a real deployment would set it.
func admissionTestConfig() AdmissionConfig {
	cfg := defaultAdmissionConfig()
	cfg.AdminIdentities.Groups = []string{"platform-admins"}
	cfg.AllowedWebhooks = []string{"istio-sidecar-injector"}
	return cfg
}

const admissionKubectlUA = "kubectl/v1.36.0 (linux/amd64) kubernetes/4e5f6a7"

// admissionWrite is a write to an admissionregistration.k8s.io resource.
func admissionWrite(verb, resource, name, user string, groups []string, level, request, response string) selectorReq {
	uri := "/apis/admissionregistration.k8s.io/v1/" + resource
	if verb != "create" && name != "" {
		uri += "/" + name
	}
	code := 200
	if verb == "create" {
		code = 201
	}
	return selectorReq{verb: verb, uri: uri, user: user, groups: groups, ua: admissionKubectlUA,
		resource: resource, group: admissionGroup, name: name, code: code, level: level, request: request, response: response}
}

const (
	admissionVAPDeployments = `{"kind":"ValidatingAdmissionPolicy","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"replica-limit"},"spec":{"failurePolicy":"Fail","matchConstraints":{"resourceRules":[{"apiGroups":["apps"],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["deployments"]}],"excludeResourceRules":[{"apiGroups":[""],"apiVersions":["v1"],"operations":["*"],"resources":["pods"]}]},"validations":[{"expression":"object.spec.replicas <= 5"}]}}`
	admissionVWCIgnore      = `{"kind":"ValidatingWebhookConfiguration","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"policy-guard"},"webhooks":[{"name":"validate.policy-guard.io","clientConfig":{"service":{"namespace":"guard","name":"guard","path":"/validate"}},"rules":[{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["configmaps"],"scope":"*"}],"failurePolicy":"Ignore","sideEffects":"None","admissionReviewVersions":["v1"]}]}`
	admissionVWCSecrets     = `{"kind":"ValidatingWebhookConfiguration","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"secret-guard"},"webhooks":[{"name":"validate.secret-guard.io","clientConfig":{"service":{"namespace":"guard","name":"guard"}},"rules":[{"apiGroups":["*"],"apiVersions":["*"],"operations":["*"],"resources":["secrets"]}],"failurePolicy":"Fail","sideEffects":"None","admissionReviewVersions":["v1"]}]}`
	admissionVAPBAudit      = `{"kind":"ValidatingAdmissionPolicyBinding","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"replica-limit"},"spec":{"policyName":"replica-limit","validationActions":["Audit","Warn"]}}`
	admissionVAPBDeny       = `{"kind":"ValidatingAdmissionPolicyBinding","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"replica-limit"},"spec":{"policyName":"replica-limit","validationActions":["Deny"]}}`
	admissionMAPLabels      = `{"kind":"MutatingAdmissionPolicy","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"team-label"},"spec":{"matchConstraints":{"resourceRules":[{"apiGroups":["apps"],"apiVersions":["v1"],"operations":["CREATE"],"resources":["deployments"]}]},"failurePolicy":"Fail","mutations":[{"patchType":"ApplyConfiguration","applyConfiguration":{"expression":"Object{metadata: Object.metadata{labels: {\"team\": \"shop\"}}}"}}]}}`
	admissionMAPSidecar     = `{"kind":"MutatingAdmissionPolicy","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"sidecar"},"spec":{"matchConstraints":{"resourceRules":[{"apiGroups":["apps"],"apiVersions":["v1"],"operations":["CREATE"],"resources":["deployments"]}]},"failurePolicy":"Fail","mutations":[{"patchType":"JSONPatch","jsonPatch":{"expression":"[JSONPatch{op: \"add\", path: \"/spec/template/spec/initContainers/-\", value: Object.spec.template.spec.initContainers{name: \"setup\", imagePullPolicy: \"Always\"}}]"}}]}}`
	admissionMAPPullPolicy  = `{"kind":"MutatingAdmissionPolicy","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"pull-always"},"spec":{"matchConstraints":{"resourceRules":[{"apiGroups":["apps"],"apiVersions":["v1"],"operations":["CREATE"],"resources":["deployments"]}]},"failurePolicy":"Fail","mutations":[{"patchType":"ApplyConfiguration","applyConfiguration":{"expression":"Object{spec: Object.spec{template: Object.spec.template{spec: Object.spec.template.spec{imagePullSecrets: []}}}}"}}]}}`
	admissionStatusDeleted  = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"replica-limit","group":"admissionregistration.k8s.io","kind":"validatingadmissionpolicybindings","uid":"c7e9b1d3-f5a7-4c9e-b1d3-f5a7c9e1b3d5"}}`
)

func TestAdmissionPolicyChange(t *testing.T) {
	d := newAdmissionDetector(admissionTestConfig())
	ci := "system:serviceaccount:ci:deployer"
	ciGroups := []string{"system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"}
	admin := "erin@example.com"
	adminGroups := []string{"platform-admins", "system:authenticated"}
	none := selectorWant{}
	tests := []struct {
		name   string
		req    selectorReq
		want   selectorWant
		source string // where the body evidence must come from, when any
	}{
		{"non-admin VAP on deployments", admissionWrite("create", "validatingadmissionpolicies", "replica-limit", ci, ciGroups, "RequestResponse", admissionVAPDeployments, admissionVAPDeployments), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"non-admin VWC failing open on configmaps", admissionWrite("create", "validatingwebhookconfigurations", "policy-guard", ci, ciGroups, "Request", admissionVWCIgnore, ""), selectorWant{"change", pipeline.SeverityHigh}, pipeline.FromRequest},
		{"non-admin VWC on secrets", admissionWrite("update", "validatingwebhookconfigurations", "secret-guard", ci, ciGroups, "RequestResponse", admissionVWCSecrets, admissionVWCSecrets), selectorWant{"change", pipeline.SeverityHigh}, pipeline.FromResponse},
		{"non-admin JSON patch sets failurePolicy Ignore", admissionWrite("patch", "validatingwebhookconfigurations", "secret-guard", ci, ciGroups, "Request", `[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]`, ""), selectorWant{"change", pipeline.SeverityHigh}, pipeline.FromRequest},
		{"non-admin merge patch widens rules to *", admissionWrite("patch", "mutatingwebhookconfigurations", "injector", ci, ciGroups, "Request", `{"webhooks":[{"name":"inject.example.io","rules":[{"apiGroups":["*"],"apiVersions":["*"],"operations":["*"],"resources":["*/*"]}]}]}`, ""), selectorWant{"change", pipeline.SeverityHigh}, pipeline.FromRequest},
		{"non-admin binding made advisory", admissionWrite("update", "validatingadmissionpolicybindings", "replica-limit", ci, ciGroups, "RequestResponse", admissionVAPBAudit, admissionVAPBAudit), selectorWant{"change", pipeline.SeverityHigh}, pipeline.FromResponse},
		{"non-admin binding that denies", admissionWrite("create", "validatingadmissionpolicybindings", "replica-limit", ci, ciGroups, "RequestResponse", admissionVAPBDeny, admissionVAPBDeny), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"non-admin MAP adding labels", admissionWrite("create", "mutatingadmissionpolicies", "team-label", ci, ciGroups, "RequestResponse", admissionMAPLabels, admissionMAPLabels), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"non-admin MAP adding an init container", admissionWrite("create", "mutatingadmissionpolicies", "sidecar", ci, ciGroups, "Request", admissionMAPSidecar, ""), selectorWant{"change", pipeline.SeverityCritical}, pipeline.FromRequest},
		{"imagePullSecrets is not image", admissionWrite("create", "mutatingadmissionpolicies", "pull-always", ci, ciGroups, "Request", admissionMAPPullPolicy, ""), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"non-admin MAP at Metadata level", admissionWrite("create", "mutatingadmissionpolicies", "registry-mirror", ci, ciGroups, "Metadata", "", ""), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"non-admin MAP refused", func() selectorReq {
			r := admissionWrite("create", "mutatingadmissionpolicies", "sidecar", ci, ciGroups, "Request", admissionMAPSidecar, "")
			r.code, r.reason, r.message = 403, "Forbidden", `mutatingadmissionpolicies.admissionregistration.k8s.io is forbidden: User "`+ci+`" cannot create resource "mutatingadmissionpolicies"`
			return r
		}(), selectorWant{"change", pipeline.SeverityLow}, ""},
		{"non-admin dry run", func() selectorReq {
			r := admissionWrite("create", "mutatingadmissionpolicies", "sidecar", ci, ciGroups, "Request", admissionMAPSidecar, "")
			r.uri += "?dryRun=All&fieldManager=kubectl-client-side-apply"
			return r
		}(), selectorWant{"change", pipeline.SeverityLow}, ""},
		{"non-admin deletes a VAP binding", admissionWrite("delete", "validatingadmissionpolicybindings", "replica-limit", ci, ciGroups, "RequestResponse", `{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}`, admissionStatusDeleted), selectorWant{"change", pipeline.SeverityHigh}, ""},
		{"non-admin deletes a MAP", admissionWrite("delete", "mutatingadmissionpolicies", "team-label", ci, ciGroups, "Metadata", "", ""), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"admin deletes a VAP binding", admissionWrite("delete", "validatingadmissionpolicybindings", "replica-limit", admin, adminGroups, "Metadata", "", ""), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"admin deletes every VWC", admissionWrite("deletecollection", "validatingwebhookconfigurations", "", admin, adminGroups, "Metadata", "", ""), selectorWant{"change", pipeline.SeverityMedium}, ""},
		{"admin deletes a MAP", admissionWrite("delete", "mutatingadmissionpolicies", "team-label", admin, adminGroups, "Metadata", "", ""), none, ""},
		{"admin creates a VWC failing open", admissionWrite("create", "validatingwebhookconfigurations", "policy-guard", admin, adminGroups, "Request", admissionVWCIgnore, ""), none, ""},
		{"admin MAP with image rewrite", admissionWrite("create", "mutatingadmissionpolicies", "sidecar", admin, adminGroups, "Request", admissionMAPSidecar, ""), none, ""},
		{"apiserver loopback updates a policy", admissionWrite("update", "validatingadmissionpolicies", "replica-limit", "system:apiserver", []string{"system:masters"}, "Metadata", "", ""), none, ""},
		{"reads are quiet", selectorReq{verb: "list", uri: "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", user: ci, groups: ciGroups, ua: admissionKubectlUA, resource: "validatingwebhookconfigurations", group: admissionGroup}, none, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := selectorCheck(t, d, selectorTestEvent(t, tt.req), tt.want)
			if tt.source == "" {
				return
			}
			found := false
			for _, e := range got[0].Evidence {
				found = found || e.Source == tt.source
			}
			if !found || !strings.Contains(got[0].Summary, "read from the "+tt.source+" body") {
				t.Errorf("finding does not say it read the %s body: %s %+v", tt.source, got[0].Summary, got[0].Evidence)
			}
		})
	}
}

// TestAdmissionStatusSubresource pins that a status write (the apiserver's
// own type-checking controller) is not a change to the control.
func TestAdmissionStatusSubresource(t *testing.T) {
	d := newAdmissionDetector(admissionTestConfig())
	ev := decodeTestEvent(t, `{"level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/replica-limit/status","verb":"update","user":{"username":"system:serviceaccount:ci:deployer","groups":["system:authenticated"]},"objectRef":{"resource":"validatingadmissionpolicies","name":"replica-limit","apiGroup":"admissionregistration.k8s.io","apiVersion":"v1","subresource":"status"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T09:30:00.000100Z","stageTimestamp":"2026-11-27T09:30:00.002300Z"}`)
	selectorCheck(t, d, ev, selectorWant{})
}

func TestAdmissionWebhookAnnotations(t *testing.T) {
	d := newAdmissionDetector(admissionTestConfig())
	pod := func(verb, resource string, ann map[string]string) selectorReq {
		return selectorReq{verb: verb, uri: "/api/v1/namespaces/shop/" + resource, user: "system:serviceaccount:kube-system:replicaset-controller",
			ua: "kube-controller-manager/v1.35.2", resource: resource, ns: "shop", code: 201, annotations: ann}
	}
	const (
		mutKey   = "mutation.webhook.admission.k8s.io/round_0_index_2"
		patchKey = "patch.webhook.admission.k8s.io/round_0_index_2"
	)
	tests := []struct {
		name string
		req  selectorReq
		want selectorWant
	}{
		{"validating webhook failed open on a pod", pod("create", "pods", map[string]string{"failed-open.validating.webhook.admission.k8s.io/round_0_index_0": "validate.kyverno.svc-fail"}),
			selectorWant{"failed-open.validating.webhook.admission.k8s.io/round_0_index_0", pipeline.SeverityHigh}},
		{"mutating webhook failed open on a configmap", pod("create", "configmaps", map[string]string{"failed-open.mutation.webhook.admission.k8s.io/round_1_index_0": "defaults.example.io"}),
			selectorWant{"failed-open.mutation.webhook.admission.k8s.io/round_1_index_0", pipeline.SeverityMedium}},
		{"unlisted webhook mutated", pod("create", "pods", map[string]string{mutKey: `{"configuration":"debug-helper","webhook":"inject.debug-helper.io","mutated":true}`}),
			selectorWant{mutKey, pipeline.SeverityMedium}},
		{"unlisted webhook added a container", pod("create", "pods", map[string]string{
			mutKey:   `{"configuration":"debug-helper","webhook":"inject.debug-helper.io","mutated":true}`,
			patchKey: `{"configuration":"debug-helper","webhook":"inject.debug-helper.io","patch":[{"op":"add","path":"/spec/containers/-","value":{"name":"helper","image":"ghcr.io/evil/helper:latest"}}],"patchType":"JSONPatch"}`,
		}), selectorWant{mutKey, pipeline.SeverityHigh}},
		{"unlisted webhook only labelled", pod("create", "pods", map[string]string{
			mutKey:   `{"configuration":"team-labeller","webhook":"label.example.io","mutated":true}`,
			patchKey: `{"configuration":"team-labeller","webhook":"label.example.io","patch":[{"op":"add","path":"/metadata/labels/team","value":"shop"}],"patchType":"JSONPatch"}`,
		}), selectorWant{mutKey, pipeline.SeverityMedium}},
		{"listed configuration mutated", pod("create", "pods", map[string]string{mutKey: `{"configuration":"istio-sidecar-injector","webhook":"rev.namespace.sidecar-injector.istio.io","mutated":true}`}), selectorWant{}},
		{"unlisted webhook did not mutate", pod("create", "pods", map[string]string{mutKey: `{"configuration":"debug-helper","webhook":"inject.debug-helper.io","mutated":false}`}), selectorWant{}},
		{"plain pod create", pod("create", "pods", nil), selectorWant{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			selectorCheck(t, d, selectorTestEvent(t, tt.req), tt.want)
		})
	}

	// A configuration/webhook entry vets only that webhook.
	cfg := admissionTestConfig()
	cfg.AllowedWebhooks = []string{"debug-helper/inject.debug-helper.io"}
	one := newAdmissionDetector(cfg)
	selectorCheck(t, one, selectorTestEvent(t, pod("create", "pods", map[string]string{mutKey: `{"configuration":"debug-helper","webhook":"inject.debug-helper.io","mutated":true}`})), selectorWant{})
	selectorCheck(t, one, selectorTestEvent(t, pod("create", "pods", map[string]string{mutKey: `{"configuration":"debug-helper","webhook":"other.debug-helper.io","mutated":true}`})), selectorWant{mutKey, pipeline.SeverityMedium})
}

func TestAdmissionPodSecurity(t *testing.T) {
	d := newAdmissionDetector(admissionTestConfig())
	const nsPrivileged = `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"payments","labels":{"kubernetes.io/metadata.name":"payments","pod-security.kubernetes.io/enforce":"privileged"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}`
	const nsRestricted = `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"payments","labels":{"kubernetes.io/metadata.name":"payments","pod-security.kubernetes.io/enforce":"restricted"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}`
	ns := func(verb, user string, groups []string, level, request, response string) selectorReq {
		return selectorReq{verb: verb, uri: "/api/v1/namespaces/payments?fieldManager=kubectl-label", user: user, groups: groups, ua: admissionKubectlUA,
			resource: "namespaces", name: "payments", level: level, request: request, response: response}
	}
	dev, devGroups := "dave@example.com", []string{"developers", "system:authenticated"}
	admin, adminGroups := "erin@example.com", []string{"platform-admins", "system:authenticated"}
	tests := []struct {
		name string
		req  selectorReq
		want selectorWant
	}{
		{"merge patch nulls the label", ns("patch", dev, devGroups, "Request", `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":null}}}`, ""), selectorWant{"pod-security", pipeline.SeverityHigh}},
		{"merge patch nulls all labels", ns("patch", dev, devGroups, "Request", `{"metadata":{"labels":null}}`, ""), selectorWant{"pod-security", pipeline.SeverityHigh}},
		{"merge patch sets privileged", ns("patch", dev, devGroups, "RequestResponse", `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`, nsPrivileged), selectorWant{"pod-security", pipeline.SeverityHigh}},
		{"JSON patch removes the label", ns("patch", dev, devGroups, "Request", `[{"op":"remove","path":"/metadata/labels/pod-security.kubernetes.io~1enforce"}]`, ""), selectorWant{"pod-security", pipeline.SeverityHigh}},
		{"JSON patch replaces labels without it", ns("patch", dev, devGroups, "Request", `[{"op":"replace","path":"/metadata/labels","value":{"team":"payments"}}]`, ""), selectorWant{"pod-security", pipeline.SeverityHigh}},
		{"admin patch sets privileged", ns("patch", admin, adminGroups, "Request", `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`, ""), selectorWant{"pod-security", pipeline.SeverityMedium}},
		{"update carrying privileged", ns("update", dev, devGroups, "RequestResponse", nsPrivileged, nsPrivileged), selectorWant{"pod-security", pipeline.SeverityMedium}},
		{"patch raising to restricted", ns("patch", dev, devGroups, "RequestResponse", `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`, nsRestricted), selectorWant{}},
		{"patch of another label on a privileged namespace", ns("patch", dev, devGroups, "RequestResponse", `{"metadata":{"labels":{"team":"payments"}}}`, nsPrivileged), selectorWant{}},
		{"update keeping restricted", ns("update", dev, devGroups, "RequestResponse", nsRestricted, nsRestricted), selectorWant{}},
		{"Metadata level shows nothing", ns("patch", dev, devGroups, "Metadata", "", ""), selectorWant{}},
		{"refused patch", func() selectorReq {
			r := ns("patch", dev, devGroups, "Request", `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":null}}}`, "")
			r.code, r.reason, r.message = 403, "Forbidden", `namespaces "payments" is forbidden`
			return r
		}(), selectorWant{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			selectorCheck(t, d, selectorTestEvent(t, tt.req), tt.want)
		})
	}
}

func TestAdmissionTestdata(t *testing.T) {
	d := newAdmissionDetector(admissionTestConfig())
	t.Run("map-create-image-rewrite", func(t *testing.T) {
		got := selectorCheck(t, d, loadTestEvent(t, filepath.Join("admission", "map-create-image-rewrite.json")), selectorWant{"change", pipeline.SeverityCritical})
		for _, want := range []string{"rules.resources=pods", "spec.failurePolicy=Ignore", "spec.mutations=image"} {
			if !selectorHasEvidence(got[0], want) {
				t.Errorf("evidence %q missing: %+v", want, got[0].Evidence)
			}
		}
		for _, e := range got[0].Evidence[2:] {
			if e.Source != pipeline.FromResponse {
				t.Errorf("evidence %+v not read from the response", e)
			}
		}
	})
	t.Run("namespace-label-removed", func(t *testing.T) {
		selectorCheck(t, d, loadTestEvent(t, filepath.Join("admission", "namespace-label-removed.json")), selectorWant{"pod-security", pipeline.SeverityHigh})
	})
	t.Run("pod-create-webhooks", func(t *testing.T) {
		// istio is vetted; the failed-open validating webhook and the
		// container-adding debug-helper are not.
		got := runDetector(d, loadTestEvent(t, filepath.Join("admission", "pod-create-webhooks.json")))
		if len(got) != 2 {
			t.Fatalf("want 2 findings, got %d: %+v", len(got), got)
		}
		if got[0].Severity != pipeline.SeverityHigh || !strings.Contains(got[0].Summary, "failed open") {
			t.Errorf("first finding: %s %s", got[0].Severity, got[0].Summary)
		}
		if got[1].Severity != pipeline.SeverityHigh || !strings.Contains(got[1].Summary, "debug-helper") || !strings.Contains(got[1].Summary, "containers") {
			t.Errorf("second finding: %s %s", got[1].Severity, got[1].Summary)
		}
	})
}

func TestAdmissionConfigValidate(t *testing.T) {
	if err := defaultAdmissionConfig().validate("admission_policy_change"); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := defaultAdmissionConfig()
	bad.AllowedWebhooks = []string{"a/b/c"}
	bad.ProtectedResources = []string{"pods/exec"}
	bad.AdminIdentities.Groups = []string{""}
	bad.InjectionSeverity = 7
	err := bad.validate("admission_policy_change")
	if err == nil {
		t.Fatal("want errors")
	}
	for _, key := range []string{
		"admission_policy_change.allowed_webhooks[0]", "admission_policy_change.protected_resources[0]",
		"admission_policy_change.admin_identities.groups[0]", "admission_policy_change.injection_severity",
	} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	cfg, err := ParseConfig([]byte("admission_policy_change:\n  admin_identities:\n    prefixes: [\"system:serviceaccount:argocd:\"]\n  allowed_webhooks: [istio-sidecar-injector]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.AdmissionPolicy.AdminIdentities.Prefixes; len(got) != 1 || got[0] != "system:serviceaccount:argocd:" {
		t.Errorf("prefixes = %v", got)
	}
}

func BenchmarkAdmissionDetect(b *testing.B) {
	d := newAdmissionDetector(admissionTestConfig())
	cases := []struct {
		name string
		req  selectorReq
	}{
		{"get", selectorReq{verb: "get", uri: "/api/v1/namespaces/shop/pods/cart-1", user: "alice@example.com", ua: admissionKubectlUA, resource: "pods", ns: "shop", name: "cart-1"}},
		{"pod_create_vetted_mutation", selectorReq{verb: "create", uri: "/api/v1/namespaces/shop/pods", user: "system:serviceaccount:kube-system:replicaset-controller", ua: "kube-controller-manager/v1.35.2", resource: "pods", ns: "shop", code: 201,
			annotations: map[string]string{"mutation.webhook.admission.k8s.io/round_0_index_0": `{"configuration":"istio-sidecar-injector","webhook":"rev.namespace.sidecar-injector.istio.io","mutated":true}`}}},
		{"policy_create", admissionWrite("create", "mutatingadmissionpolicies", "sidecar", "system:serviceaccount:ci:deployer", nil, "Request", admissionMAPSidecar, "")},
	}
	for _, c := range cases {
		ev := selectorTestEvent(b, c.req)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			out := make([]pipeline.Finding, 0, 4)
			for b.Loop() {
				out = d.Detect(ev, out[:0])
			}
		})
	}
}
