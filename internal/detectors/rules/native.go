package rules

import (
	"math"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/vm/runtime"
)

// Native conditions. expr's VM interprets a condition instruction by
// instruction, every value passing through an interface on its stack: on
// the finding-heavy stream the VM was a fifth of `detect scan`'s CPU, and
// a tenth on the realistic one. Every condition and exception is also
// compiled here into a tree of Go closures that read the Env's fields
// directly, typed where the check typed them: field reads, literals,
// comparisons, in, && || ! ?: ??, startsWith and friends, matches with a
// literal pattern, let, any/all/none, len, hasPrefix, glob, cidr, the
// body functions, nil-safe reads of body values, and the builtins the VM
// calls through a Go function (concat, keys, lower...). A condition using
// anything else (one, filter, map, #index, csrSubject, arithmetic other
// than +) keeps only its VM program; in the default pack and the
// generated rules that is 5 conditions of 1,056.
//
// The closures do what the VM's instructions do for the same checked and
// optimized tree, down to the runtime and builtin functions it calls on
// untyped values (runtime.Equal, In, Fetch, IsNil, Add, Less; builtin.Len)
// and its memory budget. Where the VM would fail (a type assertion on a
// body value of the wrong type, a fetch from nil), the closure panics
// instead, and the caller runs the VM program, which fails the same way
// and yields the same error: errors are rare and stay exactly what they
// were. TestNativeMatchesVM and FuzzNativeMatchesVM hold the two to the
// same verdicts.

// nativeCond is a condition compiled to Go; it may panic where the VM
// program would fail (see runNative).
type nativeCond func(e *Env) bool

type (
	nativeAny  func(e *Env) any
	nativeStr  func(e *Env) string
	nativeInt  func(e *Env) int
	nativeStrs func(e *Env) []string
)

// runNative runs c on e, reporting false when it panicked: the caller then
// runs the VM program for the verdict or the error.
func runNative(c nativeCond, e *Env) (v, ok bool) {
	defer func() {
		if recover() != nil {
			v, ok = false, false
		}
	}()
	return c(e), true
}

// compileNative compiles a checked and optimized condition, before
// directAccess rewrites it, or returns nil when it uses anything outside
// the subset.
func compileNative(root ast.Node, memo *memoTable) nativeCond {
	nc := nativeCompiler{ok: true, memo: memo, minLet: math.MaxInt, minItem: math.MaxInt}
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		// A let naming a field would shadow it (directAccess leaves
		// such a tree alone too).
		if d, ok := (*n).(*ast.VariableDeclaratorNode); ok && (envFields[d.Name] || accessors[d.Name] != nil) {
			nc.fail()
		}
	}))
	if !nc.ok {
		return nil
	}
	f := nc.boolean(root)
	if !nc.ok {
		return nil
	}
	vars, depth := nc.vars, nc.maxDepth
	return func(e *Env) bool {
		e.nativeMem = 0
		if len(e.nativeVars) < vars {
			e.nativeVars = make([]any, vars)
		}
		if len(e.nativeItems) < depth {
			e.nativeItems = make([]any, depth)
		}
		return f(e)
	}
}

// nativeCompiler turns nodes into closures; ok turns false at the first
// node it cannot compile, and the result is then discarded.
type nativeCompiler struct {
	ok bool
	// lets are the let variables in scope, innermost last, each with its
	// slot in Env.nativeVars; vars counts the slots.
	lets []nativeLet
	vars int
	// depth is how many predicates (any, all, none) enclose the node
	// being compiled: # is the item in Env.nativeItems[depth-1].
	depth, maxDepth int
	// memo gives the set's shared values their slots (see memoized), nil
	// to share none; minLet and minItem are the outermost let (its index
	// in lets) and predicate item (its index in Env.nativeItems) the node
	// being compiled reads.
	memo            *memoTable
	minLet, minItem int
}

type nativeLet struct {
	name string
	slot int
}

func (nc *nativeCompiler) fail() { nc.ok = false }

// nkind is the kind the check gave n; Interface when it is unknown.
func nkind(n ast.Node) reflect.Kind {
	t := n.Type()
	if t == nil {
		return reflect.Interface
	}
	return t.Kind()
}

// simple is the compiler's isSimpleType: a type of no named package.
func simple(n ast.Node) bool {
	t := n.Type()
	return t != nil && t.PkgPath() == ""
}

