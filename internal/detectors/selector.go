package detectors

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// selectorDetectorID is the id of the broad-selector detector (KEP-4601).
const selectorDetectorID = "broad-selector"

// MITRE ATT&CK techniques the broad-selector findings map to.
const (
	// selectorMITRECredentials is Unsecured Credentials: Container API, the
	// technique of reading secrets and tokens through the Kubernetes API.
	selectorMITRECredentials = "T1552.007"
	// selectorMITREDiscovery is Container and Resource Discovery.
	selectorMITREDiscovery = "T1613"
	// selectorMITREValidAccounts is Valid Accounts: a kubelet credential
	// used by something that is not that kubelet.
	selectorMITREValidAccounts = "T1078"
	// selectorMITREPermissionDiscovery is Permission Groups Discovery: a
	// SubjectAccessReview built to probe how selectors are authorized.
	selectorMITREPermissionDiscovery = "T1069"
)

// Node authorizer reasons (kubernetes plugin/pkg/auth/authorizer/node) that
// the apiserver puts in the 403's message and in authorization.k8s.io/reason
// when a node identity lists pods or nodes beyond its own. The real kubelet
// always sends its own selector, so a refusal means another program holds the
// kubelet's credential.
const (
	selectorNodePodsReason  = "can only list/watch pods with spec.nodeName field selector"
	selectorNodeNodesReason = "cannot read all nodes, only its own Node object"
)

// SelectorIdentities names identities by exact username, by group, or by
// username prefix. It is also the type of the admission detector's admin
// allowlist.
type SelectorIdentities struct {
	// Users are exact usernames, e.g. system:kube-controller-manager.
	Users []string `json:"users"`
	// Groups match when the user is in any of them.
	Groups []string `json:"groups"`
	// Prefixes match usernames starting with them, e.g.
	// system:serviceaccount:kube-system: for every kube-system service account.
	Prefixes []string `json:"prefixes"`
}

// validate rejects empty entries, which would match nothing (users, groups)
// or everyone (prefixes), and wildcards, which are not patterns here.
func (l SelectorIdentities) validate(prefix string) error {
	var errs []error
	check := func(key string, vals []string) {
		for i, v := range vals {
			switch {
			case strings.TrimSpace(v) == "":
				errs = append(errs, fmt.Errorf("%s.%s[%d] must not be empty", prefix, key, i))
			case strings.Contains(v, "*"):
				errs = append(errs, fmt.Errorf("%s.%s[%d] %q: wildcards are not supported; list the fixed part under %s.prefixes", prefix, key, i, v, prefix))
			}
		}
	}
	check("users", l.Users)
	check("groups", l.Groups)
	check("prefixes", l.Prefixes)
	return errors.Join(errs...)
}

// selectorIdentitySet is a compiled SelectorIdentities.
type selectorIdentitySet struct {
	users    map[string]struct{}
	groups   map[string]struct{}
	prefixes []string
}

func newSelectorIdentitySet(l SelectorIdentities) *selectorIdentitySet {
	s := &selectorIdentitySet{
		users:    make(map[string]struct{}, len(l.Users)),
		groups:   make(map[string]struct{}, len(l.Groups)),
		prefixes: append([]string(nil), l.Prefixes...),
	}
	for _, u := range l.Users {
		s.users[u] = struct{}{}
	}
	for _, g := range l.Groups {
		s.groups[g] = struct{}{}
	}
	return s
}

// matches reports whether u is on the list.
func (s *selectorIdentitySet) matches(u *authnv1.UserInfo) bool {
	if u.Username == "" {
		return false
	}
	if _, ok := s.users[u.Username]; ok {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(u.Username, p) {
			return true
		}
	}
	for _, g := range u.Groups {
		if _, ok := s.groups[g]; ok {
			return true
		}
	}
	return false
}

// allows reports whether the request was made by a listed identity. An
// impersonated request needs both the caller and the identity it acted as
// on the list: allowlisting a controller must not allowlist whoever can
// impersonate it.
func (s *selectorIdentitySet) allows(ev *pipeline.Event) bool {
	if !s.matches(&ev.User) {
		return false
	}
	return ev.ImpersonatedUser == nil || s.matches(ev.ImpersonatedUser)
}

