package gke

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// method is a methodName taken apart:
// io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>, the group
// written as a reversed domain without k8s.io (core for the core group,
// authorization.rbac for rbac.authorization.k8s.io). A non-resource
// request has no version: io.k8s.<verb>.
type method struct {
	version     string
	resource    string
	subresource string
	verb        string
}

// isVersion reports a Kubernetes API version segment: v1, v1beta1, v2alpha3.
func isVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' || s[1] < '1' || s[1] > '9' {
		return false
	}
	i := 2
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == len(s) {
		return true
	}
	rest := s[i:]
	for _, p := range []string{"alpha", "beta"} {
		if n, ok := strings.CutPrefix(rest, p); ok && n != "" && strings.Trim(n, "0123456789") == "" {
			return true
		}
	}
	return false
}

func parseMethod(name string) (method, error) {
	rest := strings.TrimPrefix(name, "io.k8s.")
	segs := strings.Split(rest, ".")
	var m method
	m.verb = segs[len(segs)-1]
	if m.verb == "" {
		return m, fmt.Errorf("converting LogEntry: methodName %s names no verb", quote(name))
	}
	vi := -1
	for i, s := range segs[:len(segs)-1] {
		if isVersion(s) {
			vi = i
			break
		}
	}
	if vi < 0 {
		// A non-resource request (/healthz, /version): no group, version
		// or resource.
		return m, nil
	}
	m.version = segs[vi]
	after := segs[vi+1 : len(segs)-1]
	switch len(after) {
	case 1:
		m.resource = after[0]
	case 2:
		m.resource, m.subresource = after[0], after[1]
	default:
		return m, fmt.Errorf("converting LogEntry: methodName %s: want <version>.<resource>[.<subresource>].<verb>", quote(name))
	}
	return m, nil
}

// parseResource reads a resourceName,
// <group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]],
// with "core" for the core group, into an ObjectReference. A non-resource
// request's resourceName is its path, returned as path with a nil ref.
func parseResource(name string, m method) (*auditv1.ObjectReference, string, error) {
	if m.version == "" {
		if name == "" {
			return nil, "/", nil
		}
		return nil, "/" + strings.TrimPrefix(name, "/"), nil
	}
	parts := strings.Split(name, "/")
	if len(parts) < 3 {
		if name == "" && m.resource != "" {
			// No resourceName: what methodName says, cluster-wide.
			return &auditv1.ObjectReference{Resource: m.resource, APIVersion: m.version, Subresource: m.subresource}, "", nil
		}
		return nil, "", fmt.Errorf("converting LogEntry: resourceName %s: want <group>/<version>/…", quote(name))
	}
	for _, p := range parts {
		if p == "" {
			return nil, "", fmt.Errorf("converting LogEntry: resourceName %s has an empty segment", quote(name))
		}
	}
	ref := &auditv1.ObjectReference{APIGroup: parts[0], APIVersion: parts[1]}
	if ref.APIGroup == "core" {
		ref.APIGroup = ""
	}
	rest := parts[2:]
	// namespaces/<ns>/<resource>… is a namespaced resource, unless the
	// method is about namespaces themselves (namespaces/<name>/finalize).
	if rest[0] == "namespaces" && len(rest) >= 3 && m.resource != "namespaces" {
		ref.Namespace, rest = rest[1], rest[2:]
	}
	if len(rest) > 3 {
		return nil, "", fmt.Errorf("converting LogEntry: resourceName %s: too many segments", quote(name))
	}
	ref.Resource = rest[0]
	if len(rest) > 1 {
		ref.Name = rest[1]
	}
	if len(rest) > 2 {
		ref.Subresource = rest[2]
	}
	if ref.Subresource == "" {
		ref.Subresource = m.subresource
	}
	return ref, "", nil
}

// requestURI rebuilds the path the client requested. GKE keeps no URI:
// the query (label and field selectors, watch=true, exec's command,
// dryRun) is lost. A create is a POST to the collection, so its URI has no
// name, as the apiserver's does, unless it is on a subresource
// (pods/<name>/exec).
func requestURI(ref *auditv1.ObjectReference, path, verb string) string {
	if ref == nil {
		return path
	}
	var b strings.Builder
	if ref.APIGroup == "" {
		b.WriteString("/api/")
	} else {
		b.WriteString("/apis/")
		b.WriteString(ref.APIGroup)
		b.WriteByte('/')
	}
	b.WriteString(ref.APIVersion)
	if ref.Namespace != "" {
		b.WriteString("/namespaces/")
		b.WriteString(ref.Namespace)
	}
	b.WriteByte('/')
	b.WriteString(ref.Resource)
	if ref.Name != "" && (verb != "create" || ref.Subresource != "") {
		b.WriteByte('/')
		b.WriteString(ref.Name)
	}
	if ref.Subresource != "" {
		b.WriteByte('/')
		b.WriteString(ref.Subresource)
	}
	return b.String()
}