var stringFields = map[string]nativeStr{
	"cluster":                   func(e *Env) string { return e.Cluster },
	"verb":                      func(e *Env) string { return e.Verb },
	"stage":                     func(e *Env) string { return e.Stage },
	"level":                     func(e *Env) string { return e.Level },
	"auditID":                   func(e *Env) string { return e.AuditID },
	"requestURI":                func(e *Env) string { return e.RequestURI },
	"path":                      func(e *Env) string { return e.Path },
	"selectors.labelSelector":   func(e *Env) string { return e.Selectors.LabelSelector },
	"selectors.fieldSelector":   func(e *Env) string { return e.Selectors.FieldSelector },
	"user.username":             func(e *Env) string { return e.User.Username },
	"user.uid":                  func(e *Env) string { return e.User.UID },
	"impersonatedUser.username": func(e *Env) string { return e.ImpersonatedUser.Username },
	"sourceIP":                  func(e *Env) string { return e.SourceIP },
	"userAgent":                 func(e *Env) string { return e.UserAgent },
	"objectRef.resource":        func(e *Env) string { return e.ObjectRef.Resource },
	"objectRef.subresource":     func(e *Env) string { return e.ObjectRef.Subresource },
	"objectRef.namespace":       func(e *Env) string { return e.ObjectRef.Namespace },
	"objectRef.name":            func(e *Env) string { return e.ObjectRef.Name },
	"objectRef.apiGroup":        func(e *Env) string { return e.ObjectRef.APIGroup },
	"objectRef.apiVersion":      func(e *Env) string { return e.ObjectRef.APIVersion },
	"responseStatus.reason":     func(e *Env) string { return e.ResponseStatus.Reason },
	"decision":                  func(e *Env) string { return e.Decision },
}

var stringsFields = map[string]nativeStrs{
	"user.groups":             func(e *Env) []string { return e.User.Groups },
	"impersonatedUser.groups": func(e *Env) []string { return e.ImpersonatedUser.Groups },
	"sourceIPs":               func(e *Env) []string { return e.SourceIPs },
}

// field returns the env field path n reads, when an accessor serves it.
func field(n ast.Node) string {
	p := fieldPathOf(n)
	if p == "" || accessors[p] == nil {
		return ""
	}
	return p
}

// value compiles n to a closure yielding what the VM would push for it.
func (nc *nativeCompiler) value(n ast.Node) nativeAny {
	if nc.memo == nil || !nc.ok || !memoCandidate(n) {
		return nc.valueOf(n)
	}
	letFloor, itemFloor := len(nc.lets), nc.depth
	outerLet, outerItem := nc.minLet, nc.minItem
	nc.minLet, nc.minItem = math.MaxInt, math.MaxInt
	f := nc.valueOf(n)
	// A value that reads no let or item from outside n is the event's:
	// the same in every condition of the set that has n.
	pure := nc.minLet >= letFloor && nc.minItem >= itemFloor
	nc.minLet, nc.minItem = min(outerLet, nc.minLet), min(outerItem, nc.minItem)
	if f == nil || !pure {
		return f
	}
	slot, ok := nc.memo.slot(memoKey(n))
	if !ok {
		return f
	}
	return memoized(slot, f)
}

