package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// scanPeekRun scans paths with workers workers, with or without the stage
// peek (skipLine), and returns the findings printed and the summary.
func scanPeekRun(t *testing.T, paths []string, workers int, fullDecode bool) (string, string) {
	t.Helper()
	set, err := rules.LoadWithDefault(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	newBuiltins := func() (*detectors.Suite, error) { return loadDetectors("") }
	var out, errOut bytes.Buffer
	s := newScanner("demo", console.NewPrinter(&out, console.FormatJSON), &errOut)
	s.fullDecode = fullDecode
	if err := s.scan(context.Background(), paths, workers, newBuiltins, set); err != nil {
		t.Fatalf("scan --workers %d (full decode %v): %v", workers, fullDecode, err)
	}
	s.summary(&errOut, len(paths))
	return out.String(), errOut.String()
}

// rrLine is a RequestReceived event of the demo cluster.
const rrLine = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b6a3c1e-7d2f-4e8a-9c1b-2d3e4f5a6b7c","stage":"RequestReceived","requestURI":"/api/v1/namespaces/payments/secrets","verb":"list","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":["203.0.113.7"],"userAgent":"curl/8.5.0","objectRef":{"resource":"secrets","namespace":"payments","apiVersion":"v1"},"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.123456Z"}`

// TestScanPeekMatches: skipping the decode of RequestReceived lines
// changes nothing a scan prints or counts, with one worker or two: the
// same findings, events, verdicts, stage-less events and undecodable lines
// by reason, over the generated stream and over lines the peek must leave
// to the decoder (invalid JSON, an EventList, another apiVersion, a
// repeated or escaped stage).
func TestScanPeekMatches(t *testing.T) {
	dir := t.TempDir()
	tricky := []string{
		rrLine,
		rrLine[:len(rrLine)-20], // truncated: not decodable, as before
		rrLine + `x`,            // trailing garbage
		strings.Replace(rrLine, `"verb":"list"`, `"verb":list`, 1), // invalid value after the stage
		strings.Replace(rrLine, `audit.k8s.io/v1"`, `audit.k8s.io/v2"`, 1),
		strings.Replace(rrLine, `"kind":"Event"`, `"kind":"EventList"`, 1),
		strings.Replace(rrLine, `"stage":"RequestReceived"`, `"stage":"RequestReceived","stage":"ResponseComplete"`, 1),
		strings.Replace(rrLine, `"stage":"RequestReceived"`, `"stage":"ResponseComplete","STAGE":"RequestReceived"`, 1),
		strings.Replace(rrLine, `"stage":"RequestReceived"`, `"stage":"Request\u0052eceived"`, 1),
		strings.Replace(rrLine, `"stage":"RequestReceived"`, `"stage":"RequestReceived","st\u0061ge":"ResponseComplete"`, 1),
		strings.Replace(rrLine, `"stage":"RequestReceived"`, `"stage":1`, 1),
		strings.Replace(rrLine, `"stage":"RequestReceived",`, ``, 1), // no stage: read as ResponseComplete
		`{"stage":"RequestReceived"}`,
		`not json`,
	}
	mixed := filepath.Join(dir, "mixed.log")
	if err := os.WriteFile(mixed, []byte(strings.Join(tricky, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := 30000
	if testing.Short() {
		n = 6000
	}
	for name, paths := range map[string][]string{
		"generated":    {genLog(t, dir, n, 7, 0.05)},
		"attack-heavy": {genLog(t, dir, n/2, 11, 0.35)},
		"mixed":        {mixed, demoSample},
	} {
		for _, workers := range []int{1, 2} {
			t.Run(name+"/workers="+strconv.Itoa(workers), func(t *testing.T) {
				out, sum := scanPeekRun(t, paths, workers, false)
				wantOut, wantSum := scanPeekRun(t, paths, workers, true)
				if out != wantOut {
					got, want := findingKeys(t, []byte(out)), findingKeys(t, []byte(wantOut))
					t.Errorf("with the peek %d findings, without %d; or their order or contents differ", len(got), len(want))
					diffKeys(t, got, want)
				}
				if sum != wantSum {
					t.Errorf("summary with the peek:\n%s\nwithout:\n%s", sum, wantSum)
				}
				if !strings.Contains(sum, "skipped ") || strings.Contains(sum, "skipped 0 events") {
					t.Errorf("no event skipped; the test compares nothing the peek skips:\n%s", sum)
				}
				t.Logf("%d findings; %s", strings.Count(out, "\n"), sum)
			})
		}
	}
}

// TestScanPeekMistyped: the one difference the peek makes, documented at
// skipLine: a RequestReceived line that is valid JSON with a member of the
// wrong type is skipped instead of counted not decodable. Its look-alike
// of another stage is still decoded, and refused.
func TestScanPeekMistyped(t *testing.T) {
	dir := t.TempDir()
	mistyped := strings.Replace(rrLine, `"verb":"list"`, `"verb":1`, 1)
	completed := strings.Replace(mistyped, `"stage":"RequestReceived"`, `"stage":"ResponseComplete"`, 1)
	path := filepath.Join(dir, "mistyped.log")
	if err := os.WriteFile(path, []byte(rrLine+"\n"+mistyped+"\n"+completed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 2} {
		for _, tc := range []struct {
			fullDecode        bool
			events, bad, skip int
		}{
			{false, 2, 1, 2},
			{true, 1, 2, 1},
		} {
			set, err := rules.LoadWithDefault(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			s := newScanner("demo", console.NewPrinter(&out, console.FormatJSON), &errOut)
			s.fullDecode = tc.fullDecode
			err = s.scan(context.Background(), []string{path}, workers, func() (*detectors.Suite, error) { return loadDetectors("") }, set)
			if err != nil {
				t.Fatal(err)
			}
			if s.events != tc.events || s.badTotal != tc.bad || s.verdicts[pipeline.StageNotJudged] != tc.skip {
				t.Errorf("workers %d, full decode %v: %d events, %d not decodable, %d skipped; want %d, %d, %d",
					workers, tc.fullDecode, s.events, s.badTotal, s.verdicts[pipeline.StageNotJudged], tc.events, tc.bad, tc.skip)
			}
		}
	}
}
