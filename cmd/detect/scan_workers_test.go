package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/auditlog"
	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// genLog writes n events of the generated stream (seed, attack ratio as
// given) to a log file in dir and returns its path.
func genLog(t testing.TB, dir string, n int, seed int64, attacks float64) string {
	t.Helper()
	g := gen.New(gen.Config{Seed: seed, AttackRatio: attacks})
	var buf bytes.Buffer
	for range n {
		buf.Write(g.Next().JSON)
		buf.WriteByte('\n')
	}
	path := filepath.Join(dir, "audit-"+strconv.FormatInt(seed, 10)+".log")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestScanWorkersMatch: `detect scan` sharded over workers prints what a
// single worker prints, byte for byte and in the same order (same finding
// ids, same count), and the same summary: events, judged, duplicates,
// undecodable lines by reason.
func TestScanWorkersMatch(t *testing.T) {
	dir := t.TempDir()
	// Lines that do not decode, and a duplicated line, so the summary's
	// reasons and duplicates are compared too.
	sample, err := os.ReadFile(demoSample)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := bytes.Cut(sample, []byte("\n"))
	mixed := filepath.Join(dir, "mixed.log")
	junk := append([]byte("not json\n{\"kind\":\"Other\"}\n{\"a\":1}\n"), first...)
	if err := os.WriteFile(mixed, append(append(junk, '\n'), sample...), 0o644); err != nil {
		t.Fatal(err)
	}
	n := 40000
	if testing.Short() {
		n = 8000
	}
	for name, paths := range map[string][]string{
		"demo":      {demoSample},
		"mixed":     {mixed},
		"generated": {genLog(t, dir, n, 7, 0.05)},
		// An incident's slice: about a third of the events are attacks.
		"attack-heavy": {genLog(t, dir, n/2, 11, 0.35), demoSample},
	} {
		t.Run(name, func(t *testing.T) {
			scanWith := func(workers int) (string, string) {
				var out, errOut bytes.Buffer
				args := append([]string{"scan", "--cluster", "demo", "--output", "json", "--workers", strconv.Itoa(workers)}, paths...)
				if err := dispatch(args, &out, &errOut); err != nil {
					t.Fatalf("scan --workers %d: %v\n%s", workers, err, errOut.String())
				}
				return out.String(), errOut.String()
			}
			out1, sum1 := scanWith(1)
			if out1 == "" {
				t.Fatal("scan found nothing; the comparison needs findings")
			}
			_, repeats1 := firstByID(t, out1)
			for _, w := range []int{2, 4} {
				out, sum := scanWith(w)
				first, repeats := firstByID(t, out)
				// Each finding id is printed once, so the outputs are equal
				// byte for byte, although stale-token (keyed by service
				// account while events shard by credential) can raise the
				// same finding in two workers.
				if out != out1 {
					got, want := findingKeys(t, []byte(out)), findingKeys(t, []byte(out1))
					t.Errorf("--workers %d printed %d findings, --workers 1 %d; or their order or contents differ", w, len(got), len(want))
					diffKeys(t, got, want)
				}
				if len(repeats) > 0 || len(repeats1) > 0 || first != out {
					t.Errorf("a finding id printed twice: %v %v", repeats, repeats1)
				}
				if sum != sum1 && stripFindings(sum) != stripFindings(sum1) {
					t.Errorf("--workers %d summary:\n%s\nwant (--workers 1):\n%s", w, sum, sum1)
				}
			}
			t.Logf("%d findings; %s", bytes.Count([]byte(out1), []byte("\n")), sum1)
		})
	}
}

// firstByID returns the JSON-lines findings in out without the lines
// repeating an id printed before, and how often each id repeated.
func firstByID(t *testing.T, out string) (string, map[string]int) {
	t.Helper()
	seen := map[string]bool{}
	repeats := map[string]int{}
	var b strings.Builder
	for line := range strings.Lines(out) {
		var f pipeline.Finding
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("decoding finding %q: %v", line, err)
		}
		if f.ID == "" {
			t.Fatalf("finding without an id: %s", line)
		}
		if seen[f.ID] {
			repeats[f.Detector+" "+f.ID]++
			continue
		}
		seen[f.ID] = true
		b.WriteString(line)
	}
	return b.String(), repeats
}

// stripFindings drops the findings count from a scan summary, which
// repeated ids change (see TestScanWorkersMatch).
func stripFindings(sum string) string {
	return regexp.MustCompile(`\d+ findings`).ReplaceAllString(sum, "N findings")
}

// diffKeys logs the first keys only one of got and want (both sorted)
// holds.
func diffKeys(t *testing.T, got, want []string) {
	t.Helper()
	i, j, shown := 0, 0, 0
	for (i < len(got) || j < len(want)) && shown < 10 {
		switch {
		case j == len(want) || (i < len(got) && got[i] < want[j]):
			t.Logf("only sharded: %s", got[i])
			i++
			shown++
		case i == len(got) || want[j] < got[i]:
			t.Logf("only single: %s", want[j])
			j++
			shown++
		default:
			i++
			j++
		}
	}
}

// TestScanShardKeepsRequests: every stage of a request (cluster and
// RequestHash, what pipeline.StageGate tells requests apart by) has the
// same message key, so one worker's StageGate sees all of them and
// per-worker gates decide as one gate does.
func TestScanShardKeepsRequests(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{demoSample, genLog(t, dir, 20000, 3, 0.2)} {
		keys := map[uint64]string{}
		stages := 0
		err := auditlog.Events(path, func(line, _ int, data []byte) error {
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, "demo", data); err != nil {
				return nil
			}
			h := pipeline.RequestHash(&ev.Event)
			k := string(pipeline.MessageKey("demo", &ev))
			if prev, ok := keys[h]; ok {
				stages++
				if prev != k {
					t.Errorf("%s:%d: request %s has message keys %q and %q", path, line, ev.AuditID, prev, k)
				}
			}
			keys[h] = k
			for _, w := range []int{2, 3, 4, 8} {
				if got, want := shardOf("demo", &ev, w), shardOf("demo", &ev, w); got != want || got < 0 || got >= w {
					t.Fatalf("shardOf(%d) = %d, %d", w, got, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if stages == 0 {
			t.Errorf("%s: no request with a second stage; the test checks nothing", path)
		}
	}
}

// TestScanWorkersCancel: a cancelled scan (SIGINT) stops its reader,
// workers and merge, and returns the cancellation.
func TestScanWorkersCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := genLog(t, t.TempDir(), 20000, 9, 0.05)
	set, err := rules.LoadWithDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	newBuiltins := func() (*detectors.Suite, error) { return loadDetectors("") }
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel once the first findings are printed: mid-scan.
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 1)
		_, _ = io.ReadFull(pr, buf)
		cancel()
		_, _ = io.Copy(io.Discard, pr)
	}()
	defer pr.Close()
	s := newScanner("demo", console.NewPrinter(pw, console.FormatJSON), io.Discard)
	err = s.scan(ctx, []string{path}, 4, newBuiltins, set)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("scan = %v, want context.Canceled", err)
	}
	if s.events >= 20000 {
		t.Errorf("scan read all %d events after cancellation", s.events)
	}
}
