package rules

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	yaml "go.yaml.in/yaml/v3"

	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// First-seen (new_terms) rules. A rule with a new_terms block fires not
// because its condition holds but because, among the events its condition
// selects, the term (the values of fields) is new for the key (the values
// of key) within history:
//
//	new_terms:
//	  key: [user.username]                      # expressions; default user.username
//	  fields:                                   # expressions, each optionally normalised
//	    - {field: sourceIP, normalize: network} # network | ua_family | owner
//	  history: 14d                              # how long a term stays known
//	  learning: 14d                             # quiet per cluster at first; default history
//	  key_learning: 1h                          # quiet per new key at first; default 0
//
// The Set itself stays stateless: Terms says which term rules match an
// event and with what key and term, and a TermsDetector judges those
// against a firstseen.Tracker, in event order.

// Limits on one key or term: they come from attacker-controlled fields.
const (
	maxTermBytes = 512
	// DefaultHistory is a new_terms rule's history when it gives none.
	DefaultHistory = 14 * 24 * time.Hour
)

// Evidence fields of a first-seen finding.
const (
	EvidenceTermKey       = "new_terms.key"
	EvidenceTerm          = "new_terms.term"
	EvidenceKeyFirstSeen  = "new_terms.key_first_seen"
	EvidenceDistinctTerms = "new_terms.distinct_terms"
	EvidenceTermHistory   = "new_terms.history"
)

// normalizers turn a field's value into the term compared: single pod IPs
// churn, version strings change with every release, pod names with every
// rollout; their network, family and owner do not.
var normalizers = map[string]func(string) string{
	"network":   Network,
	"ua_family": UserAgentFamily,
	"owner":     PodOwner,
}

// newTermsDef is a new_terms block as read from a file.
type newTermsDef struct {
	key, fields               []termFieldDef
	history, learning, keyLrn *time.Duration
	at                        pos
}

type termFieldDef struct {
	part      condPart
	normalize string
	name      string // how the summary calls it; default the expression
}

// termField is one compiled key or term field.
type termField struct {
	text string
	prog *vm.Program
	get  func(any) any // prog's value, when the field is a plain read
	// str is get for a plain read of a string field: the value without
	// boxing it in an interface (an allocation per event and field).
	str  func(*Env) string
	norm func(string) string
}

// termSpec is a compiled new_terms block.
type termSpec struct {
	key, fields []termField
	policy      firstseen.Policy
	// names is the fields' text, for the summary: "sourceIP (network)".
	names string
}

// newTerms decodes a rule's new_terms block.
func (d *decoder) newTerms(n *yaml.Node) *newTermsDef {
	def := &newTermsDef{at: d.at(n)}
	dur := func(v *yaml.Node, what string) *time.Duration {
		s, ok := d.str(v, what)
		if !ok {
			return nil
		}
		x, err := parseDays(s)
		if err != nil || x < 0 {
			d.errorf(v, "%s: want a duration such as 14d, 12h or 30m, got %q", what, s)
			return nil
		}
		return &x
	}
	d.mapping(n, "new_terms", func(key string, k, v *yaml.Node) {
		switch key {
		case "key":
			def.key = d.termFields(v, "new_terms.key")
		case "fields":
			def.fields = d.termFields(v, "new_terms.fields")
		case "history":
			def.history = dur(v, "new_terms.history")
		case "learning":
			def.learning = dur(v, "new_terms.learning")
		case "key_learning":
			def.keyLrn = dur(v, "new_terms.key_learning")
		default:
			d.errorf(k, "unknown key %q in new_terms: want key, fields, history, learning, key_learning", key)
		}
	})
	return def
}

// mergeTerms applies an override's new_terms block to the one it
// overrides: the keys it gives replace the old ones, in both override
// modes, so that `new_terms: {learning: 2d}` changes only the learning.
func mergeTerms(old, over *newTermsDef) *newTermsDef {
	if old == nil {
		return over
	}
	m := *old
	if over.key != nil {
		m.key = over.key
	}
	if over.fields != nil {
		m.fields = over.fields
	}
	if over.history != nil {
		m.history = over.history
	}
	if over.learning != nil {
		m.learning = over.learning
	}
	if over.keyLrn != nil {
		m.keyLrn = over.keyLrn
	}
	return &m
}