// valueOf is value without the memo.
func (nc *nativeCompiler) valueOf(n ast.Node) nativeAny {
	if !nc.ok {
		return nil
	}
	if k := nkind(n); k == reflect.Pointer {
		nc.fail() // the VM would dereference it
		return nil
	}
	if p := field(n); p != "" {
		get := accessors[p] // the event's shared boxed value
		return func(e *Env) any { return get(e) }
	}
	switch v := n.(type) {
	case *ast.NilNode:
		return func(*Env) any { return nil }
	case *ast.BoolNode:
		b := v.Value
		return func(*Env) any { return b }
	case *ast.StringNode:
		var s any = v.Value
		return func(*Env) any { return s }
	case *ast.IntegerNode:
		var c any
		switch nkind(v) {
		case reflect.Int, reflect.Interface:
			c = v.Value
		case reflect.Float64:
			c = float64(v.Value)
		default:
			nc.fail()
			return nil
		}
		return func(*Env) any { return c }
	case *ast.FloatNode:
		if k := nkind(v); k != reflect.Float64 && k != reflect.Interface {
			nc.fail()
			return nil
		}
		var c any = v.Value
		return func(*Env) any { return c }
	case *ast.ConstantNode:
		c := v.Value
		return func(*Env) any { return c }
	case *ast.IdentifierNode:
		for i := len(nc.lets) - 1; i >= 0; i-- {
			if nc.lets[i].name == v.Value {
				nc.minLet = min(nc.minLet, i)
				slot := nc.lets[i].slot
				return func(e *Env) any { return e.nativeVars[slot] }
			}
		}
	case *ast.PointerNode:
		if v.Name != "" || nc.depth == 0 {
			nc.fail() // #index, #acc
			return nil
		}
		at := nc.depth - 1
		nc.minItem = min(nc.minItem, at)
		return func(e *Env) any { return e.nativeItems[at] }
	case *ast.VariableDeclaratorNode:
		val := nc.value(v.Value)
		slot := nc.vars
		nc.vars++
		nc.lets = append(nc.lets, nativeLet{name: v.Name, slot: slot})
		body := nc.value(v.Expr)
		nc.lets = nc.lets[:len(nc.lets)-1]
		return func(e *Env) any {
			e.nativeVars[slot] = val(e)
			return body(e)
		}
	case *ast.MapNode:
		// A fresh map per run, as OpMap makes; a later key wins.
		keys := make([]nativeAny, len(v.Pairs))
		vals := make([]nativeAny, len(v.Pairs))
		for i, p := range v.Pairs {
			pair, ok := p.(*ast.PairNode)
			if !ok {
				nc.fail()
				return nil
			}
			keys[i], vals[i] = nc.value(pair.Key), nc.value(pair.Value)
		}
		return func(e *Env) any {
			e.memGrow(uint(len(keys)))
			m := make(map[string]any)
			for i := range keys {
				k, x := keys[i](e), vals[i](e)
				m[k.(string)] = x
			}
			return m
		}
	case *ast.ArrayNode:
		// A fresh []any per run, as OpArray makes.
		elems := make([]nativeAny, len(v.Nodes))
		for i, x := range v.Nodes {
			elems[i] = nc.value(x)
		}
		return func(e *Env) any {
			e.memGrow(uint(len(elems)))
			a := make([]any, len(elems))
			for i, x := range elems {
				a[i] = x(e)
			}
			return a
		}
	case *ast.BuiltinNode:
		if v.Name == "len" {
			n := nc.integer(v)
			return func(e *Env) any { return n(e) }
		}
		if f := nc.library(v); f != nil || !nc.ok {
			return f
		}
	case *ast.ConditionalNode:
		cond, a, b := nc.boolean(v.Cond), nc.value(v.Exp1), nc.value(v.Exp2)
		return func(e *Env) any {
			if cond(e) {
				return a(e)
			}
			return b(e)
		}
	case *ast.ChainNode:
		inner := nc.chained(v.Node)
		return func(e *Env) any {
			x, _ := inner(e)
			return x
		}
	case *ast.MemberNode:
		if v.Optional {
			nc.fail() // only inside a chain
			return nil
		}
		from, prop := nc.value(v.Node), nc.value(v.Property)
		return func(e *Env) any { return fetch(from(e), prop(e)) }
	case *ast.CallNode:
		if f := nc.bodyCall(v); f != nil {
			return f
		}
	case *ast.BinaryNode:
		switch v.Operator {
		case "??":
			l, r := nc.value(v.Left), nc.value(v.Right)
			return func(e *Env) any {
				if x := l(e); !runtime.IsNil(x) {
					return x
				}
				return r(e)
			}
		case "&&", "and":
			// The VM pushes the right operand's value, whatever its
			// type, once the left one is true.
			l, r := nc.boolean(v.Left), nc.value(v.Right)
			return func(e *Env) any {
				if !l(e) {
					return false
				}
				return r(e)
			}
		case "||", "or":
			l, r := nc.boolean(v.Left), nc.value(v.Right)
			return func(e *Env) any {
				if l(e) {
					return true
				}
				return r(e)
			}
		case "+":
			if nkind(v.Left) == reflect.String && nkind(v.Right) == reflect.String {
				s := nc.str(v)
				return func(e *Env) any { return s(e) }
			}
			l, r := nc.value(v.Left), nc.value(v.Right)
			return func(e *Env) any { return runtime.Add(l(e), r(e)) }
		}
	}
	if !nc.ok {
		return nil
	}
	// Operators and calls yielding a bool: boolean compiles them without
	// coming back here.
	switch n.(type) {
	case *ast.UnaryNode, *ast.BinaryNode, *ast.CallNode, *ast.BuiltinNode:
		if b := nc.boolean(n); nc.ok {
			return func(e *Env) any { return b(e) }
		}
	}
	nc.fail()
	return nil
}

