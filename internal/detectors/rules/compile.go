package rules

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	exprcompiler "github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	yaml "go.yaml.in/yaml/v3"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// envFields are the top-level names of Env, which lists and macros may not
// shadow; funcFields are those that are functions, not evidence.
var envFields, funcFields = func() (map[string]bool, map[string]bool) {
	all, funcs := map[string]bool{}, map[string]bool{}
	t := reflect.TypeFor[Env]()
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("expr")
		if name == "" {
			continue // unexported working state
		}
		all[name] = true
		if t.Field(i).Type.Kind() == reflect.Func {
			funcs[name] = true
		}
	}
	return all, funcs
}()

// reserved are expr's keywords, which cannot name a list or macro.
var reserved = map[string]bool{
	"true": true, "false": true, "nil": true, "not": true, "in": true, "and": true, "or": true,
	"matches": true, "contains": true, "startsWith": true, "endsWith": true, "let": true, "if": true, "else": true,
}

type mergedList struct {
	name  string
	items []*yaml.Node
	at    pos
}

type macroState uint8

const (
	macroUnchecked macroState = iota
	macroChecking
	macroDone
)

type mergedMacro struct {
	name   string
	parts  []condPart
	at     pos
	seq    int
	state  macroState
	broken bool // has errors of its own, or uses a broken macro; reported once
	// isBool records the type checkMacro found: bool, or else unknown (a
	// body value), which is all a macro may be.
	isBool bool
	// size is macroSize's memo; sizing marks a computation in progress.
	size          int
	sized, sizing bool
}

type mergedRule struct {
	def   ruleDef // the first definition, with later keys merged in
	parts []condPart
	order int
}

// compiler turns merged definitions into programs, collecting every error.
type compiler struct {
	cfgBool, cfgAny *conf.Config
	lists           map[string]*mergedList
	macros          map[string]*mergedMacro
	paths           map[string]*bodyPath
	parsed          *parseCache
	errs            []error
	// memo numbers the values the set's native conditions share per event
	// (see memoized); the forks of compileRules share it.
	memo *memoTable
	// checking is the chain of macros checkMacro is inside, to name a cycle.
	checking []*mergedMacro
	// total is the expanded size of what the set has compiled so far, held
	// to MaxSetNodes; exampleBytes the JSON of its examples, held to
	// MaxExampleBytes.
	total, exampleBytes int
}

func newConfig(expectBool bool) *conf.Config {
	c := conf.CreateNew()
	c.WithEnv(Env{})
	if expectBool {
		c.Expect, c.ExpectAny = reflect.Bool, true
	}
	return c
}

func (c *compiler) errorAt(p pos, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: p.file.name, Line: p.line, Column: p.col, Message: fmt.Sprintf(format, args...)})
}

// exprError places an error from expr inside the YAML text of part.
func (c *compiler) exprError(part condPart, offset int, err error, prefix string) {
	msg := err.Error()
	var fe *file.Error
	if errors.As(err, &fe) {
		msg = fe.Message
		offset += fe.From
	}
	line, col := locate(part, offset)
	c.errs = append(c.errs, &Error{File: part.src.name, Line: line, Column: col, Message: prefix + msg})
}

