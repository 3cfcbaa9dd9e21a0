package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/auditsend"
	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/processor"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/spool"
)

const demoSample = "../../testdata/demo/sample.jsonl"

// findingKeys reads JSON-lines findings into comparable one-line keys.
func findingKeys(t *testing.T, out []byte) []string {
	t.Helper()
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var f pipeline.Finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("decoding finding %q: %v", sc.Text(), err)
		}
		// The id, not the triggering event: a stateful correlation (token
		// replay) has one id per credential and facts, but which of its
		// events completes it depends on arrival order, and the
		// apiserver's webhook client sends batches concurrently.
		keys = append(keys, strings.Join([]string{f.ID, f.Detector, f.Severity.String()}, " | "))
	}
	sort.Strings(keys)
	return keys
}

// TestScanMatchesPipeline: `detect scan` over a log file and the pipeline
// (apiserver webhook client → ingest with redaction → spool → detect) report
// the same findings, with the same ids, for the same events.
func TestScanMatchesPipeline(t *testing.T) {
	var scanOut, scanErr bytes.Buffer
	if err := dispatch([]string{"scan", "--cluster", "demo", "--output", "json", demoSample}, &scanOut, &scanErr); err != nil {
		t.Fatalf("scan: %v\n%s", err, scanErr.String())
	}
	scanned := findingKeys(t, scanOut.Bytes())
	if len(scanned) < 10 {
		t.Fatalf("scan found %d findings in the demo sample; the comparison needs some", len(scanned))
	}

	dir := t.TempDir()
	w, err := spool.NewWriter(spool.WriterConfig{Dir: filepath.Join(dir, "spool")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := ingest.New(ingest.Config{}, w, red, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	kubeconfig := filepath.Join(dir, "webhook.kubeconfig")
	if err := auditsend.WriteKubeconfig(kubeconfig, srv.URL+"/audit/demo", auditsend.KubeconfigOptions{}); err != nil {
		t.Fatal(err)
	}
	sender, err := auditsend.New(auditsend.Config{Kubeconfig: kubeconfig, MaxBatchWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(demoSample)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var ev auditv1.Event
		if err := auditjson.DecodeEvent(line, &ev); err != nil {
			t.Fatal(err)
		}
		if err := sender.Send(&ev); err != nil {
			t.Fatal(err)
		}
	}
	sender.Shutdown()
	if _, failed, dropped := sender.Stats(); failed+dropped > 0 {
		t.Fatalf("sender: %d failed, %d dropped", failed, dropped)
	}
	w.Close()

	r, err := spool.NewReader(spool.ReaderConfig{Dir: filepath.Join(dir, "spool"), PollInterval: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	set, err := loadAll("", nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pipeOut bytes.Buffer
	proc, err := processor.New(processor.Config{BatchTimeout: 50 * time.Millisecond, ExitWhenIdle: 500 * time.Millisecond},
		r, set, console.NewPrinter(&pipeOut, console.FormatJSON), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	piped := findingKeys(t, pipeOut.Bytes())

	if strings.Join(scanned, "\n") != strings.Join(piped, "\n") {
		t.Fatalf("scan and pipeline differ\nscan (%d):\n%s\npipeline (%d):\n%s", len(scanned), strings.Join(scanned, "\n"), len(piped), strings.Join(piped, "\n"))
	}
}
