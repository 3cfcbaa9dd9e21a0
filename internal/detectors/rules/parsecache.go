package rules

import (
	"sync"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// parseCache holds the tree of every expression text one load parsed
// successfully, shared by the compiler and its forks. A macro is expanded
// by parsing its text at every use, and a condition is parsed twice (once
// to check, once fresh to combine): the default pack parsed 141 distinct
// texts 1,261 times, and parsing was about a third of loading it, which
// detect scan pays before its first event. Expansion and checking rewrite
// trees in place, so each use gets its own copy of the cached tree; a
// copy costs a fraction of lexing and parsing the text again.
type parseCache struct {
	mu      sync.Mutex
	entries map[string]parsedText
}

// parsedText is one text's pristine tree, never handed out itself, and
// the body paths its object()/request()/response() calls name, which the
// compiler records on every use.
type parsedText struct {
	tree  *parser.Tree
	paths []*bodyPath
}

func newParseCache() *parseCache {
	return &parseCache{entries: map[string]parsedText{}}
}

// get returns a fresh copy of text's tree and its paths, or false when
// text was not parsed yet, its tree holds a node cloneNode does not know
// (a later expr could add one), or p is nil (a compiler built without a
// cache).
func (p *parseCache) get(text string) (*parser.Tree, []*bodyPath, bool) {
	if p == nil {
		return nil, nil, false
	}
	p.mu.Lock()
	e, ok := p.entries[text]
	p.mu.Unlock()
	if !ok {
		return nil, nil, false
	}
	n, ok := cloneNode(e.tree.Node)
	if !ok {
		return nil, nil, false
	}
	return &parser.Tree{Node: n, Source: e.tree.Source}, e.paths, true
}

// put stores a copy of tree, freshly parsed from text and not yet
// rewritten, with the paths it names.
func (p *parseCache) put(text string, tree *parser.Tree, paths []*bodyPath) {
	if p == nil {
		return
	}
	n, ok := cloneNode(tree.Node)
	if !ok {
		return
	}
	p.mu.Lock()
	p.entries[text] = parsedText{tree: &parser.Tree{Node: n, Source: tree.Source}, paths: paths}
	p.mu.Unlock()
}

// cloneNode copies a tree as the parser builds it: every node is new, with
// the location and (still empty) type of the original. It reports false
// for a node type it does not know.
func cloneNode(n ast.Node) (ast.Node, bool) {
	ok := true
	var clone func(ast.Node) ast.Node
	clone = func(n ast.Node) ast.Node {
		if n == nil || !ok {
			return nil
		}
		switch n := n.(type) {
		case *ast.NilNode:
			return copyOf(n)
		case *ast.IdentifierNode:
			return copyOf(n)
		case *ast.IntegerNode:
			return copyOf(n)
		case *ast.FloatNode:
			return copyOf(n)
		case *ast.BoolNode:
			return copyOf(n)
		case *ast.StringNode:
			return copyOf(n)
		case *ast.BytesNode:
			c := *n
			c.Value = append([]byte(nil), n.Value...)
			return &c
		case *ast.ConstantNode:
			return copyOf(n)
		case *ast.PointerNode:
			return copyOf(n)
		case *ast.UnaryNode:
			c := *n
			c.Node = clone(n.Node)
			return &c
		case *ast.BinaryNode:
			c := *n
			c.Left, c.Right = clone(n.Left), clone(n.Right)
			return &c
		case *ast.ChainNode:
			c := *n
			c.Node = clone(n.Node)
			return &c
		case *ast.MemberNode:
			c := *n
			c.Node, c.Property = clone(n.Node), clone(n.Property)
			return &c
		case *ast.SliceNode:
			c := *n
			c.Node, c.From, c.To = clone(n.Node), clone(n.From), clone(n.To)
			return &c
		case *ast.CallNode:
			c := *n
			c.Callee = clone(n.Callee)
			c.Arguments = cloneNodes(n.Arguments, clone)
			return &c
		case *ast.BuiltinNode:
			c := *n
			c.Arguments = cloneNodes(n.Arguments, clone)
			c.Map = clone(n.Map)
			if n.Threshold != nil {
				t := *n.Threshold
				c.Threshold = &t
			}
			return &c
		case *ast.PredicateNode:
			c := *n
			c.Node = clone(n.Node)
			return &c
		case *ast.ConditionalNode:
			c := *n
			c.Cond, c.Exp1, c.Exp2 = clone(n.Cond), clone(n.Exp1), clone(n.Exp2)
			return &c
		case *ast.VariableDeclaratorNode:
			c := *n
			c.Value, c.Expr = clone(n.Value), clone(n.Expr)
			return &c
		case *ast.SequenceNode:
			c := *n
			c.Nodes = cloneNodes(n.Nodes, clone)
			return &c
		case *ast.ArrayNode:
			c := *n
			c.Nodes = cloneNodes(n.Nodes, clone)
			return &c
		case *ast.MapNode:
			c := *n
			c.Pairs = cloneNodes(n.Pairs, clone)
			return &c
		case *ast.PairNode:
			c := *n
			c.Key, c.Value = clone(n.Key), clone(n.Value)
			return &c
		}
		ok = false
		return nil
	}
	out := clone(n)
	return out, ok
}

// copyOf returns a new copy of *n: a leaf node, or a node whose children
// the caller replaces.
func copyOf[T any](n *T) *T {
	c := *n
	return &c
}

func cloneNodes(nodes []ast.Node, clone func(ast.Node) ast.Node) []ast.Node {
	if nodes == nil {
		return nil
	}
	out := make([]ast.Node, len(nodes))
	for i, n := range nodes {
		out[i] = clone(n)
	}
	return out
}
