package pipeline

import (
	"encoding/binary"
	"encoding/json"
	"strings"

	"github.com/cespare/xxhash/v2"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Well-known keys in user.extra and annotations that several stages read.
const (
	ExtraCredentialID = "authentication.kubernetes.io/credential-id"
	ExtraPodName      = "authentication.kubernetes.io/pod-name"
	ExtraPodUID       = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName     = "authentication.kubernetes.io/node-name"
	ExtraNodeUID      = "authentication.kubernetes.io/node-uid"

	AnnotationDecision = "authorization.k8s.io/decision"
	AnnotationReason   = "authorization.k8s.io/reason"

	// HeaderCluster is the Kafka header (and spool field) carrying the name
	// of the cluster an event came from.
	HeaderCluster = "auditpipe-cluster"
)

// Event is one decoded audit event, tagged with the cluster that sent it.
//
// RequestObject and ResponseObject stay raw JSON (runtime.Unknown.Raw) until
// a detector asks for them: most detectors never look at bodies.
type Event struct {
	auditv1.Event

	// Cluster names the cluster whose apiserver produced the event.
	Cluster string
	// Raw is the event JSON as it travelled through the pipeline.
	Raw []byte
	// hash caches Hash once hashed is set.
	hash   uint64
	hashed bool
	// V1beta1 reports an event that named audit.k8s.io/v1beta1: decoded
	// into v1, but Raw still reads as it was sent.
	V1beta1 bool

	// bodies caches the decoded request and response bodies; see
	// RequestBody.
	bodies bodyCache

	// slots holds what Decode points ObjectRef, ResponseStatus,
	// RequestObject and ResponseObject at; see Slots.
	slots DecodeSlots
}

// DecodeSlots holds the structs a decoded event's pointer fields point to,
// for a decoder to fill instead of allocating them: nearly every event has
// an objectRef and a responseStatus, and allocating the four together was
// 43 % of the bytes detect allocated per event (BenchmarkDecodeDetect-
// DefaultRules) for structs that live exactly as long as the Event.
type DecodeSlots struct {
	ObjectRef auditv1.ObjectReference
	Status    metav1.Status
	Request   runtime.Unknown
	Response  runtime.Unknown
	// Strings backs the elements of the event's user.groups and
	// sourceIPs when they fit: three groups and one address on most
	// events. Nothing a decoder may share between events (a cached
	// user.extra map's values) may be carved from it.
	Strings [8]string
}

// holds reports whether p's elements are carved from s.Strings.
func (s *DecodeSlots) holds(p []string) bool {
	if len(p) == 0 {
		return false
	}
	for i := range s.Strings {
		if &p[0] == &s.Strings[i] {
			return true
		}
	}
	return false
}

// Slots returns e's slots, for the decoder to fill e from, and whether
// any of e's pointer fields (or its groups' or source IPs' elements)
// points into them now: a decoder that fills
// them then must restore them when it fails, to leave e as it was. A
// copy of e (or of e.Event) shares e's ObjectRef, ResponseStatus and
// body structs and its groups' and source IPs' elements, as it shares
// the input the bodies alias, only until e is decoded again or zeroed:
// the scan, the processor and ingest keep no copies. So does a Finding
// made from e (its Groups), which the scan prints, and the processor
// stores with e, before e is reused.
func (e *Event) Slots() (s *DecodeSlots, inUse bool) {
	s = &e.slots
	return s, e.ObjectRef == &s.ObjectRef || e.ResponseStatus == &s.Status ||
		e.RequestObject == &s.Request || e.ResponseObject == &s.Response ||
		s.holds(e.User.Groups) || s.holds(e.SourceIPs)
}

// bodyCache holds the request and response bodies of one event, each
// decoded at most once, on first use, and shared by every built-in detector
// and every rule: decoding bodies again per reader was a quarter of
// detect's time.
//
// Each entry remembers which runtime.Unknown and which bytes it decoded,
// so an Event refilled by Decode, or a test that swaps RequestObject, never
// reads a stale body, without Decode having to know about the cache.
type bodyCache struct {
	req, resp decodedBody
	// decode is the decoder's body decoder, set by Decoded; nil (an Event
	// built by hand) falls back to encoding/json, which yields the same
	// values, more slowly.
	decode BodyDecoder
	// decodes counts JSON decodes of bodies; BodyDecodes reports it.
	decodes int
}

// decodedBody is one body, what it decoded to, and the typed views
// readers made of it (see BodyView).
type decodedBody struct {
	src   *runtime.Unknown
	raw   []byte
	v     any
	views [2]bodyView
}

// bodyView is one typed view of a decoded body, under its reader's key.
type bodyView struct {
	key, v any
}

// BodyDecoder decodes a request or response body into what json.Unmarshal
// into an any yields, or reports false where json.Unmarshal fails. The
// audit-event decoder (internal/auditjson) hands its own to Decoded: the
// model cannot import the decoder, which imports the model.
type BodyDecoder func(data []byte) (any, bool)

// unmarshalBody is the BodyDecoder of an Event no decoder filled.
func unmarshalBody(data []byte) (any, bool) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, false
	}
	return v, true
}

