package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/gen"
)

// TestScanFirstSeen: `detect scan` judges first-seen rules on the baseline
// the files themselves build, in input order, so any --workers count
// prints the same findings; with the learning periods shortened to fit a
// short log, every injected first-seen request is reported.
func TestScanFirstSeen(t *testing.T) {
	dir := t.TempDir()
	g := gen.New(gen.Config{Seed: 5, Rate: 20, Lifecycle: true})
	var buf bytes.Buffer
	injected := map[string]string{} // auditID -> rule id that must report it
	next, kind := gen.DefaultStart.Add(20*time.Minute), 0
	n, step := 30000, time.Minute
	if testing.Short() {
		// 8,000 events at 20/s span 400 s: one injection every 30 s
		// from the fourth minute fits every kind in.
		n, step = 8000, 30*time.Second
		next = gen.DefaultStart.Add(4 * time.Minute)
	}
	for range n {
		e := g.Next()
		if e.Time.After(next) {
			g.Inject(gen.FirstSeenKinds[kind%len(gen.FirstSeenKinds)], e.Time.Add(time.Second))
			kind++
			next = next.Add(step)
		}
		if strings.HasPrefix(e.Scenario, gen.FirstSeenPrefix) && len(e.Expect) > 0 {
			injected[e.AuditID] = e.Expect[0]
		}
		buf.Write(e.JSON)
		buf.WriteByte('\n')
	}
	log := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(log, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Learning over a minute rather than weeks; keys that learn (hours
	// or a day) learn for a minute.
	ruleFile := learnRules(t, dir)
	scanWith := func(workers int) string {
		var out, errOut bytes.Buffer
		args := []string{"scan", "--cluster", "prod", "--output", "json", "--rules", ruleFile, "--workers", strconv.Itoa(workers), log}
		if err := dispatch(args, &out, &errOut); err != nil {
			t.Fatalf("scan --workers %d: %v\n%s", workers, err, errOut.String())
		}
		return out.String()
	}
	one := scanWith(1)
	for _, w := range []int{2, 4} {
		if got := scanWith(w); got != one {
			t.Errorf("--workers %d printed other findings than --workers 1 (%d vs %d bytes)", w, len(got), len(one))
		}
	}
	if len(injected) < len(gen.FirstSeenKinds) {
		t.Fatalf("%d injections, want one of each kind", len(injected))
	}
	for id, rule := range injected {
		found := false
		for _, line := range strings.Split(one, "\n") {
			if strings.Contains(line, `"audit_id":"`+id+`"`) && strings.Contains(line, `"detector":"`+rule+`"`) && strings.Contains(line, `"new_terms.term"`) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("injected %s (%s) not reported", id, rule)
		}
	}
	t.Logf("%d injected first-seen requests reported, identically for 1, 2 and 4 workers; %d first-seen findings in all",
		len(injected), strings.Count(one, `"new_terms.term"`))
}
