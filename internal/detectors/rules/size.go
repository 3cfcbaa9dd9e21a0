package rules

import (
	"github.com/expr-lang/expr/ast"
)

// MaxExpandedNodes bounds one condition, output expression, exception or
// macro once its lists and macros are inlined, counted in expr syntax-tree
// nodes plus one per macro use (inlining a use costs a parse of the
// macro's text). Inlining is textual, so a macro used twice is copied
// twice: forty macros that each OR the previous one with itself expand to
// 2^41 nodes, which kept `detect rules check` busy forever and a reloading
// `detect run` growing past 1.6 GB. Sizes are computed before anything is
// inlined, so such a file is refused at once. A condition at the bound
// takes up to 0.2 s and 40 MB of short-lived garbage to compile and keeps
// 1-2 MB. The largest rule of the default pack expands to under 200 nodes,
// and expr itself refuses to parse a single expression of more than 10,000
// (conf.DefaultMaxNodes); 25,000 leaves room for such an expression plus a
// list of a few thousand items (a list use counts one node per item).
const MaxExpandedNodes = 25_000

// MaxSetNodes bounds the sum of the expanded sizes of every condition,
// exception and output expression of a rule set, so that many rules each
// within MaxExpandedNodes cannot exhaust memory or time either: a set at
// the bound keeps 10-25 MB and compiles in 0.3-2 s (lists are cheap,
// macro-heavy conditions dear). The default pack is about 2,600 nodes, the
// default pack plus the 1,000 generated user rules of the benchmarks about
// 25,000: the bound leaves ten times that.
const MaxSetNodes = 250_000

// MaxExampleBytes bounds the audit-event JSON of all the examples a set
// keeps for `detect rules test`. A YAML alias costs a few bytes of the file
// but copies its anchor at every use, so a 130 KB file aliasing one 100 KB
// example 2,000 times made a set of 240 MB. The default pack's 90 examples
// are 170 KB; 16 MiB leaves a hundred times that.
const MaxExampleBytes = 16 << 20

// saturate caps a size just above MaxExpandedNodes: beyond the bound the
// exact size does not matter, and capping keeps a chain of doublings from
// overflowing.
func saturate(n int) int { return min(n, MaxExpandedNodes+1) }

// treeSize returns how many nodes node will have once lists and macros are
// inlined, plus one per macro use, saturated. It reads memoized macro
// sizes, so computing it is linear in the text of node.
func (c *compiler) treeSize(node ast.Node) int {
	n := 0
	ast.Walk(&node, visitFunc(func(p *ast.Node) {
		k := 1
		if id, ok := (*p).(*ast.IdentifierNode); ok {
			if l := c.lists[id.Value]; l != nil {
				k += len(l.items) // the identifier becomes an array of its items
			} else if m := c.macros[id.Value]; m != nil && !m.broken {
				k += c.macroSize(m)
			}
		}
		n = saturate(n + k)
	}))
	return n
}

// macroSize returns the size of m's expansion, (part1) || (part2) ...,
// computed once. A macro met again while its size is being computed is in
// a cycle, which checkMacro reports and expand cuts to one node.
func (c *compiler) macroSize(m *mergedMacro) int {
	switch {
	case m.sized:
		return m.size
	case m.sizing:
		return 1
	}
	m.sizing = true
	size := len(m.parts) - 1 // the || joining the parts
	for _, part := range m.parts {
		tree, ok := c.parse(part, part.text, 0, false)
		if !ok {
			size++ // expand puts false in its place
			continue
		}
		size = saturate(size + c.treeSize(tree.Node))
	}
	m.sizing, m.sized, m.size = false, true, size
	return size
}
