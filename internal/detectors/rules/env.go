package rules

import (
	"net/netip"
	"net/url"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Env is what a condition sees: the fields of one audit event, typed, so
// that a condition naming an unknown field or comparing a string with a
// number fails when the rule loads. The expr tags are the names used in
// conditions. One Env per goroutine is reused from event to event, so
// filling it allocates nothing.
type Env struct {
	Cluster          string                       `expr:"cluster"`
	Verb             string                       `expr:"verb"`
	Stage            string                       `expr:"stage"`
	Level            string                       `expr:"level"`
	AuditID          string                       `expr:"auditID"`
	RequestURI       string                       `expr:"requestURI"`
	Path             string                       `expr:"path"`
	Selectors        SelectorsEnv                 `expr:"selectors"`
	User             UserEnv                      `expr:"user"`
	ImpersonatedUser ImpersonatedEnv              `expr:"impersonatedUser"`
	SourceIPs        []string                     `expr:"sourceIPs"`
	SourceIP         string                       `expr:"sourceIP"`
	UserAgent        string                       `expr:"userAgent"`
	ObjectRef        ObjectRefEnv                 `expr:"objectRef"`
	ResponseStatus   ResponseStatusEnv            `expr:"responseStatus"`
	Annotations      map[string]string            `expr:"annotations"`
	Decision         string                       `expr:"decision"`
	Request          func(path any) any           `expr:"request"`
	Response         func(path any) any           `expr:"response"`
	Object           func(path any) any           `expr:"object"`
	Has              func(path any) bool          `expr:"has"`
	Glob             func(s, pattern string) bool `expr:"glob"`
	CIDR             func(ip, prefix string) bool `expr:"cidr"`
	CSRSubject       csrSubjectFunc               `expr:"csrSubject"`

	// What compiled programs read through (access.go): the evaluator
	// for the body functions, and each accessor's boxed value for the
	// current event, valid where its bit in boxed is set. Unexported, so
	// conditions cannot name them.
	eval  *evaluator
	boxes [numAccessors]any
	boxed uint32
	// The let variables and predicate items of native conditions
	// (native.go), by the slots their compiler gave them.
	nativeVars, nativeItems []any
	nativeMem               uint // the VM's memory budget, spent
	// The values native conditions share (memoized): valid where memoAt
	// is memoGen, which reset advances for each event; 0 is never valid.
	memo    []any
	memoMem []uint
	memoAt  []uint32
	memoGen uint32
}

// SelectorsEnv holds the request's label and field selectors, URL-decoded.
type SelectorsEnv struct {
	LabelSelector string `expr:"labelSelector"`
	FieldSelector string `expr:"fieldSelector"`
}

// UserEnv is the authenticated user.
type UserEnv struct {
	Username string                        `expr:"username"`
	UID      string                        `expr:"uid"`
	Groups   []string                      `expr:"groups"`
	Extra    map[string]authnv1.ExtraValue `expr:"extra"`
}

// ImpersonatedEnv is the impersonated user; empty when there is none.
type ImpersonatedEnv struct {
	Username string   `expr:"username"`
	Groups   []string `expr:"groups"`
}

// ObjectRefEnv is the object the request addressed; empty for
// non-resource requests.
type ObjectRefEnv struct {
	Resource    string `expr:"resource"`
	Subresource string `expr:"subresource"`
	Namespace   string `expr:"namespace"`
	Name        string `expr:"name"`
	APIGroup    string `expr:"apiGroup"`
	APIVersion  string `expr:"apiVersion"`
}

// ResponseStatusEnv is the response's status; code 0 when there is none.
type ResponseStatusEnv struct {
	Code   int    `expr:"code"`
	Reason string `expr:"reason"`
}

// bodyFuncs are the Env functions that read request and response bodies;
// their argument must be a path literal, checked at load time.
var bodyFuncs = map[string]bool{"request": true, "response": true, "object": true, "has": true}

// evaluator is one goroutine's working state: the Env and (in Set) a
// reused VM. Bodies are read through the event's own cache
// (pipeline.Event.RequestBody), so every rule and every built-in detector
// shares one decode of each body.
type evaluator struct {
	env   Env
	ev    *pipeline.Event
	paths map[string]*bodyPath // the set's parsed paths, read-only
}

// init binds the Env's functions to e. It is done once per evaluator: a
// method value allocates, so it is not made per event.
func (e *evaluator) init(paths map[string]*bodyPath) {
	e.paths = paths
	e.env.eval = e
	e.env.Request = e.request
	e.env.Response = e.response
	e.env.Object = e.object
	e.env.Has = e.has
	e.env.Glob = glob
	e.env.CIDR = cidr
	e.env.CSRSubject = csrSubject
}

// reset points the evaluator at ev. It copies string headers and slice and
// map references only; bodies are decoded when a rule first asks.
func (e *evaluator) reset(ev *pipeline.Event, selectors bool) {
	e.ev = ev
	v := &e.env
	v.boxed = 0
	if v.memoGen++; v.memoGen == 0 {
		clear(v.memoAt)
		v.memoGen = 1
	}
	v.Cluster = ev.Cluster
	v.Verb = ev.Verb
	v.Stage = string(ev.Stage)
	v.Level = string(ev.Level)
	v.AuditID = string(ev.AuditID)
	v.RequestURI = ev.RequestURI
	v.Path, v.Selectors = ev.RequestURI, SelectorsEnv{}
	if i := strings.IndexByte(ev.RequestURI, '?'); i >= 0 {
		v.Path = ev.RequestURI[:i]
		if selectors {
			v.Selectors = parseSelectors(ev.RequestURI[i+1:])
		}
	}
	v.User = UserEnv{Username: ev.User.Username, UID: ev.User.UID, Groups: ev.User.Groups, Extra: ev.User.Extra}
	v.ImpersonatedUser = ImpersonatedEnv{}
	if iu := ev.ImpersonatedUser; iu != nil {
		v.ImpersonatedUser = ImpersonatedEnv{Username: iu.Username, Groups: iu.Groups}
	}
	v.SourceIPs = ev.SourceIPs
	v.SourceIP = ev.SourceIP()
	v.UserAgent = ev.UserAgent
	v.ObjectRef = ObjectRefEnv{}
	if r := ev.ObjectRef; r != nil {
		v.ObjectRef = ObjectRefEnv{Resource: r.Resource, Subresource: r.Subresource, Namespace: r.Namespace,
			Name: r.Name, APIGroup: r.APIGroup, APIVersion: r.APIVersion}
	}
	v.ResponseStatus = ResponseStatusEnv{}
	if s := ev.ResponseStatus; s != nil {
		v.ResponseStatus = ResponseStatusEnv{Code: int(s.Code), Reason: string(s.Reason)}
	}
	v.Annotations = ev.Annotations
	v.Decision = ev.Decision()
}

// release drops the references to the event so a pooled evaluator does not
// keep it alive.
func (e *evaluator) release() {
	e.ev = nil
	e.env.User, e.env.ImpersonatedUser = UserEnv{}, ImpersonatedEnv{}
	e.env.SourceIPs, e.env.Annotations = nil, nil
	e.env.boxed = 0
	clear(e.env.boxes[:])
	clear(e.env.nativeVars)
	clear(e.env.nativeItems)
	clear(e.env.memo)
	if e.env.memoGen++; e.env.memoGen == 0 {
		clear(e.env.memoAt)
		e.env.memoGen = 1
	}
}

// parseSelectors reads labelSelector and fieldSelector from a raw query
// without building url.Values: url.QueryUnescape returns its argument
// unchanged, without allocating, when nothing is escaped.
func parseSelectors(query string) SelectorsEnv {
	var s SelectorsEnv
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		var dst *string
		switch k {
		case "labelSelector":
			dst = &s.LabelSelector
		case "fieldSelector":
			dst = &s.FieldSelector
		default:
			continue
		}
		if u, err := url.QueryUnescape(v); err == nil {
			*dst = u
		} else {
			*dst = v
		}
	}
	return s
}

