package rules

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// createEvent is a successful create by a human in namespace ns (empty for
// a cluster-scoped resource), its request body given, at RequestResponse
// level without a response body, so object() reads the request.
func createEvent(t *testing.T, resource, ns, body string) *pipeline.Event {
	t.Helper()
	uri := "/api/v1/" + resource
	if ns != "" {
		uri = "/api/v1/namespaces/" + ns + "/" + resource
	}
	return decode(t, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"m-1","stage":"ResponseComplete",
"requestURI":%q,"verb":"create","user":{"username":"bob@example.com","groups":["devs","system:authenticated"]},"sourceIPs":["192.168.50.41"],
"objectRef":{"resource":%q,"namespace":%q,"apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},
"requestObject":%s,"annotations":{"authorization.k8s.io/decision":"allow"}}`, uri, resource, ns, body))
}

// evalErrors runs every enabled rule of s on ev, index or not, and returns
// the errors.
func evalErrors(s *Set, ev *pipeline.Event) []string {
	st := s.pool.Get().(*state)
	defer s.pool.Put(st)
	st.reset(ev, true)
	defer st.release()
	var errs []string
	for _, r := range s.rules {
		if _, _, err := s.match(st, r); r.enabled && err != nil {
			errs = append(errs, r.name+": "+exprMessage(err))
		}
	}
	return errs
}

// TestDefaultPackMissingFields runs the default pack on objects that lack
// fields a client may leave out (a container's image or securityContext, a
// pod's spec, an object's metadata): each bad case must fire its rule, a
// look-alike must stay quiet, and no rule may fail on either. Before
// missing fields read as zero values, a privileged pod whose container had
// no image made privileged-pod fail, and so no finding.
func TestDefaultPackMissingFields(t *testing.T) {
	s, err := LoadDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := func(name, resource, ns, body string, want ...string) {
		t.Helper()
		ev := createEvent(t, resource, ns, body)
		if errs := evalErrors(s, ev); len(errs) > 0 {
			t.Errorf("%s: rules failed:\n  %s", name, strings.Join(errs, "\n  "))
		}
		got := fired(s, ev)
		for i := range want {
			want[i] = "rule:" + want[i]
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: fired %v, want %v", name, got, want)
		}
	}
	// Pods: containers without image or securityContext.
	f("privileged container without image", "pods", "tools",
		`{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}}`,
		"privileged-pod")
	f("privileged init container, app container without securityContext, no images", "pods", "tools",
		`{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app"}],"initContainers":[{"name":"init","securityContext":{"privileged":true}}]}}`,
		"privileged-pod")
	f("unprivileged container without image", "pods", "tools",
		`{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","securityContext":{"privileged":false}}]}}`)
	f("container without image or securityContext", "pods", "tools",
		`{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}`)
	f("hostNetwork pod, container without image", "pods", "tools",
		`{"kind":"Pod","spec":{"hostNetwork":true,"containers":[{"name":"c"}]}}`,
		"host-network-pod")
	f("pod without hostNetwork, container without image", "pods", "tools",
		`{"kind":"Pod","spec":{"hostNetwork":false,"containers":[{"name":"c"}]}}`)
	f("hostPID pod, container without image", "pods", "tools",
		`{"kind":"Pod","spec":{"hostPID":true,"containers":[{"name":"c"}]}}`,
		"host-pid-pod")
	f("hostIPC pod, container without image", "pods", "tools",
		`{"kind":"Pod","spec":{"hostIPC":true,"containers":[{"name":"c"}]}}`,
		"host-ipc-pod")
	f("host / mounted, container without image", "pods", "tools",
		`{"kind":"Pod","spec":{"containers":[{"name":"c"}],"volumes":[{"name":"a"},{"name":"root","hostPath":{"path":"/"}}]}}`,
		"sensitive-hostpath-mount")
	f("volumes without hostPath, container without image", "pods", "tools",
		`{"kind":"Pod","spec":{"containers":[{"name":"c"}],"volumes":[{"name":"a"},{"name":"b","emptyDir":{}}]}}`)
	f("seccomp Unconfined for the pod, container without securityContext", "pods", "tools",
		`{"kind":"Pod","spec":{"securityContext":{"seccompProfile":{"type":"Unconfined"}},"containers":[{"name":"c"}]}}`,
		"seccomp-unconfined-pod")
	f("seccomp RuntimeDefault for the pod, container without securityContext", "pods", "tools",
		`{"kind":"Pod","spec":{"securityContext":{"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"c"}]}}`)
	// Pods without spec, objects without metadata.
	f("pod without spec or metadata in kube-system", "pods", "kube-system", `{"kind":"Pod"}`,
		"pod-in-kube-namespace")
	f("pod without spec or metadata", "pods", "tools", `{"kind":"Pod"}`)
	f("service account without metadata in kube-system", "serviceaccounts", "kube-system", `{"kind":"ServiceAccount"}`,
		"serviceaccount-in-kube-namespace")
	f("known service account in kube-system", "serviceaccounts", "kube-system", `{"kind":"ServiceAccount","metadata":{"name":"coredns"}}`)
	f("configmap without metadata holding a credential", "configmaps", "tools", `{"kind":"ConfigMap","data":{"aws_secret_access_key":"x"}}`,
		"configmap-with-credentials")
	f("configmap without metadata or data", "configmaps", "tools", `{"kind":"ConfigMap"}`)
	f("NodePort service without metadata", "services", "tools", `{"kind":"Service","spec":{"type":"NodePort"}}`,
		"nodeport-service")
	f("service without type", "services", "tools", `{"kind":"Service","spec":{}}`)
	f("ingress without spec", "ingresses", "tools", `{"kind":"Ingress"}`,
		"ingress-without-tls")
	f("ingress with TLS, without metadata", "ingresses", "tools", `{"kind":"Ingress","spec":{"tls":[{"hosts":["a.example.com"]}]}}`)
	f("cluster-admin binding without metadata or subjects", "clusterrolebindings", "", `{"kind":"ClusterRoleBinding","roleRef":{"name":"cluster-admin"}}`,
		"cluster-admin-binding")
	f("binding without roleRef", "clusterrolebindings", "", `{"kind":"ClusterRoleBinding"}`)
	// Roles: rules without verbs or resources, and a null rule.
	f("cluster role rule without verbs, all resources", "clusterroles", "", `{"kind":"ClusterRole","rules":[{"resources":["*"]}]}`,
		"wildcard-role")
	f("role with a null rule and a wildcard one", "roles", "tools", `{"kind":"Role","rules":[null,{"verbs":["*"],"resources":["pods"]}]}`,
		"wildcard-role")
	f("cluster role rule without resources", "clusterroles", "", `{"kind":"ClusterRole","rules":[{"verbs":["get"]}]}`)
	f("cluster role without rules or metadata", "clusterroles", "", `{"kind":"ClusterRole"}`)
	f("namespace enforcing privileged, without other labels", "namespaces", "",
		`{"kind":"Namespace","metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`,
		"pod-security-enforce-weakened")
	f("namespace without metadata", "namespaces", "", `{"kind":"Namespace"}`)
}

