package detectors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Where requests come from: the denied-burst and bad-network detectors.
const (
	// DeniedBurstDetectorID is the id of the detector of bursts of refused
	// requests by one authenticated principal.
	DeniedBurstDetectorID = "denied-burst"
	// BadNetworkDetectorID is the id of the detector of requests from a
	// user-supplied list of networks (Tor exits, blocklists).
	BadNetworkDetectorID = "bad-network"
)

// MITRE ATT&CK techniques. A principal refused on many distinct requests is
// trying what its credential reaches: T1613 Container and Resource
// Discovery. A request from a Tor exit or an anonymising network hides its
// origin: T1090.003 Proxy: Multi-hop Proxy.
const (
	originMITREDiscovery = "T1613"
	originMITREProxy     = "T1090.003"
)

// Limits of the bad-network list file.
const (
	// badNetMaxBytesCap caps bad_networks.max_bytes. The largest public
	// blocklists (FireHOL level 1-4 aggregated) are a few MiB; 256 MiB of
	// prefixes would hold the table in well over a GiB.
	badNetMaxBytesCap = 256 << 20
	// badNetMinReload is the shortest reload_interval: a stat per second
	// is nothing, more often only burns CPU on a file that changes daily.
	badNetMinReload = time.Second
)

// DeniedBurstConfig configures denied-burst: one authenticated principal
// refused (403, or the forbid decision) on many distinct requests within a
// window. Unauthenticated sources are anonymous-access's enumeration.
type DeniedBurstConfig struct {
	// MinDistinctRequests is how many distinct refused requests (verb and
	// path) one principal must make within one window to be reported. A
	// workload missing one permission retries the same request; a stolen
	// credential is tried against many. Default 10, between 2 and 1000.
	MinDistinctRequests int `json:"min_distinct_requests"`
	// Window is the width of the event-time buckets; one finding is made per
	// principal and bucket. Default 1m, at most 24h.
	Window Duration `json:"window"`
	// MinDistinctPrincipals is how many distinct principals refused from
	// one source address (the TCP peer, the last of sourceIPs) within one
	// window make a source burst: stolen credentials tried one after the
	// other from one machine. Default 3, between 2 and 1000.
	MinDistinctPrincipals int `json:"min_distinct_principals"`
	// IgnoreUserPrefixes are usernames never counted. Default
	// ["system:node:"]: the Node authorizer refuses kubelets routinely
	// while pods move between nodes.
	IgnoreUserPrefixes []string `json:"ignore_user_prefixes"`
}

// BadNetworksConfig configures bad-network.
type BadNetworksConfig struct {
	// File names a list of networks whose requests are reported: one IPv4
	// or IPv6 address or CIDR prefix a line; "#" starts a comment; a Tor
	// "exit-addresses" file (lines "ExitAddress <ip> <date>") is read as
	// is. Default "" (off). Replace the file atomically (write, then
	// rename): a file caught half-written may parse and is then used.
	File string `json:"file"`
	// ReloadInterval is how often the file's modification time and size
	// are checked; a changed file is read again. A file that does not
	// load (unreadable, too large, a bad line, no entries) is counted and
	// logged, and the previous list stays in force. Default 1m, at least
	// 1s.
	ReloadInterval Duration `json:"reload_interval"`
	// MaxBytes bounds the file's size. Default 16 MiB, at most 256 MiB.
	MaxBytes int64 `json:"max_bytes"`
}

func defaultDeniedBurstConfig() DeniedBurstConfig {
	return DeniedBurstConfig{
		MinDistinctRequests:   10,
		MinDistinctPrincipals: 3,
		Window:                Duration(time.Minute),
		IgnoreUserPrefixes:    []string{"system:node:"},
	}
}

func defaultBadNetworksConfig() BadNetworksConfig {
	return BadNetworksConfig{ReloadInterval: Duration(time.Minute), MaxBytes: 16 << 20}
}

func (c DeniedBurstConfig) validate(prefix string) error {
	var errs []error
	if n := c.MinDistinctRequests; n < 2 || n > anonMaxMinDistinctPaths {
		errs = append(errs, fmt.Errorf("%s.min_distinct_requests must be between 2 and %d, got %d", prefix, anonMaxMinDistinctPaths, n))
	}
	if n := c.MinDistinctPrincipals; n < 2 || n > anonMaxMinDistinctPaths {
		errs = append(errs, fmt.Errorf("%s.min_distinct_principals must be between 2 and %d, got %d", prefix, anonMaxMinDistinctPaths, n))
	}
	if w := time.Duration(c.Window); w <= 0 || w > anonMaxWindow {
		errs = append(errs, fmt.Errorf("%s.window must be positive and at most %s, got %s", prefix, anonMaxWindow, w))
	}
	for i, p := range c.IgnoreUserPrefixes {
		if p == "" {
			errs = append(errs, fmt.Errorf("%s.ignore_user_prefixes[%d] is empty: it would ignore everyone", prefix, i))
		}
	}
	return errors.Join(errs...)
}

