package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/detectors/rules"
)

func TestRulesCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "../../internal/detectors/rules/testdata/exec.yaml"
	bad := write("bad.yaml", `rules:
  - rule: typo
    severity: low
    condition: verb == "get" && objectRef.resorce == "pods"
  - rule: loud
    severity: extreme
    condition: verb == "get"
`)
	failing := write("failing.yaml", `rules:
  - rule: wrong-example
    severity: low
    condition: verb == "delete"
    examples:
      match:
        - {verb: get, objectRef: {resource: pods}, responseStatus: {code: 200}}
`)
	// Forty macros, each ORing the previous one with itself: refused at
	// the first that exceeds the bound, instead of never returning.
	var bomb strings.Builder
	bomb.WriteString("macros:\n  - macro: m1\n    condition: verb == \"get\"\n")
	for i := 2; i <= 40; i++ {
		fmt.Fprintf(&bomb, "  - macro: m%d\n    condition: m%d or m%d\n", i, i-1, i-1)
	}
	bomb.WriteString("rules:\n  - rule: bomb\n    severity: low\n    condition: m40\n")
	bombPath := write("bomb.yaml", bomb.String())
	f := func(args []string, wantErr bool, wantOut ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := dispatch(args, &stdout, &stderr)
		if (err != nil) != wantErr {
			t.Fatalf("%v: err = %v, want error %v\nstdout:\n%s\nstderr:\n%s", args, err, wantErr, stdout.String(), stderr.String())
		}
		all := stdout.String() + stderr.String()
		if err != nil {
			all += err.Error()
		}
		for _, w := range wantOut {
			if !strings.Contains(all, w) {
				t.Errorf("%v: output lacks %q\nstdout:\n%s\nstderr:\n%s", args, w, stdout.String(), stderr.String())
			}
		}
	}
	f([]string{"rules", "check"}, false, "ok: ")
	f([]string{"rules", "check", good}, false, "ok: ", "(1 user files)")
	f([]string{"rules", "check", good, bad}, true,
		bad+":4:43: rule typo: type rules.ObjectRefEnv has no field resorce",
		bad+`:6:15: rule "loud": unknown severity "extreme"`,
		"2 problems")
	f([]string{"rules", "check", filepath.Join(dir, "missing.yaml")}, true, "missing.yaml")
	f([]string{"rules", "check", bombPath}, true,
		fmt.Sprintf("%s:29:16: macro m14 expands to more than %d expression nodes", bombPath, rules.MaxExpandedNodes), "1 problems")
	f([]string{"rules", "test", "-no-default", "-v", good}, false,
		"PASS shell-into-pod match[0]", "PASS shell-into-pod nomatch[1]", "3 passed, 0 failed")
	f([]string{"rules", "test", "-no-default", failing}, true,
		"FAIL wrong-example match[0] ("+failing+":7:11): did not fire: the condition is false", "0 passed, 1 failed")
	f([]string{"rules", "test"}, false, "0 failed")
	f([]string{"rules", "lint"}, true, "unknown subcommand")
}
