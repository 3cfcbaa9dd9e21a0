package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// v1beta1Lines is a log file as an old apiserver's log backend wrote it:
// audit.k8s.io/v1beta1 events with their metadata and deprecated timestamp
// members, one a line, the second with a log shipper's timestamps (a space
// for the T, no fraction).
const v1beta1Lines = `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":"2026-11-27T09:00:02Z"},"level":"Metadata","timestamp":"2026-11-27T09:00:02Z","auditID":"7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/secrets","verb":"list","user":{"username":"alice@example.com","groups":["system:authenticated"]},"sourceIPs":["192.168.50.23"],"userAgent":"kubectl/v1.34.0 (darwin/arm64) kubernetes/f28b4c9","objectRef":{"resource":"secrets","namespace":"payments","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T09:00:02.104233Z","stageTimestamp":"2026-11-27T09:00:02.118917Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}
{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":null},"level":"Metadata","timestamp":"2026-11-27 09:00:03Z","auditID":"8d2e3f4a-5b6c-4d7e-9f8a-0b1c2d3e4f5a","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/configmaps/api-config","verb":"get","user":{"username":"alice@example.com","groups":["system:authenticated"]},"sourceIPs":["192.168.50.23"],"userAgent":"kubectl/v1.34.0 (darwin/arm64) kubernetes/f28b4c9","objectRef":{"resource":"configmaps","namespace":"payments","name":"api-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27 09:00:03Z","stageTimestamp":"2026-11-27 09:00:03.01Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}
`

// TestReplayV1beta1 replays an audit.k8s.io/v1beta1 EventList written on
// one line and a JSON-lines file of v1beta1 events: every event is
// accepted and lands in the spool converted to v1.
func TestReplayV1beta1(t *testing.T) {
	dir := t.TempDir()
	lines := filepath.Join(dir, "audit-v1beta1.log")
	if err := os.WriteFile(lines, []byte(v1beta1Lines), 0o600); err != nil {
		t.Fatal(err)
	}
	spoolDir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := replay([]string{"--spool-dir", spoolDir, "--cluster", "legacy", "../../testdata/eventlists/v1beta1.json", lines}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "3 events") || !strings.Contains(stdout.String(), "3 accepted (3 produced") || !strings.Contains(stdout.String(), "0 rejected") {
		t.Fatalf("summary: %s\n%s", stdout.String(), stderr.String())
	}
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "segment-*.jsonl"))
	var ids []string
	for _, seg := range segs {
		f, err := os.Open(seg)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec struct {
				Event json.RawMessage `json:"event"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Event == nil {
				continue
			}
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "legacy", rec.Event); err != nil {
				t.Fatal(err)
			}
			if ev.V1beta1 || bytes.Contains(rec.Event, []byte("v1beta1")) {
				t.Errorf("%s stored unconverted: %s", ev.AuditID, rec.Event)
			}
			if ev.StageTimestamp.IsZero() || ev.RequestReceivedTimestamp.IsZero() {
				t.Errorf("%s lost its timestamps", ev.AuditID)
			}
			ids = append(ids, string(ev.AuditID))
		}
		f.Close()
	}
	if len(ids) != 3 {
		t.Fatalf("spool holds %v, want 3 events", ids)
	}
}
