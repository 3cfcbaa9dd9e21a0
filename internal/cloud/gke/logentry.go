// Package gke converts GKE's Kubernetes audit logs, as Cloud Logging writes
// them, into audit.k8s.io/v1 Events: a LogEntry whose protoPayload is a
// google.cloud.audit.AuditLog with serviceName k8s.io, delivered by a
// Pub/Sub push subscription (DecodePush) or read from `gcloud logging read
// --format=json` output. It is pure: no I/O, no state, so ingest's Pub/Sub
// endpoint and the file readers share it.
//
// GKE writes the apiserver's audit events through its own schema and drops
// part of them on the way (user.extra, groups, the request URI's query,
// requestReceivedTimestamp, impersonation); Convert rebuilds what can be
// rebuilt and marks what it inferred with auditpipe-owned annotations. The
// README's GKE section lists every field and what its loss costs each
// detector.
package gke

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/cloud"
)

// Annotations Convert adds to every event, beside cloud.AnnotationSource
// ("gke"). They are auditpipe's own, under auditpipe.io/, so they never
// collide with the apiserver's, and a LogEntry label cannot set them: the
// cluster is the one the credential names (as for the webhook), and the
// provider's own labels are kept beside it.
const (
	// AnnotationClusterName, AnnotationLocation and AnnotationProjectID
	// carry resource.labels.cluster_name, location and project_id.
	AnnotationClusterName = cloud.AnnotationPrefix + "gke-cluster-name"
	AnnotationLocation    = cloud.AnnotationPrefix + "gke-location"
	AnnotationProjectID   = cloud.AnnotationPrefix + "gke-project-id"
	// AnnotationLog is the Cloud Audit Logs log the entry came from:
	// "activity" (Admin Activity) or "data_access".
	AnnotationLog = cloud.AnnotationPrefix + "gke-log"
	// AnnotationInsertID is the LogEntry's insertId when the auditID came
	// from operation.id and the two differ.
	AnnotationInsertID = cloud.AnnotationPrefix + "gke-insert-id"
	// AnnotationReceiveTimestamp is when Cloud Logging received the entry.
	AnnotationReceiveTimestamp = cloud.AnnotationPrefix + "gke-receive-timestamp"
	// AnnotationInferred lists, comma-separated, the fields Convert
	// inferred rather than read: groups, decision, response-code,
	// request-uri (always: GKE keeps no URI), timestamps (always:
	// requestReceivedTimestamp and stageTimestamp are both the entry's
	// timestamp).
	AnnotationInferred = cloud.AnnotationPrefix + "gke-inferred"
)

// Source is the cloud.AnnotationSource value of converted events.
const Source = "gke"

// AuditLogType is the protoPayload @type of Cloud Audit Logs entries.
const AuditLogType = "type.googleapis.com/google.cloud.audit.AuditLog"

// ServiceName is the AuditLog serviceName of GKE's Kubernetes audit logs
// (GKE's own API, container.googleapis.com, logs cluster operations, which
// are not Kubernetes requests).
const ServiceName = "k8s.io"

// ErrNotKubernetesAudit reports a LogEntry that is well formed but is not a
// Kubernetes audit log entry: another service's audit log, or a log that
// is not an audit log at all. A sink filter broader than the README's sends
// these; they are skipped, not errors of the sender.
var ErrNotKubernetesAudit = errors.New("not a GKE Kubernetes audit log entry (protoPayload.serviceName k8s.io)")

// flexBool decodes a JSON boolean, or the strings "true"/"false" that some
// LogEntry exports write for operation.first and operation.last.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	switch string(bytes.Trim(data, `"`)) {
	case "true":
		*b = true
	case "false", "null", "":
		*b = false
	default:
		return fmt.Errorf("decoding boolean: unexpected %.20q", data)
	}
	return nil
}

// LogEntry is the subset of Cloud Logging's LogEntry
// (logging.googleapis.com/v2, JSON form) that Convert reads.
type LogEntry struct {
	InsertID         string            `json:"insertId"`
	LogName          string            `json:"logName"`
	Timestamp        string            `json:"timestamp"`
	ReceiveTimestamp string            `json:"receiveTimestamp"`
	Labels           map[string]string `json:"labels"`
	Resource         struct {
		Type   string            `json:"type"`
		Labels map[string]string `json:"labels"`
	} `json:"resource"`
	Operation *struct {
		ID       string   `json:"id"`
		Producer string   `json:"producer"`
		First    flexBool `json:"first"`
		Last     flexBool `json:"last"`
	} `json:"operation"`
	ProtoPayload *AuditLog `json:"protoPayload"`
}

