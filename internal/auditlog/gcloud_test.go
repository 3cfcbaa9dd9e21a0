package auditlog

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// gcloudExport is `gcloud logging read --format=json` output: six GKE
// Kubernetes audit entries in one pretty-printed array.
func gcloudExport(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../cloud/gke/testdata/gcloud-logging-read.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var gcloudAuditIDs = []string{
	"0b7f2a47-5b8e-4d3e-9a55-6f1c2d3e4a01", "6c1de0f2-3a44-4b8f-8e21-7a9b0c1d2e02", "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c03",
	"3f2e1d0c-9b8a-4765-a432-10fedcba9804", "c4d5e6f7-0812-4a3b-9c4d-5e6f70812305", "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e606",
}

type gotEvent struct {
	line, item int
	auditID    string
	verb       string
}

func readEvents(t *testing.T, path string) ([]gotEvent, error) {
	t.Helper()
	var got []gotEvent
	err := Events(path, func(line, item int, data []byte) error {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod-eu1", data); err != nil {
			return fmt.Errorf("line %d item %d: %w", line, item, err)
		}
		got = append(got, gotEvent{line, item, string(ev.AuditID), ev.Verb})
		return nil
	})
	return got, err
}

func TestEventsReadsGcloudExport(t *testing.T) {
	export := gcloudExport(t)
	var entries []json.RawMessage
	if err := json.Unmarshal(export, &entries); err != nil {
		t.Fatal(err)
	}
	var jsonl, compact bytes.Buffer
	compact.WriteByte('[')
	for i, e := range entries {
		var c bytes.Buffer
		if err := json.Compact(&c, e); err != nil {
			t.Fatal(err)
		}
		jsonl.Write(c.Bytes())
		jsonl.WriteByte('\n')
		if i > 0 {
			compact.WriteByte(',')
		}
		compact.Write(c.Bytes())
	}
	compact.WriteString("]\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(export)
	zw.Close()

	dir := t.TempDir()
	files := map[string][]byte{
		"pretty.json":    export,
		"pretty.json.gz": gz.Bytes(),
		"compact.json":   compact.Bytes(),
		"entries.jsonl":  jsonl.Bytes(),
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readEvents(t, path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(gcloudAuditIDs) {
			t.Fatalf("%s: %d events, want %d: %+v", name, len(got), len(gcloudAuditIDs), got)
		}
		for i, g := range got {
			wantLine, wantItem := 1, i+1
			if name == "entries.jsonl" {
				wantLine, wantItem = i+1, 0
			}
			if g.auditID != gcloudAuditIDs[i] || g.line != wantLine || g.item != wantItem || g.verb == "" {
				t.Errorf("%s: event %d = %+v, want %s at line %d item %d", name, i, g, gcloudAuditIDs[i], wantLine, wantItem)
			}
		}
	}
}

func TestEventsGcloudExportLimits(t *testing.T) {
	dir := t.TempDir()
	export := gcloudExport(t)
	// One entry beyond the per-entry bound stops the read; memory never
	// holds more than one entry and the decoder's buffer.
	defer func(v int64) { gcloudMaxEntry = v }(gcloudMaxEntry)
	gcloudMaxEntry = 1 << 10
	path := filepath.Join(dir, "big.json")
	os.WriteFile(path, export, 0o600)
	if _, err := readEvents(t, path); err == nil || !strings.Contains(err.Error(), "LogEntry 1 exceeds 1024 bytes") {
		t.Errorf("oversized entry: %v", err)
	}
	gcloudMaxEntry = MaxLine

	// A truncated export yields what it holds, then an error.
	os.WriteFile(path, export[:len(export)/2], 0o600)
	got, err := readEvents(t, path)
	if err == nil || len(got) == 0 || len(got) >= len(gcloudAuditIDs) {
		t.Errorf("truncated export: %d events, err %v", len(got), err)
	}

	// Entries that are not Kubernetes audit entries reach the caller as
	// they are, for it to count: no event is made up from them.
	other := `[{"insertId":"x1","logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity","protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"container.googleapis.com","methodName":"google.container.v1.ClusterManager.UpdateCluster"},"timestamp":"2026-11-30T10:00:00Z"}]`
	os.WriteFile(path, []byte(other), 0o600)
	var seen [][]byte
	if err := Events(path, func(line, item int, data []byte) error { seen = append(seen, append([]byte(nil), data...)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !bytes.Contains(seen[0], []byte("ClusterManager")) {
		t.Errorf("non-Kubernetes entry: %q", seen)
	}

	// gcloud prints [] when nothing matched: no events, no error.
	os.WriteFile(path, []byte("[]\n"), 0o600)
	if got, err := readEvents(t, path); err != nil || len(got) != 0 {
		t.Errorf("empty export: %+v %v", got, err)
	}

	// An ordinary audit log is not mistaken for an export.
	os.WriteFile(path, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/api","verb":"get","requestReceivedTimestamp":"2026-11-30T10:00:00Z","stageTimestamp":"2026-11-30T10:00:00Z"}`+"\n"), 0o600)
	if got, err := readEvents(t, path); err != nil || len(got) != 1 || got[0].auditID != "a" {
		t.Errorf("plain audit log: %+v %v", got, err)
	}
}
