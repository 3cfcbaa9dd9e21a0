package rules

import (
	"encoding/json"
	"errors"
	"fmt"

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
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, exampleCluster, data); err != nil {
		return nil, err
	}
	return data, nil
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