// locate maps a rune offset in a YAML scalar's value to a line and column in
// the file. YAML folds plain and folded scalars (newline and indentation
// become one space) and strips a literal block's indentation, so the value
// and the raw text are walked together, whitespace runs matching whitespace
// runs. Escapes in quoted scalars can shift the column; the line stays right.
func locate(part condPart, offset int) (int, int) {
	n, lines := part.node, part.src.lines
	row, col := n.Line-1, n.Column-1
	if row < 0 || row >= len(lines) {
		return n.Line, n.Column
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		row, col = row+1, 0
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		col++
	}
	// col counts bytes while walking; the result is converted to runes.
	at := func() (byte, bool) {
		for row < len(lines) && col >= len(lines[row]) {
			return '\n', row < len(lines)
		}
		if row >= len(lines) {
			return 0, false
		}
		return lines[row][col], true
	}
	advance := func() {
		if row < len(lines) && col < len(lines[row]) {
			_, size := utf8.DecodeRuneInString(lines[row][col:])
			col += size
			return
		}
		row, col = row+1, 0
	}
	isSpace := func(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }
	skipSpace := func() {
		for {
			b, ok := at()
			if !ok || !isSpace(b) {
				return
			}
			advance()
		}
	}
	i := 0
	for _, r := range part.text {
		if i >= offset {
			break
		}
		i++
		if r == ' ' || r == '\t' || r == '\n' {
			skipSpace()
			continue
		}
		skipSpace()
		advance()
	}
	skipSpace()
	if row >= len(lines) {
		return n.Line, n.Column
	}
	return row + 1, utf8.RuneCountInString(lines[row][:min(col, len(lines[row]))]) + 1
}

// parse parses one condition part (or template expression) and checks its
// body-path literals, reporting errors at their place in the file.
func (c *compiler) parse(part condPart, text string, offset int, report bool) (*parser.Tree, bool) {
	if tree, paths, ok := c.parsed.get(text); ok {
		for _, p := range paths {
			c.paths[p.text] = p
		}
		return tree, true
	}
	tree, err := parser.ParseWithConfig(text, c.cfgAny)
	if err != nil {
		if report {
			c.exprError(part, offset, err, "")
		}
		return nil, false
	}
	ok := true
	var paths []*bodyPath
	ast.Walk(&tree.Node, visitFunc(func(node *ast.Node) {
		call, isCall := (*node).(*ast.CallNode)
		if !isCall {
			return
		}
		id, isIdent := call.Callee.(*ast.IdentifierNode)
		if !isIdent || !bodyFuncs[id.Value] {
			return
		}
		var problem string
		if len(call.Arguments) != 1 {
			problem = fmt.Sprintf("%s() takes one path", id.Value)
		} else if s, isStr := call.Arguments[0].(*ast.StringNode); !isStr {
			problem = fmt.Sprintf("%s() takes a path literal, like %s(\"spec.containers[*].image\")", id.Value, id.Value)
		} else if p, err := parseBodyPath(s.Value); err != nil {
			problem = err.Error()
		} else {
			c.paths[p.text] = p
			paths = append(paths, p)
		}
		if problem != "" {
			ok = false
			if report {
				c.exprError(part, offset, &file.Error{Location: call.Location(), Message: problem}, "")
			}
		}
	}))
	if ok {
		c.parsed.put(text, tree, paths)
	}
	return tree, ok
}

type visitFunc func(node *ast.Node)

func (f visitFunc) Visit(node *ast.Node) { f(node) }

// expansion is the outcome of inlining lists and macros into a tree.
type expansion struct {
	broken bool // uses a macro that has errors of its own
}

// expand replaces list names with their items and macro names with their
// conditions, recursively. stack holds the macros being expanded.
func (c *compiler) expand(node *ast.Node, stack []string, x *expansion) {
	ast.Walk(node, visitFunc(func(n *ast.Node) {
		id, ok := (*n).(*ast.IdentifierNode)
		if !ok {
			return
		}
		if l := c.lists[id.Value]; l != nil {
			ast.Patch(n, listNode(l))
			return
		}
		m := c.macros[id.Value]
		if m == nil {
			return
		}
		// checkMacro reports cycles and marks the macros in them broken;
		// the stack only guards against looping forever if one got by.
		if m.broken || slices.Contains(stack, m.name) {
			x.broken = true
			ast.Patch(n, &ast.BoolNode{Value: false})
			return
		}
		repl := c.macroNode(m, append(stack[:len(stack):len(stack)], m.name), x)
		loc := id.Location()
		ast.Walk(&repl, visitFunc(func(n *ast.Node) { (*n).SetLocation(loc) }))
		ast.Patch(n, repl)
	}))
}

