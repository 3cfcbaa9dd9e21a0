package alert

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// LabelNames are the finding labels that routes match and group on. tag is
// the finding's MITRE ATT&CK technique.
var LabelNames = []string{"detector", "severity", "cluster", "namespace", "user", "tag"}

// label reads one of LabelNames from f.
func label(f *pipeline.Finding, name string) string {
	switch name {
	case "detector":
		return f.Detector
	case "severity":
		return f.Severity.String()
	case "cluster":
		return f.Cluster
	case "namespace":
		return f.Namespace
	case "user":
		return f.Username
	case "tag":
		return f.MITRE
	}
	return ""
}

// MatchOp is a matcher's operator.
type MatchOp string

// Matcher operators: Alertmanager's four, and >= on severity.
const (
	MatchEqual     MatchOp = "="
	MatchNotEqual  MatchOp = "!="
	MatchRegexp    MatchOp = "=~"
	MatchNotRegexp MatchOp = "!~"
	MatchAtLeast   MatchOp = ">="
)

// Matcher tests one label of a finding.
type Matcher struct {
	Name  string
	Op    MatchOp
	Value string

	re  *regexp.Regexp
	sev pipeline.Severity
}

// ParseMatcher reads label=value, label!=value, label=~regex, label!~regex
// or severity>=name. The value may be double-quoted. Regexes are anchored at
// both ends, as in Alertmanager, so namespace=~kube-.* does not match
// "not-kube-system".
func ParseMatcher(s string) (Matcher, error) {
	i := strings.IndexAny(s, "=!~><")
	if i <= 0 {
		return Matcher{}, fmt.Errorf("matcher %q: want label, operator (=, !=, =~, !~, >=) and value", s)
	}
	m := Matcher{Name: strings.TrimSpace(s[:i])}
	rest := s[i:]
	for _, op := range []MatchOp{MatchRegexp, MatchNotRegexp, MatchNotEqual, MatchAtLeast, MatchEqual} {
		if strings.HasPrefix(rest, string(op)) {
			m.Op = op
			rest = rest[len(op):]
			break
		}
	}
	if m.Op == "" {
		return Matcher{}, fmt.Errorf("matcher %q: unknown operator: want =, !=, =~, !~ or >=", s)
	}
	known := false
	for _, n := range LabelNames {
		known = known || n == m.Name
	}
	if !known {
		return Matcher{}, fmt.Errorf("matcher %q: unknown label %q: want one of %s", s, m.Name, strings.Join(LabelNames, ", "))
	}
	m.Value = strings.TrimSpace(rest)
	if strings.HasPrefix(m.Value, `"`) {
		v, err := strconv.Unquote(m.Value)
		if err != nil {
			return Matcher{}, fmt.Errorf("matcher %q: bad quoted value: %w", s, err)
		}
		m.Value = v
	}
	switch m.Op {
	case MatchRegexp, MatchNotRegexp:
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return Matcher{}, fmt.Errorf("matcher %q: invalid regex: %w", s, err)
		}
		m.re = re
	case MatchAtLeast:
		if m.Name != "severity" {
			return Matcher{}, fmt.Errorf("matcher %q: >= applies only to severity", s)
		}
		fallthrough
	default:
		if m.Name == "severity" {
			sev, err := pipeline.ParseSeverity(m.Value)
			if err != nil {
				return Matcher{}, fmt.Errorf("matcher %q: %w", s, err)
			}
			m.sev = sev
		}
	}
	return m, nil
}

// Matches reports whether f satisfies m.
func (m Matcher) Matches(f *pipeline.Finding) bool {
	switch m.Op {
	case MatchAtLeast:
		return f.Severity >= m.sev
	case MatchEqual:
		if m.Name == "severity" {
			return f.Severity == m.sev
		}
		return label(f, m.Name) == m.Value
	case MatchNotEqual:
		if m.Name == "severity" {
			return f.Severity != m.sev
		}
		return label(f, m.Name) != m.Value
	case MatchRegexp:
		return m.re.MatchString(label(f, m.Name))
	case MatchNotRegexp:
		return !m.re.MatchString(label(f, m.Name))
	}
	return false
}

// String writes m back in the syntax ParseMatcher reads.
func (m Matcher) String() string { return m.Name + string(m.Op) + strconv.Quote(m.Value) }