// chained compiles the inside of a ChainNode: ok false means an optional
// member's base was nil, which makes the whole chain nil.
func (nc *nativeCompiler) chained(n ast.Node) func(e *Env) (any, bool) {
	if !nc.ok {
		return nil
	}
	m, isMember := n.(*ast.MemberNode)
	if !isMember || field(n) != "" {
		v := nc.value(n)
		return func(e *Env) (any, bool) { return v(e), true }
	}
	from := nc.chained(m.Node)
	prop := nc.value(m.Property)
	optional := m.Optional
	return func(e *Env) (any, bool) {
		x, ok := from(e)
		if !ok {
			return nil, false
		}
		if optional && x == nil {
			return nil, false
		}
		return fetch(x, prop(e)), true
	}
}

// fetch is runtime.Fetch, the VM's member read, with a body's objects
// read first without reflection: a member of a map[string]any by a string
// key is the map's value, nil when absent, as Fetch's MapIndex gives (a
// map type has no methods, so Fetch never looks for one). Reading the
// containers' fields through Fetch's reflection was an eighth of what the
// pod-security rules cost.
func fetch(from, i any) any {
	if m, ok := from.(map[string]any); ok {
		if k, ok := i.(string); ok {
			return m[k]
		}
	}
	return runtime.Fetch(from, i)
}

// bodyCall compiles the Env's function calls, or returns nil.
func (nc *nativeCompiler) bodyCall(v *ast.CallNode) nativeAny {
	id, ok := v.Callee.(*ast.IdentifierNode)
	if !ok {
		return nil
	}
	switch id.Value {
	case "request", "response", "object":
		if len(v.Arguments) != 1 {
			nc.fail()
			return nil
		}
		arg := nc.value(v.Arguments[0])
		switch id.Value {
		case "request":
			return func(e *Env) any { return e.eval.request(arg(e)) }
		case "response":
			return func(e *Env) any { return e.eval.response(arg(e)) }
		}
		return func(e *Env) any { return e.eval.object(arg(e)) }
	}
	return nil
}

// boolean compiles n in a place the VM asserts a bool (a condition, an
// operand of && || !, a ?: test).
func (nc *nativeCompiler) boolean(n ast.Node) func(e *Env) bool {
	if !nc.ok {
		return nil
	}
	switch v := n.(type) {
	case *ast.BoolNode:
		b := v.Value
		return func(*Env) bool { return b }
	case *ast.UnaryNode:
		if v.Operator != "!" && v.Operator != "not" {
			nc.fail()
			return nil
		}
		x := nc.boolean(v.Node)
		return func(e *Env) bool { return !x(e) }
	case *ast.ConditionalNode:
		cond, a, b := nc.boolean(v.Cond), nc.boolean(v.Exp1), nc.boolean(v.Exp2)
		return func(e *Env) bool {
			if cond(e) {
				return a(e)
			}
			return b(e)
		}
	case *ast.BinaryNode:
		if f := nc.binary(v); f != nil || !nc.ok {
			return f
		}
		switch v.Operator {
		case "??", "&&", "and", "||", "or": // value compiles these
		default:
			nc.fail()
			return nil
		}
	case *ast.CallNode:
		if f := nc.boolCall(v); f != nil || !nc.ok {
			return f
		}
		if id, ok := v.Callee.(*ast.IdentifierNode); !ok || (id.Value != "request" && id.Value != "response" && id.Value != "object") {
			nc.fail()
			return nil
		}
	case *ast.BuiltinNode:
		return nc.builtin(v)
	}
	if !nc.ok {
		return nil
	}
	// Any other node: its value, asserted as the VM asserts it.
	x := nc.value(n)
	return func(e *Env) bool { return x(e).(bool) }
}

