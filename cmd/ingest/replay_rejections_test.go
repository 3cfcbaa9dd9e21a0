package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/ingest"
)

// TestReplayCountsEveryRejection: a batch's Result lists only the first
// ingest.MaxRejectionsListed rejections; the summary still counts all of
// them, in total and by reason.
func TestReplayCountsEveryRejection(t *testing.T) {
	n := 2*ingest.MaxRejectionsListed + 50
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(file, []byte(strings.Repeat(`{"kind":"Event","stageTimestamp":"yesterday"}`+"\n", n)), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := replay([]string{"--spool-dir", t.TempDir(), "--batch", "400", file}, &stdout, &stderr); err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if want := fmt.Sprintf("%d rejected (malformed: %d)", n, n); !strings.Contains(stdout.String(), want) {
		t.Fatalf("summary %q, want %q", stdout.String(), want)
	}
}
