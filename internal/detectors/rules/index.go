package rules

import (
	"cmp"
	"fmt"
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
	fieldImpersonatedUser
	fieldGroups
	numFields
)

var indexedFields = map[string]int{
	"verb":                      fieldVerb,
	"objectRef.resource":        fieldResource,
	"objectRef.subresource":     fieldSubresource,
	"objectRef.namespace":       fieldNamespace,
	"objectRef.name":            fieldName,
	"objectRef.apiGroup":        fieldAPIGroup,
	"user.username":             fieldUsername,
	"userAgent":                 fieldUserAgent,
	"requestURI":                fieldRequestURI,
	"path":                      fieldPath,
	"sourceIP":                  fieldSourceIP,
	"impersonatedUser.username": fieldImpersonatedUser,
	"user.groups":               fieldGroups,
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
	case fieldImpersonatedUser:
		return e.ImpersonatedUser.Username
	}
	return ""
}

// How a test compares its field with its literal.
const (
	testEqual    = iota // field == value (also member of `in`, glob without wildcards)
	testPrefix          // strings.HasPrefix(field, value) (startsWith, hasPrefix, glob's literal head)
	testMember          // value in field (a list)
	testCIDR            // cidr(field, prefix)
	testNonEmpty        // field != "" (nonEmptyFields only)
	testNotCIDRs        // !any(["10.0.0.0/8", ...], {cidr(field, #)}); never filed
)

// nonEmptyFields are the fields a test `F != ""` is a requirement on: those
// empty on most events, so that a rule about impersonation is not run on
// every event. On fields that are nearly always set it would only cost a
// compare.
var nonEmptyFields = map[int]bool{fieldImpersonatedUser: true}

// test is one literal test a requirement is made of.
type test struct {
	field, kind int
	value       string
	prefix      netip.Prefix   // testCIDR
	prefixes    []netip.Prefix // testNotCIDRs
}

// same reports whether t and u are one test.
func (t test) same(u test) bool {
	return t.field == u.field && t.kind == u.kind && t.value == u.value && t.prefix == u.prefix && slices.Equal(t.prefixes, u.prefixes)
}

// fileable reports whether the index can file a rule under r: it only
// finds the events that have a value, never those that lack one.
func (r requirement) fileable() bool {
	for i := range r {
		if r[i].kind == testNotCIDRs {
			return false
		}
	}
	return true
}

// requirement holds when any of its tests does; a rule's requirements
// must all hold for it to fire.
type requirement []test

