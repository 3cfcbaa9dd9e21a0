package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	yaml "go.yaml.in/yaml/v3"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// exampleCluster tags example events; conditions on cluster see it.
const exampleCluster = "example"

type example struct {
	match bool
	json  []byte
	at    pos
	index int
}

// exampleEvent turns an example written in YAML into audit event JSON,
// filling what a rule author should not have to write: the audit stage
// (ResponseComplete, which every request may be judged at; see
// pipeline.Event.IsAuthoritative), the level and an auditID.
func exampleEvent(n *yaml.Node) ([]byte, error) {
	data, ok := exampleJSON(n)
	if !ok {
		var err error
		if data, err = exampleEventDecoded(n); err != nil {
			return nil, err
		}
	}
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, exampleCluster, data); err != nil {
		return nil, err
	}
	return data, nil
}

// exampleEventDecoded is exampleEvent's JSON by way of yaml's Decode and
// json.Marshal, for what exampleJSON does not take.
func exampleEventDecoded(n *yaml.Node) ([]byte, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("must be a mapping with string keys")
	}
	if _, ok := m["level"]; !ok {
		m["level"] = string(auditv1.LevelRequestResponse)
	}
	if _, ok := m["auditID"]; !ok {
		m["auditID"] = fmt.Sprintf("example-%d-%d", n.Line, n.Column)
	}
	if _, ok := m["stage"]; !ok {
		m["stage"] = string(auditv1.StageResponseComplete)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("converting to JSON: %w", err)
	}
	return data, nil
}

// exampleJSON writes the JSON exampleEventDecoded makes of n, byte for byte
// (keys sorted, HTML escaped, as json.Marshal writes a map), straight from
// the node tree: decoding every example into maps and marshalling them was
// a fifth of loading the default pack, which every detect scan pays before
// it judges an event. It takes only mappings with plain string keys,
// sequences, strings, decimal integers, true, false and null, and reports
// false for anything else (aliases, merge keys, floats, other tags,
// duplicate keys), which exampleEventDecoded then converts or rejects.
func exampleJSON(n *yaml.Node) ([]byte, bool) {
	if n.Kind != yaml.MappingNode || n.Tag != "!!map" {
		return nil, false
	}
	extra := map[string]string{
		"level":   string(auditv1.LevelRequestResponse),
		"auditID": fmt.Sprintf("example-%d-%d", n.Line, n.Column),
		"stage":   string(auditv1.StageResponseComplete),
	}
	return appendExampleMapping(nil, n, extra)
}

func appendExampleNode(dst []byte, n *yaml.Node) ([]byte, bool) {
	switch {
	case n.Kind == yaml.MappingNode && n.Tag == "!!map":
		return appendExampleMapping(dst, n, nil)
	case n.Kind == yaml.SequenceNode && n.Tag == "!!seq":
		dst = append(dst, '[')
		for i, c := range n.Content {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendExampleNode(dst, c); !ok {
				return nil, false
			}
		}
		return append(dst, ']'), true
	case n.Kind != yaml.ScalarNode:
		return nil, false
	}
	switch n.Tag {
	case "!!str":
		return pipeline.AppendJSONString(dst, n.Value, true), true
	case "!!null":
		return append(dst, "null"...), true
	case "!!bool":
		if n.Value == "true" || n.Value == "false" {
			return append(dst, n.Value...), true
		}
	case "!!int":
		if decimalInt(n.Value) {
			return append(dst, n.Value...), true
		}
	}
	return nil, false
}