// AuditLog is the subset of google.cloud.audit.AuditLog that GKE fills
// for Kubernetes requests.
type AuditLog struct {
	Type               string `json:"@type"`
	ServiceName        string `json:"serviceName"`
	MethodName         string `json:"methodName"`
	ResourceName       string `json:"resourceName"`
	AuthenticationInfo struct {
		PrincipalEmail string `json:"principalEmail"`
	} `json:"authenticationInfo"`
	AuthorizationInfo []struct {
		Resource   string   `json:"resource"`
		Permission string   `json:"permission"`
		Granted    flexBool `json:"granted"`
	} `json:"authorizationInfo"`
	RequestMetadata struct {
		CallerIP                string `json:"callerIp"`
		CallerSuppliedUserAgent string `json:"callerSuppliedUserAgent"`
	} `json:"requestMetadata"`
	// Status is a google.rpc.Status: a gRPC code, 0 (or absent) for OK.
	Status *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	Request  json.RawMessage `json:"request"`
	Response json.RawMessage `json:"response"`
}

// IsLogEntry reports whether data looks like a LogEntry holding an audit
// log rather than an audit event: a cheap test for file readers that must
// tell the formats apart without flags. It looks for the protoPayload
// member; an audit event has none.
func IsLogEntry(data []byte) bool {
	return bytes.Contains(data, []byte(`"protoPayload"`)) && bytes.Contains(data, []byte(`"logName"`))
}

// Convert turns one LogEntry (JSON) into an audit.k8s.io/v1 Event (JSON).
// An entry that is not a Kubernetes audit log returns an error wrapping
// ErrNotKubernetesAudit; one that cannot be made into a valid event, an
// error saying why. The output depends on the entry alone, so a message
// delivered twice converts to the same bytes and is deduplicated as the
// webhook's resends are.
func Convert(data []byte) ([]byte, error) {
	var e LogEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decoding LogEntry: %w", err)
	}
	ev, err := ConvertEntry(&e)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encoding audit event: %w", err)
	}
	return out, nil
}

// ConvertEntry converts a decoded LogEntry; see Convert.
func ConvertEntry(e *LogEntry) (*auditv1.Event, error) {
	p := e.ProtoPayload
	if p == nil || p.ServiceName != ServiceName || (p.Type != "" && p.Type != AuditLogType) {
		return nil, ErrNotKubernetesAudit
	}
	if !strings.HasPrefix(p.MethodName, "io.k8s.") {
		return nil, fmt.Errorf("%w: methodName %s", ErrNotKubernetesAudit, quote(p.MethodName))
	}
	var inferred []string
	ev := &auditv1.Event{
		TypeMeta: metav1.TypeMeta{Kind: "Event", APIVersion: "audit.k8s.io/v1"},
		Stage:    auditv1.StageResponseComplete,
	}

	// auditID: GKE sets operation.id (producer k8s.io) to the apiserver's
	// audit ID, which ties the entries of one long-running request
	// together; insertId is unique per entry and often the same value.
	ev.AuditID = types.UID(e.InsertID)
	if op := e.Operation; op != nil && op.Producer == ServiceName && op.ID != "" {
		ev.AuditID = types.UID(op.ID)
		// A long-running request (watch, exec) is logged when it starts
		// (first) and when it ends (last); a short one once, both set.
		if op.First && !op.Last {
			ev.Stage = auditv1.StageResponseStarted
		}
	}
	if ev.AuditID == "" {
		return nil, errors.New("converting LogEntry: no operation.id and no insertId to use as auditID")
	}

	ts, err := entryTime(e)
	if err != nil {
		return nil, err
	}
	ev.RequestReceivedTimestamp = metav1.NewMicroTime(ts)
	ev.StageTimestamp = ev.RequestReceivedTimestamp
	inferred = append(inferred, "timestamps")

	m, err := parseMethod(p.MethodName)
	if err != nil {
		return nil, err
	}
	ref, path, err := parseResource(p.ResourceName, m)
	if err != nil {
		return nil, err
	}
	ev.Verb = m.verb
	if ref != nil && ref.Name == "" && m.verb == "get" {
		// A get without a name is a list: the apiserver calls it so.
		ev.Verb = "list"
	}
	ev.ObjectRef = ref
	ev.RequestURI = requestURI(ref, path, ev.Verb)
	inferred = append(inferred, "request-uri")

	// User: GKE keeps only the principal. The Kubernetes authenticators
	// add fixed groups to some principals; those are restored, anything
	// else (the user's own groups, uid, extra) is lost.
	ev.User = authnv1.UserInfo{Username: p.AuthenticationInfo.PrincipalEmail}
	if g := inferGroups(ev.User.Username); g != nil {
		ev.User.Groups = g
		inferred = append(inferred, "groups")
	}
	if ip := p.RequestMetadata.CallerIP; ip != "" {
		ev.SourceIPs = []string{ip}
	}
	ev.UserAgent = p.RequestMetadata.CallerSuppliedUserAgent

	// Bodies: the level is what GKE kept of them.
	ev.Level = auditv1.LevelMetadata
	req, reqKind, err := body(p.Request)
	if err != nil {
		return nil, fmt.Errorf("converting request body: %w", err)
	}
	resp, respKind, err := body(p.Response)
	if err != nil {
		return nil, fmt.Errorf("converting response body: %w", err)
	}
	if req != nil {
		ev.Level = auditv1.LevelRequest
		ev.RequestObject = &runtime.Unknown{Raw: req}
	}
	if resp != nil {
		ev.Level = auditv1.LevelRequestResponse
		ev.ResponseObject = &runtime.Unknown{Raw: resp}
	}
	if ref != nil && ref.Name == "" && reqKind.name != "" && m.verb == "create" {
		// The apiserver fills objectRef.name of a create from the body.
		ref.Name = reqKind.name
	}

	st, codeInferred := responseStatus(p, ev, respKind)
	ev.ResponseStatus = st
	if codeInferred {
		inferred = append(inferred, "response-code")
	}
	if st.Code == 401 && ev.User.Username == "" {
		// A failed authentication is a single ResponseStarted event.
		ev.Stage = auditv1.StageResponseStarted
	}

	ev.Annotations = make(map[string]string, len(e.Labels)+8)
	// GKE carries the apiserver's audit annotations as LogEntry labels
	// (authorization.k8s.io/decision, pod-security.kubernetes.io/…,
	// mutation.webhook.admission.k8s.io/…). auditpipe.io/ keys are ours:
	// an entry cannot set them.
	for k, v := range e.Labels {
		if !strings.HasPrefix(k, cloud.AnnotationPrefix) {
			ev.Annotations[k] = v
		}
	}
	if _, ok := ev.Annotations[AnnotationDecisionKey]; !ok {
		if d := inferDecision(p, st.Code); d != "" {
			ev.Annotations[AnnotationDecisionKey] = d
			inferred = append(inferred, "decision")
		}
	}
	ev.Annotations[cloud.AnnotationSource] = Source
	setIf(ev.Annotations, AnnotationClusterName, e.Resource.Labels["cluster_name"])
	setIf(ev.Annotations, AnnotationLocation, e.Resource.Labels["location"])
	setIf(ev.Annotations, AnnotationProjectID, e.Resource.Labels["project_id"])
	setIf(ev.Annotations, AnnotationLog, logKind(e.LogName))
	setIf(ev.Annotations, AnnotationReceiveTimestamp, e.ReceiveTimestamp)
	if e.InsertID != "" && string(ev.AuditID) != e.InsertID {
		ev.Annotations[AnnotationInsertID] = e.InsertID
	}
	ev.Annotations[AnnotationInferred] = strings.Join(inferred, ",")
	return ev, nil
}