// macroNode returns a fresh tree for m: (part1) or (part2) ..., expanded.
func (c *compiler) macroNode(m *mergedMacro, stack []string, x *expansion) ast.Node {
	var out ast.Node
	for _, part := range m.parts {
		tree, ok := c.parse(part, part.text, 0, false)
		if !ok {
			x.broken = true
			return &ast.BoolNode{Value: false}
		}
		c.expand(&tree.Node, stack, x)
		if out == nil {
			out = tree.Node
		} else {
			out = &ast.BinaryNode{Operator: "||", Left: out, Right: tree.Node}
		}
	}
	return out
}

func listNode(l *mergedList) ast.Node {
	nodes := make([]ast.Node, len(l.items))
	for i, it := range l.items {
		nodes[i] = scalarNode(it)
	}
	return &ast.ArrayNode{Nodes: nodes}
}

// scalarNode is a YAML scalar as an expr literal of the same type.
func scalarNode(n *yaml.Node) ast.Node {
	switch n.Tag {
	case "!!int":
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return &ast.IntegerNode{Value: int(v)}
		}
	case "!!float":
		if v, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return &ast.FloatNode{Value: v}
		}
	case "!!bool":
		return &ast.BoolNode{Value: strings.EqualFold(n.Value, "true")}
	}
	return &ast.StringNode{Value: n.Value}
}

// check type-checks a tree; the tree is consumed (checking annotates it).
func (c *compiler) check(tree *parser.Tree, cfg *conf.Config) error {
	_, err := checker.Check(tree, cfg)
	return err
}

// program checks, optimizes and compiles a tree.
func (c *compiler) program(node ast.Node, src string, cfg *conf.Config) (*vm.Program, error) {
	prog, _, err := c.condition2(node, src, cfg)
	return prog, err
}

// condition2 is program that also compiles the tree to Go where it can
// (native.go); the native condition is nil otherwise.
func (c *compiler) condition2(node ast.Node, src string, cfg *conf.Config) (*vm.Program, nativeCond, error) {
	tree := &parser.Tree{Node: node, Source: file.NewSource(src)}
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, nil, err
	}
	// zeroFill reads the types the check annotated; its new nodes need a
	// second check before the optimizer and compiler read their types.
	zeroFill(&tree.Node, cfg.Expect == reflect.Bool)
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, nil, err
	}
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		return nil, nil, err
	}
	var native nativeCond
	if cfg.Expect == reflect.Bool && cfg.ShortCircuit {
		native = compileNative(tree.Node, c.memo)
	}
	// Last, after every check: the rewritten nodes carry the natures the
	// check gave the reads they replace.
	directAccess(&tree.Node)
	prog, err := exprcompiler.Compile(tree, cfg)
	if err != nil {
		return nil, nil, err
	}
	return prog, native, nil
}

// checkMacro reports a macro's own errors once, after those of the macros
// it uses, so that a broken macro is reported where it is defined and not
// again at every use. Each macro is checked on its own text, the macros it
// uses standing in as constants of their types: checking every macro's full
// expansion would cost the square of the length of a chain of macros.
func (c *compiler) checkMacro(m *mergedMacro) {
	if m.state != macroUnchecked {
		return
	}
	m.state = macroChecking
	c.checking = append(c.checking, m)
	defer func() {
		m.state = macroDone
		c.checking = c.checking[:len(c.checking)-1]
	}()
	trees := make([]*parser.Tree, len(m.parts))
	for i, part := range m.parts {
		tree, ok := c.parse(part, part.text, 0, true)
		if !ok {
			m.broken = true
			continue
		}
		trees[i] = tree
		var cycle string
		ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
			id, ok := (*n).(*ast.IdentifierNode)
			if !ok {
				return
			}
			dep := c.macros[id.Value]
			switch {
			case dep == nil:
			case dep.state == macroChecking:
				if cycle == "" {
					cycle = c.cycle(m, dep)
				}
			default:
				c.checkMacro(dep)
				if dep.broken {
					m.broken = true // reported at dep
				}
			}
		}))
		if cycle != "" {
			c.errorAt(partPos(part), "macro cycle: %s", cycle)
			m.broken = true
		}
	}
	if m.broken {
		return
	}
	// Refuse before inlining anything: the size is computed from the
	// memoized sizes of the macros m uses.
	if c.macroSize(m) > MaxExpandedNodes {
		c.errorAt(partPos(m.parts[len(m.parts)-1]),
			"macro %s expands to more than %d expression nodes (the limit for one condition): every use of a macro copies it, so a macro that uses another twice doubles its size", m.name, MaxExpandedNodes)
		m.broken = true
		return
	}
	m.isBool = len(m.parts) > 1 // (part1) || (part2) is bool
	for i, part := range m.parts {
		c.standIn(&trees[i].Node)
		t, err := checker.Check(trees[i], c.cfgBool)
		if err != nil {
			c.exprError(part, 0, err, "macro "+m.name+": ")
			m.broken = true
			continue
		}
		if len(m.parts) == 1 {
			m.isBool = t != nil && t.Kind() == reflect.Bool
		}
	}
}

