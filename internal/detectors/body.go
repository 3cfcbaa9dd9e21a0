package detectors

import "github.com/auditpipe/auditpipe/internal/pipeline"

// This file reads typed views out of a body decoded once per event by
// pipeline.Event.RequestBody and ResponseBody (a tree of map[string]any,
// []any, string, float64, bool and nil), so that detectors share that one
// decode instead of each running encoding/json over the same bytes.
//
// A bodyReader mirrors what json.Unmarshal into a typed struct does: null
// leaves a field at its zero value, and a value of the wrong JSON type makes
// the whole body unreadable (json.Unmarshal returns an error, which the
// detectors treat as "no body"). Keys match exactly: the apiserver writes
// audit bodies with canonical keys, where encoding/json would also have
// accepted a key differing in case.

// bodyDecoded returns the event's decoded response body when src is
// pipeline.FromResponse, else its decoded request body.
func bodyDecoded(ev *pipeline.Event, src string) any {
	if src == pipeline.FromResponse {
		return ev.ResponseBody()
	}
	return ev.RequestBody()
}

// bodyReader accumulates type mismatches while a view is read.
type bodyReader struct {
	bad bool
}

// obj returns v as an object; nil for null or absent.
func (r *bodyReader) obj(v any) map[string]any {
	switch v := v.(type) {
	case nil:
		return nil
	case map[string]any:
		return v
	}
	r.bad = true
	return nil
}

// list returns v as an array; nil for null or absent.
func (r *bodyReader) list(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	r.bad = true
	return nil
}

// str returns v as a string; "" for null or absent.
func (r *bodyReader) str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	r.bad = true
	return ""
}

// strPtr returns v as a *string; nil for null or absent.
func (r *bodyReader) strPtr(v any) *string {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return &v
	}
	r.bad = true
	return nil
}

// boolPtr returns v as a *bool; nil for null or absent.
func (r *bodyReader) boolPtr(v any) *bool {
	switch v := v.(type) {
	case nil:
		return nil
	case bool:
		return &v
	}
	r.bad = true
	return nil
}

// strMap returns v as a map[string]string, the type of labels and
// annotations; a null value reads as "", as json.Unmarshal stores it.
func (r *bodyReader) strMap(v any) map[string]string {
	m := r.obj(v)
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = r.str(v)
	}
	return out
}

// int64Ptr returns v as a *int64; nil for null or absent. A number that is
// not an integer in int64's range is a mismatch, as json.Unmarshal makes it.
func (r *bodyReader) int64Ptr(v any) *int64 {
	switch f := v.(type) {
	case nil:
		return nil
	case float64:
		// -2^63 is exact in float64; 2^63 is the first value out of range.
		if f == float64(int64(f)) && f >= -(1<<63) && f < 1<<63 {
			n := int64(f)
			return &n
		}
	}
	r.bad = true
	return nil
}

// strList returns v as a []string; nil for null or absent.
func (r *bodyReader) strList(v any) []string {
	l := r.list(v)
	if l == nil {
		return nil
	}
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = r.str(e)
	}
	return out
}
