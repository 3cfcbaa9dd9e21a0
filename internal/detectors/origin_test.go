package detectors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// originRefused is a stolen service-account token refused on one request,
// as the apiserver logs it at Metadata level; annotations is the event's
// annotations member (empty for exports that drop it).
func originRefused(t testing.TB, i int, at time.Time, user, verb, uri, resource, ns, decision string, code int) *pipeline.Event {
	t.Helper()
	ann := ``
	if decision != "" {
		ann = `,"annotations":{"authorization.k8s.io/decision":"` + decision + `","authorization.k8s.io/reason":""}`
	}
	status := fmt.Sprintf(`{"metadata":{},"status":"Failure","message":"%s is forbidden","reason":"Forbidden","code":%d}`, resource, code)
	if code < 400 {
		status = fmt.Sprintf(`{"metadata":{},"code":%d}`, code)
	}
	js := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"6f1e2d3c-4b5a-4968-8776-%012d","stage":"ResponseComplete","requestURI":%q,"verb":%q,"user":{"username":%q,"uid":"0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5","groups":["system:serviceaccounts","system:serviceaccounts:payments","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"]}},"sourceIPs":["198.51.100.23"],"userAgent":"curl/8.5.0","objectRef":{"resource":%q,"namespace":%q,"apiVersion":"v1"},"responseStatus":%s,"requestReceivedTimestamp":%q,"stageTimestamp":%q%s}`,
		i, uri, verb, user, resource, ns, status, at.Format("2006-01-02T15:04:05.000000Z"), at.Add(time.Millisecond).Format("2006-01-02T15:04:05.000000Z"), ann)
	return decodeTestEvent(t, js)
}

// originProbe is n refused requests over distinct namespaces and resources
// by user, 2 s apart inside one minute.
func originProbe(t testing.TB, n int, user, decision string, code int, distinct bool) []*pipeline.Event {
	t.Helper()
	start := time.Date(2026, 11, 27, 10, 20, 5, 0, time.UTC)
	resources := []string{"secrets", "configmaps", "pods", "serviceaccounts"}
	var evs []*pipeline.Event
	for i := range n {
		ns := fmt.Sprintf("team-%d", i)
		res := resources[i%len(resources)]
		if !distinct {
			ns, res = "kube-system", "secrets"
		}
		evs = append(evs, originRefused(t, i, start.Add(time.Duration(i)*2*time.Second), user, "list", "/api/v1/namespaces/"+ns+"/"+res, res, ns, decision, code))
	}
	return evs
}

func TestDeniedBurst(t *testing.T) {
	const sa = "system:serviceaccount:payments:payments-api"
	f := func(name string, evs []*pipeline.Event, want int) {
		t.Helper()
		d := NewDeniedBurst(defaultDeniedBurstConfig(), 1000)
		got := runDetector(d, evs...)
		if len(got) != want {
			t.Fatalf("%s: %d findings, want %d", name, len(got), want)
		}
		for _, f := range got {
			if f.Detector != DeniedBurstDetectorID || f.Severity != pipeline.SeverityMedium || f.MITRE == "" || !strings.Contains(f.Summary, sa) || strings.Contains(f.Summary, "\n") {
				t.Errorf("%s: finding %+v", name, f)
			}
		}
	}
	probe := originProbe(t, 12, sa, "forbid", 403, true)
	f("stolen token probing", probe, 1)
	f("the same probe delivered twice", append(append([]*pipeline.Event(nil), probe...), probe...), 1)
	f("no decision annotation, 403", originProbe(t, 12, sa, "", 403, true), 1)
	f("below the threshold", probe[:9], 0)
	f("one missing permission retried", originProbe(t, 12, sa, "forbid", 403, false), 0)
	f("admission refusals (allowed by RBAC)", originProbe(t, 12, sa, "allow", 403, true), 0)
	f("allowed requests", originProbe(t, 12, sa, "allow", 200, true), 0)
	f("not found without annotation", originProbe(t, 12, sa, "", 404, true), 0)
	f("a kubelet refused by the Node authorizer", originProbe(t, 12, "system:node:node-1", "forbid", 403, true), 0)
	f("anonymous is anonymous-access's", originProbe(t, 12, "system:anonymous", "forbid", 403, true), 0)

	// The finding id is the burst's: the same whichever request completes it.
	a := runDetector(NewDeniedBurst(defaultDeniedBurstConfig(), 1000), probe...)
	rev := make([]*pipeline.Event, len(probe))
	for i, ev := range probe {
		rev[len(probe)-1-i] = ev
	}
	b := runDetector(NewDeniedBurst(defaultDeniedBurstConfig(), 1000), rev...)
	if len(a) != 1 || len(b) != 1 || a[0].ID != b[0].ID {
		t.Errorf("order changes the finding: %v / %v", a, b)
	}
}

func TestParseNetList(t *testing.T) {
	f := func(name, text, wantErr string, in, out []string) {
		t.Helper()
		tbl, err := parseNetList("list.txt", strings.NewReader(text))
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%s: error %v, want %q", name, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, s := range in {
			if _, ok := tbl.lookup(netip.MustParseAddr(s)); !ok {
				t.Errorf("%s: %s not found", name, s)
			}
		}
		for _, s := range out {
			if e, ok := tbl.lookup(netip.MustParseAddr(s)); ok {
				t.Errorf("%s: %s found in %s", name, s, e)
			}
		}
	}
	f("plain addresses", "185.220.101.1\n# comment\n\n185.220.101.3 # trailing\n", "",
		[]string{"185.220.101.1", "185.220.101.3", "::ffff:185.220.101.1"}, []string{"185.220.101.2", "185.220.101.0", "185.220.101.4"})
	f("Tor exit-addresses", "ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E\nPublished 2026-12-03 22:14:05\nLastStatus 2026-12-04 05:00:00\nExitAddress 162.247.74.201 2026-12-04 05:06:51\n", "",
		[]string{"162.247.74.201"}, []string{"162.247.74.200"})
	f("prefixes, overlapping and adjacent", "10.0.0.0/9\n10.128.0.0/9\n10.1.0.0/16\n2001:db8::/32\n192.0.2.7/24\n", "",
		[]string{"10.0.0.0", "10.255.255.255", "2001:db8:ffff::1", "192.0.2.255", "192.0.2.0"}, []string{"11.0.0.0", "9.255.255.255", "2001:db9::", "192.0.3.0"})
	f("IPv4-mapped prefix", "::ffff:203.0.113.0/120\n", "", []string{"203.0.113.9"}, []string{"203.0.114.1"})
	f("whole space", "0.0.0.0/0\n", "", []string{"0.0.0.0", "255.255.255.255"}, []string{"::1"})
	f("bad line fails the file", "185.220.101.1\nnot-an-address.example\n", "list.txt:2:", nil, nil)
	f("bad prefix length", "10.0.0.0/33\n", "list.txt:1:", nil, nil)
	f("empty", "# nothing yet\n", "no entries", nil, nil)
}

// TestNetTableLookup compares the binary search with a linear scan over
// random prefixes.
func TestNetTableLookup(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	var ps []netip.Prefix
	for range 3000 {
		var a [4]byte
		for i := range a {
			a[i] = byte(r.IntN(256))
		}
		p := netip.PrefixFrom(netip.AddrFrom4(a), 8+r.IntN(25)).Masked()
		ps = append(ps, p)
		fmt.Fprintln(&b, p)
	}
	tbl, err := parseNetList("random", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for range 20000 {
		var a [4]byte
		for i := range a {
			a[i] = byte(r.IntN(256))
		}
		addr := netip.AddrFrom4(a)
		want := false
		for _, p := range ps {
			if p.Contains(addr) {
				want = true
				break
			}
		}
		if _, got := tbl.lookup(addr); got != want {
			t.Fatalf("%s: lookup %v, linear scan %v", addr, got, want)
		}
	}
}

func BenchmarkNetTableLookup(b *testing.B) {
	var sb strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&sb, "%d.%d.%d.%d\n", 1+i%200, (i/200)%256, (i*7)%256, (i*13)%256)
	}
	tbl, err := parseNetList("bench", strings.NewReader(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("203.0.113.45")
	b.ReportAllocs()
	for b.Loop() {
		tbl.lookup(a)
	}
}

// originWrite writes a list file and moves its modification time on, so
// that a rewrite within the file system's timestamp granularity is seen.
func originWrite(t testing.TB, path, text string, at time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func TestBadNetworks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tor-exits.txt")
	mod := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	originWrite(t, path, "185.220.101.0/24\n2001:67c:e60:c0c::/64\n", mod)
	cfg := defaultBadNetworksConfig()
	cfg.File = path
	state := DefaultConfig().State
	d, err := NewBadNetworks(cfg, state)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 10, 20, 5, 0, time.UTC)
	ev := func(i int, sources, decision string, code int) *pipeline.Event {
		e := originRefused(t, i, at.Add(time.Duration(i)*time.Second), "system:serviceaccount:payments:payments-api", "list", "/api/v1/secrets", "secrets", "", decision, code)
		e.SourceIPs = strings.Split(sources, ",")
		return e
	}
	f := func(name string, evs []*pipeline.Event, want ...pipeline.Severity) {
		t.Helper()
		got := runDetector(d, evs...)
		var sev []pipeline.Severity
		for _, f := range got {
			sev = append(sev, f.Severity)
			if f.Detector != BadNetworkDetectorID || f.MITRE == "" || f.Summary == "" || strings.Contains(f.Summary, "\n") {
				t.Errorf("%s: finding %+v", name, f)
			}
		}
		if fmt.Sprint(sev) != fmt.Sprint(want) {
			t.Errorf("%s: severities %v, want %v", name, sev, want)
		}
	}
	f("allowed from a Tor exit", []*pipeline.Event{ev(1, "185.220.101.33", "allow", 200)}, pipeline.SeverityHigh)
	f("the same exit again within the window", []*pipeline.Event{ev(2, "185.220.101.33", "allow", 200)})
	f("refused from another exit, over IPv6", []*pipeline.Event{ev(3, "2001:67c:e60:c0c::17", "forbid", 403)}, pipeline.SeverityMedium)
	f("the exit behind a proxy (X-Forwarded-For)", []*pipeline.Event{ev(4, "185.220.101.34,10.0.0.5", "", 200)}, pipeline.SeverityHigh)
	f("an unlisted address", []*pipeline.Event{ev(5, "185.220.102.1", "allow", 200)})
	// Failed authentication arrives as one ResponseStarted event with no user.
	failed := decodeTestEvent(t, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"6b0e3d9a-2f5c-4b8e-a1d7-4c9f2e5a8b30","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/kube-system/secrets","verb":"list","user":{},"sourceIPs":["185.220.101.35"],"userAgent":"curl/8.5.0","objectRef":{"resource":"secrets","namespace":"kube-system","apiVersion":"v1"},"responseStatus":{"metadata":{},"message":"Authentication failed, no credentials provided","code":401},"requestReceivedTimestamp":"2026-11-27T10:20:30.771204Z","stageTimestamp":"2026-11-27T10:20:30.771366Z"}`)
	f("failed authentication from an exit", []*pipeline.Event{failed}, pipeline.SeverityMedium)
	// A watch is judged at ResponseStarted; its RequestReceived is not judged.
	watch := originRefused(t, 10, at.Add(40*time.Second), "bob@example.com", "watch", "/api/v1/secrets?watch=true", "secrets", "", "allow", 200)
	watch.Stage = "ResponseStarted"
	watch.SourceIPs = []string{"185.220.101.36"}
	received := originRefused(t, 11, at.Add(41*time.Second), "bob@example.com", "watch", "/api/v1/secrets?watch=true", "secrets", "", "", 0)
	received.Stage, received.ResponseStatus, received.SourceIPs = "RequestReceived", nil, []string{"185.220.101.37"}
	f("a watch from an exit", []*pipeline.Event{watch, received}, pipeline.SeverityHigh)
	// Exports without a stage, and clusters that omit ResponseStarted.
	noStage := originRefused(t, 12, at.Add(42*time.Second), "bob@example.com", "get", "/api/v1/namespaces/shop/secrets/db", "secrets", "shop", "allow", 200)
	noStage.Stage, noStage.SourceIPs = "", []string{"185.220.101.38"}
	watchDone := originRefused(t, 13, at.Add(43*time.Second), "bob@example.com", "watch", "/api/v1/secrets?watch=true", "secrets", "", "allow", 200)
	watchDone.SourceIPs = []string{"185.220.101.39"}
	f("no stage, and a watch's ResponseComplete", []*pipeline.Event{noStage, watchDone}, pipeline.SeverityHigh, pipeline.SeverityHigh)
	f("no address", []*pipeline.Event{ev(6, "", "allow", 200)})

	// A changed file is read again; a bad one keeps the old list.
	originWrite(t, path, "203.0.113.0/24\n", mod.Add(time.Minute))
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	f("a new list is in force", []*pipeline.Event{ev(7, "185.220.101.40", "allow", 200), ev(8, "203.0.113.9", "allow", 200)}, pipeline.SeverityHigh)
	originWrite(t, path, "203.0.113.0/24\nbogus\n", mod.Add(2*time.Minute))
	if err := d.reload(); err == nil || !strings.Contains(err.Error(), "tor-exits.txt:2:") {
		t.Errorf("bad file: %v", err)
	}
	if err := d.reload(); err != nil {
		t.Errorf("the same bad file again: %v, want it reported once", err)
	}
	f("the old list stays", []*pipeline.Event{ev(9, "203.0.113.10", "allow", 200)}, pipeline.SeverityHigh)
	originWrite(t, path, strings.Repeat("203.0.113.1\n", 2<<20), mod.Add(3*time.Minute))
	if err := d.reload(); err == nil || !strings.Contains(err.Error(), "max_bytes") {
		t.Errorf("oversized file: %v", err)
	}
	if d.Entries() != 1 {
		t.Errorf("entries %d, want the old list's 1", d.Entries())
	}

	// A file that does not load at start-up is an error.
	cfg.File = filepath.Join(t.TempDir(), "missing.txt")
	if _, err := NewBadNetworks(cfg, state); err == nil {
		t.Error("missing file: no error")
	}
}

