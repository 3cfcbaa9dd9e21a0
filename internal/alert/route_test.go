package alert

import (
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

const routingConfig = `
route:
  receiver: default
  group_by: [cluster]
  routes:
    # detector, with continue: token findings also fall through.
    - matchers: ['detector=~"(stale|legacy)-token|token-replay"']
      receiver: tokens
      continue: true
    # severity >= and cluster; the child inherits the receiver.
    - matchers: ['severity>=high', 'cluster=prod-eu1']
      receiver: prod-high
      routes:
        - matchers: ['namespace=~"kube-.*"']
          receiver: platform
        - matchers: ['user!~"system:serviceaccount:.*"']
    # negation: everything not from staging.
    - matchers: ['cluster!=staging', 'tag!=""']
      receiver: not-staging
receivers:
  - name: default
    stdout: {}
  - name: tokens
    stdout: {}
  - name: prod-high
    stdout: {}
  - name: platform
    stdout: {}
  - name: not-staging
    stdout: {}
`

func TestRouteMatching(t *testing.T) {
	cfg, err := ParseConfig([]byte(routingConfig))
	if err != nil {
		t.Fatal(err)
	}
	root := compileRoute(cfg.Route, nil, "0")
	f := func(name string, edit func(*pipeline.Finding), detector, want string) {
		t.Helper()
		fd := fixture(detector)
		if edit != nil {
			edit(&fd)
		}
		var got []string
		for _, r := range root.match(&fd, nil) {
			got = append(got, r.id+":"+r.receiver)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s: routed to %q, want %q", name, strings.Join(got, " "), want)
		}
	}
	// token-replay, critical, prod-eu1, payments, service account: tokens
	// (continue), then prod-high's children: not kube-*, user is a
	// service account, so the prod-high node itself keeps it.
	f("continue fan-out into inherited parent", nil, "token-replay", "0.0:tokens 0.1:prod-high")
	f("regex anchored", func(f *pipeline.Finding) { f.Namespace = "not-kube-system" }, "token-replay", "0.0:tokens 0.1:prod-high")
	f("regex child", func(f *pipeline.Finding) { f.Namespace = "kube-system" }, "token-replay", "0.0:tokens 0.1.0:platform")
	// anonymous-access, critical, prod-eu1, kube-system.
	f("severity and namespace", nil, "anonymous-access", "0.1.0:platform")
	f("negated regex child inherits receiver", func(f *pipeline.Finding) { f.Namespace = "default" }, "anonymous-access", "0.1.1:prod-high")
	f("severity below threshold", func(f *pipeline.Finding) { f.Severity = pipeline.SeverityMedium }, "anonymous-access", "0.2:not-staging")
	f("severity exactly high", func(f *pipeline.Finding) { f.Severity = pipeline.SeverityHigh; f.Namespace = "" }, "anonymous-access", "0.1.1:prod-high")
	// apparmor-unconfined: medium, staging: negation excludes it, default.
	f("negation excludes staging", nil, "apparmor-unconfined", "0:default")
	f("empty tag fails tag!=\"\"", func(f *pipeline.Finding) { f.Cluster = "dev"; f.MITRE = "" }, "apparmor-unconfined", "0:default")
	f("other cluster", func(f *pipeline.Finding) { f.Cluster = "prod-us2" }, "apparmor-unconfined", "0.2:not-staging")
	f("legacy-token prod-us2", nil, "legacy-token", "0.0:tokens 0.2:not-staging")
}

func TestParseMatcher(t *testing.T) {
	f := func(in string, wantErr bool, finding pipeline.Finding, want bool) {
		t.Helper()
		m, err := ParseMatcher(in)
		if (err != nil) != wantErr {
			t.Fatalf("ParseMatcher(%q) error = %v", in, err)
		}
		if err == nil && m.Matches(&finding) != want {
			t.Errorf("%q matches %s/%s = %v, want %v", in, finding.Detector, finding.Severity, !want, want)
		}
	}
	anon := fixture("anonymous-access")
	f(`detector="anonymous-access"`, false, anon, true)
	f(`detector = anonymous-access`, false, anon, true)
	f(`detector=~anonymous`, false, anon, false) // anchored
	f(`detector=~anonymous.*`, false, anon, true)
	f(`detector!~anonymous.*`, false, anon, false)
	f(`severity=critical`, false, anon, true)
	f(`severity!=critical`, false, anon, false)
	f(`severity>=medium`, false, anon, true)
	f(`severity>=CRITICAL`, false, anon, true)
	f(`user="system:anonymous"`, false, anon, true)
	f(`tag=T1078.001`, false, anon, true)
	f(`severity>high`, true, anon, false)
	f(`=x`, true, anon, false)
	f(`detector`, true, anon, false)
	f(`detector=~"[a-"`, true, anon, false)
	f(`detector="unterminated`, true, anon, false)
}
