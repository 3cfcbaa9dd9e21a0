package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestScanHundredThousandKeys scans 100,000 service accounts, each seen
// once from its own pod, through every shipped rule and the first-seen
// state (three first-seen rules hold a key per account, 300,000 keys
// before the default bound of 200,000 evicts), and holds detect's RSS
// target: the peak RSS of a process doing only that stays below 512 MiB.
func TestScanHundredThousandKeys(t *testing.T) {
	if path := os.Getenv(scanMemoryChild); path != "" {
		// The child: scan, nothing else, so that its peak RSS is the scan's.
		var errOut strings.Builder
		if err := dispatch([]string{"scan", "--cluster", "prod", "--output", "json", "--workers", "2", path}, io.Discard, &errOut); err != nil {
			t.Fatalf("scan: %v\n%s", err, errOut.String())
		}
		if !strings.Contains(errOut.String(), "100000 events") {
			t.Fatalf("summary: %s", errOut.String())
		}
		// VmHWM, not the parent's rusage: Linux carries the parent's
		// peak into a child's ru_maxrss across exec.
		t.Logf("VmHWM %d MiB", peakRSSMiB(t))
		return
	}
	if testing.Short() {
		t.Skip("writes and scans 100,000 events")
	}
	path := filepath.Join(t.TempDir(), "accounts.log")
	writeAccounts(t, path, 100_000)
	// In a child process: other tests of this package (and scan's
	// GOGC=400, which stays set) would otherwise own the peak.
	cmd := exec.Command(os.Args[0], "-test.run=^TestScanHundredThousandKeys$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), scanMemoryChild+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child scan: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`VmHWM (\d+) MiB`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("child printed no peak RSS:\n%s", out)
	}
	peak, _ := strconv.Atoi(string(m[1]))
	t.Logf("peak RSS of a process scanning 100,000 accounts: %d MiB", peak)
	if peak > 512 {
		t.Errorf("peak RSS %d MiB, over detect's 512 MiB target", peak)
	}
}

// scanMemoryChild names the file the child of TestScanHundredThousandKeys
// scans.
const scanMemoryChild = "AUDITPIPE_SCAN_MEMORY_CHILD"

// writeAccounts writes n events, one per service account, each from its
// own pod on one of 250 nodes.
func writeAccounts(t *testing.T, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for i := range n {
		ns, sa := "team-"+strconv.Itoa(i%500), "sa-"+strconv.Itoa(i)
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond).Format("2006-01-02T15:04:05.000000Z")
		ip := "10.244." + strconv.Itoa(i%250) + "." + strconv.Itoa(2+i%200)
		w.WriteString(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-` + strconv.Itoa(i) +
			`","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/` + ns + `/configmaps/app","verb":"get",` +
			`"user":{"username":"system:serviceaccount:` + ns + `:` + sa + `","groups":["system:serviceaccounts","system:authenticated"],` +
			`"extra":{"authentication.kubernetes.io/credential-id":["JTI=` + strconv.Itoa(i) + `"],"authentication.kubernetes.io/node-name":["node-` + strconv.Itoa(i%250) + `"]}},` +
			`"sourceIPs":["` + ip + `"],"userAgent":"app/1.0 (linux/amd64)","objectRef":{"resource":"configmaps","namespace":"` + ns + `","name":"app","apiVersion":"v1"},` +
			`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"` + at + `","stageTimestamp":"` + at + `",` +
			`"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}` + "\n")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// peakRSSMiB reads the process's peak resident set size (VmHWM, Linux).
func peakRSSMiB(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("reading peak RSS: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			return kb >> 10
		}
	}
	t.Skip("no VmHWM in /proc/self/status")
	return 0
}
