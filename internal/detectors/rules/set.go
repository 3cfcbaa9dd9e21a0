package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// SourceRule marks the evidence a rule adds about itself (its tags), as
// opposed to fields read from the event or its bodies.
const SourceRule = "rule"

// Limits on what a finding carries, so a rule cannot blow up a row.
const (
	maxSummary       = 1024
	maxEvidenceValue = 512
)

// rule is one compiled rule.
type rule struct {
	name, id    string
	description string
	severity    pipeline.Severity
	mitre       string
	tags        []string
	tagsValue   string
	// defersTo names detectors that report the same signal: when one of
	// them has already reported on the event, the rule's finding is
	// dropped, so that one event raises one finding per signal.
	defersTo []string
	enabled  bool
	at       pos

	cond       *vm.Program
	native     nativeCond // cond compiled to Go; nil when it could not be
	exceptions []ruleException
	output     []templatePart
	evidence   []evidenceSpec
	reqs       []requirement // what the condition requires, for the index
	reqIDs     []int32       // reqs by id in the set's requirement table
	filed      int           // which of reqs the index files the rule by; -1 none
	substrings []test        // F contains "s" conjuncts, checked before cond
	examples   []example
	// terms makes the rule a first-seen rule (newterms.go): Detect skips
	// it, Terms and a TermsDetector judge it; baseline holds the events
	// its examples are judged after.
	terms    *termSpec
	baseline [][]byte
}

type ruleException struct {
	name   string
	prog   *vm.Program
	native nativeCond // nil: prog only
}

// Set is a compiled rule set. It implements pipeline.EventDetector and is
// safe for concurrent use: its rules are read-only, and each goroutine
// borrows its own VM and Env from a pool.
type Set struct {
	rules         []*rule
	termRules     []int // enabled first-seen rules, by index in rules
	index         *index
	reqTable      []requirement // every distinct requirement, by id
	paths         map[string]*bodyPath
	lists, macros int
	pool          sync.Pool
	// memoSlots are the values the conditions share per event, by
	// expression (memo.go).
	memoSlots map[string]int

	log     *slog.Logger
	metrics *Metrics
	errLogs []errLog // per rule, throttling the log of evaluation errors
}

// EvalErrorLogInterval is how often at most one rule's evaluation errors
// are logged. An error can repeat for every event (a body of an unexpected
// shape), so logging each would flood the log at event rate; every error
// is counted in MetricEvalErrors regardless, and each log line says how
// many errors went unlogged since the previous one.
const EvalErrorLogInterval = time.Minute

// errLog throttles one rule's evaluation-error log lines without a lock.
type errLog struct {
	next       atomic.Int64 // unix nanoseconds before which nothing is logged
	suppressed atomic.Int64 // errors not logged since the last line
}

var _ pipeline.EventDetector = (*Set)(nil)

// state is what a goroutine borrows from the pool for one event.
type state struct {
	evaluator
	vm         vm.VM
	candidates []uint64 // the index's bitset of rules to evaluate
	memo       []uint8  // eventValues.memo
}

// values returns the index's view of the event st was reset to, with the
// requirement memo cleared.
func (st *state) values(table []requirement) eventValues {
	clear(st.memo)
	return eventValues{env: &st.env, table: table, memo: st.memo}
}

func (s *Set) init() {
	s.index = buildIndex(s.rules)
	s.reqTable = requirementTable(s.rules)
	s.errLogs = make([]errLog, len(s.rules))
	for i, r := range s.rules {
		if r.terms != nil && r.enabled {
			s.termRules = append(s.termRules, i)
		}
	}
	s.pool.New = func() any {
		st := &state{candidates: make([]uint64, s.index.words), memo: make([]uint8, len(s.reqTable))}
		st.init(s.paths)
		return st
	}
}

// Instrument makes s count every evaluation error in m and log them to log,
// at most one line per rule per EvalErrorLogInterval. Call it before s is
// shared; both may be nil.
func (s *Set) Instrument(log *slog.Logger, m *Metrics) *Set {
	s.log, s.metrics = log, m
	return s
}