// termFields reads a list whose items are an expression, or a mapping
// {field: expression, normalize: name}.
func (d *decoder) termFields(n *yaml.Node, what string) []termFieldDef {
	var out []termFieldDef
	item := func(c *yaml.Node) {
		if c.Kind == yaml.ScalarNode {
			if s, ok := d.str(c, what+" item"); ok {
				out = append(out, termFieldDef{part: condPart{text: s, node: c, src: d.src}})
			}
			return
		}
		var f termFieldDef
		var has bool
		d.mapping(c, what+" item", func(key string, k, v *yaml.Node) {
			switch key {
			case "field":
				if s, ok := d.str(v, "field"); ok {
					f.part, has = condPart{text: s, node: v, src: d.src}, true
				}
			case "name":
				f.name, _ = d.str(v, "name")
			case "normalize":
				if s, ok := d.str(v, "normalize"); ok {
					if normalizers[s] == nil {
						d.errorf(v, "unknown normalize %q: want network, ua_family or owner", s)
					}
					f.normalize = s
				}
			default:
				d.errorf(k, "unknown key %q in %s item: want field, normalize, name", key, what)
			}
		})
		if !has && c.Kind == yaml.MappingNode {
			d.errorf(c, "%s item without field", what)
			return
		}
		if has {
			out = append(out, f)
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		item(n)
		return out
	}
	d.sequence(n, what, func(c *yaml.Node) { item(c) })
	return out
}

// parseDays is time.ParseDuration plus a d (24h) unit, as in 14d.
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days > 3650 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// compileTerms compiles a rule's new_terms block; nil when the rule has
// none. ok is false when it has errors, which were reported.
func (c *compiler) compileTerms(name string, def *newTermsDef) (*termSpec, bool) {
	if def == nil {
		return nil, true
	}
	ok := true
	field := func(f termFieldDef) termField {
		tf := termField{text: f.part.text, norm: normalizers[f.normalize]}
		tree, good := c.parse(f.part, f.part.text, 0, true)
		if !good {
			ok = false
			return tf
		}
		if n := c.treeSize(tree.Node); n > MaxExpandedNodes {
			c.errorAt(partPos(f.part), "rule %s new_terms: %q expands to more than %d expression nodes", name, f.part.text, MaxExpandedNodes)
			ok = false
			return tf
		}
		var x expansion
		c.expand(&tree.Node, nil, &x)
		if x.broken {
			ok = false
			return tf
		}
		tf.get = fieldGetter(tree.Node) // before program rewrites the tree
		if tf.get != nil {
			tf.str = stringFields[fieldPathOf(tree.Node)]
		}
		prog, err := c.program(tree.Node, f.part.text, c.cfgAny)
		if err != nil {
			c.exprError(f.part, 0, err, "rule "+name+" new_terms: ")
			ok = false
			return tf
		}
		tf.prog = prog
		if f.name != "" {
			tf.text = f.name
		} else if f.normalize != "" {
			tf.text += " (" + f.normalize + ")"
		}
		return tf
	}
	if len(def.fields) == 0 {
		c.errorAt(def.at, "rule %s: new_terms has no fields: name the term, e.g. fields: [sourceIP]", name)
		return nil, false
	}
	spec := &termSpec{}
	keys := def.key
	if len(keys) == 0 {
		keys = []termFieldDef{{part: condPart{text: "user.username", node: &yaml.Node{Line: def.at.line, Column: def.at.col}, src: def.at.file}}}
	}
	for _, f := range keys {
		spec.key = append(spec.key, field(f))
	}
	names := make([]string, 0, len(def.fields))
	for _, f := range def.fields {
		tf := field(f)
		spec.fields = append(spec.fields, tf)
		names = append(names, tf.text)
	}
	spec.names = strings.Join(names, ", ")
	spec.policy.History = DefaultHistory
	if def.history != nil {
		spec.policy.History = *def.history
	}
	if spec.policy.History <= 0 {
		c.errorAt(def.at, "rule %s new_terms: history must be positive", name)
		ok = false
	}
	spec.policy.Learning = spec.policy.History
	if def.learning != nil {
		spec.policy.Learning = *def.learning
	}
	if def.keyLrn != nil {
		spec.policy.KeyLearning = *def.keyLrn
	}
	return spec, ok
}

// TermMatch is a first-seen rule whose condition holds on an event, with
// the key and term the event shows. Judge it with a TermsDetector.
type TermMatch struct {
	Rule, Key, Term string
	set             *Set
	r               *rule
}

// HasTerms reports whether s has enabled first-seen rules.
func (s *Set) HasTerms() bool { return len(s.termRules) > 0 }

// TermPolicy returns the first-seen policy of the rule named name.
func (s *Set) TermPolicy(name string) (firstseen.Policy, bool) {
	for _, i := range s.termRules {
		if s.rules[i].name == name {
			return s.rules[i].terms.policy, true
		}
	}
	return firstseen.Policy{}, false
}

// MaxTermHistory is the longest history of s's first-seen rules (zero
// without any): how far back persisted terms are worth loading.
func (s *Set) MaxTermHistory() time.Duration {
	var h time.Duration
	for _, i := range s.termRules {
		h = max(h, s.rules[i].terms.policy.History)
	}
	return h
}

// Terms appends a TermMatch for each enabled first-seen rule whose
// condition holds on ev (and no exception does). Only the authoritative
// stage of a request is judged. Safe for concurrent use.
func (s *Set) Terms(ev *pipeline.Event, out []TermMatch) []TermMatch {
	if len(s.termRules) == 0 || !ev.IsAuthoritative() {
		return out
	}
	st := s.pool.Get().(*state)
	st.reset(ev, true)
	values := st.values(s.reqTable)
	out = s.terms(st, &values, out)
	st.release()
	s.pool.Put(st)
	return out
}

// terms is Terms on the state st holds of the event, with its requirement
// values.
func (s *Set) terms(st *state, values *eventValues, out []TermMatch) []TermMatch {
	for _, i := range s.termRules {
		r := s.rules[i]
		if !ruleRequirementsHold(r, values) {
			continue
		}
		fired, _, err := s.match(st, r)
		if err != nil {
			s.evalError(i, err)
		}
		if !fired {
			continue
		}
		key, kok := s.termValue(st, i, r.terms.key)
		term, tok := s.termValue(st, i, r.terms.fields)
		if !kok || !tok || term == "" {
			continue // nothing to compare: a missing field is no term
		}
		out = append(out, TermMatch{Rule: r.name, Key: key, Term: term, set: s, r: r})
	}
	return out
}

// termValue evaluates fields and joins their normalised values with " | ".
func (s *Set) termValue(st *state, i int, fields []termField) (string, bool) {
	if len(fields) == 1 {
		// The common case: no joining, so no copy of the value.
		x, ok := s.termPart(st, i, &fields[0])
		return termLine(x), ok
	}
	// Joined at once: one allocation for the term.
	var buf [4]string
	parts := buf[:0]
	for j := range fields {
		x, ok := s.termPart(st, i, &fields[j])
		if !ok {
			return "", false
		}
		parts = append(parts, x)
	}
	return termLine(strings.Join(parts, " | ")), true
}

// termPart is field f's normalised value on st's event; ok is false when
// it fails to evaluate (reported as rule i's error).
func (s *Set) termPart(st *state, i int, f *termField) (string, bool) {
	var x string
	if f.str != nil {
		x = f.str(&st.env)
	} else {
		v, err := f.value(st)
		if err != nil {
			s.evalError(i, err)
			return "", false
		}
		x = termString(v)
	}
	if f.norm != nil {
		x = f.norm(x)
	}
	return x, true
}

// termLine is oneLine(x, maxTermBytes), which looked at a term rune by
// rune for control characters, a tenth of the first-seen rules' time:
// a term that needs neither cut nor replacement is returned after a look
// at its bytes. The characters oneLine replaces are ASCII, and no byte of
// a character beyond ASCII (nor an invalid byte, which decodes as U+FFFD)
// is below 0x80, so the bytes tell as well as the runes.
func termLine(x string) string {
	if len(x) > maxTermBytes {
		return oneLine(x, maxTermBytes)
	}
	for i := 0; i < len(x); i++ {
		if b := x[i]; b < 0x20 || b == 0x7f {
			return oneLine(x, maxTermBytes)
		}
	}
	return x
}

// termFinding builds the finding about ev for m, which v says is new. Its
// id depends on the rule, cluster, key and term and the history-long epoch
// of the event, not on the event: two detect instances that both see the
// term first (one key's events split over partitions) write the same id,
// and a term forgotten and seen again a history later gets a new one.
func (m TermMatch) finding(ev *pipeline.Event, v firstseen.Verdict) pipeline.Finding {
	r, s := m.r, m.set
	f := pipeline.NewFinding(r.id, ev, "")
	epoch := eventTime(ev).Unix() / int64(max(r.terms.policy.History/time.Second, 1))
	f.ID = pipeline.FindingID(r.id, ev.Cluster, "", 0, m.Key+"\x00"+m.Term+"\x00"+strconv.FormatInt(epoch, 10))
	f.Severity, f.MITRE = r.severity, r.mitre
	st := s.pool.Get().(*state)
	st.reset(ev, true)
	summary := s.render(st, r)
	f.Evidence = s.evidence(st, r)
	st.release()
	s.pool.Put(st)
	f.Summary = oneLine(fmt.Sprintf("%s: new %s %q for %s (first seen %s, %d distinct in %s)",
		summary, r.terms.names, m.Term, m.Key, v.KeyFirstSeen.Format(time.RFC3339), v.Terms, formatDays(r.terms.policy.History)), maxSummary)
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: EvidenceTermKey, Value: oneLine(m.Key, maxEvidenceValue), Source: SourceRule},
		pipeline.Evidence{Field: EvidenceTerm, Value: oneLine(m.Term, maxEvidenceValue), Source: SourceRule},
		pipeline.Evidence{Field: EvidenceKeyFirstSeen, Value: v.KeyFirstSeen.Format(time.RFC3339), Source: SourceRule},
		pipeline.Evidence{Field: EvidenceDistinctTerms, Value: strconv.Itoa(v.Terms), Source: SourceRule},
		pipeline.Evidence{Field: EvidenceTermHistory, Value: formatDays(r.terms.policy.History), Source: SourceRule},
	)
	return f
}