// path returns the parsed form of a path argument. Load parses every
// literal, so the map lookup succeeds; anything else yields no path.
func (e *evaluator) path(arg any) *bodyPath {
	s, _ := arg.(string)
	if p := e.paths[s]; p != nil {
		return p
	}
	p, err := parseBodyPath(s)
	if err != nil {
		return nil
	}
	return p
}

func (e *evaluator) request(arg any) any {
	p := e.path(arg)
	if p == nil {
		return nil
	}
	v, _ := e.read(p, pipeline.FromRequest)
	return v
}

func (e *evaluator) response(arg any) any {
	p := e.path(arg)
	if p == nil {
		return nil
	}
	v, _ := e.read(p, pipeline.FromResponse)
	return v
}

// read evaluates p on the request or response body, without decoding a
// body whose raw bytes show it lacks the path (bodyPath.absentIn).
func (e *evaluator) read(p *bodyPath, src string) (any, bool) {
	if e.ev == nil {
		return nil, false
	}
	u := e.ev.RequestObject
	if src == pipeline.FromResponse {
		u = e.ev.ResponseObject
	}
	if u == nil {
		return nil, false
	}
	if !e.ev.BodyDecoded(src) && p.absentIn(u.Raw) {
		return nil, false
	}
	if src == pipeline.FromResponse {
		return p.eval(e.ev.ResponseBody())
	}
	return p.eval(e.ev.RequestBody())
}

// objectSource reads path from the response (what was stored, after
// defaulting and admission) and falls back to the request, reporting which.
func (e *evaluator) objectSource(arg any) (any, string, bool) {
	p := e.path(arg)
	if p == nil {
		return nil, "", false
	}
	if v, ok := e.read(p, pipeline.FromResponse); ok {
		return v, pipeline.FromResponse, true
	}
	if v, ok := e.read(p, pipeline.FromRequest); ok {
		return v, pipeline.FromRequest, true
	}
	return nil, "", false
}

func (e *evaluator) object(arg any) any {
	v, _, _ := e.objectSource(arg)
	return v
}

func (e *evaluator) has(arg any) bool {
	_, _, ok := e.objectSource(arg)
	return ok
}

// glob matches s against pattern, where * matches any run of characters
// (slashes and colons included, unlike path.Match) and ? one character.
func glob(s, pattern string) bool {
	// Iterative matcher with one backtrack point: linear for one star,
	// O(len(s)*len(pattern)) at worst, never exponential.
	var px, sx, nextPx, nextSx int
	nextSx = -1
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// cidr reports whether ip lies in prefix ("10.0.0.0/8"); a bare address is
// a prefix of one. Bad input is simply no match.
func cidr(ip, prefix string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	var p netip.Prefix
	if strings.IndexByte(prefix, '/') >= 0 {
		if p, err = netip.ParsePrefix(prefix); err != nil {
			return false
		}
	} else {
		b, err := netip.ParseAddr(prefix)
		if err != nil {
			return false
		}
		p = netip.PrefixFrom(b, b.BitLen())
	}
	return p.Contains(a.Unmap()) || p.Contains(a)
}
