package clickhouse

import (
	"slices"
	"time"
	"unsafe"

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
// reused across a batch so that filling and appending a row allocates
// almost nothing: Write appends it through cells, pointers to its fields
// that clickhouse-go copies from without boxing each value.
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
	// raw shares the event's bytes (see fill): valid until the next fill.
	raw string

	// cells and the refs are nativeCells' scratch, kept across rows.
	cells                                           []any
	groupRefs, sourceIPRefs, annKeyRefs, annValRefs []*string
}

// fill sets r from ev. The row's time is the stage timestamp, falling back
// to the receive time, as pipeline.NewFinding does, so an event and its
// findings land in the same partition.
//
// raw is ev.Raw viewed as a string, not a copy: the raw column is most of
// a row's bytes (about 1.6 KB of 2), and clickhouse-go copies the value
// into its column buffer as soon as the row is appended, so copying it
// here first only doubled the work and the garbage. Nothing writes to an
// event's Raw once decoded, and a row is refilled before the next append.
func (r *eventRow) fill(ev *pipeline.Event) {
	t := ev.StageTimestamp.Time
	if t.IsZero() {
		t = ev.RequestReceivedTimestamp.Time
	}
	// The scratch slices survive the reset, so that the annotation arrays
	// and the cell pointers are allocated once per batch, not per row.
	keys, vals := r.annotationKeys[:0], r.annotationVals[:0]
	cells, gr, sr, kr, vr := r.cells, r.groupRefs, r.sourceIPRefs, r.annKeyRefs, r.annValRefs
	*r = eventRow{
		time:         clampDateTime(t),
		timeUS:       unixMicro(t),
		receivedTime: clampDateTime(ev.RequestReceivedTimestamp.Time),
		cluster:      ev.Cluster,
		auditID:      string(ev.AuditID),
		stage:        string(ev.Stage),
		hash:         ev.Hash(),
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
		raw:          unsafe.String(unsafe.SliceData(ev.Raw), len(ev.Raw)),

		cells: cells, groupRefs: gr, sourceIPRefs: sr, annKeyRefs: kr, annValRefs: vr,
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
	if keys == nil {
		keys, vals = make([]string, 0, 8), make([]string, 0, 8)
	}
	for k := range ev.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vals = append(vals, ev.Annotations[k])
	}
	r.annotationKeys, r.annotationVals = keys, vals
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

// Positions of the Array(String) columns in eventColumns, which
// nativeCells sets per row.
const (
	eventGroupsCell    = 11
	eventSourceIPsCell = 14
	eventAnnKeysCell   = 31
	eventAnnValsCell   = 32
)

// nativeCells returns the row in eventColumns order for driver.Batch.Append:
// the same values as values(), but scalars as pointers to r's fields and
// arrays as []*string, the forms clickhouse-go appends without allocating
// (a string or time.Time in an interface is a heap copy, and so is each
// element of a []string). Only the four array slice headers are boxed per
// row. The cells stay valid until the next fill.
func (r *eventRow) nativeCells() []any {
	if r.cells == nil {
		r.cells = []any{
			&r.time, &r.timeUS, &r.receivedTime, &r.cluster, &r.auditID, &r.stage, &r.hash,
			&r.level, &r.verb, &r.username, &r.userUID, nil, &r.impersonatedUser,
			&r.sourceIP, nil, &r.userAgent, &r.resource, &r.subresource, &r.namespace,
			&r.name, &r.apiGroup, &r.apiVersion, &r.requestURI, &r.code, &r.decision,
			&r.reason, &r.credentialID, &r.podName, &r.podUID, &r.nodeName, &r.nodeUID, nil,
			nil, &r.raw,
		}
	}
	r.groupRefs = refs(r.groupRefs, r.groups)
	r.sourceIPRefs = refs(r.sourceIPRefs, r.sourceIPs)
	r.annKeyRefs = refs(r.annKeyRefs, r.annotationKeys)
	r.annValRefs = refs(r.annValRefs, r.annotationVals)
	r.cells[eventGroupsCell] = r.groupRefs
	r.cells[eventSourceIPsCell] = r.sourceIPRefs
	r.cells[eventAnnKeysCell] = r.annKeyRefs
	r.cells[eventAnnValsCell] = r.annValRefs
	return r.cells
}

// refs sets dst to pointers to src's elements, reusing dst's array.
func refs(dst []*string, src []string) []*string {
	dst = dst[:0]
	for i := range src {
		dst = append(dst, &src[i])
	}
	if dst == nil {
		dst = []*string{}
	}
	return dst
}

// findingRow is one row of the findings table, in findingColumns order.
type findingRow struct {
	f        *pipeline.Finding
	time     time.Time
	timeUS   uint64
	severity string
	level    uint8
	groups   []string
	evidence string
	buf      []byte // reused for the evidence's JSON

	// cells and groupRefs are nativeCells' scratch, kept across rows.
	cells     []any
	groupRefs []*string
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
	*r = findingRow{
		f: f, time: clampDateTime(f.Time), timeUS: unixMicro(f.Time),
		severity: f.Severity.String(), level: uint8(f.Severity), groups: nonNil(f.Groups),
		evidence: string(buf), buf: buf, cells: r.cells, groupRefs: r.groupRefs,
	}
}

// values returns the row in findingColumns order.
func (r *findingRow) values() []any {
	f := r.f
	return []any{
		f.ID, r.time, r.timeUS, f.Cluster, f.Detector, r.severity, r.level,
		f.AuditID, f.Stage, f.Summary, r.evidence, f.Username, r.groups, f.CredentialID,
		f.SourceIP, f.UserAgent, f.Verb, f.RequestURI, f.Resource, f.Subresource,
		f.Namespace, f.Name, f.Code, f.MITRE,
	}
}

// findingGroupsCell is the position of groups in findingColumns.
const findingGroupsCell = 12

// nativeCells is values() in the forms clickhouse-go appends without
// allocating; see eventRow.nativeCells. Valid until the next fill.
func (r *findingRow) nativeCells() []any {
	f := r.f
	if r.cells == nil {
		r.cells = make([]any, len(findingColumns))
	}
	r.groupRefs = refs(r.groupRefs, r.groups)
	c := r.cells
	c[0], c[1], c[2], c[3], c[4], c[5], c[6] = &f.ID, &r.time, &r.timeUS, &f.Cluster, &f.Detector, &r.severity, &r.level
	c[7], c[8], c[9], c[10], c[11], c[findingGroupsCell], c[13] = &f.AuditID, &f.Stage, &f.Summary, &r.evidence, &f.Username, r.groupRefs, &f.CredentialID
	c[14], c[15], c[16], c[17], c[18], c[19] = &f.SourceIP, &f.UserAgent, &f.Verb, &f.RequestURI, &f.Resource, &f.Subresource
	c[20], c[21], c[22], c[23] = &f.Namespace, &f.Name, &f.Code, &f.MITRE
	return c
}
