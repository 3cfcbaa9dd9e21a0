package gen

import (
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// shape says which stages a request produces.
type shape uint8

const (
	// shapeNormal: RequestReceived, then ResponseComplete.
	shapeNormal shape = iota
	// shapeLong: RequestReceived, ResponseStarted when the response begins
	// (watch, exec), ResponseComplete when the stream ends.
	shapeLong
	// shapeFailedAuth: the single ResponseStarted event of a request no
	// authenticator accepted.
	shapeFailedAuth
	// shapePanic: RequestReceived, then Panic instead of ResponseComplete.
	shapePanic
)

// objRef is an audit ObjectReference; empty resource means a non-resource
// URL, which has none.
type objRef struct {
	resource, ns, name, group, version, subresource string
}

// request is one API request; render turns it into the JSON of each stage.
type request struct {
	level    string
	uri      string
	verb     string
	user     []byte
	ip       string
	ua       string
	ref      objRef
	code     int
	status   []byte // full responseStatus JSON; nil means {"metadata":{},"code":<code>}
	reqObj   []byte // sent at Request level and above
	respObj  []byte // sent at RequestResponse only
	authn    []kv   // annotations set during authentication: present from RequestReceived
	authz    []kv   // annotations set by authorization and admission: ResponseStarted on
	received time.Time
	latency  time.Duration // until ResponseComplete (the stream's length for long requests)
	started  time.Duration // until ResponseStarted, long requests only
	shape    shape
	scenario string
	expect   []string
}

// allow returns the authorization annotations of an allowed request.
func allow(reason string) []kv {
	return []kv{{"authorization.k8s.io/decision", "allow"}, {"authorization.k8s.io/reason", reason}}
}

// forbid returns the authorization annotations of a denied request.
func forbid(reason string) []kv {
	return []kv{{"authorization.k8s.io/decision", "forbid"}, {"authorization.k8s.io/reason", reason}}
}

// Stages in wire form.
const (
	stReceived = auditv1.StageRequestReceived
	stStarted  = auditv1.StageResponseStarted
	stComplete = auditv1.StageResponseComplete
	stPanic    = auditv1.StagePanic
)

// render writes the event of one stage of rq, shaped as the apiserver's log
// backend writes it (kind and apiVersion included, fields in struct order).
func render(dst []byte, rq *request, auditID string, stage auditv1.Stage, at time.Time) []byte {
	b := append(dst, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"`...)
	b = append(b, rq.level...)
	b = append(b, `","auditID":"`...)
	b = append(b, auditID...)
	b = append(b, `","stage":"`...)
	b = append(b, stage...)
	b = append(b, `","requestURI":`...)
	b = appendString(b, rq.uri)
	b = append(b, `,"verb":"`...)
	b = append(b, rq.verb...)
	b = append(b, `","user":`...)
	if rq.shape == shapeFailedAuth {
		b = append(b, `{}`...)
	} else {
		b = append(b, rq.user...)
	}
	b = append(b, `,"sourceIPs":["`...)
	b = append(b, rq.ip...)
	b = append(b, `"],"userAgent":`...)
	b = appendString(b, rq.ua)
	if rq.ref.resource != "" {
		b = appendObjRef(b, &rq.ref)
	}
	if stage != stReceived {
		b = append(b, `,"responseStatus":`...)
		switch {
		case rq.status != nil:
			b = append(b, rq.status...)
		default:
			b = append(b, `{"metadata":{},"code":`...)
			b = appendInt(b, int64(rq.code))
			b = append(b, '}')
		}
		// The request body is logged by the handler before the response
		// starts; the response body only once it is complete.
		if rq.reqObj != nil && rq.level != "Metadata" {
			b = append(b, `,"requestObject":`...)
			b = append(b, rq.reqObj...)
		}
		if rq.respObj != nil && rq.level == "RequestResponse" && stage != stStarted {
			b = append(b, `,"responseObject":`...)
			b = append(b, rq.respObj...)
		}
	}
	b = append(b, `,"requestReceivedTimestamp":`...)
	b = appendMicro(b, rq.received)
	b = append(b, `,"stageTimestamp":`...)
	b = appendMicro(b, at)
	var ann [8]kv
	a := append(ann[:0], rq.authn...)
	if stage != stReceived && rq.shape != shapeFailedAuth {
		a = append(a, rq.authz...)
	}
	if len(a) > 0 {
		b = append(b, `,"annotations":`...)
		b = appendSortedMap(b, a)
	}
	return append(b, '}')
}

func appendObjRef(b []byte, r *objRef) []byte {
	b = append(b, `,"objectRef":{"resource":"`...)
	b = append(b, r.resource...)
	b = append(b, '"')
	if r.ns != "" {
		b = append(b, `,"namespace":"`...)
		b = append(b, r.ns...)
		b = append(b, '"')
	}
	if r.name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, r.name)
	}
	if r.group != "" {
		b = append(b, `,"apiGroup":"`...)
		b = append(b, r.group...)
		b = append(b, '"')
	}
	if r.version != "" {
		b = append(b, `,"apiVersion":"`...)
		b = append(b, r.version...)
		b = append(b, '"')
	}
	if r.subresource != "" {
		b = append(b, `,"subresource":"`...)
		b = append(b, r.subresource...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// statusJSON renders a failure responseStatus as LogResponseObject copies
// it (status, message, reason, details, code); details "" omits them.
func statusJSON(message, reason, details string, code int) []byte {
	b := []byte(`{"metadata":{},"status":"Failure","message":`)
	b = appendString(b, message)
	b = append(b, `,"reason":"`...)
	b = append(b, reason...)
	b = append(b, '"')
	if details != "" {
		b = append(b, `,"details":`...)
		b = append(b, details...)
	}
	b = append(b, `,"code":`...)
	b = appendInt(b, int64(code))
	return append(b, '}')
}

// failedAuthStatus is the responseStatus of a failed authentication: only
// a message, and the code the response writer recorded.
func failedAuthStatus(message string) []byte {
	b := []byte(`{"metadata":{},"message":`)
	b = appendString(b, message)
	return append(b, `,"code":401}`...)
}