// Decoded finishes e after a decoder filled e.Event from data: it tags e
// with its cluster, keeps data as Raw, forgets the previous Hash, records whether the
// event named audit.k8s.io/v1beta1, and remembers bodies as the decoder of
// e's request and response bodies (nil: encoding/json's).
func (e *Event) Decoded(cluster string, data []byte, v1beta1 bool, bodies BodyDecoder) {
	e.Cluster = cluster
	e.Raw = data
	e.hashed = false
	e.V1beta1 = v1beta1
	// The previous event's decoded bodies would otherwise stay reachable,
	// and with them the batch their raw bytes came from, until a detector
	// asked for this event's.
	e.bodies.req, e.bodies.resp = decodedBody{}, decodedBody{}
	e.bodies.decode = bodies
	// Nor should a slot this event does not use keep an earlier event's
	// body, and the input it aliases, reachable.
	if s := &e.slots; e.RequestObject != &s.Request {
		s.Request.Raw = nil
	}
	if s := &e.slots; e.ResponseObject != &s.Response {
		s.Response.Raw = nil
	}
}

// get returns u's decoded body, decoding it with decode (nil: encoding/json)
// unless d already holds it. The decoders are linear in the input and stop
// at 10,000 levels of nesting, as encoding/json does, so an attacker-sized
// body costs its size, once.
func (d *decodedBody) get(u *runtime.Unknown, decodes *int, decode BodyDecoder) any {
	if u == nil || len(u.Raw) == 0 {
		return nil
	}
	if d.src == u && len(d.raw) == len(u.Raw) && &d.raw[0] == &u.Raw[0] {
		return d.v
	}
	*decodes++
	if decode == nil {
		decode = unmarshalBody
	}
	v, ok := decode(u.Raw)
	if !ok {
		v = nil
	}
	*d = decodedBody{src: u, raw: u.Raw, v: v}
	return v
}

// BodyDecoded reports whether the request body (src FromRequest) or the
// response body (FromResponse) has been decoded already, so that its next
// read costs nothing: a reader may prefer a cheaper test on the raw bytes
// before a first decode.
func (e *Event) BodyDecoded(src string) bool {
	d, u := &e.bodies.req, e.RequestObject
	if src == FromResponse {
		d, u = &e.bodies.resp, e.ResponseObject
	}
	return u != nil && len(u.Raw) > 0 && d.src == u && len(d.raw) == len(u.Raw) && &d.raw[0] == &u.Raw[0]
}

// RequestBody returns the request body decoded as by json.Unmarshal into
// an any (objects are map[string]any, numbers float64), or nil when there
// is none or it is not valid JSON. It is decoded on the first call and
// shared after: callers must treat the result as read-only. An Event is
// not safe for concurrent use, and neither is this cache.
func (e *Event) RequestBody() any {
	return e.bodies.req.get(e.RequestObject, &e.bodies.decodes, e.bodies.decode)
}

// ResponseBody is RequestBody for the response body.
func (e *Event) ResponseBody() any {
	return e.bodies.resp.get(e.ResponseObject, &e.bodies.decodes, e.bodies.decode)
}

// BodyView returns what build made of the decoded request body (src
// FromRequest) or response body (FromResponse), calling build at most once
// per body and key, so that the detectors reading one typed view (a pod
// spec, a token review) share it as they share the decoded body. key is a
// comparable value of a type private to the reader, such as an empty
// struct; build receives what RequestBody or ResponseBody returns and its
// result must be treated as read-only. An event keeps two views per body;
// beyond that, build runs on every call.
func (e *Event) BodyView(src string, key any, build func(body any) any) any {
	d, u := &e.bodies.req, e.RequestObject
	if src == FromResponse {
		d, u = &e.bodies.resp, e.ResponseObject
	}
	body := d.get(u, &e.bodies.decodes, e.bodies.decode)
	if u == nil || len(u.Raw) == 0 {
		// No body, so no cache entry that is this event's.
		return build(nil)
	}
	for i := range d.views {
		if d.views[i].key == key {
			return d.views[i].v
		}
	}
	v := build(body)
	for i := range d.views {
		if d.views[i].key == nil {
			d.views[i] = bodyView{key: key, v: v}
			break
		}
	}
	return v
}

// BodyDecodes reports how many times a body of e was JSON-decoded since e
// was created or Reset, so tests can prove every reader shares one decode.
func (e *Event) BodyDecodes() int {
	return e.bodies.decodes
}

// Reset clears e for reuse, keeping allocated capacity where that is safe.
func (e *Event) Reset() {
	*e = Event{}
}

// CredentialID returns the first authentication.kubernetes.io/credential-id
// value in user.extra, or "". Only user.extra is read: impersonatedUser.extra
// is client supplied and never trusted for identity.
func (e *Event) CredentialID() string {
	return firstExtra(e.User.Extra, ExtraCredentialID)
}

// Extra returns the first value of user.extra[key], or "".
func (e *Event) Extra(key string) string {
	return firstExtra(e.User.Extra, key)
}

