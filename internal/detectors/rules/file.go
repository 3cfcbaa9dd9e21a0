package rules

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// File is one rule file: its name (used in error positions) and content.
type File struct {
	Name string
	Data []byte
}

// ReadFiles reads rule files from disk, in the order given.
func ReadFiles(paths ...string) ([]File, error) {
	files := make([]File, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading rule file: %w", err)
		}
		files = append(files, File{Name: p, Data: data})
	}
	return files, nil
}

// ReadFS reads the files of fsys matching pattern (fs.Glob syntax), sorted
// by name so that the load order is stable.
func ReadFS(fsys fs.FS, pattern string) ([]File, error) {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, fmt.Errorf("listing rule files: %w", err)
	}
	sort.Strings(names)
	files := make([]File, 0, len(names))
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("reading rule file: %w", err)
		}
		files = append(files, File{Name: n, Data: data})
	}
	return files, nil
}

// Error is one problem in a rule file, at a 1-based line and column.
type Error struct {
	File    string
	Line    int
	Column  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Message)
}

// Errors lists the *Error values in err, which Load joins with errors.Join.
// Anything else in err is returned with line 0.
func Errors(err error) []*Error {
	if err == nil {
		return nil
	}
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var e *Error
		if errors.As(err, &e) {
			out = append(out, e)
			return
		}
		out = append(out, &Error{Message: err.Error()})
	}
	walk(err)
	return out
}

// pos is a position in a rule file.
type pos struct {
	file      *source
	line, col int
}

// source is a rule file being loaded: its name and lines, kept to map an
// expression's error position back into the YAML text.
type source struct {
	name  string
	lines []string
}

// Override modes for a definition that redefines one from an earlier file.
const (
	overrideNone    = ""
	overrideAppend  = "append"
	overrideReplace = "replace"
)

// listDef, macroDef and ruleDef are definitions as read from one file,
// before overrides are merged.
type listDef struct {
	name     string
	items    []*yaml.Node
	override string
	at       pos
}

// condPart is one condition as written in one file. A rule appended to in a
// later file has several parts (ANDed); a macro several parts (ORed).
type condPart struct {
	text string
	node *yaml.Node
	src  *source
}

type macroDef struct {
	name     string
	cond     condPart
	override string
	at       pos
}

type exceptionDef struct {
	name   string
	fields []string
	fieldN []*yaml.Node
	values [][]*yaml.Node
	at     pos
}

type exampleDef struct {
	match    bool
	baseline bool // judged before the others by a first-seen rule
	node     *yaml.Node
	at       pos
}

// ruleDef records which keys were given, so that an override replaces only
// those.
type ruleDef struct {
	name     string
	override string
	at       pos

	description, severity, mitre *string
	severityAt                   pos
	output                       *condPart
	tags                         []string
	hasTags                      bool
	defersTo                     []string
	hasDefersTo                  bool
	cond                         *condPart
	enabled                      *bool
	exceptions                   []exceptionDef
	examples                     []exampleDef
	newTerms                     *newTermsDef // a first-seen rule; see newterms.go
}

type fileDefs struct {
	lists  []listDef
	macros []macroDef
	rules  []ruleDef
}

