package clickhouse

import (
	"slices"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// DateTime's range on the server (UInt32 seconds). Times outside it are
// clamped for the DateTime columns instead of failing the whole batch over
// one event with a nonsense timestamp; time_us keeps the exact value where
// it fits.
var (
	minDateTime = time.Unix(0, 0).UTC()
	maxDateTime = time.Date(2105, 12, 31, 23, 59, 59, 0, time.UTC)
)

func clampDateTime(t time.Time) time.Time {
	if t.Before(minDateTime) {
		return minDateTime
	}
	if t.After(maxDateTime) {
		return maxDateTime
	}
	return t
}

// unixMicro is t in microseconds, 0 for times before the epoch (the zero
// time.Time included) since the column is unsigned.
func unixMicro(t time.Time) uint64 {
	if t.Before(minDateTime) {
		return 0
	}
	return uint64(t.UnixMicro())
}

// nonNil returns s, or an empty slice for nil, so that every Array column
// gets a value of the same Go type.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// eventRow is one row of the events table, in eventColumns order. It is
// reused across a batch to keep allocations per event low.
type eventRow struct {
	time, receivedTime                                time.Time
	timeUS, hash                                      uint64
	cluster, auditID, stage, level, verb              string
	username, userUID, impersonatedUser               string
	groups, sourceIPs, annotationKeys, annotationVals []string
	sourceIP, userAgent                               string
	resource, subresource, namespace, name            string
	apiGroup, apiVersion, requestURI                  string
	code                                              int32
	decision, reason                                  string
	credentialID, podName, nodeName                   string
	podUID, nodeUID                                   string
	raw                                               string
}

// fill sets r from ev. The row's time is the stage timestamp, falling back
// to the receive time, as pipeline.NewFinding does, so an event and its
// findings land in the same partition.
func (r *eventRow) fill(ev *pipeline.Event) {
	t := ev.StageTimestamp.Time
	if t.IsZero() {
		t = ev.RequestReceivedTimestamp.Time
	}
	*r = eventRow{
		time:         clampDateTime(t),
		timeUS:       unixMicro(t),
		receivedTime: clampDateTime(ev.RequestReceivedTimestamp.Time),
		cluster:      ev.Cluster,
		auditID:      string(ev.AuditID),
		stage:        string(ev.Stage),
		hash:         ev.Hash,
		level:        string(ev.Level),
		verb:         ev.Verb,
		username:     ev.User.Username,
		userUID:      ev.User.UID,
		groups:       nonNil(ev.User.Groups),
		sourceIP:     ev.SourceIP(),
		sourceIPs:    nonNil(ev.SourceIPs),
		userAgent:    ev.UserAgent,
		requestURI:   ev.RequestURI,
		code:         ev.Code(),
		decision:     ev.Decision(),
		reason:       ev.Annotations[pipeline.AnnotationReason],
		credentialID: ev.CredentialID(),
		podName:      ev.Extra(pipeline.ExtraPodName),
		nodeName:     ev.Extra(pipeline.ExtraNodeName),
		podUID:       ev.Extra(pipeline.ExtraPodUID),
		nodeUID:      ev.Extra(pipeline.ExtraNodeUID),
		raw:          string(ev.Raw),
	}
	if u := ev.ImpersonatedUser; u != nil {
		r.impersonatedUser = u.Username
	}
	if ref := ev.ObjectRef; ref != nil {
		r.resource, r.subresource = ref.Resource, ref.Subresource
		r.namespace, r.name = ref.Namespace, ref.Name
		r.apiGroup, r.apiVersion = ref.APIGroup, ref.APIVersion
	}
	// Sorted so that the same event always produces the same row.
	r.annotationKeys = make([]string, 0, len(ev.Annotations))
	for k := range ev.Annotations {
		r.annotationKeys = append(r.annotationKeys, k)
	}
	slices.Sort(r.annotationKeys)
	r.annotationVals = make([]string, len(r.annotationKeys))
	for i, k := range r.annotationKeys {
		r.annotationVals[i] = ev.Annotations[k]
	}
}

// values returns the row in eventColumns order.
func (r *eventRow) values() []any {
	return []any{
		r.time, r.timeUS, r.receivedTime, r.cluster, r.auditID, r.stage, r.hash,
		r.level, r.verb, r.username, r.userUID, r.groups, r.impersonatedUser,
		r.sourceIP, r.sourceIPs, r.userAgent, r.resource, r.subresource, r.namespace,
		r.name, r.apiGroup, r.apiVersion, r.requestURI, r.code, r.decision,
		r.reason, r.credentialID, r.podName, r.podUID, r.nodeName, r.nodeUID, r.annotationKeys,
		r.annotationVals, r.raw,
	}
}

// findingRow is one row of the findings table, in findingColumns order.
type findingRow struct {
	f        *pipeline.Finding
	time     time.Time
	timeUS   uint64
	evidence string
	buf      []byte // reused for the evidence's JSON
}

// fill sets r from f. Evidence is stored as its JSON array, the same shape
// the finding has on the wire: what json.Marshal writes, none as [],
// without json.Marshal's reflective walk.
func (r *findingRow) fill(f *pipeline.Finding) {
	ev := f.Evidence
	if ev == nil {
		ev = []pipeline.Evidence{}
	}
	buf := pipeline.AppendEvidenceJSON(r.buf[:0], ev, true)
	*r = findingRow{f: f, time: clampDateTime(f.Time), timeUS: unixMicro(f.Time), evidence: string(buf), buf: buf}
}

// values returns the row in findingColumns order.
func (r *findingRow) values() []any {
	f := r.f
	return []any{
		f.ID, r.time, r.timeUS, f.Cluster, f.Detector, f.Severity.String(), uint8(f.Severity),
		f.AuditID, f.Stage, f.Summary, r.evidence, f.Username, nonNil(f.Groups), f.CredentialID,
		f.SourceIP, f.UserAgent, f.Verb, f.RequestURI, f.Resource, f.Subresource,
		f.Namespace, f.Name, f.Code, f.MITRE,
	}
}
