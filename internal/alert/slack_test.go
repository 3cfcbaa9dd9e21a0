package alert

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/alert/slacktest"
	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const testGrafana = "https://grafana.example.com"

func oneAlert(f pipeline.Finding, count int) Group {
	f = scrubFinding(f)
	return Group{Receiver: "slack", GrafanaURL: testGrafana, Alerts: []Alert{{Finding: f, Count: count, FirstSeen: f.Time, LastSeen: f.Time.Add(time.Duration(count-1) * time.Second), Key: CooldownKey(&f), IDs: []string{f.ID}}}}
}

// TestRenderSlackGolden pins the Block Kit payload of one finding of each
// detector. Run with -update to rewrite testdata/slack/*.json.
func TestRenderSlackGolden(t *testing.T) {
	for _, f := range fixtures() {
		t.Run(f.Detector, func(t *testing.T) {
			count := 1
			if f.Detector == "anonymous-access" {
				count = 500
			}
			got, err := RenderSlack(oneAlert(f, count), SlackOptions{Channel: "#security-alerts"})
			if err != nil {
				t.Fatal(err)
			}
			checkSlackPayload(t, got)
			if count > 1 && !bytes.Contains(got, []byte("×500")) {
				t.Errorf("payload lacks the occurrence count ×500")
			}
			path := filepath.Join("testdata", "slack", f.Detector+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run go test -update to create it): %v", err)
			}
			if !bytes.Equal(append(got, '\n'), want) {
				t.Errorf("payload differs from %s (run go test ./internal/alert -run Golden -update and review the diff):\n%s", path, got)
			}
		})
	}
}

// checkSlackPayload asserts what every payload must satisfy: Slack would
// accept it, the summary comes first, and no credential is inside.
func checkSlackPayload(t *testing.T, payload []byte) {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	if err := slacktest.Validate(p); err != nil {
		t.Fatalf("Slack would refuse the payload: %v\n%s", err, payload)
	}
	if credential.ContainsJWT(payload) {
		t.Errorf("payload holds a JWT:\n%s", payload)
	}
	if bytes.Contains(payload, []byte("xoxb-")) {
		t.Errorf("payload holds the webhook secret")
	}
}

func TestRenderSlackEscapesUserInput(t *testing.T) {
	f := fixture("anonymous-access")
	f.Username = "<!channel> <@U024BE7LH> <https://evil.example|click> & co"
	f.UserAgent = "`whoami` <!here>"
	f.Summary = "summary with <!everyone> and a *bold* attempt"
	f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "user.username`", Value: "<!subteam^S123>", Source: "event"})
	got, err := RenderSlack(oneAlert(f, 1), SlackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlackPayload(t, got)
	for _, bad := range []string{"<!channel>", "<@U024BE7LH>", "<https://evil.example", "<!here>", "<!everyone>", "<!subteam"} {
		if bytes.Contains(got, []byte(bad)) {
			t.Errorf("payload contains unescaped %q", bad)
		}
	}
	if !bytes.Contains(got, []byte("&lt;!channel&gt;")) {
		t.Errorf("escaped username missing from payload")
	}
	// Every mrkdwn text is verbatim, so Slack does not parse @-mentions.
	var p slackPayload
	json.Unmarshal(got, &p)
	for _, b := range p.Attachments[0].Blocks {
		for _, txt := range append(append([]slackText{}, b.Fields...), b.Elements...) {
			if txt.Type == "mrkdwn" && !txt.Verbatim {
				t.Errorf("mrkdwn text without verbatim: %q", txt.Text)
			}
		}
		if b.Text != nil && b.Text.Type == "mrkdwn" && !b.Text.Verbatim {
			t.Errorf("mrkdwn text without verbatim: %q", b.Text.Text)
		}
	}
}

func TestRenderSlackLimits(t *testing.T) {
	long := strings.Repeat("&<x>", 5000)
	var g Group
	g.Receiver, g.GrafanaURL = "slack", testGrafana
	for i := range 60 {
		f := fixture("token-replay")
		f.ID = fmt.Sprintf("%032x", i)
		f.Namespace = fmt.Sprintf("tenant-%02d", i)
		f.Summary, f.UserAgent, f.Username = long, long, long
		for range 30 {
			f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "spec.containers[0].image", Value: long, Source: "request"})
		}
		f = scrubFinding(f)
		g.Alerts = append(g.Alerts, Alert{Finding: f, Count: i + 1, FirstSeen: f.Time, LastSeen: f.Time, Key: CooldownKey(&f)})
	}
	got, err := RenderSlack(g, SlackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSlackPayload(t, got)
	if !bytes.Contains(got, []byte("more findings not shown")) {
		t.Errorf("a truncated digest must say how many findings it left out")
	}
	// A cut never splits an entity: no "&am" or "&l" before the ellipsis.
	for _, frag := range []string{"&a…", "&am…", "&amp…", "&l…", "&lt…", "&g…"} {
		if bytes.Contains(got, []byte(frag)) {
			t.Errorf("payload has a split entity %q", frag)
		}
	}
}

func TestTruncEsc(t *testing.T) {
	f := func(in string, n int, want string) {
		t.Helper()
		if got := truncEsc(esc(in), n); got != want {
			t.Errorf("truncEsc(esc(%q), %d) = %q, want %q", in, n, got, want)
		}
	}
	f("short", 10, "short")
	f("abcdef", 4, "abc…")
	f("ab&cd", 5, "ab…") // "ab&amp;cd" cut inside the entity drops it whole
	f("<<<", 9, "&lt;&lt;…")
	f("ünïcödé", 4, "ünï…")
}
