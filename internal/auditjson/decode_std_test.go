package auditjson

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

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// The reference decoder: encoding/json over a wire struct, the
// implementation DecodeEvent had before the single-pass decoder. The
// equivalence test and FuzzDecodeEquivalence hold DecodeEvent to it.

// flexTime accepts RFC 3339 with any number of fractional digits, or none.
// metav1.MicroTime insists on exactly six, which older apiservers and log
// shippers do not always write. It also takes a space for the 'T' between
// date and time (log shippers write it; RFC 3339 allows it), which
// encoding/json's time.Time refuses: the one place where the reference
// deliberately departs from plain encoding/json, as DecodeEvent does.
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
	str := string(s)
	if len(str) > 10 && str[10] == ' ' {
		str = str[:10] + "T" + str[11:]
	}
	pt, err := time.Parse(time.RFC3339Nano, str)
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

func rawObject(raw json.RawMessage) *runtime.Unknown {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON}
}

// decodeEventStd is the reference implementation of DecodeEvent.
func decodeEventStd(data []byte, ev *auditv1.Event) error {
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return pipeline.Permanent(fmt.Errorf("decoding event: %w", err))
	}
	if err := checkTypeMeta(w.Kind, w.APIVersion, KindEvent); err != nil {
		return pipeline.Permanent(fmt.Errorf("decoding event: %w", err))
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

type wireList struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
}

// splitEventListStd is the reference implementation of SplitEventList; it checks an EventList's envelope and returns its items as raw
// JSON, each compacted onto one line, without decoding them. Ingest uses it
// to forward events byte for byte; DecodeEvent validates each item.
func splitEventListStd(data []byte) ([][]byte, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, pipeline.Permanent(fmt.Errorf("decoding event list: %w", ErrNotJSON))
	}
	var l wireList
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("decoding event list: %w", err))
	}
	if l.Kind == "" && l.APIVersion == "" && l.Items == nil {
		return nil, pipeline.Permanent(errors.New("decoding event list: no kind, apiVersion or items: not an audit EventList"))
	}
	if err := checkTypeMeta(l.Kind, l.APIVersion, KindEventList); err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("decoding event list: %w", err))
	}
	items := make([][]byte, len(l.Items))
	for i, raw := range l.Items {
		items[i] = compact(raw)
	}
	return items, nil
}

// decodeEventsStd is the reference implementation of DecodeEvents; it decodes either an EventList or a single Event. An item that
// fails to decode is reported as an *ItemError naming its index.
func decodeEventsStd(data []byte) ([]auditv1.Event, error) {
	var probe struct {
		Kind string `json:"kind"`
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, pipeline.Permanent(fmt.Errorf("decoding events: %w", ErrNotJSON))
	}
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("decoding events: %w", err))
	}
	if probe.Kind == KindEvent {
		var ev auditv1.Event
		if err := decodeEventStd(trimmed, &ev); err != nil {
			return nil, err
		}
		return []auditv1.Event{ev}, nil
	}
	items, err := splitEventListStd(trimmed)
	if err != nil {
		return nil, err
	}
	events := make([]auditv1.Event, len(items))
	for i, item := range items {
		if err := decodeEventStd(item, &events[i]); err != nil {
			return nil, pipeline.Permanent(&ItemError{Index: i, Err: err})
		}
	}
	return events, nil
}