func (c BadNetworksConfig) validate(prefix string) error {
	var errs []error
	if time.Duration(c.ReloadInterval) < badNetMinReload {
		errs = append(errs, fmt.Errorf("%s.reload_interval must be at least %s, got %s", prefix, badNetMinReload, time.Duration(c.ReloadInterval)))
	}
	if c.MaxBytes <= 0 || c.MaxBytes > badNetMaxBytesCap {
		errs = append(errs, fmt.Errorf("%s.max_bytes must be between 1 and %d, got %d", prefix, badNetMaxBytesCap, c.MaxBytes))
	}
	return errors.Join(errs...)
}

func buildOrigin(cfg Config) ([]Detector, error) {
	ds := []Detector{NewDeniedBurst(cfg.DeniedBurst, cfg.State.MaxEntries)}
	if cfg.BadNetworks.File != "" {
		b, err := NewBadNetworks(cfg.BadNetworks, cfg.State)
		if err != nil {
			return nil, err
		}
		ds = append(ds, b)
	}
	return ds, nil
}

// originDenied reports a request authorization refused. The decision
// annotation is missing from some exports and pipelines; then a 403 stands
// for it. A 403 with the allow decision is admission's refusal, not
// authorization's.
func originDenied(ev *pipeline.Event) bool {
	switch ev.Decision() {
	case "forbid":
		return true
	case "":
		return ev.Code() == 403
	}
	return false
}

// originAllowed reports a request that got in: the allow decision, else a
// response below 400 (the same reading as anonAllowedByCode).
func originAllowed(ev *pipeline.Event) bool {
	switch ev.Decision() {
	case "allow":
		return true
	case "":
		return anonAllowedByCode(ev.Code())
	}
	return false
}

// originTime is the event's time: the stage's, else the request's.
func originTime(ev *pipeline.Event) time.Time {
	if at := ev.StageTimestamp.Time; !at.IsZero() {
		return at
	}
	return ev.RequestReceivedTimestamp.Time
}

// DeniedBurst is the denied-burst detector: an authenticated principal
// refused on many distinct requests within a window, the pattern of a
// stolen credential being tried against the API (kubectl auth can-i --list
// does it in one SelfSubjectRulesReview; tools that probe do it by trying);
// and one source address refused as several principals, stolen credentials
// tried one after the other.
// It is safe for concurrent use.
type DeniedBurst struct {
	cfg    DeniedBurstConfig
	bursts *burstCounter // per principal, over distinct requests
	users  *burstCounter // per source address, over distinct principals
}

var _ Detector = (*DeniedBurst)(nil)

// NewDeniedBurst builds the detector; cfg must be valid (Config.Validate).
func NewDeniedBurst(cfg DeniedBurstConfig, maxEntries int) *DeniedBurst {
	return &DeniedBurst{
		cfg:    cfg,
		bursts: newBurstCounter(cfg.MinDistinctRequests, time.Duration(cfg.Window), maxEntries),
		users:  newBurstCounter(cfg.MinDistinctPrincipals, time.Duration(cfg.Window), maxEntries),
	}
}

// ID implements Detector.
func (d *DeniedBurst) ID() string { return DeniedBurstDetectorID }

