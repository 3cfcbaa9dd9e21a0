package rules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"

	"github.com/expr-lang/expr/builtin"
)

// Load is LoadContext without a deadline, for tests and tools that cannot
// be interrupted anyway.
func Load(files ...File) (*Set, error) {
	return LoadContext(context.Background(), files...)
}

// LoadContext compiles rule files into a Set. Files are read in order and
// later files override earlier ones, so the default pack goes first (see
// DefaultFiles). Every problem is reported, joined with errors.Join, each
// an *Error naming file, line and column; the Set is nil then. ctx is
// checked between files, macros and rules, each of which takes at most
// milliseconds (see MaxExpandedNodes), so a cancelled load returns
// promptly with an error wrapping ctx.Err() and nothing else.
func LoadContext(ctx context.Context, files ...File) (*Set, error) {
	return loadWithCache(ctx, newParseCache(), true, files...)
}

// loadWithCache is LoadContext with the given parse cache (nil: parse every text at
// every use, as a test compares), and, unless shareValues is false (a test
// compares that too), with the conditions sharing their values (memo.go).
func loadWithCache(ctx context.Context, cache *parseCache, shareValues bool, files ...File) (*Set, error) {
	workers := min(runtime.GOMAXPROCS(0), loadWorkers)
	var errs []error
	parsed := make([]*fileDefs, len(files))
	fileErrs := make([][]error, len(files))
	if err := forEach(ctx, workers, len(files), func(_, i int) {
		parsed[i], fileErrs[i] = parseFile(files[i])
	}); err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	var all []*fileDefs
	for i, defs := range parsed {
		errs = append(errs, fileErrs[i]...)
		if defs != nil {
			all = append(all, defs)
		}
	}
	c := newCompiler()
	c.parsed = cache
	if !shareValues {
		c.memo = nil
	}
	rules := c.merge(all)
	for _, m := range sortedMacros(c.macros) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("compiling rule macros: %w", err)
		}
		c.checkMacro(m)
	}
	s := &Set{paths: c.paths}
	compiled, err := c.compileRules(ctx, workers, rules)
	if err != nil {
		return nil, fmt.Errorf("compiling rules: %w", err)
	}
	s.rules = compiled
	s.lists, s.macros = len(c.lists), len(c.macros)
	if c.memo != nil {
		s.memoSlots = c.memo.slots
	}
	errs = append(errs, c.errs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.init()
	return s, nil
}

// loadWorkers bounds the goroutines a load parses files and compiles rules
// on. Loading the default pack is most of what a short `detect scan` costs
// (about 55 ms of CPU before the first event is judged); on two cores two
// goroutines take its wall time from about 60 ms to about 35.
const loadWorkers = 4

func newCompiler() *compiler {
	return &compiler{
		cfgBool: newConfig(true),
		cfgAny:  newConfig(false),
		lists:   map[string]*mergedList{},
		macros:  map[string]*mergedMacro{},
		paths:   map[string]*bodyPath{},
		memo:    &memoTable{slots: map[string]int{}},
	}
}