// SelectorConfig configures the broad-selector detector.
type SelectorConfig struct {
	// SensitiveResources are the resources whose unselected list or watch is
	// flagged, as "resource" or "resource/subresource". Default: secrets,
	// configmaps, serviceaccounts/token, pods. serviceaccounts/token is the
	// TokenRequest subresource, which has no list or watch today; it is kept
	// so that a future collection endpoint is covered from day one.
	SensitiveResources []string `json:"sensitive_resources"`
	// AllowedIdentities may list or watch sensitive resources without a
	// selector: the control-plane components and kube-system controllers by
	// default. Node identities are judged by the node rules, not this list.
	AllowedIdentities SelectorIdentities `json:"allowed_identities"`
	// Severity of a cluster-wide unselected list/watch. Default medium.
	Severity pipeline.Severity `json:"severity"`
	// NamespaceSeverity of a namespace-scoped one; secrets are one level
	// higher. Default low: kubectl get pods -n x is one.
	NamespaceSeverity pipeline.Severity `json:"namespace_severity"`
	// SecretsClusterSeverity of a cluster-wide list or watch of secrets, the
	// credential harvest (watch being the stealthiest form). Default high.
	SecretsClusterSeverity pipeline.Severity `json:"secrets_cluster_severity"`
	// DeniedSeverity of a broad request the apiserver refused (4xx/5xx):
	// reconnaissance that got nothing. Default low.
	DeniedSeverity pipeline.Severity `json:"denied_severity"`
	// NodeSeverity of a node identity reading pods or nodes beyond its own
	// that was allowed (older clusters, or AuthorizeNodeWithSelectors off).
	// A user agent other than kubelet/ raises it one level. Default high.
	NodeSeverity pipeline.Severity `json:"node_severity"`
	// NodeForbiddenSeverity of the node authorizer refusing such a read: the
	// kubelet never makes one, so its credential is in other hands. Default
	// critical.
	NodeForbiddenSeverity pipeline.Severity `json:"node_forbidden_severity"`
	// ProbeSeverity of a SubjectAccessReview setting both rawSelector and
	// requirements, which the API documents as invalid. Default medium.
	ProbeSeverity pipeline.Severity `json:"probe_severity"`
}

// defaultSelectorConfig is the broad_selector section of DefaultConfig.
func defaultSelectorConfig() SelectorConfig {
	return SelectorConfig{
		SensitiveResources: []string{"secrets", "configmaps", "serviceaccounts/token", "pods"},
		AllowedIdentities: SelectorIdentities{
			Users: []string{
				"system:kube-controller-manager",
				"system:kube-scheduler",
				"system:apiserver",
			},
			Prefixes: []string{"system:serviceaccount:kube-system:"},
		},
		Severity:               pipeline.SeverityMedium,
		NamespaceSeverity:      pipeline.SeverityLow,
		SecretsClusterSeverity: pipeline.SeverityHigh,
		DeniedSeverity:         pipeline.SeverityLow,
		NodeSeverity:           pipeline.SeverityHigh,
		NodeForbiddenSeverity:  pipeline.SeverityCritical,
		ProbeSeverity:          pipeline.SeverityMedium,
	}
}

// selectorValidateSeverity rejects numbers beyond critical, which YAML can
// smuggle in as integers.
func selectorValidateSeverity(key string, s pipeline.Severity) error {
	if s > pipeline.SeverityCritical {
		return fmt.Errorf("%s must be one of info, low, medium, high, critical", key)
	}
	return nil
}

