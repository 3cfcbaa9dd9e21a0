package rules

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
)

// zeroFill makes a missing body field read as the zero value of the type
// its use needs, wherever expr would otherwise fail on it, so that a
// missing field never turns a detection off.
//
// Event fields are typed (Env), but request(), response() and object()
// return decoded JSON, where a field the client left out is nil, and expr
// fails on nil wherever it needs a typed value: hasPrefix(c.image, "x")
// with no image, c.securityContext.privileged with no securityContext,
// len() or any() of a missing list, !x, x > 3. A failed condition does not
// fire, so before this a privileged pod whose container had no image went
// unreported. The check has typed every node, so each place that consumes
// a value of unknown type and needs a string, number, bool, list or map
// gets `value ?? zero`, and a member access on an unknown value becomes
// nil-safe, as with ?. .
//
// Where expr already accepts nil it keeps its meaning: ==, !=, in,
// contains, startsWith, endsWith and matches see a missing field as nil,
// which equals only nil and matches nothing, and && and || as false. So the
// rewrite changes no verdict of a condition that evaluated before, only
// errors into verdicts: `automountServiceAccountToken != false` still
// fires when the field is missing (as Kubernetes defaults it to true),
// and `object("x") == nil` still tells a missing field from an empty one,
// as has() does. A value of the wrong type (a string where a list is
// needed) is not missing, and still fails.
//
// root must have been checked; expectBool wraps the result of a condition
// itself, which must be a bool.
func zeroFill(root *ast.Node, expectBool bool) {
	ast.Walk(root, visitFunc(zeroFillNode))
	if expectBool {
		orZero(root, reflect.Bool)
	}
}

// zeroFillNode wraps the children of one node; Walk visits children
// first, and a wrapped child keeps its (unknown) type, so the order does
// not matter.
func zeroFillNode(p *ast.Node) {
	switch n := (*p).(type) {
	case *ast.MemberNode:
		if !unknown(n.Node) || n.Optional {
			return // an optional access is already inside a chain
		}
		// Optional only skips the fetch inside a ChainNode, which also
		// turns what it skipped to nil.
		n.Optional = true
		chain := &ast.ChainNode{Node: n}
		chain.SetLocation(n.Location())
		chain.SetNature(*n.Nature())
		*p = chain
	case *ast.SliceNode:
		orZero(&n.Node, reflect.Slice)
	case *ast.UnaryNode:
		switch n.Operator {
		case "!", "not":
			orZero(&n.Node, reflect.Bool)
		case "-", "+":
			orZero(&n.Node, reflect.Int)
		}
	case *ast.ConditionalNode:
		orZero(&n.Cond, reflect.Bool)
	case *ast.BinaryNode:
		zeroFillBinary(n)
	case *ast.BuiltinNode:
		zeroFillBuiltin(n)
	case *ast.CallNode:
		// Env functions (glob, cidr) take typed arguments; the body
		// functions take a path literal, of type any, left alone.
		if t := n.Callee.Type(); t != nil && t.Kind() == reflect.Func && !t.IsVariadic() {
			for i := range n.Arguments {
				if i < t.NumIn() {
					orZero(&n.Arguments[i], t.In(i).Kind())
				}
			}
		}
	}
}

func zeroFillBinary(n *ast.BinaryNode) {
	switch n.Operator {
	case "&&", "||", "and", "or":
		// expr already takes nil as false here; said explicitly.
		orZero(&n.Left, reflect.Bool)
		orZero(&n.Right, reflect.Bool)
	case "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "**", "^":
		// The zero of the other side's type: replicas > 3 compares 0,
		// c.image + ":latest" appends to "". With neither side typed there
		// is no type to take a zero of.
		orZero(&n.Left, kindOf(n.Right))
		orZero(&n.Right, kindOf(n.Left))
	}
}

