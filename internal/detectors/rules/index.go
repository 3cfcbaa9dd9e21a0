package rules

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// The rule index. A rule's condition often requires a literal of the
// event: verb == "create", objectRef.namespace in ["a", "b"], userAgent
// startsWith "kubectl/", "system:masters" in user.groups,
// cidr(sourceIP, "203.0.113.0/24"). Such a rule cannot fire on an event
// without that literal, so the set only evaluates it on events that have
// one: each rule is filed under the literals of one requirement (its
// most selective), an event looks up its own values, and the rules found
// have every requirement checked (cheap string compares) before their
// condition runs.
//
// Only requirements are used: the top-level conjuncts of a condition
// (macros inlined), each either one test or an or of tests, so a rule is
// never skipped on an event it would fire on. TestIndexNeverChangesResults
// compares against evaluating every rule.

// Fields a requirement can test; each is a string of the Env except
// fieldGroups, a list tested for membership.
const (
	fieldVerb = iota
	fieldResource
	fieldSubresource
	fieldNamespace
	fieldName
	fieldAPIGroup
	fieldUsername
	fieldUserAgent
	fieldRequestURI
	fieldPath
	fieldSourceIP
	fieldGroups
	numFields
)

var indexedFields = map[string]int{
	"verb":                  fieldVerb,
	"objectRef.resource":    fieldResource,
	"objectRef.subresource": fieldSubresource,
	"objectRef.namespace":   fieldNamespace,
	"objectRef.name":        fieldName,
	"objectRef.apiGroup":    fieldAPIGroup,
	"user.username":         fieldUsername,
	"userAgent":             fieldUserAgent,
	"requestURI":            fieldRequestURI,
	"path":                  fieldPath,
	"sourceIP":              fieldSourceIP,
	"user.groups":           fieldGroups,
}

// fieldValue is the event's value of a string field.
func fieldValue(e *Env, f int) string {
	switch f {
	case fieldVerb:
		return e.Verb
	case fieldResource:
		return e.ObjectRef.Resource
	case fieldSubresource:
		return e.ObjectRef.Subresource
	case fieldNamespace:
		return e.ObjectRef.Namespace
	case fieldName:
		return e.ObjectRef.Name
	case fieldAPIGroup:
		return e.ObjectRef.APIGroup
	case fieldUsername:
		return e.User.Username
	case fieldUserAgent:
		return e.UserAgent
	case fieldRequestURI:
		return e.RequestURI
	case fieldPath:
		return e.Path
	case fieldSourceIP:
		return e.SourceIP
	}
	return ""
}

// How a test compares its field with its literal.
const (
	testEqual  = iota // field == value (also member of `in`, glob without wildcards)
	testPrefix        // strings.HasPrefix(field, value) (startsWith, hasPrefix, glob's literal head)
	testMember        // value in field (a list)
	testCIDR          // cidr(field, prefix)
)

// test is one literal test a requirement is made of.
type test struct {
	field, kind int
	value       string
	prefix      netip.Prefix // testCIDR
}

// requirement holds when any of its tests does; a rule's requirements
// must all hold for it to fire.
type requirement []test

// eventValues is what the index reads of one event, the source address
// parsed once and only if some test needs it.
type eventValues struct {
	env    *Env
	addr   netip.Addr
	parsed bool
}

func (v *eventValues) ip() netip.Addr {
	if !v.parsed {
		v.parsed = true
		v.addr, _ = netip.ParseAddr(v.env.SourceIP)
	}
	return v.addr
}

// holds evaluates t exactly as the condition's test would.
func (t *test) holds(v *eventValues) bool {
	switch t.kind {
	case testEqual:
		return fieldValue(v.env, t.field) == t.value
	case testPrefix:
		return strings.HasPrefix(fieldValue(v.env, t.field), t.value)
	case testMember:
		return slices.Contains(v.env.User.Groups, t.value)
	case testCIDR:
		a := v.ip()
		return a.IsValid() && (t.prefix.Contains(a.Unmap()) || t.prefix.Contains(a))
	}
	return true
}

func (r requirement) holds(v *eventValues) bool {
	for i := range r {
		if r[i].holds(v) {
			return true
		}
	}
	return false
}

// allRequirementsHold reports whether ev meets every requirement of a rule.
func allRequirementsHold(reqs []requirement, v *eventValues) bool {
	for _, r := range reqs {
		if !r.holds(v) {
			return false
		}
	}
	return true
}