// validate reports every problem in c, each naming its key under prefix.
func (c SelectorConfig) validate(prefix string) error {
	var errs []error
	for i, r := range c.SensitiveResources {
		if strings.TrimSpace(r) == "" || strings.Count(r, "/") > 1 {
			errs = append(errs, fmt.Errorf("%s.sensitive_resources[%d] %q must be \"resource\" or \"resource/subresource\"", prefix, i, r))
		}
	}
	errs = append(errs,
		c.AllowedIdentities.validate(prefix+".allowed_identities"),
		selectorValidateSeverity(prefix+".severity", c.Severity),
		selectorValidateSeverity(prefix+".namespace_severity", c.NamespaceSeverity),
		selectorValidateSeverity(prefix+".secrets_cluster_severity", c.SecretsClusterSeverity),
		selectorValidateSeverity(prefix+".denied_severity", c.DeniedSeverity),
		selectorValidateSeverity(prefix+".node_severity", c.NodeSeverity),
		selectorValidateSeverity(prefix+".node_forbidden_severity", c.NodeForbiddenSeverity),
		selectorValidateSeverity(prefix+".probe_severity", c.ProbeSeverity),
	)
	return errors.Join(errs...)
}

// buildSelector builds the broad-selector detector; its config was
// validated by Config.Validate, so it cannot fail.
func buildSelector(cfg Config) ([]Detector, error) {
	return []Detector{newSelectorDetector(cfg.BroadSelector)}, nil
}

// selectorDetector flags list and watch requests that read every object of
// a sensitive resource, node credentials reading beyond their node, and
// SubjectAccessReviews probing selector authorization. It is stateless.
type selectorDetector struct {
	cfg       SelectorConfig
	sensitive map[string]struct{}
	allowed   *selectorIdentitySet
	labels    selectorLabelCache
}

var _ Detector = (*selectorDetector)(nil)

func newSelectorDetector(cfg SelectorConfig) *selectorDetector {
	d := &selectorDetector{
		cfg:       cfg,
		sensitive: make(map[string]struct{}, len(cfg.SensitiveResources)),
		allowed:   newSelectorIdentitySet(cfg.AllowedIdentities),
	}
	for _, r := range cfg.SensitiveResources {
		d.sensitive[r] = struct{}{}
	}
	return d
}

// ID implements Detector.
func (d *selectorDetector) ID() string { return selectorDetectorID }

// Detect implements Detector. Gets and writes return at the first switch, so
// the common case costs a string comparison.
func (d *selectorDetector) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	ref := ev.ObjectRef
	if ref == nil {
		return out
	}
	switch ev.Verb {
	case "list", "watch":
		return d.detectCollection(ev, out)
	case "create":
		if ref.APIGroup == "authorization.k8s.io" && strings.HasSuffix(ref.Resource, "subjectaccessreviews") {
			return d.detectProbe(ev, out)
		}
	}
	return out
}

// selectorQuery returns the first fieldSelector and labelSelector of a
// request URI's query, decoded the way the apiserver reads them
// (req.URL.Query()[key][0]): pairs containing ';' or bad escapes are
// skipped, the first occurrence of a key wins, '+' is a space.
func selectorQuery(uri string) (field, label string, hasField, hasLabel bool) {
	i := strings.IndexByte(uri, '?')
	if i < 0 {
		return "", "", false, false
	}
	q := uri[i+1:]
	for q != "" && !(hasField && hasLabel) {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, ok := selectorUnescape(k)
		if !ok {
			continue
		}
		switch {
		case k == "fieldSelector" && !hasField:
			if v, ok = selectorUnescape(v); ok {
				field, hasField = v, true
			}
		case k == "labelSelector" && !hasLabel:
			if v, ok = selectorUnescape(v); ok {
				label, hasLabel = v, true
			}
		}
	}
	return field, label, hasField, hasLabel
}

// selectorUnescape query-unescapes s, without allocating when there is
// nothing to unescape.
func selectorUnescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	v, err := url.QueryUnescape(s)
	return v, err == nil
}

// selectorFieldTerm is one requirement of a field selector.
type selectorFieldTerm struct {
	field, value string
	equal        bool // = or ==, as opposed to !=
}