// eventValues is what the index reads of one event, the source address
// parsed once and only if some test needs it. memo holds what each of the
// set's distinct requirements (table) came to on the event, so that the
// dozen pod-spec rules that all require a pod or template write test it
// once: 0 not yet tested, 1 holds, 2 does not.
type eventValues struct {
	env    *Env
	addr   netip.Addr
	parsed bool
	table  []requirement
	memo   []uint8
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
	case testNonEmpty:
		return fieldValue(v.env, t.field) != ""
	case testNotCIDRs:
		a := v.ip()
		if !a.IsValid() {
			return true // cidr() of a bad address is false
		}
		for _, p := range t.prefixes {
			if p.Contains(a.Unmap()) || p.Contains(a) {
				return false
			}
		}
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

// requirementHolds is table[id].holds, memoized for the event.
func (v *eventValues) requirementHolds(id int32) bool {
	switch v.memo[id] {
	case 1:
		return true
	case 2:
		return false
	}
	ok := v.table[id].holds(v)
	v.memo[id] = 2
	if ok {
		v.memo[id] = 1
	}
	return ok
}

// ruleRequirementsHold reports whether the event meets every requirement
// of r but the one r is filed under, which the index found it by, and
// has every substring r's condition requires.
func ruleRequirementsHold(r *rule, v *eventValues) bool {
	for j, id := range r.reqIDs {
		if j != r.filed && !v.requirementHolds(id) {
			return false
		}
	}
	for i := range r.substrings {
		if t := &r.substrings[i]; !strings.Contains(fieldValue(v.env, t.field), t.value) {
			return false
		}
	}
	return true
}

// substringsOf reads the top-level conjuncts F contains "s" of a
// condition, F a string field: userAgent contains "deploy-tool/". They
// are no requirement the index can file a rule under (a value holds too
// many substrings to look each up), but a strings.Contains before the
// condition runs is far cheaper than the condition: a hundred rules, each
// for its own client, filed under resource == "deployments" would
// otherwise all run on every deployment written.
func substringsOf(node ast.Node) []test {
	var out []test
	var conj func(n ast.Node)
	conj = func(n ast.Node) {
		b, ok := n.(*ast.BinaryNode)
		if !ok {
			return
		}
		switch b.Operator {
		case "&&", "and":
			conj(b.Left)
			conj(b.Right)
		case "contains":
			f, isField := stringField(b.Left)
			s, isStr := b.Right.(*ast.StringNode)
			if isField && isStr {
				out = append(out, test{field: f, value: s.Value})
			}
		}
	}
	conj(node)
	return out
}

// requirementTable gives every distinct requirement of rules an id, in
// r.reqIDs, and returns them by id.
func requirementTable(rules []*rule) []requirement {
	var table []requirement
	ids := map[string]int32{}
	for _, r := range rules {
		r.reqIDs = make([]int32, len(r.reqs))
		for j, q := range r.reqs {
			key := fmt.Sprint(q)
			id, ok := ids[key]
			if !ok {
				id = int32(len(table))
				ids[key] = id
				table = append(table, q)
			}
			r.reqIDs[j] = id
		}
	}
	return table
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
		if alts := disjunctionRequirements(n); alts != nil {
			out = append(out, alts...)
		} else if r, ok := requirementTests(n); ok {
			out = append(out, r)
		}
	}
	conj(node)
	return out
}

// maxPairings bounds the requirements one or or conditional yields.
const maxPairings = 8

// disjunctionRequirements reads an or or a conditional whose sides are
// not all single tests (requirementTests reads those): an or holds only
// where one of its sides does, and a side only where all of its
// requirements do, so any requirement of one side ored with any of the
// other is a requirement of the whole. (resource == "pods" && subresource
// == "exec") || (resource == "nodes" && subresource == "proxy") requires
// resource in ["pods", "nodes"] and subresource in ["exec", "proxy"],
// among others. A conditional c ? a : b is an or of (c and a) and (not c
// and b), of which the requirements of c, a and b are read. Every pairing
// is kept, the most selective maxPairings when there are more, so that the
// one telling the events apart is among them. nil: n is neither, or a
// side requires nothing.
func disjunctionRequirements(n ast.Node) []requirement {
	var left, right []requirement
	switch v := n.(type) {
	case *ast.BinaryNode:
		if v.Operator != "||" && v.Operator != "or" {
			return nil
		}
		if _, ok := requirementTests(n); ok {
			return nil // an or of single tests: one requirement
		}
		left, right = requirementsOf(v.Left), requirementsOf(v.Right)
	case *ast.ConditionalNode:
		left = append(requirementsOf(v.Cond), requirementsOf(v.Exp1)...)
		right = requirementsOf(v.Exp2)
	default:
		return nil
	}
	if len(left) == 0 || len(right) == 0 {
		return nil
	}
	var out []requirement
	for _, l := range left {
		for _, r := range right {
			q := slices.Clone(l)
			for _, t := range r {
				if !slices.ContainsFunc(q, t.same) {
					q = append(q, t)
				}
			}
			out = append(out, q)
		}
	}
	slices.SortStableFunc(out, func(a, b requirement) int { return cmp.Compare(a.key(), b.key()) })
	return out[:min(len(out), maxPairings)]
}