// requirementsOf reads the requirements of a condition: its top-level
// conjuncts that requirementTests understands.
func requirementsOf(node ast.Node) []requirement {
	var out []requirement
	var conj func(n ast.Node)
	conj = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			conj(b.Left)
			conj(b.Right)
			return
		}
		if r, ok := requirementTests(n); ok {
			out = append(out, r)
		}
	}
	conj(node)
	return out
}

// requirementTests recognises a test or an or of tests:
//
//	F == "v", "v" == F, F in ["a", "b"]      F a string field
//	F startsWith "p", hasPrefix(F, "p")
//	glob(F, "p*")                            the literal head of the pattern
//	"g" in user.groups
//	cidr(sourceIP, "10.0.0.0/8")
//	a || b                                   both recognised
func requirementTests(n ast.Node) (requirement, bool) {
	switch v := n.(type) {
	case *ast.BinaryNode:
		switch v.Operator {
		case "||", "or":
			l, lok := requirementTests(v.Left)
			r, rok := requirementTests(v.Right)
			if !lok || !rok {
				return nil, false
			}
			return append(l, r...), true
		case "==":
			if f, ok := stringField(v.Left); ok {
				if s, ok := v.Right.(*ast.StringNode); ok {
					return requirement{{field: f, kind: testEqual, value: s.Value}}, true
				}
			}
			if f, ok := stringField(v.Right); ok {
				if s, ok := v.Left.(*ast.StringNode); ok {
					return requirement{{field: f, kind: testEqual, value: s.Value}}, true
				}
			}
		case "in":
			if fieldPathOf(v.Right) == "user.groups" {
				if s, ok := v.Left.(*ast.StringNode); ok {
					return requirement{{field: fieldGroups, kind: testMember, value: s.Value}}, true
				}
				return nil, false
			}
			f, ok := stringField(v.Left)
			arr, isArr := v.Right.(*ast.ArrayNode)
			if !ok || !isArr {
				return nil, false
			}
			r := make(requirement, 0, len(arr.Nodes))
			for _, e := range arr.Nodes {
				s, ok := e.(*ast.StringNode)
				if !ok {
					return nil, false
				}
				r = append(r, test{field: f, kind: testEqual, value: s.Value})
			}
			// An empty list is never met: the rule never fires, and an
			// empty requirement files it nowhere.
			return r, true
		case "startsWith":
			if f, ok := stringField(v.Left); ok {
				if s, ok := v.Right.(*ast.StringNode); ok {
					return requirement{{field: f, kind: testPrefix, value: s.Value}}, true
				}
			}
		}
	case *ast.BuiltinNode:
		if v.Name != "hasPrefix" || len(v.Arguments) != 2 {
			return nil, false
		}
		s, isStr := v.Arguments[1].(*ast.StringNode)
		if f, isField := stringField(v.Arguments[0]); isStr && isField {
			return requirement{{field: f, kind: testPrefix, value: s.Value}}, true
		}
	case *ast.CallNode:
		id, ok := v.Callee.(*ast.IdentifierNode)
		if !ok || len(v.Arguments) != 2 {
			return nil, false
		}
		s, isStr := v.Arguments[1].(*ast.StringNode)
		f, isField := stringField(v.Arguments[0])
		if !isStr || !isField {
			return nil, false
		}
		switch id.Value {
		case "glob":
			if i := strings.IndexAny(s.Value, "*?"); i >= 0 {
				return requirement{{field: f, kind: testPrefix, value: s.Value[:i]}}, true
			}
			return requirement{{field: f, kind: testEqual, value: s.Value}}, true
		case "cidr":
			if p, ok := cidrPrefix(s.Value); ok && f == fieldSourceIP {
				return requirement{{field: f, kind: testCIDR, prefix: p}}, true
			}
		}
	}
	return nil, false
}

// cidrPrefix parses a cidr() literal as cidr() does, masked.
func cidrPrefix(s string) (netip.Prefix, bool) {
	if strings.IndexByte(s, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err == nil && p.IsValid()
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, a.BitLen())
	return p, p.IsValid()
}

// stringField is the indexed string field n reads, if any.
func stringField(n ast.Node) (int, bool) {
	f, ok := indexedFields[fieldPathOf(n)]
	return f, ok && f != fieldGroups
}