// builtinArgs are expr builtins whose arguments are all of one kind but
// which are checked by a Validate function rather than by signatures.
var builtinArgs = map[string]reflect.Kind{
	"len": reflect.Slice, "first": reflect.Slice, "last": reflect.Slice, "reverse": reflect.Slice,
	"uniq": reflect.Slice, "flatten": reflect.Slice, "concat": reflect.Slice, "fromPairs": reflect.Slice,
	"keys": reflect.Map, "values": reflect.Map, "toPairs": reflect.Map,
	"abs": reflect.Int, "ceil": reflect.Int, "floor": reflect.Int, "round": reflect.Int,
	"int": reflect.Int, "float": reflect.Int,
}

func zeroFillBuiltin(n *ast.BuiltinNode) {
	if k, ok := builtinArgs[n.Name]; ok {
		for i := range n.Arguments {
			orZero(&n.Arguments[i], k)
		}
		return
	}
	if n.Name == "take" && len(n.Arguments) > 0 {
		orZero(&n.Arguments[0], reflect.Slice)
		return
	}
	fn, ok := builtin.Index[n.Name]
	if !ok {
		return
	}
	sigs := builtin.Builtins[fn].Types
	for i := range n.Arguments {
		k := paramKind(sigs, i)
		if pred, ok := n.Arguments[i].(*ast.PredicateNode); ok {
			// any(list, {...}), filter(list, {...}): a predicate yields a bool.
			if k == reflect.Func && predicateYieldsBool(sigs, i) {
				orZero(&pred.Node, reflect.Bool)
			}
			continue
		}
		orZero(&n.Arguments[i], k)
	}
}

// paramKind is the kind of parameter i in every signature that has one,
// or Invalid when they disagree.
func paramKind(sigs []reflect.Type, i int) reflect.Kind {
	k := reflect.Invalid
	for _, t := range sigs {
		if t.Kind() != reflect.Func || t.IsVariadic() || i >= t.NumIn() {
			continue
		}
		switch pk := t.In(i).Kind(); {
		case k == reflect.Invalid:
			k = pk
		case k != pk:
			return reflect.Invalid
		}
	}
	return k
}

func predicateYieldsBool(sigs []reflect.Type, i int) bool {
	for _, t := range sigs {
		if t.Kind() == reflect.Func && i < t.NumIn() {
			p := t.In(i)
			return p.Kind() == reflect.Func && p.NumOut() == 1 && p.Out(0).Kind() == reflect.Bool
		}
	}
	return false
}

// unknown reports whether the check could not type n: a body value, or
// something computed from one. A nil literal is typed nil, not unknown.
func unknown(n ast.Node) bool {
	if n == nil || n.Nature().Nil {
		return false
	}
	t := n.Type()
	return t == nil || t.Kind() == reflect.Interface
}

// kindOf is the kind of a typed node, or Invalid.
func kindOf(n ast.Node) reflect.Kind {
	if n == nil || unknown(n) || n.Nature().Nil {
		return reflect.Invalid
	}
	return n.Type().Kind()
}

// orZero replaces *p, when it is of unknown type, with `*p ?? zero`, zero
// being the zero value of kind k. Kinds without a literal are left alone.
func orZero(p *ast.Node, k reflect.Kind) {
	if !unknown(*p) {
		return
	}
	var zero ast.Node
	switch k {
	case reflect.String:
		zero = &ast.StringNode{}
	case reflect.Bool:
		zero = &ast.BoolNode{}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		zero = &ast.IntegerNode{}
	case reflect.Float32, reflect.Float64:
		zero = &ast.FloatNode{}
	case reflect.Slice, reflect.Array:
		zero = &ast.ArrayNode{}
	case reflect.Map:
		zero = &ast.MapNode{}
	default:
		return
	}
	loc := (*p).Location()
	zero.SetLocation(loc)
	or := &ast.BinaryNode{Operator: "??", Left: *p, Right: zero}
	or.SetLocation(loc)
	or.SetNature(*(*p).Nature())
	*p = or
}
