package detectors

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// AnonymousDetectorID is the id of the anonymous-access detector (KEP-4633)
// and of every finding it makes.
const AnonymousDetectorID = "anonymous-access"

// MITRE ATT&CK techniques of the three kinds of finding.
//
//   - An anonymous request that was authorized outside the allowed paths is
//     the use of a built-in default identity (system:anonymous) to reach the
//     API: T1078.001 Valid Accounts: Default Accounts. T1190 (exploit of a
//     public-facing application) was considered and rejected: nothing is
//     exploited, the cluster grants the access.
//   - A denied anonymous request and a burst of 401/403 over many paths are
//     reconnaissance by trying paths from a list: T1595.003 Active Scanning:
//     Wordlist Scanning.
//   - A RoleBinding or ClusterRoleBinding granting rights to the anonymous
//     user or the unauthenticated group is persistence through cluster RBAC:
//     T1098.006 Account Manipulation: Additional Container Cluster Roles.
const (
	anonMITREDefaultAccount = "T1078.001"
	anonMITREScanning       = "T1595.003"
	anonMITRERBAC           = "T1098.006"
)

// The identity the apiserver gives a request no authenticator claimed when
// anonymous authentication admits it (pkg/authentication/request/anonymous):
// exactly this username and this one group.
const (
	anonUser  = user.Anonymous          // "system:anonymous"
	anonGroup = user.AllUnauthenticated // "system:unauthenticated"
)

// anonRBACGroup is the API group of RoleBinding and ClusterRoleBinding.
const anonRBACGroup = "rbac.authorization.k8s.io"

// anonMaxMinDistinctPaths caps enumeration.min_distinct_paths. Each tracked
// source keeps up to that many path hashes, so the cap bounds the memory of
// one Window entry (8 bytes a path) times state.max_entries entries.
const anonMaxMinDistinctPaths = 1000

// anonMaxWindow caps enumeration.window. A scan is a burst; a day-long
// bucket already reports a slow one, and longer buckets would only keep
// state for sources that have long moved on.
const anonMaxWindow = 24 * time.Hour

// anonMaxQuoted bounds each user agent and path a finding quotes: they are
// client-chosen, and a scanner must not be able to grow a finding by
// varying them (burstCounter bounds how many are kept).
const anonMaxQuoted = 120

// AnonymousConfig configures the anonymous-access detector (KEP-4633).
type AnonymousConfig struct {
	// AllowedPaths lists the paths anonymous requests may reach, mirroring
	// AuthenticationConfiguration.anonymous.conditions[].path, which the
	// apiserver never audits. Like the apiserver, the detector matches the
	// URL-decoded path exactly and case-sensitively, ignoring the query:
	// "/readyz/etcd" does not match "/readyz", nor "/healthz/" "/healthz".
	// An empty list allows no path. Default: /healthz, /livez, /readyz,
	// /version.
	AllowedPaths []string `json:"allowed_paths"`
	// Enumeration tunes the detection of bursts of failed unauthenticated
	// requests.
	Enumeration AnonymousEnumerationConfig `json:"enumeration"`
}

// AnonymousEnumerationConfig tunes enumeration: unauthenticated requests
// (failed authentication or the anonymous user) answered 401 or 403 on many
// distinct paths from one source IP.
type AnonymousEnumerationConfig struct {
	// MinDistinctPaths is how many distinct denied paths one source must hit
	// within one window to be reported. A load balancer or a misconfigured
	// client retries one or a few paths; a scanner walks a word list.
	// Default 10, at least 2, at most 1000.
	MinDistinctPaths int `json:"min_distinct_paths"`
	// Window is the width of the event-time buckets denied paths are counted
	// in; one finding is made per source and bucket. Default 1m, at most
	// 24h.
	Window Duration `json:"window"`
}

func defaultAnonymousConfig() AnonymousConfig {
	return AnonymousConfig{
		AllowedPaths: []string{"/healthz", "/livez", "/readyz", "/version"},
		Enumeration: AnonymousEnumerationConfig{
			MinDistinctPaths: 10,
			Window:           Duration(time.Minute),
		},
	}
}

