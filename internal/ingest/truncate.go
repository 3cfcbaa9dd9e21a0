package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Truncation mirrors kube-apiserver's truncate backend
// (k8s.io/apiserver/plugin/pkg/audit/truncate): an event over the size limit
// loses its request and response bodies and is marked with this annotation,
// so that its metadata (who did what to which object, and the verdict)
// still reaches detection.
const (
	AnnotationTruncated = "audit.k8s.io/truncated"
	truncatedValue      = "true"
)

// truncateEvent drops requestObject and responseObject from one event's JSON
// and sets the truncated annotation. Keys are matched case-insensitively,
// as encoding/json matches them when decoding, so no spelling of a body
// survives.
func truncateEvent(raw []byte) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("truncating event: %w", err)
	}
	if fields == nil {
		return nil, fmt.Errorf("truncating event: %w", errNotObject)
	}
	annotations := map[string]string{}
	for k, v := range fields {
		switch {
		case strings.EqualFold(k, "requestObject"), strings.EqualFold(k, "responseObject"):
			delete(fields, k)
		case strings.EqualFold(k, "annotations"):
			if len(v) > 0 && string(v) != "null" {
				if err := json.Unmarshal(v, &annotations); err != nil {
					return nil, fmt.Errorf("truncating event: annotations: %w", err)
				}
			}
			delete(fields, k)
		}
	}
	annotations[AnnotationTruncated] = truncatedValue
	a, err := marshal(annotations)
	if err != nil {
		return nil, fmt.Errorf("truncating event: %w", err)
	}
	fields["annotations"] = a
	out, err := marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("truncating event: %w", err)
	}
	return out, nil
}

// marshal encodes v on one line, keeping <, > and & as they are: the event
// is forwarded, not embedded in HTML.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