// selectorFieldTerms parses a field selector with fields.ParseSelector, the
// parser the apiserver's authorization filter uses. The single "field=value"
// term every kubelet and informer sends is recognised without it: it parses
// to exactly that term when neither side holds a special character.
func selectorFieldTerms(raw string, buf []selectorFieldTerm) ([]selectorFieldTerm, error) {
	if i := strings.IndexByte(raw, '='); i > 0 && !strings.ContainsAny(raw, `\,!`) {
		v := raw[i+1:]
		v = strings.TrimPrefix(v, "=")
		if strings.IndexByte(v, '=') < 0 {
			return append(buf, selectorFieldTerm{field: raw[:i], value: v, equal: true}), nil
		}
	}
	sel, err := fields.ParseSelector(raw)
	if err != nil {
		return nil, err
	}
	for _, r := range sel.Requirements() {
		buf = append(buf, selectorFieldTerm{
			field: r.Field,
			value: r.Value,
			equal: r.Operator == selection.Equals || r.Operator == selection.DoubleEquals,
		})
	}
	return buf, nil
}

// selectorVerdict says whether one selector narrows a collection, and if not
// why, for the evidence.
type selectorVerdict struct {
	present bool
	raw     string
	narrows bool
	why     string
	// namespace is the value of a metadata.namespace= term, which turns a
	// cluster-wide request into a namespace-scoped one without narrowing it
	// further.
	namespace string
}

// selectorJudgeField decides whether a field selector narrows a list of
// resource. An equality term narrows, except metadata.namespace= (a
// namespace is not a selection within it) and type= on secrets (listing
// every service-account-token secret is the harvest, not a narrowing).
func selectorJudgeField(raw, resource string) selectorVerdict {
	v := selectorVerdict{present: true, raw: raw}
	if raw == "" {
		v.why = "fieldSelector is empty"
		return v
	}
	var buf [4]selectorFieldTerm
	terms, err := selectorFieldTerms(raw, buf[:0])
	if err != nil {
		v.why = "fieldSelector does not parse: " + err.Error()
		return v
	}
	for _, t := range terms {
		switch {
		case !t.equal || t.field == "":
		case t.field == "metadata.namespace":
			v.namespace = t.value
		case t.field == "type" && resource == "secrets":
		default:
			v.narrows = true
			return v
		}
	}
	switch {
	case len(terms) == 0:
		v.why = "fieldSelector has no terms"
	case v.namespace != "":
		v.why = "fieldSelector only picks a namespace"
	default:
		v.why = "fieldSelector only excludes (!=) or selects a secret type"
	}
	return v
}

// selectorJudgeLabel decides whether a label selector narrows: it does when
// some requirement selects (=, ==, in, exists, gt, lt). !key, != and notin
// alone match every object that lacks the label, which is usually all.
func selectorJudgeLabel(raw string) selectorVerdict {
	v := selectorVerdict{present: true, raw: raw}
	if raw == "" {
		v.why = "labelSelector is empty"
		return v
	}
	sel, err := labels.Parse(raw)
	if err != nil {
		v.why = "labelSelector does not parse: " + err.Error()
		return v
	}
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		switch r.Operator() {
		case selection.NotEquals, selection.NotIn, selection.DoesNotExist:
		default:
			v.narrows = true
			return v
		}
	}
	if len(reqs) == 0 {
		v.why = "labelSelector has no requirements"
	} else {
		v.why = "labelSelector only excludes (!=, notin, !key)"
	}
	return v
}

// selectorLabelCacheSize bounds the label selectors whose verdicts are
// kept. Controllers and agents list with the same few selectors all day;
// a cluster's distinct selectors are in the hundreds, and a client
// sending a new one per request only empties the cache, which then costs
// what parsing every selector did.
const selectorLabelCacheSize = 1024

// selectorLabelCacheMaxLen is the longest selector cached: the cache holds
// at most 1,024 of them, 256 KiB, however long the URIs a client sends.
// Real selectors are a few dozen bytes.
const selectorLabelCacheMaxLen = 256

// selectorLabelCache remembers selectorJudgeLabel's verdicts by selector:
// labels.Parse allocated a parser, its tokens and a set per listed
// collection. It is safe for concurrent use.
type selectorLabelCache struct {
	mu sync.Mutex
	m  map[string]selectorVerdict
}