func (c AnonymousConfig) validate(prefix string) error {
	var errs []error
	for i, p := range c.AllowedPaths {
		switch {
		case p == "":
			errs = append(errs, fmt.Errorf("%s.allowed_paths[%d] is empty: want a path such as /healthz", prefix, i))
		case p[0] != '/':
			errs = append(errs, fmt.Errorf("%s.allowed_paths[%d] %q must start with /", prefix, i, p))
		case strings.ContainsAny(p, "?#"):
			// The match ignores the query, as the apiserver's does, so an
			// entry with one could never match.
			errs = append(errs, fmt.Errorf("%s.allowed_paths[%d] %q must be a path without query or fragment", prefix, i, p))
		}
	}
	if n := c.Enumeration.MinDistinctPaths; n < 2 || n > anonMaxMinDistinctPaths {
		errs = append(errs, fmt.Errorf("%s.enumeration.min_distinct_paths must be between 2 and %d, got %d", prefix, anonMaxMinDistinctPaths, n))
	}
	if w := time.Duration(c.Enumeration.Window); w <= 0 || w > anonMaxWindow {
		errs = append(errs, fmt.Errorf("%s.enumeration.window must be positive and at most %s, got %s", prefix, anonMaxWindow, w))
	}
	return errors.Join(errs...)
}

func buildAnonymous(cfg Config) ([]Detector, error) {
	d, err := NewAnonymous(cfg.AnonymousAccess, cfg.State.MaxEntries)
	if err != nil {
		return nil, err
	}
	return []Detector{d}, nil
}

// Anonymous is the anonymous-access detector. It flags
//   - requests by the anonymous user outside the allowed paths,
//   - role bindings that grant rights to the anonymous user or the
//     unauthenticated group,
//   - bursts of 401/403 from one source over many paths (enumeration).
//
// It is safe for concurrent use.
type Anonymous struct {
	allowed  map[string]struct{}
	minPaths int
	window   time.Duration
	// bursts counts denied paths per cluster, source and time bucket.
	bursts *burstCounter
}

var _ Detector = (*Anonymous)(nil)

// NewAnonymous builds the detector from its config section; maxEntries caps
// the sources tracked for enumeration (state.max_entries).
func NewAnonymous(cfg AnonymousConfig, maxEntries int) (*Anonymous, error) {
	if err := cfg.validate("anonymous_access"); err != nil {
		return nil, err
	}
	if maxEntries <= 0 {
		return nil, errors.New("state.max_entries must be positive")
	}
	d := &Anonymous{
		allowed:  make(map[string]struct{}, len(cfg.AllowedPaths)),
		minPaths: cfg.Enumeration.MinDistinctPaths,
		window:   time.Duration(cfg.Enumeration.Window),
	}
	for _, p := range cfg.AllowedPaths {
		d.allowed[p] = struct{}{}
	}
	d.bursts = newBurstCounter(d.minPaths, d.window, maxEntries)
	return d, nil
}

// ID implements Detector.
func (d *Anonymous) ID() string { return AnonymousDetectorID }

// Detect implements Detector. The common case, an authenticated request
// answered below 400 that is not a role binding, returns after a few
// comparisons without allocating.
func (d *Anonymous) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	anon := anonIsAnonymous(ev)
	if anon {
		out = d.detectRequest(ev, out)
	}
	if ref := ev.ObjectRef; ref != nil && ref.APIGroup == anonRBACGroup &&
		(ref.Resource == "clusterrolebindings" || ref.Resource == "rolebindings") && ref.Subresource == "" {
		switch ev.Verb {
		case "create", "update", "patch":
			out = d.detectBinding(ev, out)
		}
	}
	if code := ev.Code(); (code == 401 || code == 403) && (anon || ev.IsFailedAuthentication()) {
		out = d.detectEnumeration(ev, out)
	}
	return out
}

// anonIsAnonymous reports a request the apiserver admitted as anonymous.
// Either half of the identity is enough: a username or group produced by
// another authenticator (an authenticating proxy, a webhook) that claims to
// be anonymous deserves the same scrutiny.
func anonIsAnonymous(ev *pipeline.Event) bool {
	if ev.User.Username == anonUser {
		return true
	}
	for _, g := range ev.User.Groups {
		if g == anonGroup {
			return true
		}
	}
	return false
}

