package rules

import (
	"reflect"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// Direct accessors. expr compiles a read of a struct field of the
// environment (verb, objectRef.resource) to OpLoadField, which walks the
// field's index path with package reflect and boxes the value it finds
// into a fresh interface on every read: with a thousand rules reading verb
// and objectRef.resource, most of an event's rule time went there. After
// the last check, compile rewrites each such read into a call of a
// constant Go function of the type func(any) any, which expr's VM calls
// without reflection (OpCallTyped); the function reads the field from the
// *Env it is handed ($env) and keeps the boxed value for the rest of the
// event, so every rule reading verb shares one interface. The call node
// keeps the nature the check gave the field read, so the VM runs the same
// typed instructions on it (OpEqualString for verb == "get") and a
// condition means exactly what it did.
//
// The Env's functions are treated alike: request/response/object/has are
// called through constant func(any, any) any and func(any, any) bool
// values handed $env, glob and cidr are constants instead of fields loaded
// by reflection, so no rule reads the Env through reflect at all unless it
// names a whole struct (user, objectRef) or goes through $env.

// accessorDef reads one field of the Env.
type accessorDef struct {
	path string
	get  func(e *Env) any
}

// accessorDefs are the field reads compiled to accessors, by the path a
// condition names them with. A path whose struct is optional-chained
// (objectRef?.resource) or a whole struct is left to expr.
var accessorDefs = []accessorDef{
	{"cluster", func(e *Env) any { return e.Cluster }},
	{"verb", func(e *Env) any { return e.Verb }},
	{"stage", func(e *Env) any { return e.Stage }},
	{"level", func(e *Env) any { return e.Level }},
	{"auditID", func(e *Env) any { return e.AuditID }},
	{"requestURI", func(e *Env) any { return e.RequestURI }},
	{"path", func(e *Env) any { return e.Path }},
	{"selectors.labelSelector", func(e *Env) any { return e.Selectors.LabelSelector }},
	{"selectors.fieldSelector", func(e *Env) any { return e.Selectors.FieldSelector }},
	{"user.username", func(e *Env) any { return e.User.Username }},
	{"user.uid", func(e *Env) any { return e.User.UID }},
	{"user.groups", func(e *Env) any { return e.User.Groups }},
	{"user.extra", func(e *Env) any { return e.User.Extra }},
	{"impersonatedUser.username", func(e *Env) any { return e.ImpersonatedUser.Username }},
	{"impersonatedUser.groups", func(e *Env) any { return e.ImpersonatedUser.Groups }},
	{"sourceIPs", func(e *Env) any { return e.SourceIPs }},
	{"sourceIP", func(e *Env) any { return e.SourceIP }},
	{"userAgent", func(e *Env) any { return e.UserAgent }},
	{"objectRef.resource", func(e *Env) any { return e.ObjectRef.Resource }},
	{"objectRef.subresource", func(e *Env) any { return e.ObjectRef.Subresource }},
	{"objectRef.namespace", func(e *Env) any { return e.ObjectRef.Namespace }},
	{"objectRef.name", func(e *Env) any { return e.ObjectRef.Name }},
	{"objectRef.apiGroup", func(e *Env) any { return e.ObjectRef.APIGroup }},
	{"objectRef.apiVersion", func(e *Env) any { return e.ObjectRef.APIVersion }},
	{"responseStatus.code", func(e *Env) any { return e.ResponseStatus.Code }},
	{"responseStatus.reason", func(e *Env) any { return e.ResponseStatus.Reason }},
	{"annotations", func(e *Env) any { return e.Annotations }},
	{"decision", func(e *Env) any { return e.Decision }},
}

// numAccessors bounds the per-event cache of boxed values (a bit each in
// Env.boxed).
const numAccessors = 28

// accessors maps a field path to the function compiled programs call.
var accessors = func() map[string]func(any) any {
	if len(accessorDefs) != numAccessors {
		panic("rules: numAccessors does not match accessorDefs")
	}
	m := make(map[string]func(any) any, len(accessorDefs))
	for i, d := range accessorDefs {
		bit, get := uint32(1)<<i, d.get
		m[d.path] = func(env any) any {
			e := env.(*Env)
			if e.boxed&bit == 0 {
				e.boxes[i] = get(e)
				e.boxed |= bit
			}
			return e.boxes[i]
		}
	}
	return m
}()

// fieldGetter is the accessor a compiled program calls for the field
// path n reads, or nil: a rule's evidence, the {{ field }} parts of its
// output and the fields of a new_terms block that name nothing but a
// field call it directly instead of running a program, and share the
// event's boxed value with the conditions (a fresh interface per read
// would allocate).
func fieldGetter(n ast.Node) func(any) any {
	return accessors[fieldPathOf(n)]
}

// The Env's functions as constants; the body functions find the event
// through the evaluator the Env points back to.
var (
	callRequest  = func(env, path any) any { return env.(*Env).eval.request(path) }
	callResponse = func(env, path any) any { return env.(*Env).eval.response(path) }
	callObject   = func(env, path any) any { return env.(*Env).eval.object(path) }
	callHas      = func(env, path any) bool { return env.(*Env).eval.has(path) }

	bodyCalls = map[string]any{"request": callRequest, "response": callResponse, "object": callObject, "has": callHas}
	pureFuncs = map[string]any{"glob": glob, "cidr": cidr, "csrSubject": csrSubject}
)

// stringBuiltins are expr builtins of two strings compiled to a direct
// call: of the Go function when both arguments are typed strings, else of
// one that asserts them as expr's builtin does (a body value of another
// type fails the condition, as before).
var stringBuiltins = map[string]struct {
	typed   func(string, string) bool
	untyped func(any, any) bool
}{
	"hasPrefix": {strings.HasPrefix, func(s, p any) bool { return strings.HasPrefix(s.(string), p.(string)) }},
	"hasSuffix": {strings.HasSuffix, func(s, p any) bool { return strings.HasSuffix(s.(string), p.(string)) }},
}

// isString reports whether the check typed n as a string (a body value
// is of unknown type, and expr's builtin would refuse a non-string).
func isString(n ast.Node) bool {
	return n.Nature().Type == reflect.TypeFor[string]()
}

// fieldPathOf returns the env field path n reads (verb, user.username), or
// "" when n is anything else.
func fieldPathOf(n ast.Node) string {
	switch v := n.(type) {
	case *ast.IdentifierNode:
		return v.Value
	case *ast.MemberNode:
		id, ok := v.Node.(*ast.IdentifierNode)
		prop, isStr := v.Property.(*ast.StringNode)
		if !ok || !isStr || v.Optional {
			return ""
		}
		return id.Value + "." + prop.Value
	}
	return ""
}

// directAccess rewrites the field reads and Env function calls of a
// checked and optimized tree as described above. Identifiers a let
// declares are local variables, not fields: a tree declaring a name of the
// Env is left as it is.
func directAccess(root *ast.Node) {
	shadowed := false
	ast.Walk(root, visitFunc(func(n *ast.Node) {
		if d, ok := (*n).(*ast.VariableDeclaratorNode); ok && (envFields[d.Name] || accessors[d.Name] != nil) {
			shadowed = true
		}
	}))
	if shadowed {
		return
	}
	ast.Walk(root, visitFunc(func(n *ast.Node) {
		switch v := (*n).(type) {
		case *ast.IdentifierNode, *ast.MemberNode:
			fn := accessors[fieldPathOf(v)]
			if fn == nil {
				return
			}
			*n = constCall(*n, fn)
		case *ast.BuiltinNode:
			// hasPrefix and hasSuffix are called through expr's generic
			// function call, which allocates an argument buffer per run;
			// on two strings, the Go function is called directly.
			fns, ok := stringBuiltins[v.Name]
			if !ok || len(v.Arguments) != 2 {
				return
			}
			var fn any = fns.typed
			if !isString(v.Arguments[0]) || !isString(v.Arguments[1]) {
				fn = fns.untyped
			}
			c := &ast.ConstantNode{Value: fn}
			c.SetLocation(v.Location())
			c.SetType(reflect.TypeOf(fn))
			call := &ast.CallNode{Callee: c, Arguments: v.Arguments}
			call.SetLocation(v.Location())
			call.SetNature(*v.Nature())
			*n = call
		case *ast.CallNode:
			id, ok := v.Callee.(*ast.IdentifierNode)
			if !ok {
				return
			}
			if fn, ok := bodyCalls[id.Value]; ok && len(v.Arguments) == 1 {
				*n = constCall(*n, fn, v.Arguments[0])
			} else if fn, ok := pureFuncs[id.Value]; ok {
				c := &ast.ConstantNode{Value: fn}
				c.SetLocation(id.Location())
				c.SetType(reflect.TypeOf(fn))
				v.Callee = c
			}
		}
	}))
}

// constCall is a call of the Go function fn with $env and args, standing
// in for old: same location, same nature, so the nodes around it compile
// as they did.
func constCall(old ast.Node, fn any, args ...ast.Node) ast.Node {
	loc := old.Location()
	callee := &ast.ConstantNode{Value: fn}
	callee.SetLocation(loc)
	callee.SetType(reflect.TypeOf(fn))
	env := &ast.IdentifierNode{Value: "$env"}
	env.SetLocation(loc)
	call := &ast.CallNode{Callee: callee, Arguments: append([]ast.Node{env}, args...)}
	call.SetLocation(loc)
	call.SetNature(*old.Nature())
	return call
}