var (
	identRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	ruleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// detectorIDRE is a built-in detector's id or another rule's
	// ("rule:NAME"), as named in defers_to.
	detectorIDRE = regexp.MustCompile(`^(rule:)?[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	yamlLineRE   = regexp.MustCompile(`line (\d+)`)
)

// decoder turns one file's YAML node tree into definitions, strictly:
// unknown keys, wrong kinds and duplicates are errors with positions.
type decoder struct {
	src  *source
	errs []error
}

func (d *decoder) at(n *yaml.Node) pos { return pos{file: d.src, line: n.Line, col: n.Column} }

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.src.name, Line: n.Line, Column: n.Column, Message: fmt.Sprintf(format, args...)})
}

func parseFile(f File) (*fileDefs, []error) {
	d := &decoder{src: &source{name: f.Name, lines: strings.Split(string(f.Data), "\n")}}
	defs := &fileDefs{}
	dec := yaml.NewDecoder(strings.NewReader(string(f.Data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return defs, nil // an empty file defines nothing
		}
		return nil, []error{d.yamlError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, []error{d.yamlError(err)}
		}
		return nil, []error{&Error{File: f.Name, Line: line, Column: 1, Message: "a rule file holds one YAML document"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return defs, nil
	}
	d.mapping(root, "rule file", func(key string, k, v *yaml.Node) {
		switch key {
		case "lists":
			d.sequence(v, key, func(n *yaml.Node) { d.list(n, defs) })
		case "macros":
			d.sequence(v, key, func(n *yaml.Node) { d.macro(n, defs) })
		case "rules":
			d.sequence(v, key, func(n *yaml.Node) { d.rule(n, defs) })
		default:
			d.errorf(k, "unknown key %q: want lists, macros or rules", key)
		}
	})
	return defs, d.errs
}

// yamlError positions a YAML syntax error, whose message names only a line.
func (d *decoder) yamlError(err error) error {
	line := 1
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return &Error{File: d.src.name, Line: line, Column: 1, Message: "parsing YAML: " + msg}
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func (d *decoder) mapping(n *yaml.Node, what string, fn func(key string, k, v *yaml.Node)) bool {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping", what)
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%s: keys must be strings", what)
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "%s: duplicate key %q", what, k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k.Value, k, deref(v))
	}
	return true
}

func (d *decoder) sequence(n *yaml.Node, what string, fn func(*yaml.Node)) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list", what)
		return
	}
	for _, c := range n.Content {
		fn(deref(c))
	}
}

func (d *decoder) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

func (d *decoder) strList(n *yaml.Node, what string) ([]string, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}, true // a single value stands for a list of one
	}
	var out []string
	ok := true
	d.sequence(n, what, func(c *yaml.Node) {
		s, good := d.str(c, what+" item")
		ok = ok && good
		out = append(out, s)
	})
	return out, ok && (n.Kind == yaml.SequenceNode || n.Tag == "!!null")
}

func (d *decoder) override(n *yaml.Node, allowed ...string) string {
	s, ok := d.str(n, "override")
	if !ok {
		return overrideNone
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	d.errorf(n, "override must be one of %s, got %q", strings.Join(allowed, ", "), s)
	return overrideNone
}

func (d *decoder) name(n *yaml.Node, what string, re *regexp.Regexp) (string, bool) {
	s, ok := d.str(n, what+" name")
	if !ok {
		return "", false
	}
	if !re.MatchString(s) {
		d.errorf(n, "invalid %s name %q: want letters, digits and _%s", what, s, map[bool]string{true: "", false: " . -"}[re == identRE])
		return "", false
	}
	return s, true
}

func (d *decoder) list(n *yaml.Node, defs *fileDefs) {
	def := listDef{at: d.at(n)}
	var named, hasItems bool
	d.mapping(n, "list", func(key string, k, v *yaml.Node) {
		switch key {
		case "list":
			def.name, named = d.name(v, "list", identRE)
		case "items":
			hasItems = true
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				return
			}
			if v.Kind != yaml.SequenceNode {
				d.errorf(v, "items must be a list")
				return
			}
			for _, c := range v.Content {
				c = deref(c)
				if c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
					d.errorf(c, "list items must be strings, numbers or booleans")
					continue
				}
				def.items = append(def.items, c)
			}
		case "override":
			def.override = d.override(v, overrideAppend, overrideReplace)
		default:
			d.errorf(k, "unknown key %q in list: want list, items, override", key)
		}
	})
	if !named {
		if n.Kind == yaml.MappingNode {
			d.errorf(n, "list without a name: add list: NAME")
		}
		return
	}
	if !hasItems {
		d.errorf(n, "list %q has no items", def.name)
	}
	defs.lists = append(defs.lists, def)
}

func (d *decoder) macro(n *yaml.Node, defs *fileDefs) {
	def := macroDef{at: d.at(n)}
	var named, hasCond bool
	d.mapping(n, "macro", func(key string, k, v *yaml.Node) {
		switch key {
		case "macro":
			def.name, named = d.name(v, "macro", identRE)
		case "condition":
			if s, ok := d.str(v, "condition"); ok {
				def.cond, hasCond = condPart{text: s, node: v, src: d.src}, true
			}
		case "override":
			def.override = d.override(v, overrideAppend, overrideReplace)
		default:
			d.errorf(k, "unknown key %q in macro: want macro, condition, override", key)
		}
	})
	if !named {
		if n.Kind == yaml.MappingNode {
			d.errorf(n, "macro without a name: add macro: NAME")
		}
		return
	}
	if !hasCond {
		d.errorf(n, "macro %q has no condition", def.name)
		return
	}
	defs.macros = append(defs.macros, def)
}

func (d *decoder) rule(n *yaml.Node, defs *fileDefs) {
	def := ruleDef{at: d.at(n)}
	var named bool
	strp := func(v *yaml.Node, what string) *string {
		if s, ok := d.str(v, what); ok {
			return &s
		}
		return nil
	}
	d.mapping(n, "rule", func(key string, k, v *yaml.Node) {
		switch key {
		case "rule":
			def.name, named = d.name(v, "rule", ruleNameRE)
		case "description":
			def.description = strp(v, key)
		case "severity":
			def.severity, def.severityAt = strp(v, key), d.at(v)
		case "mitre":
			def.mitre = strp(v, key)
		case "output":
			if s, ok := d.str(v, key); ok {
				def.output = &condPart{text: s, node: v, src: d.src}
			}
		case "tags":
			def.tags, def.hasTags = d.strList(v, key)
		case "defers_to":
			def.defersTo, def.hasDefersTo = d.strList(v, key)
			for i, id := range def.defersTo {
				if !detectorIDRE.MatchString(id) {
					at := v
					if v.Kind == yaml.SequenceNode && i < len(v.Content) {
						at = v.Content[i]
					}
					d.errorf(at, "defers_to[%d] %q is not a detector id such as admission-policy-change or rule:NAME", i, id)
				}
			}
		case "condition":
			if s, ok := d.str(v, key); ok {
				def.cond = &condPart{text: s, node: v, src: d.src}
			}
		case "enabled":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
				d.errorf(v, "enabled must be true or false")
				return
			}
			b := v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
			def.enabled = &b
		case "override":
			def.override = d.override(v, overrideAppend, overrideReplace)
		case "exceptions":
			d.sequence(v, key, func(c *yaml.Node) { d.exception(c, &def) })
		case "examples":
			d.examples(v, &def)
		case "new_terms":
			def.newTerms = d.newTerms(v)
		default:
			d.errorf(k, "unknown key %q in rule: want rule, description, severity, tags, mitre, condition, output, enabled, defers_to, exceptions, examples, new_terms, override", key)
		}
	})
	if !named {
		if n.Kind == yaml.MappingNode {
			d.errorf(n, "rule without a name: add rule: NAME")
		}
		return
	}
	defs.rules = append(defs.rules, def)
}

func (d *decoder) exception(n *yaml.Node, def *ruleDef) {
	ex := exceptionDef{at: d.at(n)}
	var fieldsNode, valuesNode *yaml.Node
	d.mapping(n, "exception", func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			ex.name, _ = d.str(v, "exception name")
		case "fields":
			fieldsNode = v
			d.sequence(v, "fields", func(c *yaml.Node) {
				if s, ok := d.str(c, "field"); ok {
					ex.fields = append(ex.fields, s)
					ex.fieldN = append(ex.fieldN, c)
				}
			})
		case "values":
			valuesNode = v
			d.sequence(v, "values", func(c *yaml.Node) {
				if c.Kind != yaml.SequenceNode {
					d.errorf(c, "each exception value must be a list with one item per field")
					return
				}
				var tuple []*yaml.Node
				for _, x := range c.Content {
					x = deref(x)
					if x.Kind != yaml.ScalarNode {
						d.errorf(x, "exception values must be strings, numbers or booleans")
						return
					}
					tuple = append(tuple, x)
				}
				ex.values = append(ex.values, tuple)
			})
		default:
			d.errorf(k, "unknown key %q in exception: want name, fields, values", key)
		}
	})
	if n.Kind != yaml.MappingNode {
		return
	}
	switch {
	case ex.name == "":
		d.errorf(n, "exception without a name")
	case fieldsNode == nil || len(ex.fields) == 0:
		d.errorf(n, "exception %q has no fields", ex.name)
	case valuesNode == nil:
		d.errorf(n, "exception %q has no values", ex.name)
	default:
		ok := true
		for i, t := range ex.values {
			if len(t) != len(ex.fields) {
				at := n
				if len(t) > 0 {
					at = t[0]
				}
				d.errorf(at, "exception %q: value %d has %d items for %d fields", ex.name, i+1, len(t), len(ex.fields))
				ok = false
			}
		}
		if ok {
			def.exceptions = append(def.exceptions, ex)
		}
	}
}

func (d *decoder) examples(n *yaml.Node, def *ruleDef) {
	d.mapping(n, "examples", func(key string, k, v *yaml.Node) {
		var match, baseline bool
		switch key {
		case "match":
			match = true
		case "nomatch":
		case "baseline":
			baseline = true
		default:
			d.errorf(k, "unknown key %q in examples: want match, nomatch, baseline", key)
			return
		}
		d.sequence(v, key, func(c *yaml.Node) {
			if c.Kind != yaml.MappingNode {
				d.errorf(c, "an example must be an audit event (a mapping)")
				return
			}
			def.examples = append(def.examples, exampleDef{match: match, baseline: baseline, node: c, at: d.at(c)})
		})
	})
}
