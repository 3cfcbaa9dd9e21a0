package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// loadErrors loads files named user.yaml, bomb.yaml, ... and returns the
// problems as strings; it fails the test if the set loads.
func loadErrors(t *testing.T, files ...File) []string {
	t.Helper()
	s, err := Load(files...)
	if err == nil {
		t.Fatalf("loaded %d rules; want an error", s.Len())
	}
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	return msgs
}

// TestMacroExpansionBounded loads files whose macros expand beyond
// MaxExpandedNodes. Each must be refused with one error naming the macro
// where the bound is crossed, at its condition, before anything is
// inlined: without the bound the doubling file never loads and the chain
// takes seconds. No wall time is asserted; the test timeout is the
// backstop.
func TestMacroExpansionBounded(t *testing.T) {
	// Macro k of the doubling file is 2^(k+1)-1 nodes plus 2^k-2 macro
	// uses: 3*2^k-3. Its condition is on line 2k+1, column 16.
	k := 1
	for 3<<k-3 <= MaxExpandedNodes {
		k++
	}
	for _, n := range []int{k, 40, 1000} {
		msgs := loadErrors(t, File{Name: "bomb.yaml", Data: macroDoubling(n)})
		want := fmt.Sprintf("bomb.yaml:%d:16: macro m%d expands to more than %d expression nodes", 2*k+1, k, MaxExpandedNodes)
		if len(msgs) != 1 || !strings.HasPrefix(msgs[0], want) {
			t.Errorf("%d doubling macros: errors\n  %s\nwant one starting %q", n, strings.Join(msgs, "\n  "), want)
		}
	}
	// The macro before it is within the bound and loads.
	if _, err := Load(File{Name: "ok.yaml", Data: macroDoubling(k - 1)}); err != nil {
		t.Errorf("%d doubling macros: %v", k-1, err)
	}

	// Each macro of the chain adds an ||, a macro use, an in, a member
	// access (3 nodes) and the list (1 + items): 7 + items nodes.
	const items = 30
	k = 1
	for 3+(7+items)*(k-1) <= MaxExpandedNodes {
		k++
	}
	msgs := loadErrors(t, File{Name: "chain.yaml", Data: macroChain(1000, items)})
	want := fmt.Sprintf("chain.yaml:%d:16: macro c%d expands to more than %d expression nodes", 2*k+4, k, MaxExpandedNodes)
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0], want) {
		t.Errorf("chain: errors\n  %s\nwant one starting %q", strings.Join(msgs, "\n  "), want)
	}
}