// judge returns selectorJudgeLabel(raw).
func (c *selectorLabelCache) judge(raw string) selectorVerdict {
	c.mu.Lock()
	v, ok := c.m[raw]
	c.mu.Unlock()
	if ok {
		v.raw = raw
		return v
	}
	v = selectorJudgeLabel(raw)
	if len(raw) > selectorLabelCacheMaxLen {
		return v
	}
	// The key is a copy, so the cache never holds on to an event's memory.
	key := strings.Clone(raw)
	kept := v
	kept.raw = ""
	c.mu.Lock()
	if c.m == nil || len(c.m) >= selectorLabelCacheSize {
		c.m = make(map[string]selectorVerdict)
	}
	c.m[key] = kept
	c.mu.Unlock()
	return v
}

// selectorRaise returns s one level higher, capped at critical.
func selectorRaise(s pipeline.Severity) pipeline.Severity {
	if s < pipeline.SeverityCritical {
		return s + 1
	}
	return s
}

// selectorNodeName returns the node a node identity belongs to. A member of
// system:nodes without the system:node: username is a node of unknown name,
// so no selector can be its own.
func selectorNodeName(u *authnv1.UserInfo) (string, bool) {
	if name, ok := strings.CutPrefix(u.Username, "system:node:"); ok {
		return name, true
	}
	for _, g := range u.Groups {
		if g == "system:nodes" {
			return "", true
		}
	}
	return "", false
}

// detectCollection judges a list or watch.
func (d *selectorDetector) detectCollection(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	ref := ev.ObjectRef
	if node, ok := selectorNodeName(&ev.User); ok && ref.APIGroup == "" && ref.Subresource == "" &&
		(ref.Resource == "pods" || ref.Resource == "nodes") {
		return d.detectNode(ev, node, out)
	}
	// A name comes from the path (the deprecated /watch/.../<name> form) or
	// from a metadata.name= selector: one object either way.
	if ref.Name != "" || !d.isSensitive(ref.Resource, ref.Subresource) || d.allowed.allows(ev) {
		return out
	}
	if selectorURIInferred(ev) {
		// The converter rebuilt requestURI without its query: the
		// selectors, if any, are not in the event, so nothing here can say
		// the read was unnarrowed. The rules that need no selector (a
		// person reading or watching secrets) still judge the event.
		return out
	}
	rawField, rawLabel, hasField, hasLabel := selectorQuery(ev.RequestURI)
	var field, label selectorVerdict
	if hasField {
		if field = selectorJudgeField(rawField, ref.Resource); field.narrows {
			return out
		}
	}
	if hasLabel {
		if label = d.labels.judge(rawLabel); label.narrows {
			return out
		}
	}
	return append(out, d.broadFinding(ev, field, label))
}

// isSensitive looks resource (and resource/subresource) up in the
// configured list; the concatenation only happens for subresources.
func (d *selectorDetector) isSensitive(resource, sub string) bool {
	if sub == "" {
		_, ok := d.sensitive[resource]
		return ok
	}
	_, ok := d.sensitive[resource+"/"+sub]
	return ok
}