func (nc *nativeCompiler) binary(v *ast.BinaryNode) func(e *Env) bool {
	switch v.Operator {
	case "&&", "and":
		if nkind(v.Right) != reflect.Bool {
			return nil // a value of another type: see value
		}
		l, r := nc.boolean(v.Left), nc.boolean(v.Right)
		return func(e *Env) bool { return l(e) && r(e) }
	case "||", "or":
		if nkind(v.Right) != reflect.Bool {
			return nil
		}
		l, r := nc.boolean(v.Left), nc.boolean(v.Right)
		return func(e *Env) bool { return l(e) || r(e) }
	case "==", "!=":
		eq := nc.equal(v)
		if eq == nil {
			return nil
		}
		if v.Operator == "!=" {
			return func(e *Env) bool { return !eq(e) }
		}
		return eq
	case "in":
		return nc.in(v)
	case "startsWith", "endsWith", "contains":
		op := strings.HasPrefix
		switch v.Operator {
		case "endsWith":
			op = strings.HasSuffix
		case "contains":
			op = strings.Contains
		}
		if nkind(v.Left) == reflect.String && nkind(v.Right) == reflect.String {
			l, r := nc.str(v.Left), nc.str(v.Right)
			return func(e *Env) bool { return op(l(e), r(e)) }
		}
		l, r := nc.value(v.Left), nc.value(v.Right)
		return func(e *Env) bool {
			a, b := l(e), r(e)
			if runtime.IsNil(a) || runtime.IsNil(b) {
				return false
			}
			return op(a.(string), b.(string))
		}
	case "matches":
		pat, ok := v.Right.(*ast.StringNode)
		if !ok {
			nc.fail()
			return nil
		}
		re, err := regexp.Compile(pat.Value)
		if err != nil {
			nc.fail()
			return nil
		}
		l := nc.value(v.Left)
		return func(e *Env) bool {
			a := l(e)
			if runtime.IsNil(a) {
				return false
			}
			if s, ok := a.(string); ok {
				return re.MatchString(s)
			}
			return re.Match(a.([]byte))
		}
	case "<", ">", "<=", ">=":
		if nkind(v.Left) != reflect.Int || nkind(v.Right) != reflect.Int {
			cmp := runtime.Less
			switch v.Operator {
			case ">":
				cmp = runtime.More
			case "<=":
				cmp = runtime.LessOrEqual
			case ">=":
				cmp = runtime.MoreOrEqual
			}
			l, r := nc.value(v.Left), nc.value(v.Right)
			return func(e *Env) bool { return cmp(l(e), r(e)) }
		}
		l, r := nc.integer(v.Left), nc.integer(v.Right)
		switch v.Operator {
		case "<":
			return func(e *Env) bool { return l(e) < r(e) }
		case ">":
			return func(e *Env) bool { return l(e) > r(e) }
		case "<=":
			return func(e *Env) bool { return l(e) <= r(e) }
		}
		return func(e *Env) bool { return l(e) >= r(e) }
	}
	return nil
}

// equal is == as the compiler's equalBinaryNode picks it: typed for two
// simple ints or strings, runtime.Equal otherwise.
func (nc *nativeCompiler) equal(v *ast.BinaryNode) func(e *Env) bool {
	l, r := nkind(v.Left), nkind(v.Right)
	both := simple(v.Left) && simple(v.Right)
	switch {
	case l == r && l == reflect.Int && both:
		a, b := nc.integer(v.Left), nc.integer(v.Right)
		return func(e *Env) bool { return a(e) == b(e) }
	case l == r && l == reflect.String && both:
		a, b := nc.str(v.Left), nc.str(v.Right)
		return func(e *Env) bool { return a(e) == b(e) }
	}
	a, b := nc.value(v.Left), nc.value(v.Right)
	return func(e *Env) bool { return runtime.Equal(a(e), b(e)) }
}

func (nc *nativeCompiler) in(v *ast.BinaryNode) func(e *Env) bool {
	if nkind(v.Left) == reflect.String && simple(v.Left) {
		if c, ok := v.Right.(*ast.ConstantNode); ok {
			if set, ok := c.Value.(map[string]struct{}); ok {
				needle := nc.str(v.Left)
				return func(e *Env) bool {
					_, found := set[needle(e)]
					return found
				}
			}
		}
		if list := stringsFields[field(v.Right)]; list != nil {
			needle := nc.str(v.Left)
			return func(e *Env) bool {
				s := needle(e)
				for _, x := range list(e) {
					if x == s {
						return true
					}
				}
				return false
			}
		}
	}
	l, r := nc.value(v.Left), nc.value(v.Right)
	return func(e *Env) bool { return runtime.In(l(e), r(e)) }
}