// cycle names the macro cycle closed by m using dep, which checkMacro is
// inside: m -> dep -> ... -> m.
func (c *compiler) cycle(m, dep *mergedMacro) string {
	names := []string{m.name}
	i := slices.Index(c.checking, dep)
	for _, x := range c.checking[i : len(c.checking)-1] {
		names = append(names, x.name)
	}
	return strings.Join(append(names, m.name), " -> ")
}

// standIn inlines lists and replaces each use of a checked macro with a
// constant of the macro's type, which type-checks as the expansion would:
// a macro's text cannot refer to anything of the place it is used in (#
// or a let variable there), since it was checked on its own.
func (c *compiler) standIn(node *ast.Node) {
	ast.Walk(node, visitFunc(func(n *ast.Node) {
		id, ok := (*n).(*ast.IdentifierNode)
		if !ok {
			return
		}
		if l := c.lists[id.Value]; l != nil {
			ast.Patch(n, listNode(l))
		} else if m := c.macros[id.Value]; m != nil {
			var v any // unknown, like a body value
			if m.isBool {
				v = true
			}
			ast.Patch(n, &ast.ConstantNode{Value: v})
		}
	}))
}

// spend adds the expanded size n of something the set keeps to the set's
// total, and reports at p, once, when that exceeds MaxSetNodes.
func (c *compiler) spend(p pos, rule string, n int) bool {
	if c.total > MaxSetNodes {
		return false // reported
	}
	c.total += n
	if c.total > MaxSetNodes {
		c.errorAt(p, "rule %q: the rule set expands to more than %d expression nodes (the limit for a set); no further rules were compiled", rule, MaxSetNodes)
		return false
	}
	return true
}

// full reports whether the set has exceeded MaxSetNodes.
func (c *compiler) full() bool { return c.total > MaxSetNodes }

// condition parses, expands and checks every part of a rule's condition
// (reporting each problem once) and returns the expanded tree, the parts
// ANDed, or nil.
func (c *compiler) condition(name string, parts []condPart) ast.Node {
	ok := true
	trees := make([]*parser.Tree, len(parts))
	size := len(parts) - 1 // the && joining the parts
	for i, part := range parts {
		tree, good := c.parse(part, part.text, 0, true)
		if !good {
			ok = false
			continue
		}
		trees[i] = tree
		if size = saturate(size + c.treeSize(tree.Node)); size > MaxExpandedNodes && ok {
			c.errorAt(partPos(part), "rule %s: the condition expands to more than %d expression nodes (the limit for one condition)", name, MaxExpandedNodes)
			return nil
		}
	}
	if !ok || !c.spend(partPos(parts[0]), name, size) {
		return nil
	}
	for i, part := range parts {
		tree := trees[i]
		var x expansion
		c.expand(&tree.Node, nil, &x)
		if x.broken {
			ok = false // reported at the macro
			continue
		}
		if err := c.check(tree, c.cfgBool); err != nil {
			c.exprError(part, 0, err, "rule "+name+": ")
			ok = false
		}
	}
	if !ok {
		return nil
	}
	// Checking annotated the trees above; build fresh ones to combine.
	var out ast.Node
	for _, part := range parts {
		tree, _ := c.parse(part, part.text, 0, false)
		var x expansion
		c.expand(&tree.Node, nil, &x)
		if out == nil {
			out = tree.Node
		} else {
			out = &ast.BinaryNode{Operator: "&&", Left: out, Right: tree.Node}
		}
	}
	return out
}