// anonRequestPath returns the path the apiserver's anonymous authenticator
// matched: requestURI is req.URL.RequestURI(), the escaped path and query,
// and the authenticator compares req.URL.Path, the unescaped path. A path
// that does not unescape cannot have come from Go's HTTP server; it is
// returned as is, so it matches no allowed path and is reported.
func anonRequestPath(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if strings.IndexByte(uri, '%') < 0 {
		return uri
	}
	p, err := url.PathUnescape(uri)
	if err != nil {
		return uri
	}
	return p
}

// anonEscapedPath is requestURI without its query: the still-escaped form,
// safe to print on one line.
func anonEscapedPath(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i]
	}
	return uri
}

// anonAllowedByCode stands in for the authorization decision when the
// annotation is missing (a request rejected before authorization, or a
// pipeline that strips annotations): a success means the request got in.
func anonAllowedByCode(code int32) bool { return code >= 200 && code < 400 }

// detectRequest judges a request made as the anonymous user.
func (d *Anonymous) detectRequest(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	path := anonRequestPath(ev.RequestURI)
	if _, ok := d.allowed[path]; ok {
		// Load-balancer probes and kubectl version: what anonymous access is
		// configured for.
		return out
	}
	decision := ev.Decision()
	allowed := decision == "allow" || (decision == "" && anonAllowedByCode(ev.Code()))
	// HEAD is GET without a body; every other method of a non-resource URL
	// can change something.
	read := ev.Verb == "get" || ev.Verb == "head"

	f := pipeline.NewFinding(AnonymousDetectorID, ev, "request")
	shown := anonQuote(anonEscapedPath(ev.RequestURI))
	src := anonOr(ev.SourceIP(), "unknown")
	switch {
	case allowed && ev.ObjectRef != nil:
		ref := ev.ObjectRef
		f.Severity = pipeline.SeverityCritical
		f.MITRE = anonMITREDefaultAccount
		f.Summary = fmt.Sprintf("Anonymous (unauthenticated) client %s was allowed to %s (%s): anonymous access reaches API resources",
			src, anonDescribeRef(ev.Verb, ref.Resource, ref.Subresource, ref.Namespace, ref.Name), shown)
	case allowed && !read:
		f.Severity = pipeline.SeverityCritical
		f.MITRE = anonMITREDefaultAccount
		f.Summary = fmt.Sprintf("Anonymous (unauthenticated) client %s was allowed to %s %s, a non-read request outside anonymous_access.allowed_paths",
			src, strings.ToUpper(ev.Verb), shown)
	case allowed:
		f.Severity = pipeline.SeverityHigh
		f.MITRE = anonMITREDefaultAccount
		f.Summary = fmt.Sprintf("Anonymous (unauthenticated) client %s was allowed to %s %s, which is not in anonymous_access.allowed_paths",
			src, strings.ToUpper(ev.Verb), shown)
	default:
		target := strings.ToUpper(ev.Verb) + " " + shown
		if ref := ev.ObjectRef; ref != nil {
			target = anonDescribeRef(ev.Verb, ref.Resource, ref.Subresource, ref.Namespace, ref.Name) + " (" + shown + ")"
		}
		f.Severity = pipeline.SeverityMedium
		f.MITRE = anonMITREScanning
		f.Summary = fmt.Sprintf("Anonymous (unauthenticated) client %s tried to %s and was denied (%d)",
			src, target, ev.Code())
	}
	// One allocation for the evidence: grown by append, it was a tenth
	// of what judging the finding-heavy stream allocated.
	f.Evidence = append(make([]pipeline.Evidence, 0, 7),
		pipeline.Evidence{Field: "user.username", Value: ev.User.Username, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "user.groups", Value: strings.Join(ev.User.Groups, ","), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "path", Value: path, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "verb", Value: ev.Verb, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "annotations." + pipeline.AnnotationDecision, Value: decision, Source: pipeline.FromEvent},
	)
	f.Summary = anonOneLine(f.Summary)
	if reason := ev.Annotations[pipeline.AnnotationReason]; reason != "" {
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "annotations." + pipeline.AnnotationReason, Value: reason, Source: pipeline.FromEvent})
	}
	if ev.ObjectRef != nil {
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "objectRef.resource", Value: ev.ObjectRef.Resource, Source: pipeline.FromEvent})
	}
	return append(out, f)
}

