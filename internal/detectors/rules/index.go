package rules

import (
	"slices"

	"github.com/expr-lang/expr/ast"
)

// Indexed fields. A rule whose condition requires one of these to take a
// value from a fixed set (a conjunct verb == "create", or
// objectRef.resource in ["pods", "deployments"]) can only fire on events
// with such a value, so the set skips it for every other event.
const (
	fieldVerb = iota
	fieldResource
	fieldSubresource
	fieldUsername
	numFields
)

var indexedFields = map[string]int{
	"verb":                  fieldVerb,
	"objectRef.resource":    fieldResource,
	"objectRef.subresource": fieldSubresource,
	"user.username":         fieldUsername,
}

// constraints holds, per indexed field, the values a rule can match; nil
// means any value.
type constraints [numFields]map[string]struct{}

// allows reports whether values passes every constraint.
func (c *constraints) allows(values *[numFields]string) bool {
	for f, set := range c {
		if set == nil {
			continue
		}
		if _, ok := set[values[f]]; !ok {
			return false
		}
	}
	return true
}

// constraintsOf reads the top-level conjunction of a condition. Only
// conjuncts are used: each must hold for the condition to hold, so a rule
// is never skipped for an event it would fire on. Equality, in against a
// literal list, and or-ed alternatives on one field are understood;
// anything else leaves the field unconstrained.
func constraintsOf(node ast.Node) constraints {
	var c constraints
	var conj func(n ast.Node)
	conj = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			conj(b.Left)
			conj(b.Right)
			return
		}
		f, values, ok := fieldValues(n)
		if !ok {
			return
		}
		if c[f] == nil {
			c[f] = values
			return
		}
		// Two conjuncts on one field: the value must be in both.
		for v := range c[f] {
			if _, ok := values[v]; !ok {
				delete(c[f], v)
			}
		}
	}
	conj(node)
	return c
}

// fieldValues recognises `field == "v"`, `"v" == field`, `field in [...]`
// with string literals, and `a || b` where both constrain the same field.
func fieldValues(n ast.Node) (int, map[string]struct{}, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return 0, nil, false
	}
	switch b.Operator {
	case "==":
		if f, ok := indexedField(b.Left); ok {
			if s, ok := b.Right.(*ast.StringNode); ok {
				return f, map[string]struct{}{s.Value: {}}, true
			}
		}
		if f, ok := indexedField(b.Right); ok {
			if s, ok := b.Left.(*ast.StringNode); ok {
				return f, map[string]struct{}{s.Value: {}}, true
			}
		}
	case "in":
		f, ok := indexedField(b.Left)
		arr, isArr := b.Right.(*ast.ArrayNode)
		if !ok || !isArr {
			return 0, nil, false
		}
		set := make(map[string]struct{}, len(arr.Nodes))
		for _, e := range arr.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return 0, nil, false
			}
			set[s.Value] = struct{}{}
		}
		return f, set, true
	case "||", "or":
		lf, lv, lok := fieldValues(b.Left)
		rf, rv, rok := fieldValues(b.Right)
		if !lok || !rok || lf != rf {
			return 0, nil, false
		}
		for v := range rv {
			lv[v] = struct{}{}
		}
		return lf, lv, true
	}
	return 0, nil, false
}

func indexedField(n ast.Node) (int, bool) {
	var name string
	switch v := n.(type) {
	case *ast.IdentifierNode:
		name = v.Value
	case *ast.MemberNode:
		id, ok := v.Node.(*ast.IdentifierNode)
		prop, isStr := v.Property.(*ast.StringNode)
		if !ok || !isStr || v.Optional {
			return 0, false
		}
		name = id.Value + "." + prop.Value
	default:
		return 0, false
	}
	f, ok := indexedFields[name]
	return f, ok
}

// bucketKey selects a candidate list: a verb and a resource some rule names,
// or "any other" for either.
type bucketKey struct {
	verb, resource      string
	otherVerb, otherRes bool
}

// index maps an event's verb and resource to the rules that could fire on
// it, in rule order. Every list is precomputed, so a lookup is one map
// access and allocates nothing.
type index struct {
	verbs, resources map[string]struct{}
	buckets          map[bucketKey][]int
}

func buildIndex(rules []*rule) *index {
	ix := &index{verbs: map[string]struct{}{}, resources: map[string]struct{}{}, buckets: map[bucketKey][]int{}}
	for _, r := range rules {
		for v := range r.cons[fieldVerb] {
			ix.verbs[v] = struct{}{}
		}
		for v := range r.cons[fieldResource] {
			ix.resources[v] = struct{}{}
		}
	}
	verbKeys := []bucketKey{{otherVerb: true}}
	for v := range ix.verbs {
		verbKeys = append(verbKeys, bucketKey{verb: v})
	}
	for _, vk := range verbKeys {
		keys := []bucketKey{{verb: vk.verb, otherVerb: vk.otherVerb, otherRes: true}}
		for res := range ix.resources {
			keys = append(keys, bucketKey{verb: vk.verb, otherVerb: vk.otherVerb, resource: res})
		}
		for _, k := range keys {
			var list []int
			for i, r := range rules {
				if !r.enabled || !admits(r.cons[fieldVerb], k.verb, k.otherVerb) || !admits(r.cons[fieldResource], k.resource, k.otherRes) {
					continue
				}
				list = append(list, i)
			}
			ix.buckets[k] = slices.Clip(list)
		}
	}
	return ix
}

// admits reports whether a constraint lets through the key's value; a value
// no rule names ("other") only passes unconstrained rules.
func admits(set map[string]struct{}, v string, other bool) bool {
	if set == nil {
		return true
	}
	if other {
		return false
	}
	_, ok := set[v]
	return ok
}

func (ix *index) lookup(verb, resource string) []int {
	k := bucketKey{verb: verb, resource: resource}
	if _, ok := ix.verbs[verb]; !ok {
		k.verb, k.otherVerb = "", true
	}
	if _, ok := ix.resources[resource]; !ok {
		k.resource, k.otherRes = "", true
	}
	return ix.buckets[k]
}
