package rules

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/redact"
)

// rbacEvent is a successful write of an RBAC object as the apiserver logs
// it: at Metadata level without a body, at Request level with the object
// as sent, at RequestResponse level with the stored object as well. ns is
// "" for cluster-scoped resources; name is "" for a create.
func rbacEvent(level, verb, resource, ns, name, user, obj string) string {
	uri := "/apis/rbac.authorization.k8s.io/v1/"
	if ns != "" {
		uri += "namespaces/" + ns + "/"
	}
	uri += resource
	if name != "" {
		uri += "/" + name
	}
	code := 200
	if verb == "create" {
		code = 201
	}
	ref := fmt.Sprintf(`{"resource":%q,"namespace":%q,"name":%q,"apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"}`, resource, ns, name)
	var body string
	switch level {
	case "Request":
		body = `,"requestObject":` + obj
	case "RequestResponse":
		stored := strings.Replace(obj, `"metadata":{`, `"metadata":{"uid":"0a4c8e2f-6b9d-4a3c-e5f1-7b1d5f9a3c84","resourceVersion":"48330471",`, 1)
		body = `,"requestObject":` + obj + `,"responseObject":` + stored
	}
	return credentialEvent(level, "ResponseComplete", verb, uri, user, ref, code, body)
}

// TestRBACEscalation covers grants and bindings that raise privileges, at
// the levels that carry the object, for create, update and a merge patch,
// after redaction, with each event raising each signal once: a wildcard
// grant is wildcard-role's, a cluster-admin ClusterRoleBinding
// cluster-admin-binding's.
func TestRBACEscalation(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f := func(name, js string, want ...string) { t.Helper(); checkFired(t, s, r, name, js, want...) }
	clusterRole := func(rules string) string {
		return `{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"r"},"rules":` + rules + `}`
	}
	role := func(rules string) string {
		return `{"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"r","namespace":"payments"},"rules":` + rules + `}`
	}
	rule := func(groups, resources, verbs string) string {
		return fmt.Sprintf(`{"apiGroups":[%s],"resources":[%s],"verbs":[%s]}`, groups, resources, verbs)
	}

	for _, level := range []string{"Request", "RequestResponse"} {
		for _, verb := range []string{"create", "update"} {
			name := ""
			if verb == "update" {
				name = "r"
			}
			at := " (" + level + ", " + verb + ")"
			cr := func(rules string) string {
				return rbacEvent(level, verb, "clusterroles", "", name, userBob, clusterRole(rules))
			}
			ro := func(rules string) string {
				return rbacEvent(level, verb, "roles", "payments", name, userBob, role(rules))
			}
			// write privileges are reported on create only
			writes := func(rules ...string) []string {
				if verb == "create" {
					return append(rules, "role-with-write-privileges")
				}
				return rules
			}

			f("escalate"+at, cr("["+rule(`"rbac.authorization.k8s.io"`, `"clusterroles"`, `"escalate"`)+"]"), "role-grants-escalation")
			f("bind"+at, ro("["+rule(`"rbac.authorization.k8s.io"`, `"roles","clusterroles"`, `"bind"`)+"]"), "role-grants-escalation")
			f("nodes/proxy get"+at, cr("["+rule(`""`, `"nodes/proxy"`, `"get"`)+"]"), "role-grants-escalation")
			f("nodes/* list"+at, cr("["+rule(`""`, `"nodes/*"`, `"list"`)+"]"), "role-grants-escalation")
			f("token create"+at, ro("["+rule(`""`, `"serviceaccounts/token"`, `"create"`)+"]"), writes("role-grants-escalation")...)
			f("token get"+at, ro("["+rule(`""`, `"serviceaccounts","serviceaccounts/token"`, `"get","list"`)+"]"))
			f("nodes/metrics"+at, cr("["+rule(`""`, `"nodes","nodes/metrics","nodes/stats"`, `"get","list"`)+"]"))
			f("wildcard verbs on tokens: wildcard-role's"+at, ro("["+rule(`""`, `"serviceaccounts/token"`, `"*"`)+"]"), "wildcard-role")
			f("impersonate: role-grants-impersonate's"+at, cr("["+rule(`""`, `"users","groups"`, `"impersonate"`)+"]"), "role-grants-impersonate")
			f("pods/exec: role-grants-pod-exec's"+at, ro("["+rule(`""`, `"pods/exec"`, `"create","get"`)+"]"), writes("role-grants-pod-exec")...)

			f("cluster-wide secret read"+at, cr("["+rule(`""`, `"secrets"`, `"get","list","watch"`)+"]"), "clusterrole-grants-secret-read")
			f("secret watch only"+at, cr("["+rule(`""`, `"secrets","configmaps"`, `"watch"`)+"]"), "clusterrole-grants-secret-read")
			f("named secret"+at, cr(`[{"apiGroups":[""],"resources":["secrets"],"resourceNames":["ca-bundle"],"verbs":["get"]}]`))
			f("secrets in another group"+at, cr("["+rule(`"example.com"`, `"secrets"`, `"get","list"`)+"]"))
			f("secret read in a Role"+at, ro("["+rule(`""`, `"secrets"`, `"get","list"`)+"]"))
			f("secret writes without reads"+at, cr("["+rule(`""`, `"secrets"`, `"create"`)+"]"), writes()...)
		}
	}

	// Aggregation.
	aggregated := func(labels, selectors, rules string) string {
		obj := `{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"r","labels":{` + labels + `}}`
		if selectors != "" {
			obj += `,"aggregationRule":{"clusterRoleSelectors":[` + selectors + `]}`
		}
		return rbacEvent("Request", "create", "clusterroles", "", "", userBob, obj+`,"rules":`+rules+`}`)
	}
	f("secrets into view", aggregated(`"rbac.authorization.k8s.io/aggregate-to-view":"true"`, "", "["+rule(`""`, `"secrets"`, `"get","list"`)+"]"),
		"aggregated-role-escalation")
	f("exec into edit", aggregated(`"rbac.authorization.k8s.io/aggregate-to-edit":"true"`, "", "["+rule(`""`, `"pods/exec"`, `"create"`)+"]"),
		"aggregated-role-escalation", "role-grants-pod-exec", "role-with-write-privileges")
	f("CRDs into admin", aggregated(`"rbac.authorization.k8s.io/aggregate-to-admin":"true"`, "", "["+rule(`"example.com"`, `"widgets"`, `"get","create"`)+"]"),
		"role-with-write-privileges")
	f("aggregation label set to false", aggregated(`"rbac.authorization.k8s.io/aggregate-to-view":"false"`, "", "["+rule(`""`, `"secrets"`, `"get","list"`)+"]"),
		"clusterrole-grants-secret-read")
	f("empty selector aggregates everything", aggregated("", `{}`, "null"), "aggregated-role-escalation")
	f("empty matchLabels", aggregated("", `{"matchLabels":{}}`, "[]"), "aggregated-role-escalation")
	f("built-in roles aggregated", aggregated("", `{"matchLabels":{"kubernetes.io/bootstrapping":"rbac-defaults"}}`, "null"), "aggregated-role-escalation")
	f("team aggregation", aggregated("", `{"matchLabels":{"example.com/aggregate-to-monitoring":"true"}}`, "null"))
	f("expression selector", aggregated("", `{"matchExpressions":[{"key":"team","operator":"In","values":["a"]}]}`, "null"))

	// Bindings.
	binding := func(kind, ns, role, subjects string) string {
		meta := `{"name":"b"}`
		resource := "clusterrolebindings"
		if ns != "" {
			meta = `{"name":"b","namespace":"` + ns + `"}`
			resource = "rolebindings"
		}
		obj := fmt.Sprintf(`{"kind":%q,"apiVersion":"rbac.authorization.k8s.io/v1","metadata":%s,"subjects":[%s],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":%q}}`, kind, meta, subjects, role)
		return rbacEvent("Request", "create", resource, ns, "", userBob, obj)
	}
	const jane = `{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"jane.doe@example.com"}`
	const nodes = `{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"system:nodes"}`
	const masters = `{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"system:masters"}`
	for _, role := range []string{"admin", "edit", "system:kube-controller-manager", "system:controller:clusterrole-aggregation-controller", "system:node", "system:kubelet-api-admin", "system:masters"} {
		f("ClusterRoleBinding to "+role, binding("ClusterRoleBinding", "", role, jane), "privileged-role-binding")
		f("RoleBinding in kube-system to "+role, binding("RoleBinding", "kube-system", role, jane), "privileged-role-binding")
	}
	f("ClusterRoleBinding to cluster-admin: cluster-admin-binding's", binding("ClusterRoleBinding", "", "cluster-admin", jane), "cluster-admin-binding")
	f("ClusterRoleBinding of cluster-admin to system:masters: cluster-admin-binding's", binding("ClusterRoleBinding", "", "cluster-admin", masters), "cluster-admin-binding")
	f("RoleBinding in kube-system to cluster-admin", binding("RoleBinding", "kube-system", "cluster-admin", jane), "privileged-role-binding")
	f("view to system:nodes", binding("ClusterRoleBinding", "", "view", nodes), "privileged-role-binding")
	f("RoleBinding of view to system:masters", binding("RoleBinding", "payments", "view", masters), "privileged-role-binding")
	f("RoleBinding of admin to system:nodes", binding("RoleBinding", "payments", "admin", nodes), "privileged-role-binding")
	f("view cluster-wide", binding("ClusterRoleBinding", "", "view", jane))
	f("RoleBinding of view in kube-system", binding("RoleBinding", "kube-system", "view", jane))
	for _, role := range []string{"admin", "edit", "cluster-admin"} {
		f("RoleBinding in payments to "+role, binding("RoleBinding", "payments", role, jane), "namespace-admin-binding")
	}
	f("RoleBinding in payments to a team role", binding("RoleBinding", "payments", "payments-deployer", jane))

	// A merge patch changing roleRef is judged by what it sets; at
	// RequestResponse by the stored binding.
	patchRef := `{"resource":"clusterrolebindings","name":"b","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"}`
	patchURI := "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/b"
	f("merge patch to edit", credentialEvent("Request", "ResponseComplete", "patch", patchURI, userBob, patchRef, 200, `,"requestObject":{"roleRef":{"name":"edit"}}`),
		"privileged-role-binding")
	f("JSON patch, stored binding to edit", credentialEvent("RequestResponse", "ResponseComplete", "patch", patchURI, userBob, patchRef, 200,
		`,"requestObject":[{"op":"add","path":"/subjects/-","value":{"kind":"User","name":"jane.doe@example.com"}}],"responseObject":{"kind":"ClusterRoleBinding","metadata":{"name":"b"},"subjects":[`+jane+`],"roleRef":{"kind":"ClusterRole","name":"edit"}}`),
		"privileged-role-binding")

	f("JSON patch at Request level: the result is not logged", credentialEvent("Request", "ResponseComplete", "patch", patchURI, userBob, patchRef, 200,
		`,"requestObject":[{"op":"replace","path":"/roleRef/name","value":"edit"}]`))
	roleRef := `{"resource":"clusterroles","name":"r","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"}`
	f("JSON patch of a ClusterRole at Request level", credentialEvent("Request", "ResponseComplete", "patch", "/apis/rbac.authorization.k8s.io/v1/clusterroles/r", userBob, roleRef, 200,
		`,"requestObject":[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["nodes/proxy"],"verbs":["get"]}}]`))

	// Who writes: the cluster's own controllers and refused requests are quiet.
	f("aggregation controller updates admin", rbacEvent("Request", "update", "clusterroles", "", "admin",
		`{"username":"system:serviceaccount:kube-system:clusterrole-aggregation-controller","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]}`,
		clusterRole("["+rule(`""`, `"serviceaccounts/token"`, `"create"`)+","+rule(`""`, `"secrets"`, `"get","list","watch"`)+"]")))
	f("apiserver reconciles a binding", rbacEvent("Request", "update", "clusterrolebindings", "", "system:kube-controller-manager",
		`{"username":"system:apiserver","groups":["system:authenticated","system:masters"]}`,
		`{"kind":"ClusterRoleBinding","metadata":{"name":"system:kube-controller-manager"},"subjects":[{"kind":"User","name":"system:kube-controller-manager"}],"roleRef":{"kind":"ClusterRole","name":"system:kube-controller-manager"}}`))
	refused := strings.Replace(binding("ClusterRoleBinding", "", "admin", jane), `"code":201`, `"code":403`, 1)
	f("refused binding", strings.Replace(refused, `"decision":"allow"`, `"decision":"forbid"`, 1))

	// Metadata level carries no object: nothing to judge, and nothing fails.
	f("ClusterRole at Metadata level", rbacEvent("Metadata", "create", "clusterroles", "", "", userBob, ""))
	f("binding at Metadata level", rbacEvent("Metadata", "create", "clusterrolebindings", "", "", userBob, ""))
}