// TestBadNetworksRun: the set's background work reloads a changed list,
// counts a bad one, and stops with its context.
func TestBadNetworksRun(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a reload tick")
	}
	path := filepath.Join(t.TempDir(), "list.txt")
	mod := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	originWrite(t, path, "185.220.101.0/24\n", mod)
	cfg := DefaultConfig()
	cfg.BadNetworks.File = path
	cfg.BadNetworks.ReloadInterval = Duration(time.Second)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var d *BadNetworks
	for _, det := range s.detectors {
		if b, ok := det.(*BadNetworks); ok {
			d = b
		}
	}
	if d == nil {
		t.Fatalf("no bad-network detector in %v", s.IDs())
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, nil, reg) }()
	originWrite(t, path, "185.220.101.0/24\n203.0.113.0/24\n", mod.Add(time.Minute))
	deadline := time.Now().Add(5 * time.Second)
	for d.Entries() != 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if d.Entries() != 2 {
		t.Fatalf("entries %d after a change, want 2", d.Entries())
	}
	originWrite(t, path, "bogus\n", mod.Add(2*time.Minute))
	for d.loadErrors.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if d.loadErrors.Load() != 1 || d.Entries() != 2 {
		t.Errorf("after a bad file: %d errors, %d entries; want 1 and the old 2", d.loadErrors.Load(), d.Entries())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if got := strings.Join(names, ","); got != MetricBadNetworkEntries+","+MetricBadNetworkReloads {
		t.Errorf("metrics %s", got)
	}
}

func TestOriginConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte("bad_networks:\n  file: /etc/auditpipe/tor-exits.txt\n  reload_interval: 5m\ndenied_burst:\n  min_distinct_requests: 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BadNetworks.File != "/etc/auditpipe/tor-exits.txt" || time.Duration(cfg.BadNetworks.ReloadInterval) != 5*time.Minute ||
		cfg.BadNetworks.MaxBytes != 16<<20 || cfg.DeniedBurst.MinDistinctRequests != 20 || len(cfg.DeniedBurst.IgnoreUserPrefixes) != 1 {
		t.Errorf("parsed %+v %+v", cfg.BadNetworks, cfg.DeniedBurst)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"bad_networks:\n  fil: x\n", `unknown field "fil"`},
		{"bad_networks:\n  reload_interval: 10ms\n", "bad_networks.reload_interval must be at least 1s"},
		{"bad_networks:\n  max_bytes: 0\n", "bad_networks.max_bytes must be between"},
		{"denied_burst:\n  min_distinct_requests: 1\n", "denied_burst.min_distinct_requests must be between 2"},
		{"denied_burst:\n  min_distinct_principals: 1001\n", "denied_burst.min_distinct_principals must be between 2"},
		{"denied_burst:\n  ignore_user_prefixes: ['']\n", "denied_burst.ignore_user_prefixes[0] is empty"},
	} {
		if _, err := ParseConfig([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// TestDeniedBurstSource: several principals refused from one source is a
// finding of its own; the same principals from different machines, or one
// principal, is not.
func TestDeniedBurstSource(t *testing.T) {
	start := time.Date(2026, 11, 27, 10, 20, 5, 0, time.UTC)
	refused := func(i int, user, ip string) *pipeline.Event {
		ev := originRefused(t, i, start.Add(time.Duration(i)*time.Second), user, "list", "/api/v1/namespaces/kube-system/secrets", "secrets", "kube-system", "forbid", 403)
		ev.SourceIPs = []string{ip}
		return ev
	}
	users := []string{"system:serviceaccount:payments:api", "system:serviceaccount:shop:cart", "system:serviceaccount:ci:runner", "alice@example.com"}
	f := func(name string, evs []*pipeline.Event, want []pipeline.Severity) {
		t.Helper()
		got := runDetector(NewDeniedBurst(defaultDeniedBurstConfig(), 1000), evs...)
		var sev []pipeline.Severity
		for _, f := range got {
			sev = append(sev, f.Severity)
			if f.Detector != DeniedBurstDetectorID || !strings.Contains(f.Summary, "203.0.113.45") {
				t.Errorf("%s: finding %+v", name, f)
			}
		}
		if fmt.Sprint(sev) != fmt.Sprint(want) {
			t.Errorf("%s: severities %v, want %v", name, sev, want)
		}
	}
	var oneSource, manySources, twoUsers []*pipeline.Event
	for i, u := range users {
		oneSource = append(oneSource, refused(i, u, "203.0.113.45"))
		manySources = append(manySources, refused(i, u, fmt.Sprintf("203.0.113.%d", 50+i)))
		if i < 2 {
			twoUsers = append(twoUsers, refused(i, u, "203.0.113.45"), refused(i+10, u, "203.0.113.45"))
		}
	}
	f("four principals from one source", oneSource, []pipeline.Severity{pipeline.SeverityHigh})
	f("the same principals from four sources", manySources, nil)
	f("two principals, each twice", twoUsers, nil)
	behindProxy := []*pipeline.Event{}
	for i, u := range users[:3] {
		ev := refused(i, u, "203.0.113.45")
		ev.SourceIPs = []string{fmt.Sprintf("192.0.2.%d", i), "203.0.113.45"} // forged X-Forwarded-For first, the peer last
		behindProxy = append(behindProxy, ev)
	}
	f("a varying X-Forwarded-For does not split the source", behindProxy, []pipeline.Severity{pipeline.SeverityHigh})
}
