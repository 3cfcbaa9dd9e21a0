package auditjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// The audit API versions read. v1 is what apiservers have written since
// 1.24 removed v1beta1; v1beta1 still comes from old clusters and
// archives. Its events have every v1 field (plus metadata and a
// deprecated timestamp, ignored), so they decode into v1 as they are.
// Anything else is refused by name rather than half-decoded.
const (
	AuditAPIVersion        = "audit.k8s.io/v1"
	AuditAPIVersionV1beta1 = "audit.k8s.io/v1beta1"
	KindEvent              = "Event"
	KindEventList          = "EventList"
)

// ItemError reports which item of an EventList could not be decoded, so the
// sender learns which event was at fault.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("item %d: %v", e.Index, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// checkTypeMeta accepts an empty kind/apiVersion (webhook EventList items
// omit them) and otherwise requires the expected ones.
func checkTypeMeta(kind, apiVersion, wantKind string) error {
	if apiVersion != "" && apiVersion != AuditAPIVersion && apiVersion != AuditAPIVersionV1beta1 {
		return &typeMetaError{fmt.Sprintf("unsupported apiVersion %q: want %q (or %q)", apiVersion, AuditAPIVersion, AuditAPIVersionV1beta1)}
	}
	if kind != "" && kind != wantKind {
		return &typeMetaError{fmt.Sprintf("unexpected kind %q: want %q", kind, wantKind)}
	}
	return nil
}

// DecodeEvent decodes one audit.k8s.io/v1 (or v1beta1) Event into ev,
// exactly as encoding/json would decode it into auditv1.Event (with
// timestamps of any precision), but in a single pass without reflection:
// see decode_event.go. ev always comes out as v1. The request and response
// bodies alias data: callers that keep ev must keep data unchanged. The
// Annotations and User/ImpersonatedUser.Extra maps (and Extra's values)
// may be shared with other events: callers must not write to them. ev is
// left as it was when data does not decode.
func DecodeEvent(data []byte, ev *auditv1.Event) error {
	_, err := decodeEvent(data, ev, nil)
	return err
}

// decodeEvent is DecodeEvent that also returns the apiVersion the event
// named ("" when it named none), and takes ev's pointed-to structs from
// slots when it is not nil (see decodeEventFast).
func decodeEvent(data []byte, ev *auditv1.Event, slots *pipeline.DecodeSlots) (string, error) {
	var out auditv1.Event
	kind, apiVersion, err := decodeEventFast(data, &out, slots)
	if err != nil {
		return "", pipeline.Permanent(fmt.Errorf("decoding event: %w", err))
	}
	if err := checkTypeMeta(kind, apiVersion, KindEvent); err != nil {
		return "", pipeline.Permanent(fmt.Errorf("decoding event: %w", err))
	}
	*ev = out
	ev.Kind, ev.APIVersion = KindEvent, AuditAPIVersion
	return apiVersion, nil
}

// Decode fills e from one event's JSON and tags it with its cluster; the
// event's bodies are decoded on first use by decodeBody (see
// pipeline.Event.RequestBody). e's ObjectRef, ResponseStatus and bodies
// point into e itself (pipeline.Event.Slots), so that decoding allocates
// none of them. e is left as it was when data does not decode.
func Decode(e *pipeline.Event, cluster string, data []byte) error {
	var apiVersion string
	var err error
	if slots, inUse := e.Slots(); inUse {
		apiVersion, err = decodeRestoring(data, &e.Event, slots)
	} else {
		apiVersion, err = decodeEvent(data, &e.Event, slots)
	}
	if err != nil {
		return err
	}
	e.Decoded(cluster, data, apiVersion == AuditAPIVersionV1beta1, decodeBody)
	return nil
}

// decodeRestoring is decodeEvent into slots that the event being replaced
// points into: they are restored if data does not decode. Copying them
// (480 bytes) costs a fraction of allocating them, and a caller that
// zeroes its Event, or uses a new one, does not pay it.
//
//go:noinline
func decodeRestoring(data []byte, ev *auditv1.Event, slots *pipeline.DecodeSlots) (string, error) {
	saved := *slots
	apiVersion, err := decodeEvent(data, ev, slots)
	if err != nil {
		*slots = saved
	}
	return apiVersion, err
}

// ErrNotJSON reports a body that is not a JSON object at all.
var ErrNotJSON = errors.New("body is not a JSON object")

// SplitEventList checks an EventList's envelope and returns its items as raw
// JSON, each compacted onto one line, without decoding them. Ingest uses it
// to forward events byte for byte; DecodeEvent validates each item. Items
// that were already on one line (what the apiserver writes) alias data.
func SplitEventList(data []byte) ([][]byte, error) {
	items, _, err := SplitEventListVersion(data, nil, 0)
	return items, err
}

// ErrTooManyItems reports an EventList with more items than the caller
// allows.
var ErrTooManyItems = errors.New("too many items")

// SplitEventListVersion is SplitEventList that also returns the list's
// apiVersion, and appends the items to buf (which may be nil) so that a
// caller splitting many lists can reuse one slice. With maxItems > 0 it
// stops at the first item beyond maxItems, with an error wrapping
// ErrTooManyItems: a 64 MiB body of `{},` would otherwise cost half a
// gigabyte of slice headers before anyone counted them.
func SplitEventListVersion(data []byte, buf [][]byte, maxItems int) (items [][]byte, apiVersion string, err error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, "", pipeline.Permanent(fmt.Errorf("decoding event list: %w", ErrNotJSON))
	}
	kind, apiVersion, raw, err := splitEventListFast(data, buf, maxItems)
	if err != nil {
		return nil, "", pipeline.Permanent(fmt.Errorf("decoding event list: %w", err))
	}
	if kind == "" && apiVersion == "" && raw == nil {
		return nil, "", pipeline.Permanent(errors.New("decoding event list: no kind, apiVersion or items: not an audit EventList"))
	}
	if err := checkTypeMeta(kind, apiVersion, KindEventList); err != nil {
		return nil, "", pipeline.Permanent(fmt.Errorf("decoding event list: %w", err))
	}
	for i, item := range raw {
		raw[i] = compact(item)
	}
	if raw == nil {
		raw = [][]byte{}
	}
	return raw, apiVersion, nil
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
		return raw // the scanner accepted it, so Compact cannot fail
	}
	return buf.Bytes()
}

// DecodeEvents decodes either an EventList or a single Event. An item that
// fails to decode is reported as an *ItemError naming its index.
func DecodeEvents(data []byte) ([]auditv1.Event, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, pipeline.Permanent(fmt.Errorf("decoding events: %w", ErrNotJSON))
	}
	kind, err := probeKind(trimmed)
	if err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("decoding events: %w", err))
	}
	if kind == KindEvent {
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
			return nil, pipeline.Permanent(&ItemError{Index: i, Err: err})
		}
	}
	return events, nil
}