// Detect implements Detector.
func (d *DeniedBurst) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	user := ev.User.Username
	if user == "" || anonIsAnonymous(ev) || !originDenied(ev) {
		return out
	}
	for _, p := range d.cfg.IgnoreUserPrefixes {
		if strings.HasPrefix(user, p) {
			return out
		}
	}
	at := originTime(ev)
	if at.IsZero() {
		return out
	}
	path := anonEscapedPath(ev.RequestURI)
	if ip := anonPeerIP(ev); ip != "" {
		if report, ok := d.users.add(ev.Cluster, ip, at, user, anonQuote(user), 403, ev.UserAgent); ok {
			out = append(out, d.sourceFinding(ev, ip, report))
		}
	}
	report, ok := d.bursts.add(ev.Cluster, user, at, ev.Verb+" "+path, anonQuote(ev.Verb+" "+path), 403, ev.UserAgent)
	if !ok {
		return out
	}
	window := time.Duration(d.cfg.Window)
	f := pipeline.NewFinding(DeniedBurstDetectorID, ev, "burst")
	// The burst is what is reported: its id and time depend only on the
	// principal and bucket, not on the request that completed it.
	f.ID = pipeline.FindingID(DeniedBurstDetectorID, ev.Cluster, "", 0,
		"burst\x00"+user+"\x00"+report.start.UTC().Format(time.RFC3339Nano)+"\x00"+window.String())
	f.Time = report.start
	f.Severity = pipeline.SeverityMedium
	f.MITRE = originMITREDiscovery
	agent := "no user agent"
	if len(report.agents) > 0 && report.agents[0] != "" {
		agent = "user agent " + strconv.Quote(anonTruncate(report.agents[0]))
	}
	f.Summary = anonOneLine(fmt.Sprintf("Possible permission enumeration: %s was refused %d distinct requests within %s (from %s; %s)",
		anonTruncate(user), d.cfg.MinDistinctRequests, window, anonOr(ev.SourceIP(), "unknown"), agent))
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: "user.username", Value: user, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "distinct_requests", Value: strconv.Itoa(d.cfg.MinDistinctRequests), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "window", Value: report.start.UTC().Format(time.RFC3339) + "/" + window.String(), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "sourceIPs", Value: strings.Join(ev.SourceIPs, ","), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "user_agents", Value: strings.Join(report.agents, " | "), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "sample_requests", Value: strings.Join(report.samples, " "), Source: pipeline.FromEvent},
	)
	return append(out, f)
}

// sourceFinding reports one source address refused as several principals
// within a window.
func (d *DeniedBurst) sourceFinding(ev *pipeline.Event, ip string, report burstReport) pipeline.Finding {
	window := time.Duration(d.cfg.Window)
	f := pipeline.NewFinding(DeniedBurstDetectorID, ev, "source")
	f.ID = pipeline.FindingID(DeniedBurstDetectorID, ev.Cluster, "", 0,
		"source\x00"+ip+"\x00"+report.start.UTC().Format(time.RFC3339Nano)+"\x00"+window.String())
	f.Time = report.start
	f.SourceIP = ip
	f.Severity = pipeline.SeverityHigh
	f.MITRE = originMITREDiscovery
	f.Summary = anonOneLine(fmt.Sprintf("Credentials tried from one source: %s was refused as %d distinct principals within %s (%s)",
		ip, d.cfg.MinDistinctPrincipals, window, strings.Join(report.samples, ", ")))
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: "source_ip", Value: ip, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "sourceIPs", Value: strings.Join(ev.SourceIPs, ","), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "distinct_principals", Value: strconv.Itoa(d.cfg.MinDistinctPrincipals), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "window", Value: report.start.UTC().Format(time.RFC3339) + "/" + window.String(), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "principals", Value: strings.Join(report.samples, " "), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "user_agents", Value: strings.Join(report.agents, " | "), Source: pipeline.FromEvent},
	)
	return f
}

// netRange is one merged run of addresses of the list, first to last
// inclusive, and the list entry it started from (for the finding).
type netRange struct {
	lo, hi netip.Addr
	entry  string
}

// netTable is a list of networks as sorted, disjoint ranges per family: a
// lookup is a binary search, O(log n) whatever the list's size.
type netTable struct {
	v4, v6  []netRange
	entries int
}