// anonDescribeRef renders a resource request for a person: "list secrets in
// namespace default".
func anonDescribeRef(verb, resource, sub, ns, name string) string {
	var b strings.Builder
	b.WriteString(verb)
	b.WriteByte(' ')
	b.WriteString(resource)
	if name != "" {
		b.WriteByte(' ')
		b.WriteString(name)
	}
	if sub != "" {
		b.WriteByte('/')
		b.WriteString(sub)
	}
	if ns != "" {
		b.WriteString(" in namespace ")
		b.WriteString(ns)
	}
	return b.String()
}

// anonSubject is an rbac/v1 Subject; Patch is a strategic-merge directive.
type anonSubject struct {
	Kind, Name, Patch string
}

// anonReadSubject reads a Subject out of a decoded body.
func anonReadSubject(r *bodyReader, v any) anonSubject {
	m := r.obj(v)
	return anonSubject{Kind: r.str(m["kind"]), Name: r.str(m["name"]), Patch: r.str(m["$patch"])}
}

// anonBindingHit is what a body said about a binding.
type anonBindingHit struct {
	subjects []string // "Group system:unauthenticated", in body order
	name     string   // metadata.name, for a create refused before objectRef got it
	roleKind string
	roleName string
}

// anonCriticalRoles are ClusterRoles whose grant to everyone is a takeover:
// cluster-admin owns the cluster; admin and edit read every Secret and exec
// into every pod of the namespaces they are bound in. Other roles are high:
// their rules are not in the audit event.
var anonCriticalRoles = map[string]struct{}{"cluster-admin": {}, "admin": {}, "edit": {}}

// detectBinding judges a create, update or patch of a role binding. The
// response (the stored object) is read first; the request, what the client
// sent, only when the response is missing (Request level) or is a Status.
func (d *Anonymous) detectBinding(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	var (
		hit    anonBindingHit
		ok     bool
		source string
	)
	if ev.ResponseObject != nil {
		hit, ok = anonReadBinding(ev.ResponseBody())
		source = pipeline.FromResponse
	}
	if !ok && ev.RequestObject != nil {
		hit, ok = anonReadBinding(ev.RequestBody())
		source = pipeline.FromRequest
	}
	if !ok || len(hit.subjects) == 0 {
		return out
	}
	ref := ev.ObjectRef
	kind := "ClusterRoleBinding"
	if ref.Resource == "rolebindings" {
		kind = "RoleBinding"
	}
	role := "an unknown role (not in the " + source + " body)"
	if hit.roleName != "" {
		role = anonTruncate(anonOr(hit.roleKind, "role") + " " + hit.roleName)
	}
	where := ""
	if ref.Namespace != "" {
		where = " in namespace " + ref.Namespace
	}
	who := anonOr(ev.User.Username, "unknown user")
	name := anonOr(ref.Name, hit.name)

	f := pipeline.NewFinding(AnonymousDetectorID, ev, "binding")
	f.MITRE = anonMITRERBAC
	_, critical := anonCriticalRoles[hit.roleName]
	critical = critical && hit.roleKind != "Role"
	succeeded := ev.Code() < 400 // 0 (no status) counts: the body says what was asked
	switch {
	case !succeeded:
		f.Severity = pipeline.SeverityMedium
		f.Summary = fmt.Sprintf("%s tried to bind %s to %s in %s %q%s and was refused (%d)",
			who, role, strings.Join(hit.subjects, " and "), kind, name, where, ev.Code())
	case critical:
		f.Severity = pipeline.SeverityCritical
		f.Summary = fmt.Sprintf("%s bound %s to %s in %s %q%s: anyone who can reach the API server gets these rights",
			who, role, strings.Join(hit.subjects, " and "), kind, name, where)
	default:
		f.Severity = pipeline.SeverityHigh
		f.Summary = fmt.Sprintf("%s bound %s to %s in %s %q%s: anyone who can reach the API server gets these rights",
			who, role, strings.Join(hit.subjects, " and "), kind, name, where)
	}
	f.Summary = anonOneLine(f.Summary)
	for _, s := range hit.subjects {
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: anonBodyName(source) + ".subjects", Value: s, Source: source})
	}
	if hit.roleName != "" {
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: anonBodyName(source) + ".roleRef", Value: hit.roleKind + " " + hit.roleName, Source: source})
	}
	f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "verb", Value: ev.Verb, Source: pipeline.FromEvent})
	return append(out, f)
}