// broadFinding builds the finding for an unselected or unnarrowed
// collection read by an identity not on the allowlist.
func (d *selectorDetector) broadFinding(ev *pipeline.Event, field, label selectorVerdict) pipeline.Finding {
	ref := ev.ObjectRef
	ns := ref.Namespace
	if ns == "" {
		ns = field.namespace
	}
	cluster := ns == ""
	secrets := ref.Resource == "secrets" && ref.Subresource == ""

	sev := d.cfg.NamespaceSeverity
	scope := "in namespace " + ns
	if cluster {
		sev, scope = d.cfg.Severity, "cluster-wide"
	}
	mitre := selectorMITREDiscovery
	if secrets || ref.Resource == "serviceaccounts" {
		mitre = selectorMITRECredentials
		if cluster && secrets {
			sev = d.cfg.SecretsClusterSeverity
		} else if secrets {
			sev = selectorRaise(sev)
		}
	}

	what := ref.Resource
	if ref.Subresource != "" {
		what += "/" + ref.Subresource
	}
	how := "with no selector"
	if field.present || label.present {
		how = "with a selector that narrows nothing"
	}
	// A refused broad read is reconnaissance (someone trying what a
	// credential reaches), a separate and lower signal than a harvest that
	// succeeded: its own discriminator and severity, and its own wording.
	outcome, disc := "", "broad"
	if code := ev.Code(); code >= 400 || ev.Decision() == "forbid" {
		sev = d.cfg.DeniedSeverity
		outcome, disc = fmt.Sprintf(" (refused, %d)", code), "broad-refused"
		mitre = selectorMITREDiscovery
	}
	tail := ""
	if ev.Verb == "watch" && secrets && cluster {
		tail = ": every secret streamed as it changes"
	}

	f := pipeline.NewFinding(selectorDetectorID, ev, disc)
	f.Severity = sev
	f.MITRE = mitre
	if disc == "broad-refused" {
		f.Summary = fmt.Sprintf("%s tried to %s all %s %s %s%s", selectorActor(ev), ev.Verb, what, scope, how, outcome)
	} else {
		f.Summary = fmt.Sprintf("%s %s all %s %s %s%s", selectorActor(ev), selectorPast(ev.Verb), what, scope, how, tail)
	}
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: "verb", Value: ev.Verb, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "requestURI", Value: ev.RequestURI, Source: pipeline.FromEvent},
	)
	for _, v := range []struct {
		name string
		v    selectorVerdict
	}{{"fieldSelector", field}, {"labelSelector", label}} {
		if v.v.present {
			f.Evidence = append(f.Evidence,
				pipeline.Evidence{Field: v.name, Value: v.v.raw, Source: pipeline.FromEvent},
				pipeline.Evidence{Field: v.name + " verdict", Value: v.v.why, Source: pipeline.FromEvent},
			)
		}
	}
	return f
}

// selectorActor names who made the request, including impersonation.
func selectorActor(ev *pipeline.Event) string {
	name := ev.User.Username
	if name == "" {
		name = "an unnamed identity"
	}
	if ev.ImpersonatedUser != nil && ev.ImpersonatedUser.Username != "" {
		name += " (as " + ev.ImpersonatedUser.Username + ")"
	}
	return name
}

// selectorPast turns the verbs this detector judges into summary words.
func selectorPast(verb string) string {
	switch verb {
	case "list":
		return "listed"
	case "watch":
		return "watched"
	}
	return verb
}