// partPos is where a condition part's text starts in its file.
func partPos(part condPart) pos { return pos{part.src, part.node.Line, part.node.Column} }

// exception compiles one exception to a program that is true when every
// field equals the value at its place in one of the tuples.
func (c *compiler) exception(rule string, ex exceptionDef) (ruleException, bool) {
	ok := true
	fields := make([]string, len(ex.fields))
	for i, f := range ex.fields {
		part := condPart{text: f, node: ex.fieldN[i], src: ex.at.file}
		tree, good := c.parse(part, f, 0, true)
		if !good {
			ok = false
			continue
		}
		if !isFieldPath(tree.Node) {
			c.errorAt(pos{ex.at.file, ex.fieldN[i].Line, ex.fieldN[i].Column}, "exception %q: field %q must be an event field such as user.username", ex.name, f)
			ok = false
			continue
		}
		if err := c.check(tree, c.cfgAny); err != nil {
			c.exprError(part, 0, err, "exception "+ex.name+": ")
			ok = false
			continue
		}
		fields[i] = tree.Node.String()
	}
	if !ok {
		return ruleException{}, false
	}
	var or ast.Node
	for _, tuple := range ex.values {
		var and ast.Node
		for i, v := range tuple {
			tree, _ := parser.ParseWithConfig(fields[i], c.cfgAny)
			eq := &ast.BinaryNode{Operator: "==", Left: tree.Node, Right: scalarNode(v)}
			if and == nil {
				and = eq
			} else {
				and = &ast.BinaryNode{Operator: "&&", Left: and, Right: eq}
			}
		}
		if or == nil {
			or = and
		} else {
			or = &ast.BinaryNode{Operator: "||", Left: or, Right: and}
		}
	}
	if or == nil {
		or = &ast.BoolNode{Value: false}
	}
	if n := c.treeSize(or); n > MaxExpandedNodes {
		c.errorAt(ex.at, "exception %q: its values make more than %d expression nodes (the limit for one condition)", ex.name, MaxExpandedNodes)
		return ruleException{}, false
	} else if !c.spend(ex.at, rule, n) {
		return ruleException{}, false
	}
	prog, native, err := c.condition2(or, or.String(), c.cfgBool)
	if err != nil {
		msg := err.Error()
		var fe *file.Error
		if errors.As(err, &fe) {
			msg = fe.Message
		}
		c.errorAt(ex.at, "exception %q: %s", ex.name, msg)
		return ruleException{}, false
	}
	return ruleException{name: ex.name, prog: prog, native: native}, true
}

// isFieldPath reports whether n is an identifier or a chain of member
// accesses on one (user.username, annotations["x"]).
func isFieldPath(n ast.Node) bool {
	for {
		switch v := n.(type) {
		case *ast.IdentifierNode:
			return envFields[v.Value] && !funcFields[v.Value]
		case *ast.MemberNode:
			if v.Optional {
				return false
			}
			if _, ok := v.Property.(*ast.StringNode); !ok {
				return false
			}
			n = v.Node
		default:
			return false
		}
	}
}

// templatePart is a literal or an expression of a rule's output.
type templatePart struct {
	text string
	prog *vm.Program
	get  func(any) any // set, instead of prog, when the expression is a field
}