// TestMissingFieldsReadAsZero checks the rewriting itself: wherever expr
// needs a string, number, bool, list or map, a missing body value is the
// zero value of that type; where expr accepts nil (==, in, matches, ...) a
// missing value is still nil, so no verdict that evaluated before changes;
// a value of the wrong type still fails.
func TestMissingFieldsReadAsZero(t *testing.T) {
	ev := createEvent(t, "pods", "tools", `{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"},null]}}`)
	f := func(cond string, want bool, wantErr string) {
		t.Helper()
		s := load(t, fmt.Sprintf("rules:\n  - rule: r\n    severity: low\n    condition: '%s'\n    output: '{{ %s }}'\n",
			strings.ReplaceAll(cond, "'", "''"), strings.ReplaceAll(cond, "'", "''")))
		errs := evalErrors(s, ev)
		switch {
		case wantErr != "":
			if len(errs) != 1 || !strings.Contains(errs[0], wantErr) {
				t.Errorf("%s: errors %v, want one containing %q", cond, errs, wantErr)
			}
		case len(errs) > 0:
			t.Errorf("%s: %v", cond, errs)
		default:
			if got := len(fired(s, ev)) == 1; got != want {
				t.Errorf("%s = %v, want %v", cond, got, want)
			}
		}
	}
	// Strings.
	f(`hasPrefix(object("spec.containers[0].image"), "")`, true, "")
	f(`lower(object("metadata.namespace")) + "/x" == "/x"`, true, "")
	f(`object("spec.nodeName") + "/x" == "/x"`, true, "")
	f(`glob(object("spec.nodeName"), "*")`, true, "")
	f(`!cidr(object("status.podIP"), "10.0.0.0/8")`, true, "")
	f(`any(object("spec.containers"), {let c = #; !hasSuffix(c.image, ":latest")})`, true, "")
	// Members of missing objects, and null list elements.
	f(`any(object("spec.containers"), {#.securityContext.privileged})`, false, "")
	f(`all(object("spec.containers"), {#.securityContext.privileged != true})`, true, "")
	f(`object("spec.securityContext").runAsUser < 1`, true, "")
	f(`object("spec.containers")[1].name == nil`, true, "")
	f(`object("spec.affinity")["nodeAffinity"] == nil`, true, "")
	// Numbers and bools.
	f(`object("spec.replicas") < 1`, true, "")
	f(`object("spec.replicas") + 1 == 1`, true, "")
	f(`-object("spec.priority") == 0`, true, "")
	f(`int(object("spec.priority")) == 0`, true, "")
	f(`!object("spec.hostNetwork")`, true, "")
	f(`object("spec.hostNetwork") ? false : true`, true, "")
	f(`object("spec.hostNetwork")`, false, "")
	f(`object("spec.hostNetwork") || object("spec.hostPID")`, false, "")
	// Lists and maps.
	f(`len(object("spec.volumes")) == 0`, true, "")
	f(`!any(object("spec.volumes"), {#.hostPath != nil})`, true, "")
	f(`count(object("spec.volumes"), {true}) == 0`, true, "")
	f(`len(concat(object("spec.volumes"), object("spec.containers"))) == 2`, true, "")
	f(`len(keys(object("metadata.labels"))) == 0`, true, "")
	f(`first(object("spec.volumes")) == nil`, true, "")
	f(`object("spec.volumes")[0:1] == []`, true, "")
	// Where expr takes nil, nil it stays: missing is not empty.
	f(`object("spec.containers[0].image") == ""`, false, "")
	f(`object("spec.automountServiceAccountToken") != false`, true, "")
	f(`object("spec.hostNetwork") == false`, false, "")
	f(`object("spec.containers[0].image") matches "^$"`, false, "")
	f(`!("app" in object("metadata.labels"))`, true, "")
	f(`object("spec.nodeName") == nil && !has("spec.nodeName")`, true, "")
	f(`(object("spec.nodeName") ?? "default") == "default"`, true, "")
	// A value of the wrong type is not a missing one.
	f(`len(object("kind")) == 3`, true, "")
	f(`object("kind") > 3`, false, "invalid operation")
	f(`object("spec.replicas") < object("spec.minReplicas")`, false, "invalid operation")
}

// TestEvalErrorLogThrottled makes a rule fail on every event: every error
// is counted, and logged at most once per EvalErrorLogInterval with the
// number left unlogged.
func TestEvalErrorLogThrottled(t *testing.T) {
	s := load(t, "rules:\n  - rule: bad\n    severity: low\n    condition: object(\"kind\") > 3\n")
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	s.Instrument(slog.New(slog.NewTextHandler(&logs, nil)), m)
	ev := createEvent(t, "pods", "tools", `{"kind":"Pod"}`)
	for range 100 {
		s.Detect(ev, nil)
	}
	if n := counterValue(t, m.evalErrors.WithLabelValues("bad")); n != 100 {
		t.Errorf("eval errors = %v, want 100", n)
	}
	if got := strings.Count(logs.String(), "evaluating rule"); got != 1 {
		t.Fatalf("%d log lines, want 1:\n%s", got, logs.String())
	}
	s.errLogs[0].next.Store(0) // the interval has passed
	s.Detect(ev, nil)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "rule=bad") || !strings.Contains(lines[1], "unlogged_errors=99") {
		t.Errorf("log:\n%s\nwant a second line for rule bad with unlogged_errors=99", logs.String())
	}
}
