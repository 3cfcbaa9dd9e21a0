package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"

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
	var errs []error
	var all []*fileDefs
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("loading rules: %w", err)
		}
		defs, ferrs := parseFile(f)
		errs = append(errs, ferrs...)
		if defs != nil {
			all = append(all, defs)
		}
	}
	c := &compiler{
		cfgBool: newConfig(true),
		cfgAny:  newConfig(false),
		lists:   map[string]*mergedList{},
		macros:  map[string]*mergedMacro{},
		paths:   map[string]*bodyPath{},
	}
	rules := c.merge(all)
	for _, m := range sortedMacros(c.macros) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("compiling rule macros: %w", err)
		}
		c.checkMacro(m)
	}
	s := &Set{paths: c.paths}
	for _, mr := range rules {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("compiling rules: %w", err)
		}
		if c.full() {
			break // reported once; compiling more would only cost time
		}
		if r := c.compileRule(mr); r != nil {
			s.rules = append(s.rules, r)
		}
	}
	s.lists, s.macros = len(c.lists), len(c.macros)
	errs = append(errs, c.errs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.init()
	return s, nil
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
