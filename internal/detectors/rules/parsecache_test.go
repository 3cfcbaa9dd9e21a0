package rules

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// TestCloneNode: a copy prints and dumps as the parsed tree does, for
// every kind of node the parser makes, and shares no node with it, so
// that expansion and checking of one use never reach another's tree.
func TestCloneNode(t *testing.T) {
	for _, text := range []string{
		`user.username == "system:anonymous" && !(verb in ["get", "list"])`,
		`let n = len(user.groups); n > 2 ? "many" : n == 0 ? nil : "few"`,
		`{"a": [1, 2.5, true, nil], "b": b"raw"}.a[1:3]`,
		`all(user.groups, # startsWith "system:") or any(sourceIPs, {#index > 0})`,
		`objectRef?.name ?? "none"`,
		`not (requestURI matches "^/api") && -1 < 2 && cidr(sourceIPs[0], "10.0.0.0/8")`,
		`object("spec.containers[*].image") != nil; verb`,
		`filter(user.groups, len(#) > 3) | map(upper(#))`,
	} {
		tree, err := parser.Parse(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		c, ok := cloneNode(tree.Node)
		if !ok {
			t.Fatalf("%s: cloneNode reports a node it does not know", text)
		}
		if got, want := c.String(), tree.Node.String(); got != want {
			t.Errorf("%s: copy prints %q, want %q", text, got, want)
		}
		if got, want := dump(c), dump(tree.Node); got != want {
			t.Errorf("%s: copy dumps\n%s\nwant\n%s", text, got, want)
		}
		orig := map[ast.Node]bool{}
		walkNodes(tree.Node, func(n ast.Node) { orig[n] = true })
		walkNodes(c, func(n ast.Node) {
			if orig[n] {
				t.Errorf("%s: copy shares node %T %s with the original", text, n, n)
			}
		})
	}
	if _, ok := cloneNode(&foreignNode{}); ok {
		t.Error("cloneNode copied a node type it does not know")
	}
}

// foreignNode is a node type cloneNode has no case for.
type foreignNode struct{ ast.NilNode }

// dump prints every node with its location, which String leaves out.
func dump(n ast.Node) string {
	var b strings.Builder
	walkNodes(n, func(n ast.Node) { fmt.Fprintf(&b, "%T %+v %s\n", n, n.Location(), n) })
	return b.String()
}

func walkNodes(n ast.Node, f func(ast.Node)) {
	ast.Walk(&n, visitFunc(func(p *ast.Node) { f(*p) }))
}

// TestParseCacheSameSet: the default pack compiled with the parse cache is
// the pack compiled parsing every text at every use, program for program.
func TestParseCacheSameSet(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	cached, err := loadWithCache(context.Background(), newParseCache(), true, files...)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := loadWithCache(context.Background(), nil, true, files...)
	if err != nil {
		t.Fatal(err)
	}
	if len(cached.rules) != len(fresh.rules) || len(cached.rules) == 0 {
		t.Fatalf("%d rules with the cache, %d without", len(cached.rules), len(fresh.rules))
	}
	for i, r := range cached.rules {
		if got, want := describeRule(r), describeRule(fresh.rules[i]); got != want {
			t.Errorf("rule %s differs with the parse cache:\n%s\nwithout:\n%s", r.name, got, want)
		}
	}
	if got, want := slices.Sorted(maps.Keys(cached.paths)), slices.Sorted(maps.Keys(fresh.paths)); !slices.Equal(got, want) {
		t.Errorf("body paths differ: %q with the cache, %q without", got, want)
	}
}

// describeRule prints what compiling a rule produced: its programs'
// instructions, whether each has a native form, its index requirements,
// substrings and evidence. Addresses (a program's, a body path's) differ
// from load to load and are left out.
func describeRule(r *rule) string {
	return addresses.ReplaceAllString(describeRuleRaw(r), "0x…")
}

var addresses = regexp.MustCompile(`0x[0-9a-f]+`)

func describeRuleRaw(r *rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s native=%v\n%s", r.name, r.native != nil, r.cond.Disassemble())
	for _, ex := range r.exceptions {
		fmt.Fprintf(&b, "exception %s native=%v\n%s", ex.name, ex.native != nil, ex.prog.Disassemble())
	}
	for _, o := range r.output {
		switch {
		case o.get != nil:
			fmt.Fprintf(&b, "output accessor %p\n", o.get)
		case o.prog != nil:
			fmt.Fprintf(&b, "output\n%s", o.prog.Disassemble())
		default:
			fmt.Fprintf(&b, "output %q\n", o.text)
		}
	}
	fmt.Fprintf(&b, "reqs %+v\nsubstrings %+v\nevidence %+v\n", r.reqs, r.substrings, r.evidence)
	return b.String()
}