// bodyInfo is what Convert reads from a request or response body.
type bodyInfo struct {
	kind    string
	name    string // metadata.name
	code    int    // a Status's code
	reason  string // a Status's reason
	message string // a Status's message
}

// body returns raw (a request or response as GKE logs it) as the
// Kubernetes object it was: without GKE's "@type" member, with kind filled
// from it if missing. Members are re-encoded in sorted order, so the same
// entry always converts to the same bytes.
func body(raw json.RawMessage) ([]byte, bodyInfo, error) {
	var info bodyInfo
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, info, nil
	}
	if raw[0] != '{' {
		return nil, info, errors.New("not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, info, err
	}
	var typ string
	if t, ok := m["@type"]; ok {
		_ = json.Unmarshal(t, &typ)
		delete(m, "@type")
	}
	_ = json.Unmarshal(m["kind"], &info.kind)
	if info.kind == "" && typ != "" {
		// core.k8s.io/v1.Pod: the kind follows the last dot after the
		// slash; the core group's apiVersion is plain v1.
		group, vk, _ := strings.Cut(typ, "/")
		if i := strings.LastIndexByte(vk, '.'); i > 0 && i < len(vk)-1 {
			info.kind = vk[i+1:]
			m["kind"], _ = json.Marshal(info.kind)
			if _, ok := m["apiVersion"]; !ok && group == "core.k8s.io" {
				m["apiVersion"], _ = json.Marshal(vk[:i])
			}
		}
	}
	if md, ok := m["metadata"]; ok {
		var meta struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(md, &meta) == nil {
			info.name = meta.Name
		}
	}
	if info.kind == "Status" {
		var st struct {
			Code    int    `json:"code"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		// A Status whose members have other types is still a body; it
		// just says nothing about the response code.
		_ = json.Unmarshal(raw, &st)
		info.code, info.reason, info.message = st.Code, st.Reason, st.Message
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, info, err
	}
	return out, info, nil
}

// grpcToHTTP maps google.rpc.Code to the HTTP status the apiserver
// answered, as Google's own API gateways map them
// (google/rpc/code.proto). GKE derives the gRPC code from the HTTP one,
// so 422 and 400 both become INVALID_ARGUMENT: a Status body, when logged,
// gives the exact code instead.
var grpcToHTTP = [...]struct {
	code   int32
	reason metav1.StatusReason
}{
	0:  {200, ""},
	1:  {499, ""},
	2:  {500, metav1.StatusReasonInternalError},
	3:  {400, metav1.StatusReasonBadRequest},
	4:  {504, metav1.StatusReasonTimeout},
	5:  {404, metav1.StatusReasonNotFound},
	6:  {409, metav1.StatusReasonAlreadyExists},
	7:  {403, metav1.StatusReasonForbidden},
	8:  {429, metav1.StatusReasonTooManyRequests},
	9:  {400, metav1.StatusReasonBadRequest},
	10: {409, metav1.StatusReasonConflict},
	11: {400, metav1.StatusReasonBadRequest},
	12: {501, ""},
	13: {500, metav1.StatusReasonInternalError},
	14: {503, metav1.StatusReasonServiceUnavailable},
	15: {500, metav1.StatusReasonInternalError},
	16: {401, metav1.StatusReasonUnauthorized},
}

// responseStatus rebuilds responseStatus: from a logged Status body when
// there is one (its code is the apiserver's own), else from the gRPC
// status. inferred reports a code that was mapped rather than read.
func responseStatus(p *AuditLog, ev *auditv1.Event, resp bodyInfo) (st *metav1.Status, inferred bool) {
	st = &metav1.Status{}
	if resp.kind == "Status" && resp.code >= 100 && resp.code <= 599 {
		st.Code = int32(resp.code)
		st.Reason = metav1.StatusReason(resp.reason)
		st.Message = resp.message
		if st.Code >= 400 {
			st.Status = metav1.StatusFailure
		}
		return st, false
	}
	grpc := 0
	if p.Status != nil {
		grpc = p.Status.Code
	}
	if grpc < 0 || grpc >= len(grpcToHTTP) {
		grpc = 2 // UNKNOWN
	}
	if grpc != 0 {
		m := grpcToHTTP[grpc]
		st.Code, st.Reason, st.Status = m.code, m.reason, metav1.StatusFailure
		if p.Status != nil {
			st.Message = p.Status.Message
		}
		return st, true
	}
	st.Code = 200
	if ref := ev.ObjectRef; ref != nil {
		switch {
		case ref.Subresource == "exec" || ref.Subresource == "attach" || ref.Subresource == "portforward":
			// The upgrade to a streaming connection.
			st.Code = 101
		case ev.Verb == "create" && ref.Subresource == "":
			st.Code = 201
		}
	}
	return st, true
}
