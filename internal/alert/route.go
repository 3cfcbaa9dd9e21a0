package alert

import (
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// route is a compiled RouteConfig with every inherited option resolved.
type route struct {
	id             string // position in the tree, e.g. "0.2.1": names its groups
	receiver       string
	matchers       []Matcher
	cont           bool
	groupBy        []string
	groupWait      time.Duration
	groupInterval  time.Duration
	repeatInterval time.Duration
	children       []*route
}

// compileRoute resolves rc under parent (nil for the root). rc was
// validated, so its matchers parse.
func compileRoute(rc *RouteConfig, parent *route, id string) *route {
	r := &route{id: id, cont: rc.Continue}
	if parent != nil {
		// Children inherit every option they leave unset, as in
		// Alertmanager's dispatch/route.go, so a child that only narrows
		// the matchers keeps the parent's receiver and timing.
		r.receiver, r.groupBy = parent.receiver, parent.groupBy
		r.groupWait, r.groupInterval, r.repeatInterval = parent.groupWait, parent.groupInterval, parent.repeatInterval
	}
	if rc.Receiver != "" {
		r.receiver = rc.Receiver
	}
	if rc.GroupBy != nil {
		r.groupBy = rc.GroupBy
	}
	if rc.GroupWait != nil {
		r.groupWait = time.Duration(*rc.GroupWait)
	}
	if rc.GroupInterval != nil {
		r.groupInterval = time.Duration(*rc.GroupInterval)
	}
	if rc.RepeatInterval != nil {
		r.repeatInterval = time.Duration(*rc.RepeatInterval)
	}
	for _, s := range rc.Matchers {
		m, _ := ParseMatcher(s)
		r.matchers = append(r.matchers, m)
	}
	for i, c := range rc.Routes {
		r.children = append(r.children, compileRoute(c, r, id+"."+strconv.Itoa(i)))
	}
	return r
}

// match appends the routes that take f, in tree order. As in Alertmanager a
// route that matches hands f to its first matching child (and the next
// ones while a matching child has continue set); it keeps f itself only
// when no child matched.
func (r *route) match(f *pipeline.Finding, out []*route) []*route {
	for _, m := range r.matchers {
		if !m.Matches(f) {
			return out
		}
	}
	n := len(out)
	for _, c := range r.children {
		before := len(out)
		out = c.match(f, out)
		if len(out) > before && !c.cont {
			break
		}
	}
	if len(out) == n {
		out = append(out, r)
	}
	return out
}

// maxRepeat is the longest cooldown in the tree: how long the send log
// must remember a key.
func (r *route) maxRepeat() time.Duration {
	d := r.repeatInterval
	for _, c := range r.children {
		d = max(d, c.maxRepeat())
	}
	return d
}
