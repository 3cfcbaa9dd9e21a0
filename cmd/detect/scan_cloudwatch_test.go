package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestScanCloudWatchOutput scans the output of `aws logs
// filter-log-events` on an EKS cluster's log group, indented as the CLI
// prints it, apiserver log lines of another stream among the audit
// events, without a flag: it finds what a scan of the same events as an
// apiserver log file finds.
func TestScanCloudWatchOutput(t *testing.T) {
	var lines []string
	for _, f := range []string{"anonymous-secrets-list-allowed.json", "exec-response-started.json", "broad-selector-watch-secrets.json", "apparmor-unconfined-pod.json", "stale-token.json"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", f))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(bytes.TrimSpace(data)))
	}
	plain, _, err := scanLines(t, lines...)
	if err != nil || len(plain) == 0 {
		t.Fatalf("plain scan: %v, %d findings", err, len(plain))
	}

	type cliEvent struct {
		LogStreamName string `json:"logStreamName"`
		Timestamp     int64  `json:"timestamp"`
		Message       string `json:"message"`
		IngestionTime int64  `json:"ingestionTime"`
		EventID       string `json:"eventId"`
	}
	out := struct {
		Events             []cliEvent `json:"events"`
		SearchedLogStreams []any      `json:"searchedLogStreams"`
	}{SearchedLogStreams: []any{}}
	for i, l := range lines {
		out.Events = append(out.Events,
			cliEvent{"kube-apiserver-audit-5f2b8c0e4d1a9b7c6e3f0a2d4b6c8e1f", 1764832360118 + int64(i), l, 1764832361200, fmt.Sprintf("%056d", 2*i)},
			cliEvent{"kube-apiserver-1b2c3d4e5f60718293a4b5c6d7e8f901", 1764832360118 + int64(i), "I1204 07:12:40.118342      11 handler.go:286] Adding GroupVersion apps v1 to ResourceManager", 1764832361200, fmt.Sprintf("%056d", 2*i+1)})
	}
	doc, _ := json.MarshalIndent(out, "", "    ")
	path := filepath.Join(t.TempDir(), "filter-log-events.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := dispatch([]string{"scan", "--cluster", "prod", "--output", "json", path}, &stdout, &stderr); err != nil {
		t.Fatalf("scan: %v\n%s", err, stderr.String())
	}
	got := findingKeys(t, stdout.Bytes())
	slices.Sort(plain)
	slices.Sort(got)
	if !slices.Equal(got, plain) {
		t.Fatalf("findings from the CloudWatch output:\n%v\nfrom the log file:\n%v", got, plain)
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("%d events", len(lines))) || !strings.Contains(stderr.String(), "0 lines not decodable") {
		t.Fatalf("summary: %s", stderr.String())
	}
}