// TestMacroChainLinear loads a long chain within the bound: each macro is
// checked on its own text, so the load is linear in the chain, and the rule
// still sees the whole expansion.
func TestMacroChainLinear(t *testing.T) {
	s, err := Load(File{Name: "chain.yaml", Data: macroChain(1000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for verb, want := range map[string]bool{"get": true, "list": false} {
		ev := decode(t, `{"verb":"`+verb+`","stage":"ResponseComplete","requestURI":"/api/v1/pods","user":{"username":"u"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200}}`)
		if got := len(fired(s, ev)) == 1; got != want {
			t.Errorf("%s: fired %v, want %v", verb, got, want)
		}
	}
}

// TestConditionSizeBounded covers the other places the bound applies: a
// rule or output using macros that are each within it, and exception
// values.
func TestConditionSizeBounded(t *testing.T) {
	// m13 is 24,573 nodes, just within the bound; the rule using it is
	// left out.
	macros, _, _ := bytes.Cut(macroDoubling(13), []byte("rules:"))
	f := func(name, want string, yaml ...string) {
		t.Helper()
		files := []File{{Name: "m.yaml", Data: macros}}
		for i, y := range yaml {
			files = append(files, File{Name: fmt.Sprintf("user%d.yaml", i+1), Data: []byte(y)})
		}
		msgs := loadErrors(t, files...)
		if len(msgs) != 1 || !strings.HasPrefix(msgs[0], want) {
			t.Errorf("%s: errors\n  %s\nwant one starting %q", name, strings.Join(msgs, "\n  "), want)
		}
	}
	f("rule", fmt.Sprintf("user1.yaml:4:16: rule r: the condition expands to more than %d expression nodes", MaxExpandedNodes),
		"rules:\n  - rule: r\n    severity: low\n    condition: m13 or m12\n")
	f("appended rule", fmt.Sprintf("user2.yaml:4:16: rule r: the condition expands to more than %d expression nodes", MaxExpandedNodes),
		"rules:\n  - rule: r\n    severity: low\n    condition: m13\n",
		"rules:\n  - rule: r\n    override: append\n    condition: m12\n")
	f("output", fmt.Sprintf("user1.yaml:5:17: rule r output: the expression expands to more than %d expression nodes", MaxExpandedNodes),
		"rules:\n  - rule: r\n    severity: low\n    condition: verb == \"get\"\n    output: \"{{ m13 and m13 }}\"\n")
	var values strings.Builder
	for i := range MaxExpandedNodes / 8 {
		fmt.Fprintf(&values, "[u%d, ns%d], ", i, i)
	}
	f("exception", fmt.Sprintf(`user1.yaml:6:9: exception "e": its values make more than %d expression nodes`, MaxExpandedNodes),
		"rules:\n  - rule: r\n    severity: low\n    condition: verb == \"get\"\n    exceptions:\n      - name: e\n        fields: [user.username, objectRef.namespace]\n        values: ["+values.String()+"]\n")
}

// TestSetSizeBounded loads rules each within MaxExpandedNodes whose sum is
// not: the rule that crosses MaxSetNodes is named and no further rule is
// compiled.
func TestSetSizeBounded(t *testing.T) {
	const items = 20_000
	var b bytes.Buffer
	b.WriteString("lists:\n  - list: big\n    items: [")
	for i := range items {
		fmt.Fprintf(&b, "ns-%d,", i)
	}
	b.WriteString("]\nrules:\n")
	// Each rule: in, a member access (3 nodes) and the list (1 + items).
	per := 5 + items
	k := MaxSetNodes/per + 1
	for i := 1; i <= 2*k; i++ {
		fmt.Fprintf(&b, "  - rule: r%d\n    severity: low\n    condition: objectRef.namespace in big\n", i)
	}
	msgs := loadErrors(t, File{Name: "big.yaml", Data: b.Bytes()})
	want := fmt.Sprintf(`rule "r%d": the rule set expands to more than %d expression nodes`, k, MaxSetNodes)
	if len(msgs) != 1 || !strings.Contains(msgs[0], want) {
		t.Errorf("errors\n  %s\nwant one containing %q", strings.Join(msgs, "\n  "), want)
	}
}

// TestExampleBytesBounded aliases one large example many times: a few
// bytes of YAML each, a full copy each once decoded. The load is refused
// at the example that crosses MaxExampleBytes.
func TestExampleBytesBounded(t *testing.T) {
	const size = 100_000
	var b bytes.Buffer
	b.WriteString("rules:\n  - rule: r\n    severity: low\n    condition: verb == \"get\"\n    examples:\n      match:\n")
	fmt.Fprintf(&b, "        - &big {verb: get, objectRef: {resource: pods}, annotations: {a: %q}}\n", strings.Repeat("x", size))
	for range 2 * MaxExampleBytes / size {
		b.WriteString("        - *big\n")
	}
	msgs := loadErrors(t, File{Name: "alias.yaml", Data: b.Bytes()})
	want := fmt.Sprintf(`rule "r": the examples of the rule set hold more than %d bytes`, MaxExampleBytes)
	if len(msgs) != 1 || !strings.Contains(msgs[0], want) {
		t.Errorf("errors\n  %s\nwant one containing %q", strings.Join(msgs, "\n  "), want)
	}
}

// cancelAfter is a context whose Err cancels it on the nth call: a load
// interrupted in its middle, deterministically.
type cancelAfter struct {
	context.Context
	cancel   context.CancelFunc
	n, calls int
}

func (c *cancelAfter) Err() error {
	if c.calls++; c.calls == c.n {
		c.cancel()
	}
	return c.Context.Err()
}

func TestLoadContextCancelled(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, File{Name: "gen.yaml", Data: generatedRules(200)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := LoadContext(ctx, files...); s != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: set %v, err %v; want context.Canceled", s, err)
	}
	// Cancelled among the macros, and among the rules: the load returns at
	// the next check.
	for _, n := range []int{len(files) + 3, len(files) + 100} {
		ctx, cancel := context.WithCancel(context.Background())
		c := &cancelAfter{Context: ctx, cancel: cancel, n: n}
		s, err := LoadContext(c, files...)
		if s != nil || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled at check %d: set %v, err %v; want context.Canceled", n, s, err)
		}
		if c.calls != n {
			t.Errorf("cancelled at check %d: the load went on to check %d", n, c.calls)
		}
	}
}

// TestWatcherReloadCancelled cancels the watcher's context in the middle of
// a reload: Run must return without finishing the load, keep the old set,
// not count the interrupted reload as invalid, and leave no goroutine
// (goleak in TestMain).
func TestWatcherReloadCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "user.yaml")
	writeFile(t, path, ruleA)
	reg := prometheus.NewRegistry()
	w, err := NewWatcher(context.Background(), WatcherConfig{Files: []string{path}, Interval: time.Millisecond}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	var interrupted *cancelAfter
	var loadErr error
	loading := make(chan struct{})
	w.load = func(lctx context.Context, files ...File) (*Set, error) {
		c := &cancelAfter{Context: lctx, cancel: cancel, n: len(files) + 3} // among the default macros
		s, err := LoadContext(c, files...)
		once.Do(func() { interrupted, loadErr = c, err; close(loading) })
		return s, err
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	writeFile(t, path, ruleB)
	<-loading
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !errors.Is(loadErr, context.Canceled) || interrupted.calls != interrupted.n {
		t.Errorf("load returned %v after %d checks; want context.Canceled at check %d", loadErr, interrupted.calls, interrupted.n)
	}
	if names := w.Current().Names(); !strings.Contains(strings.Join(names, ","), "watch-a") {
		t.Errorf("current set %v lost watch-a", names)
	}
	if got := counterValue(t, w.metrics.reloads.WithLabelValues("invalid")); got != 0 {
		t.Errorf("invalid reloads = %v, want 0: an interrupted load says nothing about the files", got)
	}
}