// Len returns the number of rules, enabled or not.
func (s *Set) Len() int { return len(s.rules) }

// Names lists the rules in definition order.
func (s *Set) Names() []string {
	out := make([]string, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.name
	}
	return out
}

// Counts returns how many lists and macros the set was built with.
func (s *Set) Counts() (lists, macros int) { return s.lists, s.macros }

// Detect evaluates the rules that could fire on ev and appends a finding for
// each that does. Only the authoritative stage of a request is judged, so a
// request is reported once.
func (s *Set) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	return s.detect(ev, out, false)
}

// detect is Detect; brute skips the index, which tests compare against.
func (s *Set) detect(ev *pipeline.Event, out []pipeline.Finding, brute bool) []pipeline.Finding {
	if len(s.rules) == 0 || !ev.IsAuthoritative() {
		return out
	}
	st := s.pool.Get().(*state)
	st.reset(ev, true)
	if brute {
		for i, r := range s.rules {
			if r.enabled {
				out = s.judge(st, i, ev, out)
			}
		}
	} else {
		values := st.values(s.reqTable)
		out = s.detectIndexed(st, &values, ev, out)
	}
	st.release()
	s.pool.Put(st)
	return out
}

// detectIndexed judges the rules the index picks for ev, whose state st
// and requirement values have been computed.
func (s *Set) detectIndexed(st *state, values *eventValues, ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	s.index.candidates(values, st.candidates)
	for w, left := range st.candidates {
		for left != 0 {
			i := w*64 + bits.TrailingZeros64(left)
			left &= left - 1
			if ruleRequirementsHold(s.rules[i], values) {
				out = s.judge(st, i, ev, out)
			}
		}
	}
	return out
}

// DetectTerms is Detect followed by Terms, with the event read into the
// rules' state once for both: binding an event's fields and computing its
// requirement values was about 40 % of what Terms cost when done anew.
func (s *Set) DetectTerms(ev *pipeline.Event, out []pipeline.Finding, terms []TermMatch) ([]pipeline.Finding, []TermMatch) {
	if len(s.rules) == 0 || !ev.IsAuthoritative() {
		return out, terms
	}
	st := s.pool.Get().(*state)
	st.reset(ev, true)
	values := st.values(s.reqTable)
	out = s.detectIndexed(st, &values, ev, out)
	if len(s.termRules) > 0 {
		terms = s.terms(st, &values, terms)
	}
	st.release()
	s.pool.Put(st)
	return out, terms
}

func (s *Set) judge(st *state, i int, ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	r := s.rules[i]
	if r.terms != nil {
		return out // first-seen rules fire through a TermsDetector
	}
	fired, _, err := s.match(st, r)
	if err != nil {
		s.evalError(i, err)
	}
	if !fired || deferred(r.defersTo, ev, out) {
		return out
	}
	f := pipeline.NewFinding(r.id, ev, "")
	f.Severity, f.MITRE = r.severity, r.mitre
	f.Summary = s.render(st, r)
	f.Evidence = s.evidence(st, r)
	return append(out, f)
}

// deferred reports whether a detector r defers to has already reported on
// ev: a finding in out with that detector id, ev's cluster, auditID and
// stage. It relies on the order of detect run and detect scan, which run the
// built-in detectors before the rules and hand the rules the findings they
// made about the same event. out may also hold findings about earlier
// events of a batch; this event's are at its tail, so the walk back looks at
// no more than deferScan findings (a detector may also emit a finding about
// an earlier, correlated request among this event's). Findings that
// summarise a window (an enumeration burst) carry the auditID of the event
// that completed them, so a rule defers to those only on that event.
// deferScan bounds the findings deferred looks back at: the built-in
// detectors make a handful about one event, far fewer than this.
const deferScan = 256

