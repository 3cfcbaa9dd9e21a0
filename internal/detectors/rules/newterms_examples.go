package rules

import (
	"fmt"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// exampleStart is when a first-seen rule's baseline examples happen, one a
// minute, unless they carry a stageTimestamp.
var exampleStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// runTermExample judges one example of a first-seen rule: the rule's
// baseline examples are seen first (by a fresh Tracker, the rule's
// learning period waived), then the example, which must be reported for a
// match and not for a nomatch. Examples without a stageTimestamp are
// placed after the baseline and the rule's key_learning, so that they
// test what is new rather than how long learning lasts.
func (s *Set) runTermExample(r *rule, ex example) (bool, string) {
	tr, err := firstseen.New(firstseen.Config{})
	if err != nil {
		return false, err.Error()
	}
	p := r.terms.policy
	p.Learning = 0
	judge := func(data []byte, at time.Time) (*pipeline.Event, []TermMatch, firstseen.Verdict, error) {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, exampleCluster, data); err != nil {
			return nil, nil, firstseen.Verdict{}, err
		}
		if ev.StageTimestamp.IsZero() {
			ev.StageTimestamp.Time = at
		}
		var mine []TermMatch
		var v firstseen.Verdict
		for _, m := range s.Terms(&ev, nil) {
			if m.r == r {
				mine = append(mine, m)
				v = tr.Observe(m.Rule, ev.Cluster, m.Key, m.Term, eventTime(&ev), p, nil)
			}
		}
		return &ev, mine, v, nil
	}
	at := exampleStart
	for i, b := range r.baseline {
		if _, _, _, err := judge(b, at); err != nil {
			return false, fmt.Sprintf("decoding baseline example %d: %v", i, err)
		}
		at = at.Add(time.Minute)
	}
	ev, mine, v, err := judge(ex.json, at.Add(p.KeyLearning+time.Hour))
	if err != nil {
		return false, "decoding example: " + err.Error()
	}
	var why string
	switch {
	case len(mine) == 0:
		why = "did not fire: " + s.explain(r, ev)
		if ev.IsAuthoritative() && why == "did not fire: the condition holds, but the index skipped the rule (an engine bug)" {
			why = "did not fire: the condition holds, but the key or term is empty"
		}
	case !v.New:
		why = fmt.Sprintf("did not fire: term %q is in the baseline of %s", mine[0].Term, mine[0].Key)
	case !v.Report:
		why = fmt.Sprintf("did not fire: term %q is new, but key %s is younger than key_learning %s", mine[0].Term, mine[0].Key, p.KeyLearning)
	default:
		f := mine[0].finding(ev, v)
		if ex.match {
			return true, "fired: " + f.Summary
		}
		return false, "fired, but must not: " + f.Summary
	}
	return !ex.match, why
}