// selectivity guesses the share of events a test passes, to file each rule
// under its rarest requirement. A guess only costs time when wrong.
func (t *test) selectivity() float64 {
	switch t.kind {
	case testCIDR:
		return 0.01
	case testMember:
		return 0.2
	case testPrefix:
		if len(t.value) < 4 {
			return 0.5
		}
		return 0.1
	}
	switch t.field {
	case fieldVerb:
		return 0.3
	case fieldResource, fieldAPIGroup:
		return 0.15
	}
	return 0.03
}

// key is a requirement's estimated pass rate, the sum of its tests'.
func (r requirement) key() float64 {
	s := 0.0
	for i := range r {
		s += r[i].selectivity()
	}
	return s
}

// index files the enabled rules by one requirement each.
type index struct {
	words  int
	always []uint64 // rules without a requirement: evaluated on every event
	equal  [numFields]map[string][]int32
	prefix [numFields]prefixTable
	member map[string][]int32
	cidrs  map[netip.Prefix][]int32
	// cidrBits are the prefix lengths cidrs holds, per address length.
	cidrBits4, cidrBits6 []int
}

// prefixTable finds the literals that begin a value: one map lookup per
// distinct literal length.
type prefixTable struct {
	lens []int
	m    map[string][]int32
}

func buildIndex(rules []*rule) *index {
	ix := &index{words: (len(rules) + 63) / 64, member: map[string][]int32{}, cidrs: map[netip.Prefix][]int32{}}
	ix.always = make([]uint64, ix.words)
	for i, r := range rules {
		if !r.enabled {
			continue
		}
		if len(r.reqs) == 0 {
			ix.always[i/64] |= 1 << (i % 64)
			continue
		}
		best := r.reqs[0]
		for _, q := range r.reqs[1:] {
			if q.key() < best.key() {
				best = q
			}
		}
		for _, t := range best {
			ix.add(int32(i), t)
		}
	}
	return ix
}

func (ix *index) add(rule int32, t test) {
	appendRule := func(list []int32) []int32 {
		if n := len(list); n > 0 && list[n-1] == rule {
			return list // two tests of one requirement with one key
		}
		return append(list, rule)
	}
	switch t.kind {
	case testEqual:
		if ix.equal[t.field] == nil {
			ix.equal[t.field] = map[string][]int32{}
		}
		ix.equal[t.field][t.value] = appendRule(ix.equal[t.field][t.value])
	case testPrefix:
		pt := &ix.prefix[t.field]
		if pt.m == nil {
			pt.m = map[string][]int32{}
		}
		if !slices.Contains(pt.lens, len(t.value)) {
			pt.lens = append(pt.lens, len(t.value))
			slices.Sort(pt.lens)
		}
		pt.m[t.value] = appendRule(pt.m[t.value])
	case testMember:
		ix.member[t.value] = appendRule(ix.member[t.value])
	case testCIDR:
		bitsList := &ix.cidrBits4
		if t.prefix.Addr().Is6() {
			bitsList = &ix.cidrBits6
		}
		if !slices.Contains(*bitsList, t.prefix.Bits()) {
			*bitsList = append(*bitsList, t.prefix.Bits())
		}
		ix.cidrs[t.prefix] = appendRule(ix.cidrs[t.prefix])
	}
}

// candidates sets in set (ix.words long) the rules that could fire on v's
// event: those filed under one of its values, and those filed nowhere.
func (ix *index) candidates(v *eventValues, set []uint64) {
	copy(set, ix.always)
	mark := func(list []int32) {
		for _, r := range list {
			set[r>>6] |= 1 << (r & 63)
		}
	}
	for f := range numFields {
		if m := ix.equal[f]; m != nil {
			mark(m[fieldValue(v.env, f)])
		}
		if pt := &ix.prefix[f]; pt.m != nil {
			s := fieldValue(v.env, f)
			for _, n := range pt.lens {
				if n > len(s) {
					break
				}
				mark(pt.m[s[:n]])
			}
		}
	}
	if len(ix.member) > 0 {
		for _, g := range v.env.User.Groups {
			mark(ix.member[g])
		}
	}
	if len(ix.cidrs) > 0 {
		if a := v.ip(); a.IsValid() {
			ix.markCIDR(a.Unmap(), mark)
			if a.Is4In6() {
				ix.markCIDR(a, mark)
			}
		}
	}
}

func (ix *index) markCIDR(a netip.Addr, mark func([]int32)) {
	lens := ix.cidrBits4
	if a.Is6() {
		lens = ix.cidrBits6
	}
	for _, n := range lens {
		if p, err := a.Prefix(n); err == nil {
			mark(ix.cidrs[p])
		}
	}
}