func deferred(ids []string, ev *pipeline.Event, out []pipeline.Finding) bool {
	if len(ids) == 0 {
		return false
	}
	for i := len(out) - 1; i >= 0 && i >= len(out)-deferScan; i-- {
		f := &out[i]
		if f.AuditID != string(ev.AuditID) || f.Stage != string(ev.Stage) || f.Cluster != ev.Cluster {
			continue
		}
		if slices.Contains(ids, f.Detector) {
			return true
		}
	}
	return false
}

// match evaluates r's condition, then its exceptions. A failing exception
// does not suppress: an error must not hide an attack.
func (s *Set) match(st *state, r *rule) (fired bool, suppressedBy string, err error) {
	b, err := st.run(r.cond, r.native)
	if err != nil {
		return false, "", err
	}
	if !b {
		return false, "", nil
	}
	var exErr error
	for _, ex := range r.exceptions {
		b, err := st.run(ex.prog, ex.native)
		if err != nil {
			exErr = errors.Join(exErr, fmt.Errorf("exception %s: %w", ex.name, err))
			continue
		}
		if b {
			return false, ex.name, nil
		}
	}
	return true, "", exErr
}

// run evaluates a condition: natively where it was compiled to Go and
// ran without failing, else with the VM, which also yields the error of
// a condition that fails.
func (st *state) run(prog *vm.Program, native nativeCond) (bool, error) {
	if native != nil {
		if b, ok := runNative(native, &st.env); ok {
			return b, nil
		}
	}
	v, err := st.vm.Run(prog, &st.env)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition yielded %T, not bool", v)
	}
	return b, nil
}

func (s *Set) evalError(i int, err error) {
	r := s.rules[i]
	s.metrics.evalError(r.name)
	if s.log == nil {
		return
	}
	l := &s.errLogs[i]
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(EvalErrorLogInterval)) {
		l.suppressed.Add(1)
		return
	}
	s.log.Warn("evaluating rule", "rule", r.name, "err", exprMessage(err), "unlogged_errors", l.suppressed.Swap(0))
}

// exprMessage drops expr's snippet: the condition a program was compiled
// from is the expansion of macros, not the text in the file.
func exprMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}

// render fills in the rule's output, on one line.
func (s *Set) render(st *state, r *rule) string {
	if len(r.output) == 0 {
		if r.description != "" {
			return oneLine(r.description, maxSummary)
		}
		return r.name
	}
	var b strings.Builder
	for _, p := range r.output {
		if p.get != nil {
			b.WriteString(formatValue(p.get(&st.env)))
			continue
		}
		if p.prog == nil {
			b.WriteString(p.text)
			continue
		}
		v, err := st.vm.Run(p.prog, &st.env)
		if err != nil {
			b.WriteString("<error>")
			continue
		}
		b.WriteString(formatValue(v))
	}
	return oneLine(b.String(), maxSummary)
}

// evidence reports the fields the condition reads, and the rule's tags.
func (s *Set) evidence(st *state, r *rule) []pipeline.Evidence {
	out := make([]pipeline.Evidence, 0, len(r.evidence)+1)
	for _, spec := range r.evidence {
		var v any
		src := pipeline.FromEvent
		switch spec.fn {
		case "":
			if spec.get != nil {
				v = spec.get(&st.env)
				break
			}
			var err error
			if v, err = st.vm.Run(spec.prog, &st.env); err != nil {
				continue
			}
		case "request":
			v, src = st.request(spec.path), pipeline.FromRequest
		case "response":
			v, src = st.response(spec.path), pipeline.FromResponse
		default:
			var ok bool
			if v, src, ok = st.objectSource(spec.path); !ok {
				continue // absent: has() was false, nothing to show
			}
		}
		out = append(out, pipeline.Evidence{Field: spec.field, Value: oneLine(formatValue(v), maxEvidenceValue), Source: src})
	}
	if r.tagsValue != "" {
		out = append(out, pipeline.Evidence{Field: "tags", Value: r.tagsValue, Source: SourceRule})
	}
	return out
}

func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case []string:
		return strings.Join(v, ",")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// oneLine replaces control characters with spaces and truncates to max
// bytes on a rune boundary.
func oneLine(s string, max int) string {
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return ' '
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