// value is the field's value on st's event: read directly when it is a
// plain field (the key of most first-seen rules is user.username), else
// by its program.
func (f *termField) value(st *state) (any, error) {
	if f.get != nil {
		return f.get(&st.env), nil
	}
	return st.vm.Run(f.prog, &st.env)
}

// termString is formatValue, except that a list of strings (a user.extra
// value is an authentication ExtraValue) is its items joined by commas.
func termString(v any) string {
	if s, ok := v.(string); ok {
		return s // what the rest makes of a string, without reflection
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.String {
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = rv.Index(i).String()
		}
		return strings.Join(parts, ",")
	}
	if l, ok := v.([]any); ok {
		parts := make([]string, len(l))
		for i, x := range l {
			s, ok := x.(string)
			if !ok {
				return formatValue(v)
			}
			parts[i] = s
		}
		return strings.Join(parts, ",")
	}
	return formatValue(v)
}

func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

// eventTime is when the request was judged: the stage timestamp, else the
// time it was received.
func eventTime(ev *pipeline.Event) time.Time {
	if t := ev.StageTimestamp.Time; !t.IsZero() {
		return t
	}
	return ev.RequestReceivedTimestamp.Time
}

// TermsDetector judges first-seen rules against a Tracker. Detect must be
// called in event order from one goroutine at a time (detect's processor
// and scan's merge do), since what is new depends on what came before.
type TermsDetector struct {
	current func() *Set
	tracker *firstseen.Tracker
	buf     []TermMatch
	// started maps a cluster to the set whose rules have had their
	// learning started there (Tracker.Start), so that it costs one map
	// lookup per event; a reloaded set starts its new rules.
	started map[string]*Set
}

