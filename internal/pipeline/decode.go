package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// The only audit API version apiservers have written since 1.24 removed
// v1beta1; anything else is refused by name rather than half-decoded.
const (
	AuditAPIVersion = "audit.k8s.io/v1"
	KindEvent       = "Event"
	KindEventList   = "EventList"
)

// ItemError reports which item of an EventList could not be decoded, so the
// sender learns which event was at fault.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("item %d: %v", e.Index, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// flexTime accepts RFC 3339 with any number of fractional digits, or none.
// metav1.MicroTime insists on exactly six, which older apiservers and log
// shippers do not always write.
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("timestamp must be a string, got %.40s", b)
	}
	s := b[1 : len(b)-1]
	if len(s) == 0 {
		t.Time = time.Time{}
		return nil
	}
	pt, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil {
		return fmt.Errorf("parsing timestamp %q: want RFC 3339", s)
	}
	t.Time = pt.UTC()
	return nil
}

// wireEvent mirrors auditv1.Event field for field, with tolerant timestamps
// and raw bodies, and with kind/apiVersion so they can be checked.
type wireEvent struct {
	Kind                     string                          `json:"kind"`
	APIVersion               string                          `json:"apiVersion"`
	Level                    auditv1.Level                   `json:"level"`
	AuditID                  types.UID                       `json:"auditID"`
	Stage                    auditv1.Stage                   `json:"stage"`
	RequestURI               string                          `json:"requestURI"`
	Verb                     string                          `json:"verb"`
	User                     authnv1.UserInfo                `json:"user"`
	ImpersonatedUser         *authnv1.UserInfo               `json:"impersonatedUser"`
	AuthenticationMetadata   *auditv1.AuthenticationMetadata `json:"authenticationMetadata"`
	SourceIPs                []string                        `json:"sourceIPs"`
	UserAgent                string                          `json:"userAgent"`
	ObjectRef                *auditv1.ObjectReference        `json:"objectRef"`
	ResponseStatus           *metav1.Status                  `json:"responseStatus"`
	RequestObject            json.RawMessage                 `json:"requestObject"`
	ResponseObject           json.RawMessage                 `json:"responseObject"`
	RequestReceivedTimestamp flexTime                        `json:"requestReceivedTimestamp"`
	StageTimestamp           flexTime                        `json:"stageTimestamp"`
	Annotations              map[string]string               `json:"annotations"`
}

// checkTypeMeta accepts an empty kind/apiVersion (webhook EventList items
// omit them) and otherwise requires the expected ones.
func checkTypeMeta(kind, apiVersion, wantKind string) error {
	if apiVersion != "" && apiVersion != AuditAPIVersion {
		return fmt.Errorf("unsupported apiVersion %q: want %q", apiVersion, AuditAPIVersion)
	}
	if kind != "" && kind != wantKind {
		return fmt.Errorf("unexpected kind %q: want %q", kind, wantKind)
	}
	return nil
}

func rawObject(raw json.RawMessage) *runtime.Unknown {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON}
}

// DecodeEvent decodes one audit.k8s.io/v1 Event into ev. The request and
// response bodies alias data: callers that keep ev must keep data unchanged.
func DecodeEvent(data []byte, ev *auditv1.Event) error {
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return Permanent(fmt.Errorf("decoding event: %w", err))
	}
	if err := checkTypeMeta(w.Kind, w.APIVersion, KindEvent); err != nil {
		return Permanent(fmt.Errorf("decoding event: %w", err))
	}
	*ev = auditv1.Event{
		Level:                    w.Level,
		AuditID:                  w.AuditID,
		Stage:                    w.Stage,
		RequestURI:               w.RequestURI,
		Verb:                     w.Verb,
		User:                     w.User,
		ImpersonatedUser:         w.ImpersonatedUser,
		AuthenticationMetadata:   w.AuthenticationMetadata,
		SourceIPs:                w.SourceIPs,
		UserAgent:                w.UserAgent,
		ObjectRef:                w.ObjectRef,
		ResponseStatus:           w.ResponseStatus,
		RequestObject:            rawObject(w.RequestObject),
		ResponseObject:           rawObject(w.ResponseObject),
		RequestReceivedTimestamp: metav1.NewMicroTime(w.RequestReceivedTimestamp.Time),
		StageTimestamp:           metav1.NewMicroTime(w.StageTimestamp.Time),
		Annotations:              w.Annotations,
	}
	ev.Kind, ev.APIVersion = KindEvent, AuditAPIVersion
	return nil
}

// Decode fills e from one event's JSON and tags it with its cluster.
func (e *Event) Decode(cluster string, data []byte) error {
	if err := DecodeEvent(data, &e.Event); err != nil {
		return err
	}
	e.Cluster = cluster
	e.Raw = data
	e.Hash = ContentHash(&e.Event)
	return nil
}

type wireList struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
}

// ErrNotJSON reports a body that is not a JSON object at all.
var ErrNotJSON = errors.New("body is not a JSON object")

// SplitEventList checks an EventList's envelope and returns its items as raw
// JSON, each compacted onto one line, without decoding them. Ingest uses it
// to forward events byte for byte; DecodeEvent validates each item.
func SplitEventList(data []byte) ([][]byte, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, Permanent(fmt.Errorf("decoding event list: %w", ErrNotJSON))
	}
	var l wireList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, Permanent(fmt.Errorf("decoding event list: %w", err))
	}
	if l.Kind == "" && l.APIVersion == "" && l.Items == nil {
		return nil, Permanent(errors.New("decoding event list: no kind, apiVersion or items: not an audit EventList"))
	}
	if err := checkTypeMeta(l.Kind, l.APIVersion, KindEventList); err != nil {
		return nil, Permanent(fmt.Errorf("decoding event list: %w", err))
	}
	items := make([][]byte, len(l.Items))
	for i, raw := range l.Items {
		items[i] = compact(raw)
	}
	return items, nil
}

// compact returns raw on one line. The apiserver already writes compact JSON,
// so the common case returns raw itself without copying.
func compact(raw []byte) []byte {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return raw
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return raw // json.Unmarshal accepted it, so Compact cannot fail
	}
	return buf.Bytes()
}

// DecodeEvents decodes either an EventList or a single Event. An item that
// fails to decode is reported as an *ItemError naming its index.
func DecodeEvents(data []byte) ([]auditv1.Event, error) {
	var probe struct {
		Kind string `json:"kind"`
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, Permanent(fmt.Errorf("decoding events: %w", ErrNotJSON))
	}
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return nil, Permanent(fmt.Errorf("decoding events: %w", err))
	}
	if probe.Kind == KindEvent {
		var ev auditv1.Event
		if err := DecodeEvent(trimmed, &ev); err != nil {
			return nil, err
		}
		return []auditv1.Event{ev}, nil
	}
	items, err := SplitEventList(trimmed)
	if err != nil {
		return nil, err
	}
	events := make([]auditv1.Event, len(items))
	for i, item := range items {
		if err := DecodeEvent(item, &events[i]); err != nil {
			return nil, Permanent(&ItemError{Index: i, Err: err})
		}
	}
	return events, nil
}