// detectNode judges a node identity's list or watch of pods or nodes: the
// kubelet selects spec.nodeName=<own> on pods and metadata.name=<own> on
// nodes, always.
func (d *selectorDetector) detectNode(ev *pipeline.Event, node string, out []pipeline.Finding) []pipeline.Finding {
	resource := ev.ObjectRef.Resource
	msg := ""
	if ev.ResponseStatus != nil {
		msg = ev.ResponseStatus.Message
	}
	reason := ev.Annotations[pipeline.AnnotationReason]
	want := selectorNodePodsReason
	selField := "spec.nodeName"
	if resource == "nodes" {
		want, selField = selectorNodeNodesReason, "metadata.name"
	}
	code := ev.Code()
	if code == 403 && (strings.Contains(msg, want) || strings.Contains(reason, want)) {
		f := pipeline.NewFinding(selectorDetectorID, ev, "node-forbidden")
		f.Severity = d.cfg.NodeForbiddenSeverity
		f.MITRE = selectorMITREValidAccounts
		f.Summary = fmt.Sprintf("kubelet credential of node %s was used to %s %s beyond its node and refused: the kubelet never does this, the credential is likely stolen (agent %q)",
			selectorNodeLabel(node), ev.Verb, resource, ev.UserAgent)
		f.Evidence = append(f.Evidence,
			pipeline.Evidence{Field: "responseStatus.code", Value: "403", Source: pipeline.FromEvent},
			pipeline.Evidence{Field: "responseStatus.message", Value: msg, Source: pipeline.FromEvent},
			pipeline.Evidence{Field: "requestURI", Value: ev.RequestURI, Source: pipeline.FromEvent},
			pipeline.Evidence{Field: "userAgent", Value: ev.UserAgent, Source: pipeline.FromEvent},
		)
		return append(out, f)
	}
	if code >= 400 {
		// Refused or failed for another reason: nothing was read, and the
		// node authorizer's own reason is what marks credential misuse.
		return out
	}

	// A named request (metadata.name= or the deprecated /watch/.../<name>
	// path) reads one object: for a pod the node authorizer checks it is
	// bound to this node, exactly as for a get.
	if name := ev.ObjectRef.Name; name != "" && (resource == "pods" || name == node) {
		return out
	}
	if selectorURIInferred(ev) && (resource == "pods" || ev.ObjectRef.Name == "") {
		// No query to read the kubelet's own selector from. A node
		// reading another node by name (objectRef carries the name, not
		// the query) is still judged below.
		return out
	}
	rawField, _, hasField, _ := selectorQuery(ev.RequestURI)
	other := ""
	if resource == "nodes" {
		other = ev.ObjectRef.Name
	}
	if hasField && rawField != "" {
		if node != "" && selectorIsOwnTerm(rawField, selField, node) {
			return out // the kubelet's own watch: no parse, no allocation
		}
		var buf [4]selectorFieldTerm
		terms, err := selectorFieldTerms(rawField, buf[:0])
		if err == nil {
			for _, t := range terms {
				if !t.equal {
					continue
				}
				if t.field == selField {
					if node != "" && t.value == node {
						return out
					}
					other = t.value
				}
			}
		}
	}

	sev := d.cfg.NodeSeverity
	agent := ""
	if !strings.HasPrefix(ev.UserAgent, "kubelet/") {
		sev = selectorRaise(sev)
		agent = fmt.Sprintf(" by %q, not a kubelet", ev.UserAgent)
	}
	what := fmt.Sprintf("without %s=%s", selField, selectorNodeLabel(node))
	if other != "" {
		what = "of node " + other
	}
	f := pipeline.NewFinding(selectorDetectorID, ev, "node-"+resource)
	f.Severity = sev
	f.MITRE = selectorMITREValidAccounts
	f.Summary = fmt.Sprintf("node %s %s %s %s%s: a kubelet credential reading beyond its node",
		selectorNodeLabel(node), selectorPast(ev.Verb), resource, what, agent)
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: "requestURI", Value: ev.RequestURI, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "user.username", Value: ev.User.Username, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "userAgent", Value: ev.UserAgent, Source: pipeline.FromEvent},
	)
	if hasField {
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "fieldSelector", Value: rawField, Source: pipeline.FromEvent})
	}
	return append(out, f)
}

// Annotations under which a managed-Kubernetes converter marks the fields
// it rebuilt rather than read (internal/cloud: only auditpipe's converters
// set auditpipe.io/ annotations; ingest strips any an event arrives with).
// They are spelled out here because detectors import no source package.
const (
	// selectorSourceAnnotation names the source, e.g. "gke".
	selectorSourceAnnotation = "auditpipe.io/source"
	// selectorInferredPrefix+<source>+selectorInferredSuffix is
	// auditpipe.io/<source>-inferred: a
	// comma-separated list of rebuilt fields, e.g. "timestamps,request-uri".
	selectorInferredPrefix, selectorInferredSuffix = "auditpipe.io/", "-inferred"
	// selectorInferredURI is the list's entry for a rebuilt requestURI.
	selectorInferredURI = "request-uri"
)

// selectorURIInferred reports whether ev's requestURI was rebuilt by a
// converter (GKE keeps no query string), so that its selectors are unknown
// rather than absent. Only reached for broad-looking reads, so the key's
// concatenation is off the common path.
func selectorURIInferred(ev *pipeline.Event) bool {
	src := ev.Annotations[selectorSourceAnnotation]
	if src == "" {
		return false
	}
	list := ev.Annotations[selectorInferredPrefix+src+selectorInferredSuffix]
	for list != "" {
		var f string
		f, list, _ = strings.Cut(list, ",")
		if strings.TrimSpace(f) == selectorInferredURI {
			return true
		}
	}
	return false
}