// lookup returns the list entry covering a, if any.
func (t *netTable) lookup(a netip.Addr) (string, bool) {
	a = a.Unmap()
	rs := t.v6
	if a.Is4() {
		rs = t.v4
	}
	// The first range starting after a; the one before it is the only
	// candidate.
	i, _ := slices.BinarySearchFunc(rs, a, func(r netRange, a netip.Addr) int {
		if r.lo.Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	if i == 0 {
		return "", false
	}
	if r := rs[i-1]; a.Compare(r.hi) <= 0 {
		return r.entry, true
	}
	return "", false
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

// parseNetList reads a network list (see BadNetworksConfig.File). Any line
// that does not parse fails the whole file, naming the line: a list that
// lost entries to a corrupt download must not quietly replace a good one.
func parseNetList(name string, r io.Reader) (*netTable, error) {
	t := &netTable{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		entry := fields[0]
		switch entry {
		case "ExitAddress":
			if len(fields) > 1 {
				entry = fields[1]
			}
		case "ExitNode", "Published", "LastStatus":
			continue // the other keywords of the Tor exit-addresses format
		}
		var p netip.Prefix
		var err error
		if strings.IndexByte(entry, '/') >= 0 {
			p, err = netip.ParsePrefix(entry)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(entry); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not an IP address or CIDR prefix", name, line, entry)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%s:%d: %q: an IPv4-mapped prefix must be /96 or longer", name, line, entry)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		r := netRange{lo: p.Addr(), hi: lastAddr(p), entry: p.String()}
		if p.Addr().Is4() {
			t.v4 = append(t.v4, r)
		} else {
			t.v6 = append(t.v6, r)
		}
		t.entries++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	if t.entries == 0 {
		// An empty file is more likely one being rewritten in place than
		// a list that was emptied on purpose; remove the key to turn the
		// detector off.
		return nil, fmt.Errorf("%s: no entries", name)
	}
	t.v4, t.v6 = mergeRanges(t.v4), mergeRanges(t.v6)
	return t, nil
}

// mergeRanges sorts rs and joins overlapping and adjacent ranges, so that
// lookup's binary search finds at most one candidate.
func mergeRanges(rs []netRange) []netRange {
	slices.SortFunc(rs, func(a, b netRange) int { return a.lo.Compare(b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.hi.Next(); r.lo.Compare(last.hi) <= 0 || (next.IsValid() && r.lo == next) {
				if r.hi.Compare(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// BadNetworks is the bad-network detector: requests whose source addresses
// (any of sourceIPs: behind a proxy the client is an X-Forwarded-For entry)
// lie in a user-supplied list of networks. One finding per address,
// principal and outcome within state.window, so a Tor scanner's thousand
// requests make one finding, not a thousand. The list is reloaded by Run.
// It is safe for concurrent use.
type BadNetworks struct {
	cfg    BadNetworksConfig
	window time.Duration
	table  atomic.Pointer[netTable]
	seen   *Window[badNetKey, struct{}]

	// Reload bookkeeping, owned by Run.
	mu      sync.Mutex
	lastMod time.Time
	lastLen int64

	loads, loadErrors atomic.Uint64
}

type badNetKey struct {
	cluster, ip, user string
	allowed           bool
	bucket            int64
}

var _ Detector = (*BadNetworks)(nil)

// NewBadNetworks loads cfg.File; a file that does not load is an error at
// start-up, where it is certain to be noticed.
func NewBadNetworks(cfg BadNetworksConfig, state StateConfig) (*BadNetworks, error) {
	d := &BadNetworks{cfg: cfg, window: time.Duration(state.Window), seen: NewWindow[badNetKey, struct{}](state.MaxEntries, time.Duration(state.Window))}
	if err := d.reload(); err != nil {
		return nil, fmt.Errorf("loading bad_networks.file: %w", err)
	}
	return d, nil
}

// ID implements Detector.
func (d *BadNetworks) ID() string { return BadNetworkDetectorID }

// Entries returns the number of entries of the list in force.
func (d *BadNetworks) Entries() int {
	if t := d.table.Load(); t != nil {
		return t.entries
	}
	return 0
}

// reload reads the file if its modification time or size changed since
// the last attempt, and swaps in the new table when it parses.
func (d *BadNetworks) reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := os.Stat(d.cfg.File)
	if err != nil {
		return fmt.Errorf("reading network list: %w", err)
	}
	if d.table.Load() != nil && st.ModTime().Equal(d.lastMod) && st.Size() == d.lastLen {
		return nil
	}
	// Remember the attempt even when it fails, so a bad file is reported
	// once, not at every tick, and retried when it changes.
	d.lastMod, d.lastLen = st.ModTime(), st.Size()
	if st.Size() > d.cfg.MaxBytes {
		return fmt.Errorf("network list %s is %d bytes, more than bad_networks.max_bytes (%d)", d.cfg.File, st.Size(), d.cfg.MaxBytes)
	}
	f, err := os.Open(d.cfg.File)
	if err != nil {
		return fmt.Errorf("reading network list: %w", err)
	}
	defer f.Close()
	// The file may grow between Stat and read: read one byte past the
	// bound to notice.
	data, err := io.ReadAll(io.LimitReader(f, d.cfg.MaxBytes+1))
	if err != nil {
		return fmt.Errorf("reading network list: %w", err)
	}
	if int64(len(data)) > d.cfg.MaxBytes {
		return fmt.Errorf("network list %s is more than bad_networks.max_bytes (%d)", d.cfg.File, d.cfg.MaxBytes)
	}
	t, err := parseNetList(d.cfg.File, bytes.NewReader(data))
	if err != nil {
		return err
	}
	d.table.Store(t)
	return nil
}

// Run reloads the list every reload_interval until ctx ends. A reload that
// fails is counted and logged, and the previous list stays in force.
func (d *BadNetworks) Run(ctx context.Context, log *slog.Logger) {
	tick := time.NewTicker(time.Duration(d.cfg.ReloadInterval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		before := d.table.Load()
		if err := d.reload(); err != nil {
			d.loadErrors.Add(1)
			if log != nil {
				log.Warn("reloading bad network list, keeping the previous one", "file", d.cfg.File, "entries", d.Entries(), "err", err)
			}
			continue
		}
		if d.table.Load() != before {
			d.loads.Add(1)
			if log != nil {
				log.Info("bad network list reloaded", "file", d.cfg.File, "entries", d.Entries())
			}
		}
	}
}

// Detect implements Detector.
func (d *BadNetworks) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	t := d.table.Load()
	if t == nil {
		return out
	}
	for i, s := range ev.SourceIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		entry, ok := t.lookup(a)
		if !ok {
			continue
		}
		return d.report(ev, i, a.Unmap().String(), entry, out)
	}
	return out
}

func (d *BadNetworks) report(ev *pipeline.Event, pos int, ip, entry string, out []pipeline.Finding) []pipeline.Finding {
	allowed := originAllowed(ev)
	at := originTime(ev)
	user := ev.User.Username
	key := badNetKey{cluster: ev.Cluster, ip: ip, user: user, allowed: allowed, bucket: at.Truncate(d.window).UnixNano()}
	first := false
	d.seen.Update(key, at, func(_ struct{}, ok bool) struct{} {
		first = !ok
		return struct{}{}
	})
	if !first {
		return out
	}
	f := pipeline.NewFinding(BadNetworkDetectorID, ev, "")
	f.MITRE = originMITREProxy
	f.SourceIP = ip
	who := anonOr(anonTruncate(user), "an unauthenticated client")
	where := "source address"
	if pos < len(ev.SourceIPs)-1 {
		where = "forwarded-for address"
	}
	if allowed {
		f.Severity = pipeline.SeverityHigh
		f.Summary = fmt.Sprintf("Request from a listed network: %s ran %s %s from %s %s (in %s), and was allowed",
			who, ev.Verb, anonQuote(anonEscapedPath(ev.RequestURI)), where, ip, entry)
	} else {
		f.Severity = pipeline.SeverityMedium
		f.Summary = fmt.Sprintf("Request from a listed network: %s tried %s %s from %s %s (in %s), refused (%d)",
			who, ev.Verb, anonQuote(anonEscapedPath(ev.RequestURI)), where, ip, entry, ev.Code())
	}
	f.Summary = anonOneLine(f.Summary)
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: "sourceIPs", Value: strings.Join(ev.SourceIPs, ","), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "listed_network", Value: entry, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "list", Value: d.cfg.File, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "annotations." + pipeline.AnnotationDecision, Value: ev.Decision(), Source: pipeline.FromEvent},
	)
	return append(out, f)
}

// Metric names of the bad-network list.
const (
	// MetricBadNetworkReloads counts reloads of bad_networks.file by
	// result: ok (a changed list is in force) or error (the previous list
	// stays).
	MetricBadNetworkReloads = "auditpipe_detect_bad_network_reloads_total"
	// MetricBadNetworkEntries is the number of entries of the list in
	// force.
	MetricBadNetworkEntries = "auditpipe_detect_bad_network_entries"
)

// Run runs the background work of the set's detectors (reloading the
// bad-network list) until ctx ends, and registers their metrics with reg,
// which may be nil. Detection works without it, on the lists loaded when
// the set was built.
func (s *Suite) Run(ctx context.Context, log *slog.Logger, reg prometheus.Registerer) error {
	var wg sync.WaitGroup
	for _, d := range s.detectors {
		b, ok := d.(*BadNetworks)
		if !ok {
			continue
		}
		if reg != nil {
			const help = "Reloads of the bad-network list by result: ok (a changed list is in force) or error (the previous list stays)."
			cs := []prometheus.Collector{
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricBadNetworkReloads, Help: help, ConstLabels: prometheus.Labels{"result": "ok"}},
					func() float64 { return float64(b.loads.Load()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: MetricBadNetworkReloads, Help: help, ConstLabels: prometheus.Labels{"result": "error"}},
					func() float64 { return float64(b.loadErrors.Load()) }),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricBadNetworkEntries, Help: "Entries of the bad-network list in force."},
					func() float64 { return float64(b.Entries()) }),
			}
			for _, c := range cs {
				if err := reg.Register(c); err != nil {
					return fmt.Errorf("registering bad-network metrics: %w", err)
				}
			}
		}
		wg.Go(func() { b.Run(ctx, log) })
	}
	wg.Wait()
	return nil
}
