package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestReplayRotatedDirectory replays a log directory as the apiserver's log
// backend leaves it: a gzip-compressed rotated file whose name does not say
// so, and the active file overlapping it, with one malformed line and one
// oversized event. Everything lands in the spool once, truncated where
// needed, and the summary accounts for every line.
func TestReplayRotatedDirectory(t *testing.T) {
	g := gen.New(gen.Config{Seed: 5, Cluster: "prod-eu1", AttackRatio: 0.05})
	evs := make([][]byte, 600)
	for i := range evs {
		evs[i] = g.Next().JSON
	}
	lines := func(evs [][]byte) []byte { return append(bytes.Join(evs, []byte("\n")), '\n') }

	dir := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(lines(evs[:300]))
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "audit-2026-11-27T09-00-00.000.log"), gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	big := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"0b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/configmaps/bundle","verb":"update","user":{"username":"alice@example.com"},"sourceIPs":["10.0.3.17"],"requestObject":{"data":{"b":"` + strings.Repeat("x", 2<<20) + `"}},"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.325981Z"}`
	active := append(lines(evs[250:]), []byte("{\"kind\":\"Event\",\"stageTimestamp\":\"yesterday\"}\n"+big+"\n")...)
	if err := os.WriteFile(filepath.Join(dir, "audit.log"), active, 0o600); err != nil {
		t.Fatal(err)
	}

	spoolDir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := replay([]string{"--spool-dir", spoolDir, "--cluster", "prod-eu1", "--batch", "100", dir}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	want := "652 events"
	if !strings.Contains(stdout.String(), want) ||
		!strings.Contains(stdout.String(), "651 accepted (601 produced, 50 duplicates skipped, 1 truncated), 1 rejected (malformed: 1)") {
		t.Fatalf("summary: %s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "audit.log:351: decoding event") {
		t.Fatalf("the malformed line is not named: %s", stderr.String())
	}

	// The spool holds each event once, the big one without its body.
	seen := map[string]int{}
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "segment-*.jsonl"))
	for _, seg := range segs {
		f, err := os.Open(seg)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			var rec struct {
				Event json.RawMessage `json:"event"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Event == nil {
				continue // position files and the like
			}
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "prod-eu1", rec.Event); err != nil {
				t.Fatal(err)
			}
			seen[string(ev.AuditID)+"/"+string(ev.Stage)]++
			if ev.AuditID == "0b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d" && (ev.RequestObject != nil || ev.Annotations[ingest.AnnotationTruncated] != "true") {
				t.Fatal("the oversized event was not truncated")
			}
		}
		f.Close()
	}
	if len(seen) != 601 {
		t.Fatalf("spool holds %d distinct events, want 601", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s in the spool %d times", k, n)
		}
	}
}