// boolCall compiles has, glob and cidr, or returns nil.
func (nc *nativeCompiler) boolCall(v *ast.CallNode) func(e *Env) bool {
	id, ok := v.Callee.(*ast.IdentifierNode)
	if !ok {
		return nil
	}
	switch id.Value {
	case "has":
		if len(v.Arguments) != 1 {
			return nil
		}
		arg := nc.value(v.Arguments[0])
		return func(e *Env) bool { return e.eval.has(arg(e)) }
	case "glob", "cidr":
		if len(v.Arguments) != 2 {
			nc.fail()
			return nil
		}
		fn := glob
		if id.Value == "cidr" {
			fn = cidr
		}
		if nkind(v.Arguments[0]) != reflect.String || nkind(v.Arguments[1]) != reflect.String {
			// The VM's typed call asserts its arguments.
			a, b := nc.value(v.Arguments[0]), nc.value(v.Arguments[1])
			return func(e *Env) bool { return fn(a(e).(string), b(e).(string)) }
		}
		a, b := nc.str(v.Arguments[0]), nc.str(v.Arguments[1])
		return func(e *Env) bool { return fn(a(e), b(e)) }
	}
	return nil
}

// builtin compiles hasPrefix and hasSuffix as directAccess calls them,
// and any, all and none.
func (nc *nativeCompiler) builtin(v *ast.BuiltinNode) func(e *Env) bool {
	switch v.Name {
	case "any", "all", "none":
		return nc.predicate(v)
	case "hasPrefix", "hasSuffix":
	default:
		if f := nc.library(v); f != nil {
			return func(e *Env) bool { return f(e).(bool) }
		}
		nc.fail()
		return nil
	}
	fns, ok := stringBuiltins[v.Name]
	if !ok || len(v.Arguments) != 2 {
		nc.fail()
		return nil
	}
	if isString(v.Arguments[0]) && isString(v.Arguments[1]) {
		fn := fns.typed
		a, b := nc.str(v.Arguments[0]), nc.str(v.Arguments[1])
		return func(e *Env) bool { return fn(a(e), b(e)) }
	}
	fn := fns.untyped
	a, b := nc.value(v.Arguments[0]), nc.value(v.Arguments[1])
	return func(e *Env) bool { return fn(a(e), b(e)) }
}

// str compiles a node the check typed as a string.
func (nc *nativeCompiler) str(n ast.Node) nativeStr {
	if !nc.ok {
		return nil
	}
	if f := stringFields[field(n)]; f != nil {
		return f
	}
	switch v := n.(type) {
	case *ast.StringNode:
		s := v.Value
		return func(*Env) string { return s }
	case *ast.ConditionalNode:
		cond, a, b := nc.boolean(v.Cond), nc.str(v.Exp1), nc.str(v.Exp2)
		return func(e *Env) string {
			if cond(e) {
				return a(e)
			}
			return b(e)
		}
	case *ast.BinaryNode:
		// runtime.Add of two strings.
		if v.Operator == "+" && nkind(v.Left) == reflect.String && nkind(v.Right) == reflect.String {
			a, b := nc.str(v.Left), nc.str(v.Right)
			return func(e *Env) string { return a(e) + b(e) }
		}
	case *ast.MemberNode:
		// annotations["key"]: a missing key reads as "", as Fetch's
		// zero value of the map's element type.
		if field(v.Node) == "annotations" && !v.Optional {
			if k, ok := v.Property.(*ast.StringNode); ok {
				key := k.Value
				return func(e *Env) string { return e.Annotations[key] }
			}
		}
	}
	x := nc.value(n)
	return func(e *Env) string { return x(e).(string) }
}

