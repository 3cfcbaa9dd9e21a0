package alert

import (
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Group is one message to one receiver: the findings one route collected
// during a group_wait or group_interval, folded by cooldown key.
type Group struct {
	// Receiver is the receiver's name.
	Receiver string
	// Labels are the route's group_by labels and their values.
	Labels []Label
	// Alerts are the folded findings, most severe first.
	Alerts []Alert
	// GrafanaURL is the base URL of Grafana, for links. May be empty.
	GrafanaURL string
}

// Label is a name and value pair.
type Label struct{ Name, Value string }

// Alert is one cooldown key's findings since it was last sent.
type Alert struct {
	// Finding is the latest occurrence, with secrets scrubbed.
	Finding pipeline.Finding
	// Count is how many findings with this key arrived since the last
	// message (the "×500").
	Count int
	// FirstSeen and LastSeen bound the occurrences' event times.
	FirstSeen, LastSeen time.Time
	// Key is the cooldown key: (cluster, detector, principal, object).
	Key string
	// IDs are the finding ids folded in, capped at maxIDsPerAlert.
	IDs []string
}

// maxIDsPerAlert caps the ids remembered per alert: enough to recognise a
// redelivered batch, bounded against a burst of a million repeats.
const maxIDsPerAlert = 100

// CooldownKey identifies "the same finding again": one detector, cluster,
// principal and object. Repeats within the route's repeat_interval are
// counted, not sent.
func CooldownKey(f *pipeline.Finding) string {
	principal := f.Username
	if principal == "" {
		principal = f.CredentialID
	}
	object := f.Resource
	if f.Subresource != "" {
		object += "/" + f.Subresource
	}
	object += ":" + f.Namespace + "/" + f.Name
	if f.Resource == "" {
		object = f.RequestURI
	}
	return strings.Join([]string{f.Cluster, f.Detector, principal, object}, "\x1f")
}

// GrafanaLink is the explorer dashboard's URL for f, or "" without a base.
func GrafanaLink(base string, f *pipeline.Finding) string {
	if base == "" {
		return ""
	}
	q := url.Values{}
	q.Set("var-audit_id", f.AuditID)
	q.Set("var-cluster", f.Cluster)
	return strings.TrimRight(base, "/") + "/d/auditpipe-explorer?" + q.Encode()
}

// Patterns of credentials that may still sit in a finding: ingest redacts
// events, but a finding's summary and evidence are built by detectors and
// rules, and an alert leaves the trust boundary of the pipeline, so they
// are scrubbed once more before anything is sent. The JWT pattern takes any
// "eyJ…." run, even without a third segment, so that a token cut short by
// truncation is still caught.
var (
	jwtPattern    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_.-]*`)
	bearerPattern = regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}`)
	queryPattern  = regexp.MustCompile(`(?i)([?&](?:token|access_token|id_token|password)=)[^&\s"]+`)
)

// maxFieldLen caps every free-text field of an alert before it is
// scrubbed. No receiver shows more (Slack cuts at 1500, Alertmanager
// annotations at 4000), and it bounds the regex work per finding: an
// evidence value can be a whole pod spec.
const maxFieldLen = 4096

// scrub cuts s to maxFieldLen and removes credential-looking strings.
func scrub(s string) string {
	s = truncate(s, maxFieldLen)
	if strings.Contains(s, "eyJ") {
		s = jwtPattern.ReplaceAllString(s, "[redacted-jwt]")
	}
	lower := strings.ToLower(s)
	if strings.Contains(lower, "bearer") {
		s = bearerPattern.ReplaceAllString(s, "${1}[redacted]")
	}
	if strings.Contains(lower, "token=") || strings.Contains(lower, "password=") {
		s = queryPattern.ReplaceAllString(s, "${1}[redacted]")
	}
	return s
}

// scrubFinding returns f with every free-text field scrubbed.
func scrubFinding(f pipeline.Finding) pipeline.Finding {
	f.Summary = scrub(f.Summary)
	f.RequestURI = scrub(f.RequestURI)
	f.UserAgent = scrub(f.UserAgent)
	f.Username = truncate(f.Username, maxFieldLen)
	f.Name = scrub(f.Name)
	if len(f.Evidence) > 0 {
		ev := make([]pipeline.Evidence, len(f.Evidence))
		for i, e := range f.Evidence {
			ev[i] = pipeline.Evidence{Field: scrub(e.Field), Value: scrub(e.Value), Source: e.Source}
		}
		f.Evidence = ev
	}
	return f
}
