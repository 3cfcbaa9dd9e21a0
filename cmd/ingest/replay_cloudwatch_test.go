package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/gen"
)

// TestReplayCloudWatchExport backfills from an EKS log group exported to S3
// (aws logs create-export-task): the objects' "<timestamp> <event>" lines,
// gzip, the apiserver's own log lines among them, are read without a flag.
func TestReplayCloudWatchExport(t *testing.T) {
	g := gen.New(gen.Config{Seed: 9, Cluster: "prod-eu1", AttackRatio: 0.05})
	var export bytes.Buffer
	for i := range 200 {
		fmt.Fprintf(&export, "2026-12-04T07:%02d:%02d.%03dZ %s\n", i/60, i%60, i, g.Next().JSON)
		if i%50 == 0 {
			fmt.Fprintf(&export, "2026-12-04T07:%02d:%02d.%03dZ I1204 07:00:00.000000      11 handler.go:286] Adding GroupVersion apps v1 to ResourceManager\n", i/60, i%60, i)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(export.Bytes())
	zw.Close()
	dir := filepath.Join(t.TempDir(), "kube-apiserver-audit-5f2b8c0e4d1a9b7c6e3f0a2d4b6c8e1f")
	os.Mkdir(dir, 0o700)
	if err := os.WriteFile(filepath.Join(dir, "000000.gz"), gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := replay([]string{"--spool-dir", t.TempDir(), "--cluster", "prod-eu1", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "200 events") || !strings.Contains(stdout.String(), "200 accepted") || strings.Contains(stdout.String(), "rejected (") {
		t.Fatalf("summary: %s\n%s", stdout.String(), stderr.String())
	}
}
