package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestScanLinesMatchPrinter: the JSON lines the scan formats where
// findings are raised (the workers, or the single-worker loop) and copies
// in the merge are what console.Printer.Print prints for the same
// findings, byte for byte and in the same order, with one worker or
// several, first-seen findings (judged in the merge) included.
func TestScanLinesMatchPrinter(t *testing.T) {
	dir := t.TempDir()
	n := 6000
	if testing.Short() {
		n = 3000
	}
	paths := []string{genLog(t, dir, n, 11, 0.35), firstSeenLog(t, dir, n), demoSample}
	set, err := rules.LoadWithDefault(context.Background(), learnRules(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	newBuiltins := func() (*detectors.Suite, error) { return loadDetectors("") }
	scanWith := func(workers int, lines bool) string {
		var out bytes.Buffer
		s := newScanner("demo", console.NewPrinter(&out, console.FormatJSON), io.Discard)
		s.json = lines // false: findings printed with Printer.Print
		if err := s.scan(context.Background(), paths, workers, newBuiltins, set); err != nil {
			t.Fatalf("scan --workers %d: %v", workers, err)
		}
		if got := strings.Count(out.String(), "\n"); got != s.printer.Count() {
			t.Errorf("--workers %d: %d lines, printer counted %d", workers, got, s.printer.Count())
		}
		return out.String()
	}
	for _, w := range []int{1, 2} {
		want := scanWith(w, false)
		if !strings.Contains(want, `"new_terms.term"`) {
			t.Fatal("no first-seen finding; the test needs some")
		}
		if got := scanWith(w, true); got != want {
			t.Errorf("--workers %d: formatted lines differ from the printer's (%d vs %d bytes)", w, len(got), len(want))
			diffKeys(t, findingKeys(t, []byte(got)), findingKeys(t, []byte(want)))
		}
	}
}

// firstSeenLog writes n events of a generated stream with a first-seen
// request of each kind injected every 30 s (see TestScanFirstSeen).
func firstSeenLog(t *testing.T, dir string, n int) string {
	t.Helper()
	g := gen.New(gen.Config{Seed: 5, Rate: 20, Lifecycle: true})
	var buf bytes.Buffer
	next := gen.DefaultStart.Add(4 * time.Minute)
	for i := range n {
		e := g.Next()
		if e.Time.After(next) {
			g.Inject(gen.FirstSeenKinds[i%len(gen.FirstSeenKinds)], e.Time.Add(time.Second))
			next = next.Add(30 * time.Second)
		}
		buf.Write(e.JSON)
		buf.WriteByte('\n')
	}
	path := filepath.Join(dir, "firstseen.log")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// learnRules writes a rule file shortening the first-seen rules' learning
// to a minute, and returns its path.
func learnRules(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, k := range gen.FirstSeenKinds {
		keyLearning := ""
		if strings.HasPrefix(k, "sa-") || k == "principal-new-verb-resource" {
			keyLearning = ", key_learning: 1m"
		}
		b.WriteString("  - {rule: " + k + ", override: append, new_terms: {learning: 1m" + keyLearning + "}}\n")
	}
	path := filepath.Join(dir, "learn.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestScanPrintOnce: each finding id is printed once, whether the line
// was formatted by a worker or by the printer's path; ids that are not
// FindingID's lowercase hex are told apart as strings (an uppercase copy
// of an id is another id); a finding that cannot be encoded is an error
// after the lines before it, as with console.Printer.Print.
func TestScanPrintOnce(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	hexID := pipeline.FindingID("d", "c", "a", 1, "")
	f := func(id string) pipeline.Finding { return pipeline.Finding{ID: id, Time: at, Detector: "d"} }
	batches := [][]pipeline.Finding{
		{f(hexID), f(hexID), f(strings.ToUpper(hexID)), f("x"), f("")},
		{f(hexID), f("x"), f(""), f(strings.ToUpper(hexID)), f(hexID[:31] + "g"), f(hexID[:30])},
	}
	var want bytes.Buffer
	seen := map[string]bool{}
	for _, b := range batches {
		for i := range b {
			if !seen[b[i].ID] {
				seen[b[i].ID] = true
				line, err := console.AppendJSONLine(nil, &b[i])
				if err != nil {
					t.Fatal(err)
				}
				want.Write(line)
			}
		}
	}
	for _, lines := range []bool{true, false} {
		var out bytes.Buffer
		s := newScanner("demo", console.NewPrinter(&out, console.FormatJSON), io.Discard)
		s.json = lines
		for _, b := range batches {
			if err := s.print(b); err != nil {
				t.Fatal(err)
			}
		}
		if out.String() != want.String() {
			t.Errorf("lines %v: printed\n%s\nwant\n%s", lines, out.String(), want.String())
		}
		if s.printer.Count() != len(seen) {
			t.Errorf("lines %v: counted %d, want %d", lines, s.printer.Count(), len(seen))
		}
		out.Reset()
		bad := []pipeline.Finding{f("new"), {ID: "y10k", Time: at.AddDate(8000, 0, 0)}, f("after")}
		if err := s.print(bad); err == nil {
			t.Errorf("lines %v: printed a finding of year 10026 without error", lines)
		}
		if first, _ := console.AppendJSONLine(nil, &bad[0]); out.String() != string(first) {
			t.Errorf("lines %v: before the error, printed %q", lines, out.String())
		}
	}
}

// TestKeyOf: only FindingID's form, 32 lowercase hex digits, has a key,
// the bytes they encode.
func TestKeyOf(t *testing.T) {
	f := func(id string, ok bool) {
		t.Helper()
		k := keyOf(id)
		if k.ok != ok {
			t.Errorf("keyOf(%q).ok = %v, want %v", id, k.ok, ok)
		}
		if ok && strconv.Quote(string(k.sum[:])) != strconv.Quote(string(mustUnhex(t, id))) {
			t.Errorf("keyOf(%q) = %x", id, k.sum)
		}
	}
	f(pipeline.FindingID("d", "c", "a", 1, ""), true)
	f("0123456789abcdef0123456789abcdef", true)
	f("0123456789ABCDEF0123456789abcdef", false)
	f("0123456789abcdef0123456789abcde", false)
	f("0123456789abcdef0123456789abcdef0", false)
	f("0123456789abcdef0123456789abcdeg", false)
	f("0123456789abcdef0123456789abcde/", false)
	f("", false)
}

func mustUnhex(t *testing.T, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		b[i] = byte(v)
	}
	return b
}