func anonBodyName(source string) string {
	if source == pipeline.FromResponse {
		return "responseObject"
	}
	return "requestObject"
}

// anonReadBinding reads the anonymous subjects and role out of a decoded
// binding or a patch to one. ok is false when body is not something to
// judge (absent, not JSON, mistyped, a Status): the caller then falls back
// to the other body.
func anonReadBinding(body any) (hit anonBindingHit, ok bool) {
	if ops, isList := body.([]any); isList {
		return anonReadJSONPatch(ops)
	}
	m, isObj := body.(map[string]any)
	if !isObj {
		return hit, false
	}
	var r bodyReader
	kind := r.str(m["kind"])
	name := r.str(r.obj(m["metadata"])["name"])
	var subs []anonSubject
	for _, v := range r.list(m["subjects"]) {
		subs = append(subs, anonReadSubject(&r, v))
	}
	roleRef := r.obj(m["roleRef"])
	roleKind, roleName := r.str(roleRef["kind"]), r.str(roleRef["name"])
	if r.bad || kind == "Status" {
		return hit, false
	}
	for _, s := range subs {
		if s.Patch == "delete" {
			continue // a strategic-merge directive removing the subject
		}
		if anonIsAnonSubject(s.Kind, s.Name) {
			hit.subjects = append(hit.subjects, s.Kind+" "+s.Name)
		}
	}
	hit.name = name
	if roleRef != nil {
		hit.roleKind, hit.roleName = roleKind, roleName
	}
	return hit, true
}

// anonReadJSONPatch reads an RFC 6902 patch: add or replace of the whole
// list (/subjects), of one subject (/subjects/0, /subjects/-) or of one
// subject's name (/subjects/0/name, whose kind the patch does not carry).
// A mistyped operation rejects the patch; a mistyped value only its
// operation.
func anonReadJSONPatch(list []any) (hit anonBindingHit, ok bool) {
	type op struct {
		op, path string
		value    any
	}
	var r bodyReader
	ops := make([]op, len(list))
	for i, v := range list {
		m := r.obj(v)
		ops[i] = op{op: r.str(m["op"]), path: r.str(m["path"]), value: m["value"]}
	}
	if r.bad {
		return hit, false
	}
	for _, o := range ops {
		if o.op != "add" && o.op != "replace" {
			continue
		}
		rest, found := strings.CutPrefix(o.path, "/subjects")
		if !found {
			continue
		}
		switch {
		case rest == "":
			var vr bodyReader
			l := vr.list(o.value)
			subs := make([]anonSubject, len(l))
			for i, v := range l {
				subs[i] = anonReadSubject(&vr, v)
			}
			if o.value != nil && !vr.bad {
				for _, s := range subs {
					if anonIsAnonSubject(s.Kind, s.Name) {
						hit.subjects = append(hit.subjects, s.Kind+" "+s.Name)
					}
				}
			}
		case strings.HasSuffix(rest, "/name"):
			if name, isStr := o.value.(string); isStr && (name == anonUser || name == anonGroup) {
				hit.subjects = append(hit.subjects, "subject named "+name)
			}
		case strings.Count(rest, "/") == 1:
			var vr bodyReader
			s := anonReadSubject(&vr, o.value)
			if o.value != nil && !vr.bad && anonIsAnonSubject(s.Kind, s.Name) {
				hit.subjects = append(hit.subjects, s.Kind+" "+s.Name)
			}
		}
	}
	return hit, true
}

// anonIsAnonSubject matches the way the RBAC authorizer does: exact kind and
// name.
func anonIsAnonSubject(kind, name string) bool {
	return (kind == "User" && name == anonUser) || (kind == "Group" && name == anonGroup)
}