// compileRules compiles rules in order, on up to workers goroutines. Each
// goroutine compiles with a fork of c (its own expr configurations, whose
// type caches are not safe to share, its own errors and budgets), reading
// the lists and macros c checked; the results are joined in rule order, so
// the set and its errors are those of compiling one rule after another.
// The set's budgets (MaxSetNodes, MaxExampleBytes) are the exception: a set
// that exceeds one is compiled again in order, which reports the limit at
// the rule that crossed it and compiles no rule after it, as it always did.
// ctx is checked before each rule.
func (c *compiler) compileRules(ctx context.Context, workers int, rules []*mergedRule) ([]*rule, error) {
	if workers <= 1 || len(rules) < 2 {
		return c.compileInOrder(ctx, rules)
	}
	// Every macro a rule can reach is sized by checkMacro already; sizing
	// here too keeps the forks' reads of the memo from ever writing it.
	for _, m := range c.macros {
		if !m.broken {
			c.macroSize(m)
		}
	}
	type result struct {
		rule                *rule
		errs                []error
		paths               map[string]*bodyPath
		nodes, exampleBytes int
	}
	results := make([]result, len(rules))
	forks := make([]*compiler, workers)
	err := forEach(ctx, workers, len(rules), func(w, i int) {
		f := forks[w]
		if f == nil {
			f = newCompiler()
			f.lists, f.macros, f.parsed, f.memo = c.lists, c.macros, c.parsed, c.memo
			forks[w] = f
		}
		f.errs, f.total, f.exampleBytes = nil, 0, 0
		clear(f.paths)
		r := f.compileRule(rules[i])
		res := result{rule: r, errs: f.errs, nodes: f.total, exampleBytes: f.exampleBytes}
		if len(f.paths) > 0 {
			res.paths = maps.Clone(f.paths)
		}
		results[i] = res
	})
	if err != nil {
		return nil, err
	}
	nodes, exampleBytes := c.total, c.exampleBytes
	for _, res := range results {
		nodes += res.nodes
		exampleBytes += res.exampleBytes
		if nodes > MaxSetNodes || exampleBytes > MaxExampleBytes {
			return c.compileInOrder(ctx, rules)
		}
	}
	var out []*rule
	for _, res := range results {
		c.errs = append(c.errs, res.errs...)
		for text, p := range res.paths {
			if c.paths[text] == nil {
				c.paths[text] = p
			}
		}
		if res.rule != nil {
			out = append(out, res.rule)
		}
	}
	c.total, c.exampleBytes = nodes, exampleBytes
	return out, nil
}

// compileInOrder compiles rules one after another on c.
func (c *compiler) compileInOrder(ctx context.Context, rules []*mergedRule) ([]*rule, error) {
	var out []*rule
	for _, mr := range rules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.full() {
			break // reported once; compiling more would only cost time
		}
		if r := c.compileRule(mr); r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// forEach calls do(worker, i) for every i in [0, n) on up to workers
// goroutines (worker numbers them from 0), handing out i in order and
// checking ctx before each: once ctx is done it hands out no more, waits
// for the calls under way and returns ctx's error. One worker, or one
// item, runs in the calling goroutine.
func forEach(ctx context.Context, workers, n int, do func(worker, i int)) error {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			do(0, i)
		}
		return nil
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range next {
				do(w, i)
			}
		})
	}
	var err error
	for i := range n {
		if err = ctx.Err(); err != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return err
}