var _ pipeline.EventDetector = (*TermsDetector)(nil)

// NewTermsDetector judges the first-seen rules of the set current returns
// (a Watcher's Current, so that a reload keeps the state: it is keyed by
// rule name) against t.
func NewTermsDetector(current func() *Set, t *firstseen.Tracker) *TermsDetector {
	return &TermsDetector{current: current, tracker: t, started: map[string]*Set{}}
}

// See starts the learning period of s's first-seen rules in ev's cluster
// on the first event of the cluster they see. Detect calls it; detect
// scan's merge calls it for every judged event.
func (d *TermsDetector) See(s *Set, ev *pipeline.Event) {
	if d.started[ev.Cluster] == s {
		return
	}
	at := eventTime(ev)
	for _, i := range s.termRules {
		d.tracker.Start(s.rules[i].name, ev.Cluster, at, ev)
	}
	if len(d.started) > maxStartedClusters {
		clear(d.started) // only a cache: Start keeps the earliest
	}
	d.started[ev.Cluster] = s
}

// maxStartedClusters bounds TermsDetector.started: cluster names come from
// the transport, and only a handful are real.
const maxStartedClusters = 1024

// Tracker returns the detector's state.
func (d *TermsDetector) Tracker() *firstseen.Tracker { return d.tracker }

// Set returns the rule set in use.
func (d *TermsDetector) Set() *Set { return d.current() }

// Detect matches ev against the first-seen rules and appends a finding for
// each term new to its key. out holds the findings other detectors made
// about ev, which defers_to consults.
func (d *TermsDetector) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	s := d.current()
	if s == nil || !s.HasTerms() || !ev.IsAuthoritative() {
		return out
	}
	d.See(s, ev)
	d.buf = s.Terms(ev, d.buf[:0])
	for _, m := range d.buf {
		out = d.Judge(ev, m, out)
	}
	clear(d.buf)
	return out
}

// Judge records m (from Set.Terms on ev) and appends its finding when the
// term is new to the key and no learning period holds. detect scan's
// workers match in parallel and judge in input order with it.
func (d *TermsDetector) Judge(ev *pipeline.Event, m TermMatch, out []pipeline.Finding) []pipeline.Finding {
	v := d.tracker.Observe(m.Rule, ev.Cluster, m.Key, m.Term, eventTime(ev), m.r.terms.policy, ev)
	if !v.Report || deferred(m.r.defersTo, ev, out) {
		return out
	}
	return append(out, m.finding(ev, v))
}
