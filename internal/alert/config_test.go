package alert

import (
	"strings"
	"testing"
	"time"
)

const exampleConfig = `
grafana_url: https://grafana.example.com
state_file: /var/lib/auditpipe/alert-state.jsonl
route:
  receiver: console
  group_by: [cluster]
  group_wait: 10s
  routes:
    - receiver: security-slack
      matchers: ['severity>=high']
      continue: true
      routes:
        - matchers: ['namespace=~"kube-.*"']
          receiver: platform-am
    - receiver: hook
      matchers: ['detector=token-replay', 'cluster!=dev']
      repeat_interval: 1h
receivers:
  - name: console
    stdout: {}
  - name: security-slack
    slack:
      webhook_url_env: SLACK_WEBHOOK_URL
      channel: "#security"
  - name: platform-am
    alertmanager:
      url: http://alertmanager:9093
  - name: hook
    webhook:
      url: https://siem.example.com/ingest
`

func TestParseConfigExample(t *testing.T) {
	cfg, err := ParseConfig([]byte(exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(*cfg.Route.GroupWait); got != 10*time.Second {
		t.Errorf("group_wait = %s", got)
	}
	if got := time.Duration(*cfg.Route.RepeatInterval); got != DefaultRepeatInterval {
		t.Errorf("root repeat_interval default = %s", got)
	}
	if cfg.Receivers[2].Alertmanager.ResolveTimeout != Duration(DefaultResolveTimeout) {
		t.Errorf("resolve_timeout default not applied")
	}
	r := compileRoute(cfg.Route, nil, "0")
	hook := r.children[1]
	if hook.groupWait != 10*time.Second || hook.repeatInterval != time.Hour || hook.groupInterval != DefaultGroupInterval {
		t.Errorf("child options not inherited/overridden: wait %s interval %s repeat %s", hook.groupWait, hook.groupInterval, hook.repeatInterval)
	}
	if am := r.children[0].children[0]; am.receiver != "platform-am" || len(am.groupBy) != 1 || am.groupBy[0] != "cluster" {
		t.Errorf("grandchild = %+v", am)
	}
}

func TestParseConfigEmptyIsStdout(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Route.Receiver != "stdout" || cfg.Receivers[0].Stdout == nil {
		t.Errorf("empty config = %+v", cfg)
	}
}

// TestParseConfigRejects checks that each mistake is an error naming its
// key, so the operator knows where to look.
func TestParseConfigRejects(t *testing.T) {
	base := "receivers:\n  - name: s\n    stdout: {}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown top key", "rout:\n  receiver: s\n" + base, "rout: unknown key"},
		{"unknown nested key", "route:\n  receiver: s\n  routes:\n    - recevier: s\n" + base, "route.routes[0].recevier: unknown key"},
		{"literal slack url", "route:\n  receiver: x\nreceivers:\n  - name: x\n    slack:\n      webhook_url: https://hooks.slack.com/services/T/B/C\n", "receivers[0].slack.webhook_url: unknown key"},
		{"invalid regex", "route:\n  receiver: s\n  routes:\n    - matchers: ['namespace=~\"(kube\"']\n" + base, "route.routes[0].matchers[0]"},
		{"unknown label", "route:\n  receiver: s\n  routes:\n    - matchers: ['verb=get']\n" + base, `unknown label "verb"`},
		{"bad severity", "route:\n  receiver: s\n  routes:\n    - matchers: ['severity>=urgent']\n" + base, "route.routes[0].matchers[0]"},
		{">= on other label", "route:\n  receiver: s\n  routes:\n    - matchers: ['cluster>=a']\n" + base, ">= applies only to severity"},
		{"missing receiver", "route:\n  receiver: s\n  routes:\n    - receiver: nope\n" + base, `route.routes[0].receiver: no receiver named "nope"`},
		{"duplicate receiver", "route:\n  receiver: s\n" + base + "  - name: s\n    stdout: {}\n", `receivers[1].name: duplicate receiver "s"`},
		{"no root receiver", "route:\n  group_wait: 1s\n" + base, "route.receiver is required"},
		{"root matchers", "route:\n  receiver: s\n  matchers: ['cluster=a']\n" + base, "route.matchers"},
		{"two kinds", "route:\n  receiver: s\nreceivers:\n  - name: s\n    stdout: {}\n    webhook:\n      url: http://x\n", "receivers[0]: set at most one"},
		{"slack without source", "route:\n  receiver: s\nreceivers:\n  - name: s\n    slack:\n      channel: '#x'\n", "receivers[0].slack: set exactly one"},
		{"am bad url", "route:\n  receiver: s\nreceivers:\n  - name: s\n    alertmanager:\n      url: alertmanager:9093\n", "receivers[0].alertmanager.url"},
		{"bad group_by", "route:\n  receiver: s\n  group_by: [pod]\n" + base, "route.group_by[0]"},
		{"bad duration", "route:\n  receiver: s\n  group_wait: soon\n" + base, "group_wait"},
		{"zero queue", "queue_size: -1\nroute:\n  receiver: s\n" + base, "queue_size must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSimple(t *testing.T) {
	cfg, err := Simple(SimpleOptions{SlackWebhookURL: "https://hooks.slack.com/services/T/B/x", AlertmanagerURL: "http://am:9093", MinSeverity: 3})
	if err != nil {
		t.Fatal(err)
	}
	r := compileRoute(cfg.Route, nil, "0")
	for _, tc := range []struct {
		sev  int
		want string
	}{{4, "slack,alertmanager"}, {3, "slack,alertmanager"}, {2, "discard"}} {
		f := fixture("anonymous-access")
		f.Severity = severityOf(tc.sev)
		var names []string
		for _, m := range r.match(&f, nil) {
			names = append(names, m.receiver)
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("severity %d routed to %s, want %s", tc.sev, got, tc.want)
		}
	}
	if def, err := Simple(SimpleOptions{}); err != nil || def.Receivers[0].Stdout == nil {
		t.Errorf("Simple without destinations = %+v, %v; want stdout", def, err)
	}
}