// template compiles an output like "{{ user.username }} opened a shell".
func (c *compiler) template(name string, part condPart) ([]templatePart, bool) {
	var out []templatePart
	s, off, ok := part.text, 0, true
	runeOff := func(byteOff int) int { return utf8.RuneCountInString(part.text[:byteOff]) }
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			out = append(out, templatePart{text: s})
			break
		}
		if i > 0 {
			out = append(out, templatePart{text: s[:i]})
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			line, col := locate(part, runeOff(off+i))
			c.errs = append(c.errs, &Error{File: part.src.name, Line: line, Column: col, Message: "output: unclosed {{"})
			return nil, false
		}
		src := s[i+2 : i+2+j]
		start := runeOff(off + i + 2)
		tree, good := c.parse(part, src, start, true)
		if good {
			if n := c.treeSize(tree.Node); n > MaxExpandedNodes {
				line, col := locate(part, start)
				c.errs = append(c.errs, &Error{File: part.src.name, Line: line, Column: col,
					Message: fmt.Sprintf("rule %s output: the expression expands to more than %d expression nodes (the limit for one condition)", name, MaxExpandedNodes)})
				good = false
			} else if !c.spend(partPos(part), name, n) {
				good = false
			}
		}
		if good {
			var x expansion
			c.expand(&tree.Node, nil, &x)
			// Read before program rewrites the tree.
			get := fieldGetter(tree.Node)
			if x.broken {
				good = false
			} else if get != nil {
				// Rendered by the accessor; no program to compile (see
				// evidence).
				out = append(out, templatePart{get: get})
			} else if prog, err := c.program(tree.Node, src, c.cfgAny); err != nil {
				c.exprError(part, start, err, "rule "+name+" output: ")
				good = false
			} else {
				out = append(out, templatePart{prog: prog})
			}
		}
		ok = ok && good
		s, off = s[i+2+j+2:], off+i+2+j+2
	}
	return out, ok
}

// evidenceSpec is one field a condition reads, reported with a finding.
type evidenceSpec struct {
	field string
	prog  *vm.Program   // env fields
	get   func(any) any // instead of prog, for a plain field read
	fn    string        // body functions: request, response, object, has
	path  any
}

// evidence lists the fields and body paths node reads, in order, once each.
func (c *compiler) evidence(node ast.Node) []evidenceSpec {
	var specs []evidenceSpec
	seen := map[string]bool{}
	// Walk is post-order: a chain's inner nodes are seen before the chain,
	// so keep the outermost by dropping a node's operand when it is added.
	var order []ast.Node
	index := map[ast.Node]int{}
	add := func(n ast.Node, inner ast.Node) {
		if k, ok := index[inner]; ok {
			order[k] = nil
		}
		index[n] = len(order)
		order = append(order, n)
	}
	ast.Walk(&node, visitFunc(func(n *ast.Node) {
		switch v := (*n).(type) {
		case *ast.IdentifierNode:
			if envFields[v.Value] && !funcFields[v.Value] {
				add(v, nil)
			}
		case *ast.MemberNode:
			if _, ok := index[v.Node]; ok {
				add(v, v.Node)
			}
		case *ast.CallNode:
			if id, ok := v.Callee.(*ast.IdentifierNode); ok && bodyFuncs[id.Value] {
				add(v, nil)
			}
		}
	}))
	for _, n := range order {
		if n == nil {
			continue
		}
		if call, ok := n.(*ast.CallNode); ok {
			fn := call.Callee.(*ast.IdentifierNode).Value
			s, _ := call.Arguments[0].(*ast.StringNode)
			if s == nil || seen[fn+"\x00"+s.Value] {
				continue
			}
			seen[fn+"\x00"+s.Value] = true
			specs = append(specs, evidenceSpec{field: s.Value, fn: fn, path: s.Value})
			continue
		}
		text := n.String()
		if seen[text] {
			continue
		}
		seen[text] = true
		tree, err := parser.ParseWithConfig(text, c.cfgAny)
		if err != nil {
			continue
		}
		// A plain field is read by its accessor, never by a program: the
		// program is not compiled (an accessor exists only for fields
		// the Env has, so it would compile).
		if get := fieldGetter(tree.Node); get != nil {
			specs = append(specs, evidenceSpec{field: text, get: get})
			continue
		}
		prog, err := c.program(tree.Node, text, c.cfgAny)
		if err != nil {
			continue
		}
		specs = append(specs, evidenceSpec{field: text, prog: prog})
	}
	return specs
}