// selectorIsOwnTerm reports whether raw is exactly "field=node" or
// "field==node", without building either string.
func selectorIsOwnTerm(raw, field, node string) bool {
	rest, ok := strings.CutPrefix(raw, field)
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, "=")
	if !ok {
		return false
	}
	// Node names are DNS subdomains, so none starts with '='.
	return strings.TrimPrefix(rest, "=") == node
}

// selectorNodeLabel names a node in a summary, even an unnamed one.
func selectorNodeLabel(node string) string {
	if node == "" {
		return "<unnamed>"
	}
	return node
}

// selectorSARSelector is a review's field or label selector; Requirements
// counts spec.resourceAttributes.<x>Selector.requirements.
type selectorSARSelector struct {
	RawSelector  string
	Requirements int
}

// selectorSARFromBody reads the selectors of a SubjectAccessReview (any of
// the three kinds) from a decoded body; ok is false when the body is not
// an object, has the wrong types, or has no resourceAttributes.
func selectorSARFromBody(body any) (field, label *selectorSARSelector, ok bool) {
	m, isObj := body.(map[string]any)
	if !isObj {
		return nil, nil, false
	}
	var r bodyReader
	ra := r.obj(r.obj(m["spec"])["resourceAttributes"])
	read := func(v any) *selectorSARSelector {
		sm := r.obj(v)
		if sm == nil {
			return nil
		}
		return &selectorSARSelector{RawSelector: r.str(sm["rawSelector"]), Requirements: len(r.list(sm["requirements"]))}
	}
	field, label = read(ra["fieldSelector"]), read(ra["labelSelector"])
	if r.bad || ra == nil {
		return nil, nil, false
	}
	return field, label, true
}

// detectProbe flags a SubjectAccessReview whose field or label selector
// sets both rawSelector and requirements: the API defines that as invalid,
// so the only reason to send one is to see how an authorizer copes.
func (d *selectorDetector) detectProbe(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	bodies := [...]struct {
		obj    []byte
		source string
	}{
		{selectorRaw(ev.ResponseObject), pipeline.FromResponse},
		{selectorRaw(ev.RequestObject), pipeline.FromRequest},
	}
	for _, b := range bodies {
		// Most reviews carry no selector at all: skip the decode.
		if len(b.obj) == 0 || !bytes.Contains(b.obj, selectorRawSelectorKey) {
			continue
		}
		fieldSel, labelSel, ok := selectorSARFromBody(bodyDecoded(ev, b.source))
		if !ok {
			continue
		}
		var ev2 []pipeline.Evidence
		for _, s := range []struct {
			name string
			sel  *selectorSARSelector
		}{
			{"spec.resourceAttributes.fieldSelector", fieldSel},
			{"spec.resourceAttributes.labelSelector", labelSel},
		} {
			if s.sel != nil && s.sel.RawSelector != "" && s.sel.Requirements > 0 {
				ev2 = append(ev2,
					pipeline.Evidence{Field: s.name + ".rawSelector", Value: s.sel.RawSelector, Source: b.source},
					pipeline.Evidence{Field: s.name + ".requirements", Value: fmt.Sprintf("%d requirement(s)", s.sel.Requirements), Source: b.source},
				)
			}
		}
		if len(ev2) == 0 {
			return out
		}
		f := pipeline.NewFinding(selectorDetectorID, ev, "sar-probe")
		f.Severity = d.cfg.ProbeSeverity
		f.MITRE = selectorMITREPermissionDiscovery
		f.Summary = fmt.Sprintf("%s sent a review (%s) whose selector sets both rawSelector and requirements, invalid by API contract: probing selector authorization",
			selectorActor(ev), ev.ObjectRef.Resource)
		f.Evidence = ev2
		return append(out, f)
	}
	return out
}

// selectorRawSelectorKey is searched for before decoding a review body.
var selectorRawSelectorKey = []byte(`"rawSelector"`)

// selectorRaw returns a body's raw JSON, or nil when it was not audited.
func selectorRaw(u *runtime.Unknown) []byte {
	if u == nil {
		return nil
	}
	return u.Raw
}
