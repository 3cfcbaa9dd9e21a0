package alert

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/alert/amtest"
	"github.com/auditpipe/auditpipe/internal/alert/slacktest"
)

func TestAlertmanagerAlerts(t *testing.T) {
	now := fixtureTime.Add(time.Hour) // the event is an hour old
	g := oneAlert(fixture("token-replay"), 7)
	as := AlertmanagerAlerts(g, 5*time.Minute, now)
	if len(as) != 1 {
		t.Fatalf("%d alerts", len(as))
	}
	a := as[0]
	for k, v := range map[string]string{"alertname": "token-replay", "severity": "critical", "cluster": "prod-eu1", "namespace": "payments", "user": "system:serviceaccount:payments:api", "finding_id": "3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f80"} {
		if a.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, a.Labels[k], v)
		}
	}
	if a.Annotations["occurrences"] != "7" || !strings.Contains(a.Annotations["evidence"], "pod-name = api-7d9f8b6c5-x2k4p") || !strings.HasPrefix(a.Annotations["grafana_url"], testGrafana+"/d/auditpipe-explorer?") {
		t.Errorf("annotations = %v", a.Annotations)
	}
	if !a.StartsAt.Equal(fixtureTime) || !a.EndsAt.Equal(now.Add(5*time.Minute)) {
		t.Errorf("startsAt %s endsAt %s: want the event time and now+resolve", a.StartsAt, a.EndsAt)
	}
	if _, ok := a.Labels["subresource"]; ok {
		t.Errorf("empty labels must be left out")
	}
}

// TestThroughRealAlertmanager posts findings to a real Alertmanager whose
// own route sends critical alerts to a (fake) Slack and the rest nowhere:
// the message must arrive at Slack through Alertmanager's routing.
func TestThroughRealAlertmanager(t *testing.T) {
	fake := slacktest.New(t)
	am := amtest.Start(t, `
route:
  receiver: blackhole
  group_by: [alertname, cluster]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: security-slack
      matchers: ['severity="critical"']
receivers:
  - name: blackhole
  - name: security-slack
    slack_configs:
      - api_url: '`+fake.URL+`'
        channel: '#security'
        title: '{{ .CommonLabels.alertname }} in {{ .CommonLabels.cluster }}'
        text: '{{ range .Alerts }}{{ .Annotations.summary }} (×{{ .Annotations.occurrences }}, finding {{ .Labels.finding_id }}){{ end }}'
`)
	h := start(t, `
route:
  receiver: am
  group_wait: 1h
receivers:
  - name: am
    alertmanager:
      url: `+am.URL+`
`, nil)
	anon := fixture("anonymous-access")
	h.n.Notify(append(repeat(anon, 3), fixture("stale-token")))
	h.stop(t) // flushes: both alerts are in Alertmanager when Stop returns
	if got := h.counter(t, MetricSent, "am"); got != 1 {
		t.Fatalf("%s{receiver=am} = %v, want 1; alertmanager log:\n%s", MetricSent, got, am.Log())
	}

	msgs := fake.WaitMessages(t, 1, 60*time.Second)
	raw := string(msgs[0].Raw)
	if !strings.Contains(raw, "anonymous-access in prod-eu1") || !strings.Contains(raw, "×3") || !strings.Contains(raw, "Anonymous (unauthenticated) client 203.0.113.7") {
		t.Errorf("slack message from alertmanager:\n%s", raw)
	}
	if strings.Contains(raw, "stale-token") {
		t.Errorf("medium finding reached Slack despite Alertmanager's route:\n%s", raw)
	}

	// Alertmanager holds both alerts, each routed by its own tree.
	resp, err := http.Get(am.URL + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var alerts []struct {
		Labels    map[string]string `json:"labels"`
		EndsAt    time.Time         `json:"endsAt"`
		Receivers []struct{ Name string }
		Status    struct{ State string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		t.Fatal(err)
	}
	routed := map[string]string{}
	for _, a := range alerts {
		if a.Status.State != "active" || !a.EndsAt.After(time.Now()) {
			t.Errorf("alert %s is %s until %s; want active", a.Labels["alertname"], a.Status.State, a.EndsAt)
		}
		for _, r := range a.Receivers {
			routed[a.Labels["alertname"]] = r.Name
		}
	}
	if routed["anonymous-access"] != "security-slack" || routed["stale-token"] != "blackhole" {
		t.Errorf("alertmanager routed %v", routed)
	}
	http.DefaultClient.CloseIdleConnections()
}