// integer compiles a node the check typed as an int.
func (nc *nativeCompiler) integer(n ast.Node) nativeInt {
	if !nc.ok {
		return nil
	}
	if field(n) == "responseStatus.code" {
		return func(e *Env) int { return e.ResponseStatus.Code }
	}
	switch v := n.(type) {
	case *ast.IntegerNode:
		c := v.Value
		return func(*Env) int { return c }
	case *ast.BuiltinNode:
		if v.Name != "len" || len(v.Arguments) != 1 {
			nc.fail()
			return nil
		}
		// builtin.Len, which OpCallBuiltin1 calls: runes of a string.
		arg := v.Arguments[0]
		if list := stringsFields[field(arg)]; list != nil {
			return func(e *Env) int { return len(list(e)) }
		}
		if nkind(arg) == reflect.String {
			s := nc.str(arg)
			return func(e *Env) int { return utf8.RuneCountInString(s(e)) }
		}
		x := nc.value(arg)
		return func(e *Env) int { return builtin.Len(x(e)).(int) }
	}
	x := nc.value(n)
	return func(e *Env) int { return x(e).(int) }
}

// predicate compiles any, all and none as the compiler's loops over
// OpBegin's scope: the collection's items in order (a []any or []string
// directly, anything else through reflect, which fails where OpBegin
// fails), the predicate asserted a bool, stopping at the first item that
// decides.
func (nc *nativeCompiler) predicate(v *ast.BuiltinNode) func(e *Env) bool {
	if len(v.Arguments) != 2 {
		nc.fail()
		return nil
	}
	p, ok := v.Arguments[1].(*ast.PredicateNode)
	if !ok {
		nc.fail()
		return nil
	}
	coll := nc.value(v.Arguments[0])
	nc.depth++
	nc.maxDepth = max(nc.maxDepth, nc.depth)
	at := nc.depth - 1
	body := nc.boolean(p.Node)
	nc.depth--
	if !nc.ok {
		return nil
	}
	// any stops at the first true, all and none at the first item that
	// makes them false.
	stopOn, result := true, true
	switch v.Name {
	case "all":
		stopOn, result = false, false
	case "none":
		stopOn, result = true, false
	}
	return func(e *Env) bool {
		each := func(item any) bool {
			e.nativeItems[at] = item
			return body(e) == stopOn
		}
		switch c := coll(e).(type) {
		case []any:
			for _, item := range c {
				if each(item) {
					return result
				}
			}
		case []string:
			for _, item := range c {
				if each(item) {
					return result
				}
			}
		default:
			a := reflect.ValueOf(c)
			for i, n := 0, a.Len(); i < n; i++ {
				if each(a.Index(i).Interface()) {
					return result
				}
			}
		}
		return !result
	}
}

// library compiles a builtin the compiler calls through its Go function
// (Fast, Safe or Func: concat, lower, trimSuffix, keys...), calling that
// function as the VM does; nil for the builtins it compiles to loops.
func (nc *nativeCompiler) library(v *ast.BuiltinNode) nativeAny {
	switch v.Name {
	case "all", "none", "any", "one", "filter", "map", "count", "sum", "find", "findIndex",
		"findLast", "findLastIndex", "groupBy", "sortBy", "reduce", "len", "hasPrefix", "hasSuffix":
		return nil
	}
	id, ok := builtin.Index[v.Name]
	if !ok {
		nc.fail()
		return nil
	}
	f := builtin.Builtins[id]
	args := make([]nativeAny, len(v.Arguments))
	for i, a := range v.Arguments {
		args[i] = nc.value(a)
	}
	if !nc.ok {
		return nil
	}
	eval := func(e *Env) []any {
		out := make([]any, len(args))
		for i, a := range args {
			out[i] = a(e)
		}
		return out
	}
	switch {
	case f.Fast != nil:
		if len(args) != 1 {
			nc.fail()
			return nil
		}
		return func(e *Env) any { return f.Fast(args[0](e)) }
	case f.Safe != nil:
		return func(e *Env) any {
			out, mem, err := f.Safe(eval(e)...)
			if err != nil {
				panic(err)
			}
			e.memGrow(mem)
			return out
		}
	case f.Func != nil:
		return func(e *Env) any {
			out, err := f.Func(eval(e)...)
			if err != nil {
				panic(err)
			}
			return out
		}
	}
	nc.fail()
	return nil
}

// memGrow is the VM's memory budget, per condition run.
func (e *Env) memGrow(n uint) {
	e.nativeMem += n
	if e.nativeMem >= conf.DefaultMemoryBudget {
		panic("memory budget exceeded")
	}
}
