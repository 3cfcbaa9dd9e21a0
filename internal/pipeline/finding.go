package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Severity orders findings from informational to critical.
type Severity uint8

// Severities, lowest first, so that "at least high" is a comparison.
const (
	SeverityInfo Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// ParseSeverity parses a severity name, case-insensitively.
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(name, n) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q: want one of %s", name, strings.Join(severityNames[:], ", "))
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Which part of an event a piece of evidence was read from. Bodies are
// reported as request or response because they differ: the request is what
// the client sent, the response what was stored after defaulting and
// admission.
const (
	FromEvent    = "event"
	FromRequest  = "request"
	FromResponse = "response"
)

// Evidence is one field that made a detector fire.
type Evidence struct {
	Field  string `json:"field"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Finding is a detector's verdict about one request. Its JSON field names
// are the columns of the findings table.
type Finding struct {
	ID           string     `json:"finding_id"`
	Time         time.Time  `json:"time"`
	Cluster      string     `json:"cluster"`
	Detector     string     `json:"detector"`
	Severity     Severity   `json:"severity"`
	AuditID      string     `json:"audit_id"`
	Stage        string     `json:"stage"`
	Summary      string     `json:"summary"`
	Evidence     []Evidence `json:"evidence"`
	Username     string     `json:"username"`
	Groups       []string   `json:"groups"`
	CredentialID string     `json:"credential_id"`
	SourceIP     string     `json:"source_ip"`
	UserAgent    string     `json:"user_agent"`
	Verb         string     `json:"verb"`
	RequestURI   string     `json:"request_uri"`
	Resource     string     `json:"resource"`
	Subresource  string     `json:"subresource"`
	Namespace    string     `json:"namespace"`
	Name         string     `json:"name"`
	Code         int32      `json:"response_code"`
	MITRE        string     `json:"mitre_technique"`
}

// NewFinding starts a finding about ev with every identity and object field
// filled in. discriminator tells apart several findings one detector makes
// about the same request (for example one per container); the id is a hash
// of detector, cluster, auditID, the request's hash (RequestHash) and
// discriminator, so a redelivered event yields the same id, and so does the
// other authoritative stage of a long-running request (ResponseStarted or
// ResponseComplete, whichever was judged).
func NewFinding(detector string, ev *Event, discriminator string) Finding {
	f := Finding{
		ID:           FindingID(detector, ev.Cluster, string(ev.AuditID), RequestHash(&ev.Event), discriminator),
		Time:         ev.StageTimestamp.Time,
		Cluster:      ev.Cluster,
		Detector:     detector,
		AuditID:      string(ev.AuditID),
		Stage:        string(ev.Stage),
		Username:     ev.User.Username,
		Groups:       ev.User.Groups,
		CredentialID: ev.CredentialID(),
		SourceIP:     ev.SourceIP(),
		UserAgent:    ev.UserAgent,
		Verb:         ev.Verb,
		RequestURI:   ev.RequestURI,
		Code:         ev.Code(),
	}
	if f.Time.IsZero() {
		f.Time = ev.RequestReceivedTimestamp.Time
	}
	if ref := ev.ObjectRef; ref != nil {
		f.Resource, f.Subresource = ref.Resource, ref.Subresource
		f.Namespace, f.Name = ref.Namespace, ref.Name
	}
	return f
}

// FindingID derives a finding's deterministic id: the first 16 bytes, in
// hex, of the SHA-256 of detector, cluster, auditID, hash in hex and
// discriminator, each followed by a NUL. The input is gathered in a stack
// buffer and hashed at once, so an id costs one allocation, its string
// (a finding is built for every event on an incident's logs).
func FindingID(detector, cluster, auditID string, hash uint64, discriminator string) string {
	var buf [256]byte
	b := append(buf[:0], detector...)
	b = append(b, 0)
	b = append(b, cluster...)
	b = append(b, 0)
	b = append(b, auditID...)
	b = append(b, 0)
	b = strconv.AppendUint(b, hash, 16)
	b = append(b, 0)
	b = append(b, discriminator...)
	b = append(b, 0)
	sum := sha256.Sum256(b)
	var id [32]byte
	hex.Encode(id[:], sum[:16])
	return string(id[:])
}
