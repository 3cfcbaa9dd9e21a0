package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/gen"
)

// Streams of the process rows: a day of a cluster as the generator makes
// it (2 % of requests attacks), and an incident's slice of logs, where
// every request the generator makes belongs to an attack and over a third
// of the events (half are RequestReceived, not judged) produce a finding.
const (
	scanRealisticEvents = 150000
	scanFindingsEvents  = 100000
)

// BenchmarkScanProcess runs `detect scan` as users run it, a whole process
// (start, loading the default pack, reading the file, every detector and
// rule, findings printed as JSON lines to /dev/null), against naivedecode,
// a program that only decodes the same file with encoding/json into
// auditv1.Event. Both are built with go build at the start. The file is
// in the page cache after the first run. Rows: naive (the baseline),
// detect (its default --workers, one per core), and detect-workers1.
// events/s is of wall time; cpu-ns/event adds user and system time of the
// process, which the other sessions on a shared machine disturb less.
// Each detect row also runs naive beside every run of its own and
// reports the ratios of those pairs, x-naive-wall and x-naive-cpu: the
// ratios the targets are about, measured under one load.
// AUDITPIPE_BENCH_DETECT names a detect binary to run instead of building
// this tree's (another commit's, for a before/after comparison).
func BenchmarkScanProcess(b *testing.B) {
	dir := b.TempDir()
	detect, naive := filepath.Join(dir, "detect"), filepath.Join(dir, "naivedecode")
	build := map[string]string{detect: "github.com/auditpipe/auditpipe/cmd/detect", naive: "github.com/auditpipe/auditpipe/internal/bench/naivedecode"}
	// A detect built elsewhere (another commit's, to compare) instead of
	// this tree's.
	if bin := os.Getenv("AUDITPIPE_BENCH_DETECT"); bin != "" {
		delete(build, detect)
		detect = bin
	}
	for bin, pkg := range build {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	streams := []struct {
		name   string
		events int
		attack float64
	}{
		{"realistic", scanRealisticEvents, 0.02},
		{"findings", scanFindingsEvents, 1},
	}
	for _, st := range streams {
		path := writeLog(b, dir, st.name, st.events, st.attack)
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		withFindings := eventsWithFindings(b, detect, path)
		b.Logf("%s: %d events, %d MB, %d (%.0f %%) with a finding", st.name, st.events, fi.Size()>>20, withFindings, 100*float64(withFindings)/float64(st.events))
		if st.name == "findings" && withFindings*3 < st.events {
			b.Fatalf("only %d of %d events have a finding: not finding-heavy", withFindings, st.events)
		}
		naiveArgs := []string{naive, path}
		for _, row := range []struct {
			name string
			args []string
		}{
			{"naive", naiveArgs},
			{"detect", []string{detect, "scan", "--output", "json", path}},
			{"detect-workers1", []string{detect, "scan", "--output", "json", "--workers", "1", path}},
		} {
			b.Run(st.name+"/"+row.name, func(b *testing.B) {
				b.SetBytes(fi.Size())
				// A detect row runs the naive program beside each of its
				// runs, in alternating order, outside the timer: the
				// ratios of the pairs (x-naive-wall, x-naive-cpu) see
				// the same load of a shared machine, which a naive row
				// measured a minute earlier does not.
				paired := row.name != "naive"
				var wall, cpu, naiveWall, naiveCPU time.Duration
				for i := 0; b.Loop(); i++ {
					if paired && i%2 == 0 {
						b.StopTimer()
						w, c := runProcess(b, naiveArgs)
						naiveWall, naiveCPU = naiveWall+w, naiveCPU+c
						b.StartTimer()
					}
					w, c := runProcess(b, row.args)
					wall, cpu = wall+w, cpu+c
					if paired && i%2 == 1 {
						b.StopTimer()
						w, c := runProcess(b, naiveArgs)
						naiveWall, naiveCPU = naiveWall+w, naiveCPU+c
						b.StartTimer()
					}
				}
				events := float64(st.events) * float64(b.N)
				b.ReportMetric(events/wall.Seconds(), "events/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
				if paired {
					b.ReportMetric(naiveWall.Seconds()/wall.Seconds(), "x-naive-wall")
					b.ReportMetric(naiveCPU.Seconds()/cpu.Seconds(), "x-naive-cpu")
				}
			})
		}
	}
}

// runProcess runs args as a process and returns its wall time and its
// CPU time (user and system).
func runProcess(b *testing.B, args []string) (wall, cpu time.Duration) {
	b.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%v: %v\n%s", args, err, stderr.Bytes())
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// writeLog writes n generated events as an apiserver's log backend does.
func writeLog(b *testing.B, dir, name string, n int, attack float64) string {
	b.Helper()
	path := filepath.Join(dir, name+".log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := gen.New(gen.Config{Seed: 7, AttackRatio: attack})
	for range n {
		if _, err := w.Write(g.Next().JSON); err != nil {
			b.Fatal(err)
		}
		if err := w.WriteByte('\n'); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// eventsWithFindings runs detect scan once and counts the distinct events
// (audit ID and stage) its findings are about.
func eventsWithFindings(b *testing.B, detect, path string) int {
	b.Helper()
	cmd := exec.Command(detect, "scan", "--output", "json", path)
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("detect scan %s: %v", path, err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var f struct {
			AuditID string `json:"audit_id"`
			Stage   string `json:"stage"`
		}
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			b.Fatalf("finding line %q: %v", sc.Bytes(), err)
		}
		seen[f.AuditID+"\x00"+f.Stage] = true
	}
	return len(seen)
}