func sortedMacros(m map[string]*mergedMacro) []*mergedMacro {
	out := make([]*mergedMacro, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	// Definition order, so errors come out in file order.
	slices.SortFunc(out, func(a, b *mergedMacro) int { return a.seq - b.seq })
	return out
}

// nameClash reports why name cannot be a list or macro name, or "".
func nameClash(name string) string {
	switch {
	case envFields[name]:
		return "is an event field"
	case reserved[name]:
		return "is a keyword"
	}
	if _, ok := builtin.Index[name]; ok {
		return "is a builtin function"
	}
	return ""
}

// merge applies the files' definitions in order, resolving overrides, and
// returns the rules in the order they were first defined.
func (c *compiler) merge(all []*fileDefs) []*mergedRule {
	rules := map[string]*mergedRule{}
	var order []*mergedRule
	for _, defs := range all {
		for _, l := range defs.lists {
			if why := nameClash(l.name); why != "" {
				c.errorAt(l.at, "list name %q %s", l.name, why)
				continue
			}
			prev := c.lists[l.name]
			switch {
			case c.macros[l.name] != nil:
				c.errorAt(l.at, "list %q has the name of a macro defined at %s", l.name, c.macros[l.name].at)
			case l.override == overrideNone && prev != nil:
				c.errorAt(l.at, "list %q is already defined at %s: set override: append or replace", l.name, prev.at)
			case l.override != overrideNone && prev == nil:
				c.errorAt(l.at, "list %q: override of a list that is not defined in an earlier file", l.name)
			case l.override == overrideAppend:
				prev.items = append(prev.items, l.items...)
			default:
				c.lists[l.name] = &mergedList{name: l.name, items: l.items, at: l.at}
			}
		}
		for _, m := range defs.macros {
			if why := nameClash(m.name); why != "" {
				c.errorAt(m.at, "macro name %q %s", m.name, why)
				continue
			}
			prev := c.macros[m.name]
			switch {
			case c.lists[m.name] != nil:
				c.errorAt(m.at, "macro %q has the name of a list defined at %s", m.name, c.lists[m.name].at)
			case m.override == overrideNone && prev != nil:
				c.errorAt(m.at, "macro %q is already defined at %s: set override: append or replace", m.name, prev.at)
			case m.override != overrideNone && prev == nil:
				c.errorAt(m.at, "macro %q: override of a macro that is not defined in an earlier file", m.name)
			case m.override == overrideAppend:
				prev.parts = append(prev.parts, m.cond)
			case m.override == overrideReplace:
				prev.parts = []condPart{m.cond}
			default:
				c.macros[m.name] = &mergedMacro{name: m.name, parts: []condPart{m.cond}, at: m.at, seq: len(c.macros)}
			}
		}
		for _, r := range defs.rules {
			prev := rules[r.name]
			switch {
			case r.override == overrideNone && prev != nil:
				c.errorAt(r.at, "rule %q is already defined at %s: set override: append or replace", r.name, prev.def.at)
			case r.override != overrideNone && prev == nil:
				c.errorAt(r.at, "rule %q: override of a rule that is not defined in an earlier file", r.name)
			case r.override != overrideNone:
				c.overrideRule(prev, r)
			default:
				mr := &mergedRule{def: r, order: len(order)}
				if r.cond != nil {
					mr.parts = []condPart{*r.cond}
				}
				rules[r.name] = mr
				order = append(order, mr)
			}
		}
	}
	return order
}

// overrideRule merges r into prev. Both modes replace the scalar keys r
// gives; append ANDs the condition and adds exceptions, tags, defers_to and
// examples, replace swaps them.
func (c *compiler) overrideRule(prev *mergedRule, r ruleDef) {
	d := &prev.def
	if r.description != nil {
		d.description = r.description
	}
	if r.severity != nil {
		d.severity, d.severityAt = r.severity, r.severityAt
	}
	if r.mitre != nil {
		d.mitre = r.mitre
	}
	if r.output != nil {
		d.output = r.output
	}
	if r.enabled != nil {
		d.enabled = r.enabled
	}
	if r.newTerms != nil {
		d.newTerms = mergeTerms(d.newTerms, r.newTerms)
	}
	if r.override == overrideReplace {
		if r.cond != nil {
			prev.parts = []condPart{*r.cond}
		}
		if r.hasTags {
			d.tags = r.tags
		}
		if r.hasDefersTo {
			d.defersTo = r.defersTo
		}
		if r.exceptions != nil {
			d.exceptions = r.exceptions
		}
		if r.examples != nil {
			d.examples = r.examples
		}
		return
	}
	if r.cond != nil {
		prev.parts = append(prev.parts, *r.cond)
	}
	for _, t := range r.tags {
		if !slices.Contains(d.tags, t) {
			d.tags = append(d.tags, t)
		}
	}
	for _, id := range r.defersTo {
		if !slices.Contains(d.defersTo, id) {
			d.defersTo = append(slices.Clip(d.defersTo), id)
		}
	}
	d.examples = append(d.examples, r.examples...)
	for _, ex := range r.exceptions {
		i := slices.IndexFunc(d.exceptions, func(e exceptionDef) bool { return e.name == ex.name })
		if i < 0 {
			d.exceptions = append(d.exceptions, ex)
			continue
		}
		// Same name: more values for the same fields, as in Falco.
		old := &d.exceptions[i]
		if !slices.Equal(old.fields, ex.fields) {
			c.errorAt(ex.at, "exception %q: appending with fields %v, but it has fields %v (defined at %s)", ex.name, ex.fields, old.fields, old.at)
			continue
		}
		merged := *old
		merged.values = append(slices.Clip(old.values), ex.values...)
		d.exceptions[i] = merged
	}
}

func (p pos) String() string {
	if p.file == nil {
		return "?"
	}
	return fmt.Sprintf("%s:%d:%d", p.file.name, p.line, p.col)
}