// anonPeerIP returns the last source IP. The apiserver lists the
// X-Forwarded-For and X-Real-Ip addresses first, which any client can set,
// and the TCP peer last; counting by the peer means a scanner cannot escape
// the threshold by sending a new X-Forwarded-For with every request.
func anonPeerIP(ev *pipeline.Event) string {
	if n := len(ev.SourceIPs); n > 0 {
		return ev.SourceIPs[n-1]
	}
	return ""
}

// detectEnumeration counts a denied unauthenticated request towards its
// source's bucket and reports the bucket once, when it reaches minPaths
// distinct paths (see burstCounter).
func (d *Anonymous) detectEnumeration(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	at := ev.StageTimestamp.Time
	if at.IsZero() {
		at = ev.RequestReceivedTimestamp.Time
	}
	ip := anonPeerIP(ev)
	if at.IsZero() || ip == "" {
		return out // nothing to correlate on
	}
	path := anonRequestPath(ev.RequestURI)
	if _, ok := d.allowed[path]; ok {
		return out // a health probe refused during start-up is not a scan
	}
	report, ok := d.bursts.add(ev.Cluster, ip, at, path, anonQuote(anonEscapedPath(ev.RequestURI)), ev.Code(), ev.UserAgent)
	if !ok {
		return out
	}
	start := report.start

	f := pipeline.NewFinding(AnonymousDetectorID, ev, "enumeration")
	// The burst, not the request that completed it, is what is reported: the
	// id and time depend only on the source and bucket.
	f.ID = pipeline.FindingID(AnonymousDetectorID, ev.Cluster, "", 0,
		"enumeration\x00"+ip+"\x00"+start.UTC().Format(time.RFC3339Nano)+"\x00"+d.window.String())
	f.Time = start
	f.SourceIP = ip
	f.Severity = pipeline.SeverityMedium
	f.MITRE = anonMITREScanning
	agent := "no user agent"
	if len(report.agents) > 0 && report.agents[0] != "" {
		agent = "user agent " + strconv.Quote(anonTruncate(report.agents[0]))
	}
	var codes []string
	if report.n401 > 0 {
		codes = append(codes, strconv.Itoa(report.n401)+" unauthenticated (401)")
	}
	if report.n403 > 0 {
		codes = append(codes, strconv.Itoa(report.n403)+" anonymous and forbidden (403)")
	}
	f.Summary = fmt.Sprintf("Possible API enumeration: %s was refused on %d distinct paths within %s (%s; %s)",
		ip, d.minPaths, d.window, strings.Join(codes, ", "), agent)
	f.Summary = anonOneLine(f.Summary)
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: "source_ip", Value: ip, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "sourceIPs", Value: strings.Join(ev.SourceIPs, ","), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "distinct_paths", Value: strconv.Itoa(d.minPaths), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "window", Value: start.UTC().Format(time.RFC3339) + "/" + d.window.String(), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "response_codes", Value: fmt.Sprintf("401:%d 403:%d", report.n401, report.n403), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "user_agents", Value: strings.Join(report.agents, " | "), Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "sample_paths", Value: strings.Join(report.samples, " "), Source: pipeline.FromEvent},
	)
	return append(out, f)
}

func anonContains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func anonOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// anonTruncate cuts a client-chosen string to anonMaxQuoted bytes on a rune
// boundary, so one request cannot flood a Slack line or the state.
func anonTruncate(s string) string {
	if len(s) <= anonMaxQuoted {
		return s
	}
	cut := anonMaxQuoted
	for cut > 0 && !anonRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func anonRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// anonQuote prepares a client-chosen path for a one-line summary: truncated,
// and with anything that is not printable ASCII escaped, so it cannot break
// the line. The escaped requestURI normally needs nothing. Escaping markup
// (Slack's <, >, &) is the renderer's job.
func anonQuote(s string) string {
	s = anonTruncate(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			q := strconv.QuoteToASCII(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// anonOneLine escapes the control characters (and the Unicode line and
// paragraph separators) left in a summary by fields a client chose, such as
// the name in a refused request's URL, so a summary stays one line.
func anonOneLine(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