// compileRule turns a merged rule into a runnable one, or reports why not.
func (c *compiler) compileRule(mr *mergedRule) *rule {
	d := &mr.def
	r := &rule{name: d.name, id: "rule:" + d.name, enabled: d.enabled == nil || *d.enabled, at: d.at}
	ok := true
	if len(mr.parts) == 0 {
		c.errorAt(d.at, "rule %q has no condition", d.name)
		ok = false
	}
	if d.severity == nil {
		c.errorAt(d.at, "rule %q has no severity: want one of info, low, medium, high, critical", d.name)
		ok = false
	} else if sev, err := pipeline.ParseSeverity(*d.severity); err != nil {
		c.errorAt(d.severityAt, "rule %q: %v", d.name, err)
		ok = false
	} else {
		r.severity = sev
	}
	if d.description != nil {
		r.description = *d.description
	}
	if d.mitre != nil {
		r.mitre = *d.mitre
	}
	r.tags = d.tags
	r.tagsValue = strings.Join(d.tags, ",")
	r.defersTo = d.defersTo
	var cond ast.Node
	if len(mr.parts) > 0 {
		if cond = c.condition(d.name, mr.parts); cond == nil {
			ok = false
		}
	}
	for _, ex := range d.exceptions {
		rex, good := c.exception(d.name, ex)
		ok = ok && good
		r.exceptions = append(r.exceptions, rex)
	}
	if d.output != nil {
		tmpl, good := c.template(d.name, *d.output)
		ok = ok && good
		r.output = tmpl
	}
	if terms, good := c.compileTerms(d.name, d.newTerms); good {
		r.terms = terms
	} else {
		ok = false
	}
	var counts [2]int // per kind, so the report says match[0], nomatch[0]
	for _, exd := range d.examples {
		k := 0
		if exd.match {
			k = 1
		}
		i := counts[k]
		counts[k]++
		if c.exampleBytes > MaxExampleBytes {
			ok = false // reported; decoding more would only cost time
			break
		}
		ex, err := exampleEvent(exd.node)
		if err != nil {
			c.errorAt(exd.at, "rule %q: example: %v", d.name, err)
			ok = false
			continue
		}
		if exd.baseline && d.newTerms == nil {
			c.errorAt(exd.at, "rule %q: baseline examples are for new_terms rules", d.name)
			ok = false
			continue
		}
		if c.exampleBytes += len(ex); c.exampleBytes > MaxExampleBytes {
			c.errorAt(exd.at, "rule %q: the examples of the rule set hold more than %d bytes (the limit for a set); a YAML alias copies an example at every use", d.name, MaxExampleBytes)
			ok = false
			break
		}
		if exd.baseline {
			r.baseline = append(r.baseline, ex)
			continue
		}
		r.examples = append(r.examples, example{match: exd.match, json: ex, at: exd.at, index: i})
	}
	if !ok {
		return nil
	}
	// The index and the evidence read a fresh copy: checking and
	// optimizing rewrite the tree they are given. Neither changes it, so
	// they share one.
	fresh := c.freshCondition(mr.parts)
	r.reqs = requirementsOf(fresh)
	r.substrings = substringsOf(fresh)
	r.evidence = c.evidence(fresh)
	prog, native, err := c.condition2(cond, cond.String(), c.cfgBool)
	if err != nil {
		c.errorAt(d.at, "rule %q: compiling condition: %v", d.name, err)
		return nil
	}
	r.cond, r.native = prog, native
	return r
}

func (c *compiler) freshCondition(parts []condPart) ast.Node {
	var out ast.Node
	for _, part := range parts {
		tree, _ := c.parse(part, part.text, 0, false)
		var x expansion
		c.expand(&tree.Node, nil, &x)
		if out == nil {
			out = tree.Node
		} else {
			out = &ast.BinaryNode{Operator: "&&", Left: out, Right: tree.Node}
		}
	}
	return out
}
