package rules

import (
	"sync"

	"github.com/expr-lang/expr/ast"
)

// Values the conditions of a set share per event. The pod-security rules
// each read the pod spec and list its containers through the same macros
// (pod_spec, pod_containers): a dozen rules on every pod or workload
// write, each reading the body and concatenating the container lists
// anew, were most of what the rules cost on the finding-heavy stream. A
// value a condition computes from the event alone (no let or predicate
// item from around it), and that reads a body, is computed once per event
// and shared by every condition of the set that has the same expression.
//
// Sharing changes no verdict: the value is the one the condition would
// compute (the expression is the same, checked against the same Env, and
// the event is the same); it is only read (no expr operator writes into
// a value); a condition that panics computing it stores nothing; and a
// condition reading it from the memo is charged the memory the first
// computation charged, so the VM's memory budget is spent as if it
// computed it again.

// Bounds that keep the memo linear in a set's expressions, which a rule
// file's author writes: a shared value is an expression of at most
// maxMemoNodes nodes and maxMemoLiteralBytes bytes of string literals (so
// finding and naming it costs a bounded walk and a bounded key, however
// deeply a hostile condition nests), and a set has at most maxMemoSlots.
// The default pack shares 59 values; one more (a role-binding check, 764
// bytes printed) is past the bounds and computed by each condition that
// has it.
const (
	maxMemoNodes        = 64
	maxMemoLiteralBytes = 1 << 10
	maxMemoSlots        = 4096
)

// memoTable numbers a set's shared values by expression.
type memoTable struct {
	mu    sync.Mutex
	slots map[string]int
}

// slot returns key's slot, giving it the next one when it has none; false
// when the set has maxMemoSlots already.
func (t *memoTable) slot(key string) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.slots[key]
	if !ok {
		if len(t.slots) >= maxMemoSlots {
			return 0, false
		}
		s = len(t.slots)
		t.slots[key] = s
	}
	return s, true
}

// memoKey names n's value: its expression and the type the check gave it.
func memoKey(n ast.Node) string {
	t := "any"
	if n.Type() != nil {
		t = n.Type().String()
	}
	return t + " " + n.String()
}

// memoCandidate reports whether n is worth sharing and small enough to: a
// call, conditional, let or ?? (not a field read or a literal, cheaper
// than the memo) that reads a body, within the bounds above.
func memoCandidate(n ast.Node) bool {
	switch v := n.(type) {
	case *ast.CallNode, *ast.BuiltinNode, *ast.ConditionalNode, *ast.VariableDeclaratorNode:
	case *ast.BinaryNode:
		if v.Operator != "??" {
			return false
		}
	default:
		return false
	}
	var m memoScan
	return m.scan(n) && m.body
}

// memoScan walks an expression for memoCandidate, giving up past the
// bounds: ast.Walk cannot be stopped, so the visitor panics with a
// memoTooLarge, which scan recovers.
type memoScan struct {
	nodes, literalBytes int
	body                bool
}

// memoTooLarge stops memoScan's walk.
type memoTooLarge struct{}

func (m *memoScan) Visit(n *ast.Node) {
	m.nodes++
	if s, ok := (*n).(*ast.StringNode); ok {
		m.literalBytes += len(s.Value)
	}
	if m.nodes > maxMemoNodes || m.literalBytes > maxMemoLiteralBytes {
		panic(memoTooLarge{})
	}
	m.body = m.body || isBodyCall(*n)
}

// scan reports whether n is within the bounds.
func (m *memoScan) scan(n ast.Node) (within bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, stopped := r.(memoTooLarge); !stopped {
				panic(r)
			}
			within = false
		}
	}()
	ast.Walk(&n, m)
	return true
}

// isBodyCall reports a call of request, response or object.
func isBodyCall(n ast.Node) bool {
	c, ok := n.(*ast.CallNode)
	if !ok {
		return false
	}
	id, ok := c.Callee.(*ast.IdentifierNode)
	return ok && (id.Value == "request" || id.Value == "response" || id.Value == "object")
}

// memoized is f computed once per event and slot.
func memoized(slot int, f nativeAny) nativeAny {
	return func(e *Env) any {
		if slot < len(e.memoAt) && e.memoAt[slot] == e.memoGen && e.memoGen != 0 {
			e.memGrow(e.memoMem[slot])
			return e.memo[slot]
		}
		spent := e.nativeMem
		v := f(e)
		if e.memoGen != 0 {
			e.remember(slot, v, e.nativeMem-spent)
		}
		return v
	}
}

// remember stores slot's value for the current event.
func (e *Env) remember(slot int, v any, mem uint) {
	if slot >= len(e.memoAt) {
		n := max(slot+1, 2*len(e.memoAt))
		e.memo = append(e.memo, make([]any, n-len(e.memo))...)
		e.memoMem = append(e.memoMem, make([]uint, n-len(e.memoMem))...)
		e.memoAt = append(e.memoAt, make([]uint32, n-len(e.memoAt))...)
	}
	e.memo[slot], e.memoMem[slot], e.memoAt[slot] = v, mem, e.memoGen
}