// AnnotationDecisionKey is the apiserver's authorization decision
// annotation, which GKE keeps as a LogEntry label.
const AnnotationDecisionKey = "authorization.k8s.io/decision"

func setIf(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// entryTime is the entry's timestamp: for GKE's Kubernetes entries, when
// the apiserver logged the request. receiveTimestamp (when Cloud Logging
// got it) stands in only when timestamp is missing.
func entryTime(e *LogEntry) (time.Time, error) {
	s := e.Timestamp
	if s == "" {
		s = e.ReceiveTimestamp
	}
	if s == "" {
		return time.Time{}, errors.New("converting LogEntry: no timestamp")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("converting LogEntry: parsing timestamp %s: %w", quote(s), err)
	}
	return t.UTC(), nil
}

// logKind returns "activity" or "data_access" from a logName such as
// projects/P/logs/cloudaudit.googleapis.com%2Factivity.
func logKind(logName string) string {
	_, name, ok := strings.Cut(logName, "/logs/")
	if !ok {
		return ""
	}
	name = strings.Replace(name, "%2F", "/", 1)
	name = strings.Replace(name, "%2f", "/", 1)
	if kind, ok := strings.CutPrefix(name, "cloudaudit.googleapis.com/"); ok {
		return kind
	}
	return ""
}

// inferGroups returns the groups the Kubernetes authenticators always add
// for principals GKE logs by their Kubernetes name: system:unauthenticated
// for system:anonymous; system:serviceaccounts, system:serviceaccounts:<ns>
// and system:authenticated for a service account; system:nodes and
// system:authenticated for a node. Other principals (Google accounts,
// workload identities) get none: their groups are unknown, and guessing
// system:authenticated for them would be guessing.
func inferGroups(user string) []string {
	switch {
	case user == "system:anonymous":
		return []string{"system:unauthenticated"}
	case strings.HasPrefix(user, "system:serviceaccount:"):
		ns, _, ok := strings.Cut(strings.TrimPrefix(user, "system:serviceaccount:"), ":")
		if !ok || ns == "" {
			return nil
		}
		return []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	case strings.HasPrefix(user, "system:node:"):
		return []string{"system:nodes", "system:authenticated"}
	}
	return nil
}

// inferDecision stands in for a missing authorization.k8s.io/decision
// label: allow when GKE says every permission was granted, forbid when the
// request was refused with PERMISSION_DENIED and nothing was granted.
func inferDecision(p *AuditLog, code int32) string {
	if len(p.AuthorizationInfo) == 0 {
		return ""
	}
	granted := true
	for _, a := range p.AuthorizationInfo {
		granted = granted && bool(a.Granted)
	}
	switch {
	case granted:
		return "allow"
	case code == 403:
		return "forbid"
	}
	return ""
}

func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