// appendExampleMapping writes mapping n with extra's members for the keys
// n lacks, sorted by key.
func appendExampleMapping(dst []byte, n *yaml.Node, extra map[string]string) ([]byte, bool) {
	type member struct {
		key   string
		value *yaml.Node // nil: extra's
	}
	members := make([]member, 0, len(n.Content)/2+len(extra))
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" || k.Value == "<<" {
			return nil, false
		}
		members = append(members, member{k.Value, n.Content[i+1]})
	}
	for k := range extra {
		if !slices.ContainsFunc(members, func(m member) bool { return m.key == k }) {
			members = append(members, member{key: k})
		}
	}
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			if members[i-1].key == m.key {
				return nil, false // yaml's Decode rejects it
			}
			dst = append(dst, ',')
		}
		dst = pipeline.AppendJSONString(dst, m.key, true)
		dst = append(dst, ':')
		if m.value == nil {
			dst = pipeline.AppendJSONString(dst, extra[m.key], true)
			continue
		}
		var ok bool
		if dst, ok = appendExampleNode(dst, m.value); !ok {
			return nil, false
		}
	}
	return append(dst, '}'), true
}

// decimalInt reports an integer written plainly in decimal that fits an
// int64, which yaml decodes to the number it reads as.
func decimalInt(s string) bool {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || len(digits) > 18 || (digits[0] == '0' && len(digits) > 1) || s == "-0" {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// ExampleResult is the outcome of one example of one rule.
type ExampleResult struct {
	Rule string
	// File, Line and Column locate the example in its rule file.
	File         string
	Line, Column int
	// Match is true for a match example (the rule must fire), false for
	// a nomatch one (it must not).
	Match bool
	// Index counts the rule's match (or nomatch) examples from 0.
	Index int
	Pass  bool
	// Skipped is set for examples of disabled rules, which are not run.
	Skipped bool
	// Reason says what happened: the finding's summary, or why the rule
	// did or did not fire.
	Reason string
}

func (r ExampleResult) String() string {
	kind := "nomatch"
	if r.Match {
		kind = "match"
	}
	verdict := "PASS"
	switch {
	case r.Skipped:
		verdict = "SKIP"
	case !r.Pass:
		verdict = "FAIL"
	}
	return fmt.Sprintf("%s %s %s[%d] (%s:%d:%d): %s", verdict, r.Rule, kind, r.Index, r.File, r.Line, r.Column, r.Reason)
}

// RunExamples runs every example of every rule in s through s.Detect, as
// the pipeline would, and reports each: a match example must make its rule
// fire, a nomatch example must not.
func RunExamples(s *Set) []ExampleResult {
	var out []ExampleResult
	for _, r := range s.rules {
		for _, ex := range r.examples {
			res := ExampleResult{Rule: r.name, File: ex.at.file.name, Line: ex.at.line, Column: ex.at.col, Match: ex.match, Index: ex.index}
			if !r.enabled {
				res.Skipped, res.Pass, res.Reason = true, true, "rule is disabled"
				out = append(out, res)
				continue
			}
			res.Pass, res.Reason = s.runExample(r, ex)
			out = append(out, res)
		}
	}
	return out
}

func (s *Set) runExample(r *rule, ex example) (bool, string) {
	if r.terms != nil {
		return s.runTermExample(r, ex)
	}
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, exampleCluster, ex.json); err != nil {
		return false, "decoding example: " + err.Error()
	}
	var fired *pipeline.Finding
	findings := s.Detect(&ev, nil)
	for i := range findings {
		if findings[i].Detector == r.id {
			fired = &findings[i]
		}
	}
	if fired != nil {
		if ex.match {
			return true, "fired: " + fired.Summary
		}
		return false, "fired, but must not: " + fired.Summary
	}
	why := s.explain(r, &ev)
	if ex.match {
		return false, "did not fire: " + why
	}
	return true, "did not fire: " + why
}

// explain says why r did not fire on ev.
func (s *Set) explain(r *rule, ev *pipeline.Event) string {
	if !ev.IsAuthoritative() {
		return fmt.Sprintf("stage %s is not the one the request is judged at", ev.Stage)
	}
	st := s.pool.Get().(*state)
	defer func() { st.release(); s.pool.Put(st) }()
	st.reset(ev, true)
	fired, suppressedBy, err := s.match(st, r)
	switch {
	case err != nil:
		return "evaluation error: " + exprMessage(err)
	case suppressedBy != "":
		return "suppressed by exception " + suppressedBy
	case fired:
		return "the condition holds, but the index skipped the rule (an engine bug)"
	}
	return "the condition is false"
}