func firstExtra(extra map[string]authnv1.ExtraValue, key string) string {
	if v := extra[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// SourceIP returns the first source IP: the client as the apiserver saw it,
// after any X-Forwarded-For hops it trusts.
func (e *Event) SourceIP() string {
	if len(e.SourceIPs) > 0 {
		return e.SourceIPs[0]
	}
	return ""
}

// Code returns the HTTP status code of the response, or 0 when the event has
// none (RequestReceived stage).
func (e *Event) Code() int32 {
	if e.ResponseStatus == nil {
		return 0
	}
	return e.ResponseStatus.Code
}

// Decision returns the authorization.k8s.io/decision annotation ("allow",
// "forbid" or "" before authorization ran).
func (e *Event) Decision() string {
	return e.Annotations[AnnotationDecision]
}

// Subject is what ingest partitions by, so that all events of one credential
// reach one consumer: the bound token's credential-id, else the username,
// else the first source IP (failed authentication has an empty user).
func (e *Event) Subject() string {
	if id := e.CredentialID(); id != "" {
		return id
	}
	if e.User.Username != "" {
		return e.User.Username
	}
	return e.SourceIP()
}

// IsLongRunning reports whether the apiserver treats the request as
// long-running, in which case the ResponseStarted stage is emitted as soon as
// the response begins and ResponseComplete may follow hours later.
func (e *Event) IsLongRunning() bool {
	if e.Verb == "watch" {
		return true
	}
	if e.ObjectRef != nil {
		switch e.ObjectRef.Subresource {
		case "exec", "attach", "portforward", "proxy", "log":
			// log is only long-running with follow=true, but its events are
			// judged the same way either way: the first stage that carries a
			// response code.
			return e.ObjectRef.Subresource != "log" || strings.Contains(e.RequestURI, "follow=true")
		}
	}
	return false
}

// IsFailedAuthentication reports the single ResponseStarted event the
// apiserver emits when no authenticator accepted the request.
func (e *Event) IsFailedAuthentication() bool {
	return e.Code() == 401 && e.User.Username == "" && len(e.User.Groups) == 0
}

// IsAuthoritative reports whether a request may be judged from this
// stage: ResponseStarted for long-running requests and failed
// authentication (their earliest complete view, and the only event of a
// failed authentication), ResponseComplete for every request (it is the
// only stage left when a cluster sets `omitStages: [ResponseStarted]`),
// Panic, which replaces ResponseComplete when a handler panicked, and an
// event with no stage at all (some log exports drop it), judged as
// ResponseComplete. RequestReceived is never judged: authorization has not
// run yet.
//
// A long-running request has two authoritative stages; StageGate judges
// whichever arrives first and skips the other, so a request is reported
// once.
func (e *Event) IsAuthoritative() bool {
	switch e.Stage {
	case auditv1.StageResponseStarted:
		return e.IsLongRunning() || e.IsFailedAuthentication()
	case auditv1.StageResponseComplete, auditv1.StagePanic, "":
		return true
	}
	return false
}

// Hash returns ContentHash of e, computed on the first call after Decoded
// and cached: ingest and the ClickHouse rows need it, detect scan and the
// detectors do not (hashing every decoded event was 3 % of decode,
// built-ins and the default pack). A caller that edits the hashed fields
// after the first call sees the old value; Decoded starts over.
func (e *Event) Hash() uint64 {
	if !e.hashed {
		e.hash, e.hashed = ContentHash(&e.Event), true
	}
	return e.hash
}

// ContentHash fingerprints the request and stage an event describes. It is
// part of the events table's deduplication key: a redelivered event hashes
// the same, while a request that reuses another's client-chosen auditID
// (the Audit-ID header) does not, so it cannot replace the other request's
// row. Finding ids use RequestHash, the same without the stage.
func ContentHash(ev *auditv1.Event) uint64 { return eventHash(ev, true) }

// eventHash is ContentHash, or RequestHash without the stage and stage
// timestamp. The bytes hashed, and so the values, are what each wrote when
// it had its own copy: stored rows keep their keys. They are gathered on
// the stack and hashed at once: detect hashes each event two or three
// times (StageGate, every finding's id), and a Digest fed a field and a
// separator at a time took twice as long.
func eventHash(ev *auditv1.Event, stage bool) uint64 {
	var stack [512]byte
	b := appendHashField(stack[:0], string(ev.AuditID))
	if stage {
		b = appendHashField(b, string(ev.Stage))
	}
	b = appendHashField(b, ev.Verb)
	b = appendHashField(b, ev.RequestURI)
	b = appendHashField(b, ev.User.Username)
	b = appendHashField(b, ev.UserAgent)
	for _, ip := range ev.SourceIPs {
		b = appendHashField(b, ip)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(ev.RequestReceivedTimestamp.UnixMicro()))
	if stage {
		b = binary.LittleEndian.AppendUint64(b, uint64(ev.StageTimestamp.UnixMicro()))
	}
	return xxhash.Sum64(b)
}

// appendHashField appends s and its separator to b.
func appendHashField(b []byte, s string) []byte {
	return append(append(b, s...), 0)
}
