package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/expr-lang/expr/vm"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// reflectiveOps are the instructions that read a struct or call a function
// through package reflect.
var reflectiveOps = []vm.Opcode{vm.OpLoadField, vm.OpFetchField, vm.OpLoadMethod, vm.OpMethod, vm.OpCall}

// genericCalls are expr's calls of a builtin through an argument slice,
// which hasPrefix and hasSuffix no longer take.
var genericCalls = []vm.Opcode{vm.OpCall1, vm.OpCall2, vm.OpCall3, vm.OpCallN}

// programs lists every program of s: conditions, exceptions, outputs and
// evidence.
func programs(s *Set) map[string]*vm.Program {
	out := map[string]*vm.Program{}
	for _, r := range s.rules {
		out[r.name+" condition"] = r.cond
		for _, ex := range r.exceptions {
			out[r.name+" exception "+ex.name] = ex.prog
		}
		for _, p := range r.output {
			if p.prog != nil {
				out[r.name+" output"] = p.prog
			}
		}
		for _, e := range r.evidence {
			if e.prog != nil {
				out[r.name+" evidence "+e.field] = e.prog
			}
		}
	}
	return out
}

// TestNoReflectiveReads: every program of the default pack and of the
// generated rules reads fields and calls the Env's functions directly.
// csrSubject is the exception: it returns a struct whose fields expr
// reads by reflection, on CertificateSigningRequest events only.
func TestNoReflectiveReads(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, File{Name: "gen.yaml", Data: generatedRules(20)}, File{Name: "user.yaml", Data: userRules(16)})
	s, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, p := range programs(s) {
		n++
		lines := strings.Split(p.Disassemble(), "\n")
		for i, op := range p.Bytecode {
			if strings.Contains(p.Source().String(), "csrSubject(") {
				continue
			}
			if slices.Contains(reflectiveOps, op) || slices.Contains(genericCalls, op) && strings.Contains(lines[i], " has") {
				t.Errorf("%s: %s reads through reflection", name, strings.TrimSpace(lines[i]))
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d programs", n)
	}
}

// TestDirectAccessSemantics runs conditions that read every accessor, a
// whole struct, a let variable and the body functions, on one event, and
// checks each verdict; the boxed values are per event, so a second event
// sees its own.
func TestDirectAccessSemantics(t *testing.T) {
	s := load(t, `
rules:
  - rule: fields
    severity: low
    condition: >
      cluster == "prod" && verb == "create" && stage == "ResponseComplete" && level == "RequestResponse" &&
      auditID == "a1" && requestURI startsWith "/api/v1/namespaces/team/pods" && path == "/api/v1/namespaces/team/pods" &&
      selectors.labelSelector == "app=web" && selectors.fieldSelector == "" &&
      user.username == "alice" && user.uid == "u1" && user.groups == ["dev", "system:authenticated"] && user.extra["k"][0] == "v" &&
      impersonatedUser.username == "" && len(impersonatedUser.groups) == 0 &&
      sourceIPs[0] == "203.0.113.9" && sourceIP == "203.0.113.9" && userAgent == "kubectl/v1.34.0" &&
      objectRef.resource == "pods" && objectRef.subresource == "" && objectRef.namespace == "team" && objectRef.name == "web" &&
      objectRef.apiGroup == "" && objectRef.apiVersion == "v1" && responseStatus.code == 201 && responseStatus.reason == "" &&
      annotations["authorization.k8s.io/decision"] == "allow" && decision == "allow" &&
      user.username == user.username && objectRef.resource + "/" + verb == "pods/create"
  - rule: structs
    severity: low
    condition: user.username == "alice" && objectRef?.resource == "pods" && $env.verb == "create" && (let v = verb; v == "create")
  - rule: functions
    severity: low
    condition: >
      object("spec.containers[0].image") == "nginx" && request("spec.containers[0].image") == "nginx" && response("kind") == nil &&
      has("spec.containers") && !has("spec.hostNetwork") && glob(userAgent, "kubectl/*") && cidr(sourceIP, "203.0.113.0/24") &&
      hasPrefix(userAgent, "kubectl") && hasSuffix(objectRef.name, "eb") && hasPrefix(object("spec.containers[0].image"), "ngi") &&
      csrSubject("").commonName == ""
`)
	ev := decode(t, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete",
"requestURI":"/api/v1/namespaces/team/pods?labelSelector=app%3Dweb","verb":"create",
"user":{"username":"alice","uid":"u1","groups":["dev","system:authenticated"],"extra":{"k":["v"]}},
"sourceIPs":["203.0.113.9"],"userAgent":"kubectl/v1.34.0",
"objectRef":{"resource":"pods","namespace":"team","name":"web","apiVersion":"v1"},
"responseStatus":{"metadata":{},"code":201},
"requestObject":{"kind":"Pod","spec":{"containers":[{"name":"c","image":"nginx"}]}},
"annotations":{"authorization.k8s.io/decision":"allow"}}`)
	if got := fired(s, ev); !slices.Equal(got, []string{"rule:fields", "rule:structs", "rule:functions"}) {
		t.Errorf("fired %v, want all three rules", got)
	}
	other := decode(t, `{"level":"Metadata","auditID":"a2","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"bob"},"objectRef":{"resource":"pods"}}`)
	if got := fired(s, other); len(got) != 0 {
		t.Errorf("fired %v on an event that matches none (a value kept from the previous event?)", got)
	}
	var _ pipeline.Finding
}
