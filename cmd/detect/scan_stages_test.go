package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stageLine rewrites a testdata/events event as one stage of the same
// request, shaped as the apiserver writes that stage ("none": the stage
// member dropped, as some log exports do).
func stageLine(t *testing.T, file, stage string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", file))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	switch stage {
	case "none":
		delete(m, "stage")
	case "RequestReceived":
		m["stage"] = stage
		m["stageTimestamp"] = m["requestReceivedTimestamp"]
		delete(m, "responseStatus")
		delete(m, "annotations")
	case "ResponseStarted":
		m["stage"] = stage
	default:
		m["stage"] = stage
		// The session ended minutes later.
		m["stageTimestamp"] = strings.Replace(m["stageTimestamp"].(string), "T09:", "T10:", 1)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// scanLines writes lines to a file, scans it with the default pack and
// returns the findings' keys, the summary and scan's error.
func scanLines(t *testing.T, lines ...string) ([]string, string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := dispatch([]string{"scan", "--cluster", "prod", "--output", "json", path}, &stdout, &stderr)
	return findingKeys(t, stdout.Bytes()), stderr.String(), err
}

// TestScanStages: a long-running request (an exec into a pod, a
// cluster-wide watch of secrets) is reported once, with the same finding
// ids, whichever of its stages the log holds, in whatever order, twice
// over, or without a stage at all; RequestReceived alone reports nothing.
func TestScanStages(t *testing.T) {
	for _, tc := range []struct{ file, detector string }{
		{"exec-response-started.json", "rule:exec-into-pod"},
		{"broad-selector-watch-secrets.json", "broad-selector"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			line := func(stage string) string { return stageLine(t, tc.file, stage) }
			var want []string
			f := func(name string, wantSummary string, lines ...string) {
				t.Helper()
				got, summary, err := scanLines(t, lines...)
				if err != nil {
					t.Fatalf("%s: scan: %v\n%s", name, err, summary)
				}
				var mine []string
				for _, k := range got {
					if strings.Contains(k, " | "+tc.detector+" | ") {
						mine = append(mine, k)
					}
				}
				if len(mine) != 1 {
					t.Fatalf("%s: %d %s findings, want 1: %v\n%s", name, len(mine), tc.detector, got, summary)
				}
				if want == nil {
					want = got
				} else if !slices.Equal(got, want) {
					t.Errorf("%s: findings %v, want the same as with every stage: %v", name, got, want)
				}
				if !strings.Contains(summary, wantSummary) {
					t.Errorf("%s: summary lacks %q:\n%s", name, wantSummary, summary)
				}
			}
			f("every stage", "judged 1 requests; skipped 1 events of stages not judged (RequestReceived, ResponseStarted of short requests) and 1 repeating",
				line("RequestReceived"), line("ResponseStarted"), line("ResponseComplete"))
			f("omitStages: [ResponseStarted]", "judged 1 requests; skipped 1 events of stages not judged (RequestReceived, ResponseStarted of short requests) and 0 repeating",
				line("RequestReceived"), line("ResponseComplete"))
			f("ResponseComplete first", "and 1 repeating",
				line("ResponseComplete"), line("RequestReceived"), line("ResponseStarted"))
			f("ResponseStarted only", "judged 1 requests", line("ResponseStarted"))
			f("panicked", "judged 1 requests; skipped 1", line("RequestReceived"), line("ResponseStarted"), line("Panic"))
			f("Panic only", "judged 1 requests", line("Panic"))
			f("no stage", "1 events had no stage and were read as ResponseComplete", line("none"))
			f("duplicated lines", "and 3 repeating",
				line("ResponseStarted"), line("ResponseStarted"), line("ResponseComplete"), line("ResponseComplete"))

			got, summary, err := scanLines(t, line("RequestReceived"))
			if err != nil || len(got) != 0 {
				t.Fatalf("RequestReceived alone: %v, %v\n%s", got, err, summary)
			}
		})
	}
}