// requirementTests recognises a test or an or of tests:
//
//	F == "v", "v" == F, F in ["a", "b"]      F a string field
//	F startsWith "p", hasPrefix(F, "p")
//	glob(F, "p*")                            the literal head of the pattern
//	"g" in user.groups
//	cidr(sourceIP, "10.0.0.0/8")
//	impersonatedUser.username != ""         a field of nonEmptyFields
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
			return append(l[:len(l):len(l)], r...), true
		case "!=":
			f, ok := stringField(v.Left)
			s, isStr := v.Right.(*ast.StringNode)
			if !ok {
				f, ok = stringField(v.Right)
				s, isStr = v.Left.(*ast.StringNode)
			}
			if ok && isStr && s.Value == "" && nonEmptyFields[f] {
				return requirement{{field: f, kind: testNonEmpty}}, true
			}
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
	case *ast.UnaryNode:
		if v.Operator == "!" || v.Operator == "not" {
			return notInCIDRs(v.Node)
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

// notInCIDRs reads the operand of a not: any(["10.0.0.0/8", ...],
// {cidr(sourceIP, #)}), the test of a list of networks that the default
// pack's source_public makes: it requires the source address to be in
// none of them (or not an address: cidr() is then false). A literal
// cidr() cannot parse matches nothing and is left out, as cidr() does.
func notInCIDRs(n ast.Node) (requirement, bool) {
	b, ok := n.(*ast.BuiltinNode)
	if !ok || b.Name != "any" || len(b.Arguments) != 2 {
		return nil, false
	}
	list, isList := b.Arguments[0].(*ast.ArrayNode)
	pred, isPred := b.Arguments[1].(*ast.PredicateNode)
	if !isList || !isPred {
		return nil, false
	}
	call, ok := pred.Node.(*ast.CallNode)
	if !ok || len(call.Arguments) != 2 {
		return nil, false
	}
	id, isIdent := call.Callee.(*ast.IdentifierNode)
	ptr, isPtr := call.Arguments[1].(*ast.PointerNode)
	if f, isField := stringField(call.Arguments[0]); !isIdent || id.Value != "cidr" || !isPtr || ptr.Name != "" || !isField || f != fieldSourceIP {
		return nil, false
	}
	t := test{field: fieldSourceIP, kind: testNotCIDRs}
	for _, e := range list.Nodes {
		s, ok := e.(*ast.StringNode)
		if !ok {
			return nil, false
		}
		if p, ok := cidrPrefix(s.Value); ok {
			t.prefixes = append(t.prefixes, p)
		}
	}
	return requirement{t}, true
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
		// 0.0.0.0/0 holds for every IPv4 source, a /24 for few.
		switch b := t.prefix.Bits(); {
		case b == 0:
			return 1
		case b < 8:
			return 0.7
		case b < 16:
			return 0.3
		case b < 24:
			return 0.1
		}
		return 0.01
	case testNonEmpty:
		return 0.02
	case testNotCIDRs:
		return 0.5
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
	case fieldSubresource:
		if t.value == "" {
			return 0.8
		}
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
	// nonEmpty are the rules filed under a field being set.
	nonEmpty [numFields][]int32
	member   map[string][]int32
	cidrs    map[netip.Prefix][]int32
	// cidrBits are the prefix lengths cidrs holds, per address length.
	cidrBits4, cidrBits6 []int
}

// prefixTable finds the literals that begin a value: one map lookup per
// distinct literal length.
type prefixTable struct {
	lens []int
	m    map[string][]int32
}

// buildIndex files the enabled rules that Detect judges (not first-seen
// rules: Terms judges those) and records in each rule which of its
// requirements it is filed under (r.filed), which holds on every event the
// index finds it for.
func buildIndex(rules []*rule) *index {
	ix := &index{words: (len(rules) + 63) / 64, member: map[string][]int32{}, cidrs: map[netip.Prefix][]int32{}}
	ix.always = make([]uint64, ix.words)
	for i, r := range rules {
		r.filed = -1
		if !r.enabled || r.terms != nil {
			continue
		}
		for j, q := range r.reqs {
			if q.fileable() && (r.filed < 0 || q.key() < r.reqs[r.filed].key()) {
				r.filed = j
			}
		}
		if r.filed < 0 {
			ix.always[i/64] |= 1 << (i % 64)
			continue
		}
		for _, t := range r.reqs[r.filed] {
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
	case testNonEmpty:
		ix.nonEmpty[t.field] = appendRule(ix.nonEmpty[t.field])
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
		if l := ix.nonEmpty[f]; l != nil && fieldValue(v.env, f) != "" {
			mark(l)
		}
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