// TestScanV1beta1: old clusters' events are read, from a one-line
// EventList as from JSON lines, with log shippers' timestamps.
func TestScanV1beta1(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := dispatch([]string{"scan", "--output", "json", "../../testdata/eventlists/v1beta1.json"}, &stdout, &stderr); err != nil {
		t.Fatalf("scan: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "scanned 1 files: 1 events, 0 findings, 0 lines not decodable") {
		t.Fatalf("summary: %s", stderr.String())
	}

	// A human listing secrets, written by a v1beta1 apiserver and shipped
	// with a space for the T and no fraction.
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":null},"level":"Metadata","timestamp":"2026-11-27 09:00:02Z","auditID":"7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{"username":"alice@example.com","groups":["system:authenticated"]},"sourceIPs":["192.168.50.23"],"userAgent":"kubectl/v1.34.0 (darwin/arm64) kubernetes/f28b4c9","objectRef":{"resource":"secrets","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27 09:00:02Z","stageTimestamp":"2026-11-27 09:00:02.118917Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`
	v1 := strings.NewReplacer(`"audit.k8s.io/v1beta1"`, `"audit.k8s.io/v1"`, `"metadata":{"creationTimestamp":null},`, "", `"timestamp":"2026-11-27 09:00:02Z",`, "",
		"2026-11-27 09:00:02Z", "2026-11-27T09:00:02.000000Z", "2026-11-27 09:00:02.118917Z", "2026-11-27T09:00:02.118917Z").Replace(line)
	old, summary, err := scanLines(t, line)
	if err != nil || len(old) == 0 {
		t.Fatalf("v1beta1 line: %v, %v\n%s", old, err, summary)
	}
	cur, _, err := scanLines(t, v1)
	if err != nil || !slices.Equal(old, cur) {
		t.Fatalf("v1beta1 findings %v, v1 findings %v (%v)", old, cur, err)
	}
	// The same line twice gives each finding once.
	twice, summary, err := scanLines(t, line, line)
	if err != nil || !slices.Equal(twice, old) || !strings.Contains(summary, "and 1 repeating") {
		t.Fatalf("duplicated line: %v, want %v (%v)\n%s", twice, old, err, summary)
	}
}

// TestScanUndecodable: scan fails on a file without one decodable event,
// names each bad line with its reason, and counts the reasons.
func TestScanUndecodable(t *testing.T) {
	bad := []string{
		`not json at all`,
		`{"kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"get"`,
		`{"kind":"Event","auditID":"a2","stage":"ResponseComplete","stageTimestamp":"yesterday"}`,
		`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"}}`,
		`{"kind":"Event","apiVersion":"audit.k8s.io/v2","auditID":"a3"}`,
		`{"kind":"Event","auditID":"a4","verb":7}`,
		`{"level":"info","msg":"listening","port":8080}`,
	}
	got, summary, err := scanLines(t, bad...)
	if err == nil || !strings.Contains(err.Error(), "no decodable audit event") {
		t.Fatalf("scan of a file without events: err %v\n%s", err, summary)
	}
	if len(got) != 0 {
		t.Fatalf("findings from garbage: %v", got)
	}
	want := "0 events, 0 findings, 7 lines not decodable (bad_timestamp: 1, not_audit_event: 3, not_json: 1, truncated: 1, wrong_type: 1)"
	if !strings.Contains(summary, want) {
		t.Fatalf("summary lacks %q:\n%s", want, summary)
	}
	if !strings.Contains(summary, "audit.log:3: bad_timestamp: ") {
		t.Fatalf("bad line not named:\n%s", summary)
	}

	// One good event among them: scan succeeds and still counts the rest.
	_, summary, err = scanLines(t, append(bad, stageLine(t, "exec-response-started.json", "ResponseStarted"))...)
	if err != nil || !strings.Contains(summary, "1 events, 1 findings, 7 lines not decodable") {
		t.Fatalf("err %v\n%s", err, summary)
	}
}
