package auditjson

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// The structural half of the audit-event decoder: one function per Go type
// of auditv1.Event, each reproducing what encoding/json does with that type
// (the reference in decode_std_test.go is encoding/json itself, and the
// equivalence test and fuzz target hold the two together):
//
//   - member names match exactly, else case-insensitively (Unicode simple
//     folding, like encoding/json); unknown members are validated and skipped;
//   - a repeated member decodes again into what the first one left: structs
//     and pointed-to structs merge, maps gain keys, slices are overwritten in
//     place (and a null element leaves the old element);
//   - null leaves strings, numbers and struct values unchanged and sets
//     pointers, slices and maps to nil; an empty array or object gives an
//     empty, non-nil slice or map;
//   - requestObject and responseObject are validated and kept as raw slices
//     of the input, never decoded;
//   - annotations and user.extra maps that repeat one decoded before come
//     from a cache, shared between events and read-only
//     (decode_mapcache.go).

// Field indexes per struct, in the order of their names in the tables below.
const (
	evKind = iota
	evAPIVersion
	evLevel
	evAuditID
	evStage
	evRequestURI
	evVerb
	evUser
	evImpersonatedUser
	evAuthenticationMetadata
	evSourceIPs
	evUserAgent
	evObjectRef
	evResponseStatus
	evRequestObject
	evResponseObject
	evRequestReceivedTimestamp
	evStageTimestamp
	evAnnotations
)

var eventFields = []string{
	"kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb",
	"user", "impersonatedUser", "authenticationMetadata", "sourceIPs",
	"userAgent", "objectRef", "responseStatus", "requestObject",
	"responseObject", "requestReceivedTimestamp", "stageTimestamp",
	"annotations",
}

// eventMembers is eventFields prepared for member's fast path.
var eventMembers = jsonscan.NewMembers(eventFields...)

// lookupField finds k among names, exactly or else case-insensitively.
func lookupField(names []string, k []byte) int {
	for i, n := range names {
		if string(k) == n {
			return i
		}
	}
	return foldField(names, k)
}

// foldField is encoding/json's fallback: a member name matches a field
// whose name equals it under Unicode simple case folding.
func foldField(names []string, k []byte) int {
	for i, n := range names {
		if bytes.EqualFold(k, []byte(n)) {
			return i
		}
	}
	return -1
}

// eventDecoder carries one event's decoding state.
type eventDecoder struct {
	jsonscan.Scanner
	// allocs holds the structs the event points to (objectRef,
	// responseStatus, the raw bodies), allocated together on first use
	// because nearly every event has an objectRef and most a
	// responseStatus, unless the caller's Event provides them (see
	// pipeline.Event.Slots).
	allocs *pipeline.DecodeSlots
	// strs is the unused rest of a block the event's []string members
	// (groups, sourceIPs, each user.extra value) are carved from; see
	// stringsOf.
	strs []string
	// slotStrs is the unused rest of allocs.Strings when the caller's
	// Event provides it, which the event's own groups and sourceIPs are
	// carved from first.
	slotStrs []string
	// stamps carries the date and second of the event's first timestamp
	// to its second.
	stamps lastSecond
}

// stringBlock is how many strings stringsOf allocates at once: enough for
// a typical event's groups, source IP and user.extra values together.
const stringBlock = 8

// stringsOf returns a new []string of length n for a []string member.
// Short ones share one allocation per event: on the realistic stream the
// groups, the source IP and the user.extra values were three or four
// allocations of one to three strings each. Each slice's capacity is its
// length, so appending to one reallocates instead of overwriting its
// neighbour: the slices behave as if allocated one by one.
//
// With inEvent (user.groups, sourceIPs: slices that belong to the event
// alone, never to a cached map), they come from the Event's own slots
// first (pipeline.DecodeSlots.Strings).
func (d *eventDecoder) stringsOf(n int, inEvent bool) []string {
	if inEvent && d.allocs == nil {
		d.alloc()
	}
	if inEvent && n <= len(d.slotStrs) {
		s := d.slotStrs[:n:n]
		d.slotStrs = d.slotStrs[n:]
		return s
	}
	if n > len(d.strs) {
		if n > stringBlock/2 {
			return make([]string, n)
		}
		d.strs = make([]string, stringBlock)
	}
	s := d.strs[:n:n]
	d.strs = d.strs[n:]
	return s
}

// alloc returns the structs the event points to, allocating them (and
// the strings of its groups and source IPs with them: DecodeEvent into an
// auditv1.Event then allocates once, as Decode does not at all) the
// first time the event needs one.
func (d *eventDecoder) alloc() *pipeline.DecodeSlots {
	if d.allocs == nil {
		d.allocs = new(pipeline.DecodeSlots)
		d.slotStrs = d.allocs.Strings[:]
	}
	return d.allocs
}

// decodeEventFast decodes data into ev, which must be zero, reporting kind
// and apiVersion for the caller to check. slots, when not nil, is where
// ev's pointer fields are to point (pipeline.Event.Slots), overwriting
// what they held; nil allocates them on first use (alloc).
func decodeEventFast(data []byte, ev *auditv1.Event, slots *pipeline.DecodeSlots) (kind, apiVersion string, err error) {
	d := eventDecoder{Scanner: jsonscan.Scanner{Data: data}, allocs: slots}
	if slots != nil {
		d.slotStrs = slots.Strings[:]
	}
	c, err := d.Peek()
	if err != nil {
		return "", "", err
	}
	switch c {
	case '{':
		if err := d.event(ev, &kind, &apiVersion); err != nil {
			return "", "", err
		}
	case 'n':
		// null decodes to nothing, as encoding/json has it.
		if err := d.Literal(); err != nil {
			return "", "", err
		}
	default:
		return "", "", d.Mismatch(0, "(event)", "object")
	}
	d.WS()
	if d.Pos < len(data) {
		return "", "", d.Syntax("after top-level value")
	}
	return kind, apiVersion, nil
}

// member reads the name of the member at d.Pos, leaving d.Pos at its
// value, and returns the name's index in names, or -1. *next is where
// jsonscan's MemberIn starts looking: one past the last member matched,
// since members come in field order. Names it does not find as they are
// spelt (out of order, escaped, spaced, in another case) go through Key and
// lookupField, encoding/json's rules.
func (d *eventDecoder) member(names *jsonscan.Members, next *int) (int, error) {
	i := d.MemberIn(names, *next)
	if i < 0 {
		k, err := d.Key()
		if err != nil {
			return 0, err
		}
		if i = lookupField(names.Names(), k); i < 0 {
			return -1, nil
		}
	} else if _, err := d.Peek(); err != nil {
		return 0, err
	}
	*next = i + 1
	return i, nil
}

func (d *eventDecoder) event(ev *auditv1.Event, kind, apiVersion *string) error {
	next := 0
	more, err := d.ObjectStart()
	for more && err == nil {
		var f int
		if f, err = d.member(eventMembers, &next); err != nil {
			return err
		}
		switch f {
		case evKind:
			err = d.internString(kind, 1, "kind")
		case evAPIVersion:
			err = d.internString(apiVersion, 1, "apiVersion")
		case evLevel:
			err = d.internString((*string)(&ev.Level), 1, "level")
		case evAuditID:
			err = d.fresh((*string)(&ev.AuditID), 1, "auditID")
		case evStage:
			err = d.internString((*string)(&ev.Stage), 1, "stage")
		case evRequestURI:
			err = d.string(&ev.RequestURI, 1, "requestURI")
		case evVerb:
			err = d.internString(&ev.Verb, 1, "verb")
		case evUser:
			err = d.userValue(&ev.User, 1, "user")
		case evImpersonatedUser:
			err = d.userPtr(&ev.ImpersonatedUser, 1, "impersonatedUser")
		case evAuthenticationMetadata:
			err = d.authnMetadata(&ev.AuthenticationMetadata, 1)
		case evSourceIPs:
			err = d.stringSlice(&ev.SourceIPs, 1, "sourceIPs", false, true)
		case evUserAgent:
			err = d.string(&ev.UserAgent, 1, "userAgent")
		case evObjectRef:
			err = d.objectRef(&ev.ObjectRef, 1)
		case evResponseStatus:
			err = d.status(&ev.ResponseStatus, 1)
		case evRequestObject:
			err = d.raw(&ev.RequestObject, &d.alloc().Request, 1)
		case evResponseObject:
			err = d.raw(&ev.ResponseObject, &d.alloc().Response, 1)
		case evRequestReceivedTimestamp:
			err = d.timestamp(&ev.RequestReceivedTimestamp, 1, "requestReceivedTimestamp")
		case evStageTimestamp:
			err = d.timestamp(&ev.StageTimestamp, 1, "stageTimestamp")
		case evAnnotations:
			err = d.stringMap(&ev.Annotations, 1, "annotations")
		default:
			err = d.Skip(1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

// string decodes a string member at d.Pos; depth counts the containers
// enclosing the value. The value comes from the cache of recent strings
// (see cached): most of an event's strings repeat from event to event.
func (d *eventDecoder) string(dst *string, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '"':
		raw, unquote, err := d.Content()
		if err != nil {
			return err
		}
		*dst = cachedContent(raw, unquote)
		return nil
	case 'n':
		return d.Literal()
	}
	return d.Mismatch(depth, field, "string")
}

// fresh is string for values that are new on nearly every event (the
// auditID, resource versions, object uids): caching them would only evict
// the strings that do repeat.
func (d *eventDecoder) fresh(dst *string, depth int, field string) error {
	return d.StringOrNull(dst, depth, field)
}

// internString is string for values drawn from a small vocabulary (verbs,
// stages, resources, groups...): those come from the intern table without
// allocating, and the rest from the cache.
func (d *eventDecoder) internString(dst *string, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '"':
		raw, unquote, err := d.Content()
		if err != nil {
			return err
		}
		if unquote {
			*dst = cachedContent(raw, true)
		} else {
			*dst = intern(raw)
		}
		return nil
	case 'n':
		return d.Literal()
	}
	return d.Mismatch(depth, field, "string")
}

// stringSlice decodes a []string member; interned says its elements come
// from a small vocabulary (internString), inEvent that it belongs to this
// event alone (see stringsOf).
func (d *eventDecoder) stringSlice(dst *[]string, depth int, field string, interned, inEvent bool) error {
	switch d.Data[d.Pos] {
	case '[':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "[]string")
	}
	if *dst != nil {
		return d.stringSliceInPlace(dst, depth, field, interned)
	}
	// The usual case, a first decode: gather the elements on the stack and
	// allocate the slice once, at its exact size.
	var buf [16]string
	elems := buf[:0]
	more, err := d.ArrayStart()
	for more && err == nil {
		var s string
		if err = d.element(&s, depth+1, field, interned); err != nil {
			return err
		}
		elems = append(elems, s)
		more, err = d.ArrayNext()
	}
	if err != nil {
		return err
	}
	if len(elems) == 0 {
		*dst = []string{}
		return nil
	}
	out := d.stringsOf(len(elems), inEvent)
	copy(out, elems)
	*dst = out
	return nil
}

// stringSliceInPlace decodes into a slice an earlier member of the same name
// filled, element by element, as encoding/json does.
func (d *eventDecoder) stringSliceInPlace(dst *[]string, depth int, field string, interned bool) error {
	s := *dst
	n := 0
	more, err := d.ArrayStart()
	for more && err == nil {
		if n >= len(s) {
			if n < cap(s) {
				s = s[:n+1]
			} else {
				s = append(s, "")
			}
		}
		if err = d.element(&s[n], depth+1, field, interned); err != nil {
			return err
		}
		n++
		more, err = d.ArrayNext()
	}
	if err != nil {
		return err
	}
	if n < len(s) {
		s = s[:n]
	}
	if n == 0 {
		s = []string{}
	}
	*dst = s
	return nil
}

func (d *eventDecoder) element(dst *string, depth int, field string, interned bool) error {
	if interned {
		return d.internString(dst, depth, field)
	}
	return d.string(dst, depth, field)
}

// stringMap decodes annotations. A map decoded before, byte for byte,
// comes from annotationCache, shared (see decode_mapcache.go).
func (d *eventDecoder) stringMap(dst *map[string]string, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "map[string]string")
	}
	type kv struct{ k, v string }
	var buf [maxMapMembers]kv
	pairs := buf[:0]
	start, probe := d.Pos, cacheProbe{}
	m := *dst
	if m == nil {
		if e, ok := annotationCache.lookup(d.Data[start:], &probe); ok {
			d.Pos += len(e.raw)
			*dst = e.v
			return nil
		}
	} else {
		// An earlier member of the same name filled *dst, and
		// encoding/json merges into it; but it may be a cached map,
		// shared: merge into a copy.
		m = maps.Clone(m)
	}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		p := kv{k: intern(k)}
		if err = d.string(&p.v, depth+1, field); err != nil {
			return err
		}
		if m != nil {
			m[p.k] = p.v
		} else if len(pairs) == len(buf) {
			// More members than the stack holds: spill to a map.
			m = make(map[string]string, 2*len(buf))
			for _, q := range pairs {
				m[q.k] = q.v
			}
			m[p.k] = p.v
		} else {
			pairs = append(pairs, p)
		}
		more, err = d.ObjectNext()
	}
	if err != nil {
		return err
	}
	if m == nil {
		m = make(map[string]string, len(pairs))
		for _, p := range pairs {
			m[p.k] = p.v
		}
		annotationCache.store(d.Data[start:d.Pos], &probe, m)
	}
	*dst = m
	return nil
}

var (
	userFields  = []string{"username", "uid", "groups", "extra"}
	userMembers = jsonscan.NewMembers(userFields...)
)

// userValue decodes into a UserInfo struct value (the event's user).
func (d *eventDecoder) userValue(u *authnv1.UserInfo, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '{':
		return d.user(u, depth, field)
	case 'n':
		return d.Literal()
	}
	return d.Mismatch(depth, field, "v1.UserInfo")
}

// userPtr decodes into a *UserInfo (impersonatedUser).
func (d *eventDecoder) userPtr(u **authnv1.UserInfo, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '{':
		if *u == nil {
			*u = new(authnv1.UserInfo)
		}
		return d.user(*u, depth, field)
	case 'n':
		*u = nil
		return d.Literal()
	}
	return d.Mismatch(depth, field, "v1.UserInfo")
}

// userPaths names a UserInfo's fields in errors, built once rather than
// per event.
type userPaths struct{ username, uid, groups, extra string }

func pathsOf(field string) *userPaths {
	if field == "impersonatedUser" {
		return &impersonatedUserPaths
	}
	return &userFieldPaths
}

var (
	userFieldPaths        = userPaths{"user.username", "user.uid", "user.groups", "user.extra"}
	impersonatedUserPaths = userPaths{"impersonatedUser.username", "impersonatedUser.uid", "impersonatedUser.groups", "impersonatedUser.extra"}
)

func (d *eventDecoder) user(u *authnv1.UserInfo, depth int, field string) error {
	p := pathsOf(field)
	empty := u.Username == "" && u.UID == "" && u.Groups == nil && u.Extra == nil
	start, probe := d.Pos, cacheProbe{}
	if empty {
		if e, ok := userCache.lookup(d.Data[start:], &probe); ok {
			d.Pos += len(e.raw)
			c := &e.v
			u.Username, u.UID, u.Extra = c.username, c.uid, c.extra
			switch {
			case c.groups == nil:
			case len(c.groups) == 0:
				u.Groups = []string{}
			default:
				u.Groups = d.stringsOf(len(c.groups), p == &userFieldPaths)
				copy(u.Groups, c.groups)
			}
			return nil
		}
	}
	if err := d.userMembers(u, p, depth); err != nil {
		return err
	}
	if empty {
		userCache.store(d.Data[start:d.Pos], &probe, cachedUser{u.Username, u.UID, slices.Clone(u.Groups), u.Extra})
	}
	return nil
}

func (d *eventDecoder) userMembers(u *authnv1.UserInfo, p *userPaths, depth int) error {
	next := 0
	more, err := d.ObjectStart()
	for more && err == nil {
		var f int
		if f, err = d.member(userMembers, &next); err != nil {
			return err
		}
		switch f {
		case 0:
			err = d.internString(&u.Username, depth+1, p.username)
		case 1:
			err = d.string(&u.UID, depth+1, p.uid)
		case 2:
			err = d.stringSlice(&u.Groups, depth+1, p.groups, true, p == &userFieldPaths)
		case 3:
			err = d.extra(&u.Extra, depth+1, p.extra)
		default:
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

// extra decodes user.extra. Each value decodes afresh (encoding/json zeroes
// a map element before decoding into it), so no in-place merging here. A
// map decoded before comes from extraCache, shared, like annotations.
func (d *eventDecoder) extra(dst *map[string]authnv1.ExtraValue, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "map[string]v1.ExtraValue")
	}
	type kv struct {
		k string
		v []string
	}
	var buf [maxMapMembers]kv
	pairs := buf[:0]
	start, probe := d.Pos, cacheProbe{}
	m := *dst
	if m == nil {
		if e, ok := extraCache.lookup(d.Data[start:], &probe); ok {
			d.Pos += len(e.raw)
			*dst = e.v
			return nil
		}
	} else {
		// A repeated extra member: merge into a copy, as in stringMap.
		// The copy shares the old values, which a merge replaces but
		// never writes to.
		m = maps.Clone(m)
	}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		p := kv{k: intern(k)}
		if err = d.stringSlice(&p.v, depth+1, field, false, false); err != nil {
			return err
		}
		if m != nil {
			m[p.k] = p.v
		} else if len(pairs) == len(buf) {
			m = make(map[string]authnv1.ExtraValue, 2*len(buf))
			for _, q := range pairs {
				m[q.k] = q.v
			}
			m[p.k] = p.v
		} else {
			pairs = append(pairs, p)
		}
		more, err = d.ObjectNext()
	}
	if err != nil {
		return err
	}
	if m == nil {
		m = make(map[string]authnv1.ExtraValue, len(pairs))
		for _, p := range pairs {
			m[p.k] = p.v
		}
		extraCache.store(d.Data[start:d.Pos], &probe, m)
	}
	*dst = m
	return nil
}

func (d *eventDecoder) authnMetadata(dst **auditv1.AuthenticationMetadata, depth int) error {
	const field = "authenticationMetadata"
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "v1.AuthenticationMetadata")
	}
	if *dst == nil {
		*dst = new(auditv1.AuthenticationMetadata)
	}
	names := []string{"impersonationConstraint"}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		if lookupField(names, k) == 0 {
			err = d.string(&(*dst).ImpersonationConstraint, depth+1, field+".impersonationConstraint")
		} else {
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

var (
	objectRefFields = []string{
		"resource", "namespace", "name", "uid", "apiGroup", "apiVersion",
		"resourceVersion", "subresource",
	}
	objectRefMembers = jsonscan.NewMembers(objectRefFields...)
)

func (d *eventDecoder) objectRef(dst **auditv1.ObjectReference, depth int) error {
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, "objectRef", "v1.ObjectReference")
	}
	if *dst != nil {
		return d.objectRefMembers(*dst, depth)
	}
	start, probe := d.Pos, cacheProbe{}
	a := d.alloc()
	*dst = &a.ObjectRef
	if e, ok := objectRefCache.lookup(d.Data[start:], &probe); ok {
		d.Pos += len(e.raw)
		a.ObjectRef = e.v
		return nil
	}
	a.ObjectRef = auditv1.ObjectReference{} // an earlier objectRef, or event, may have filled it
	if err := d.objectRefMembers(&a.ObjectRef, depth); err != nil {
		return err
	}
	objectRefCache.store(d.Data[start:d.Pos], &probe, a.ObjectRef)
	return nil
}

func (d *eventDecoder) objectRefMembers(o *auditv1.ObjectReference, depth int) error {
	next := 0
	more, err := d.ObjectStart()
	for more && err == nil {
		var f int
		if f, err = d.member(objectRefMembers, &next); err != nil {
			return err
		}
		switch f {
		case 0:
			err = d.internString(&o.Resource, depth+1, "objectRef.resource")
		case 1:
			err = d.internString(&o.Namespace, depth+1, "objectRef.namespace")
		case 2:
			err = d.string(&o.Name, depth+1, "objectRef.name")
		case 3:
			err = d.fresh((*string)(&o.UID), depth+1, "objectRef.uid")
		case 4:
			err = d.internString(&o.APIGroup, depth+1, "objectRef.apiGroup")
		case 5:
			err = d.internString(&o.APIVersion, depth+1, "objectRef.apiVersion")
		case 6:
			err = d.fresh(&o.ResourceVersion, depth+1, "objectRef.resourceVersion")
		case 7:
			err = d.internString(&o.Subresource, depth+1, "objectRef.subresource")
		default:
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

var (
	statusFields  = []string{"kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"}
	statusMembers = jsonscan.NewMembers(statusFields...)
)

func (d *eventDecoder) status(dst **metav1.Status, depth int) error {
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, "responseStatus", "v1.Status")
	}
	if *dst == nil {
		a := d.alloc()
		a.Status = metav1.Status{}
		*dst = &a.Status
	}
	s := *dst
	next := 0
	more, err := d.ObjectStart()
	for more && err == nil {
		var f int
		if f, err = d.member(statusMembers, &next); err != nil {
			return err
		}
		switch f {
		case 0:
			err = d.internString(&s.Kind, depth+1, "responseStatus.kind")
		case 1:
			err = d.internString(&s.APIVersion, depth+1, "responseStatus.apiVersion")
		case 2:
			err = d.listMeta(&s.ListMeta, depth+1)
		case 3:
			err = d.internString(&s.Status, depth+1, "responseStatus.status")
		case 4:
			err = d.string(&s.Message, depth+1, "responseStatus.message")
		case 5:
			err = d.internString((*string)(&s.Reason), depth+1, "responseStatus.reason")
		case 6:
			err = d.statusDetails(&s.Details, depth+1)
		case 7:
			err = d.int32(&s.Code, depth+1, "responseStatus.code")
		default:
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

var listMetaFields = []string{"selfLink", "resourceVersion", "continue", "remainingItemCount", "shardInfo"}

func (d *eventDecoder) listMeta(m *metav1.ListMeta, depth int) error {
	const field = "responseStatus.metadata"
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "v1.ListMeta")
	}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		switch lookupField(listMetaFields, k) {
		case 0:
			err = d.string(&m.SelfLink, depth+1, field+".selfLink")
		case 1:
			err = d.string(&m.ResourceVersion, depth+1, field+".resourceVersion")
		case 2:
			err = d.string(&m.Continue, depth+1, field+".continue")
		case 3:
			err = d.int64Ptr(&m.RemainingItemCount, depth+1, field+".remainingItemCount")
		case 4:
			err = d.shardInfo(&m.ShardInfo, depth+1)
		default:
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

func (d *eventDecoder) shardInfo(dst **metav1.ShardInfo, depth int) error {
	const field = "responseStatus.metadata.shardInfo"
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "v1.ShardInfo")
	}
	if *dst == nil {
		*dst = new(metav1.ShardInfo)
	}
	names := []string{"selector"}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		if lookupField(names, k) == 0 {
			err = d.string(&(*dst).Selector, depth+1, field+".selector")
		} else {
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

var detailsFields = []string{"name", "group", "kind", "uid", "causes", "retryAfterSeconds"}

func (d *eventDecoder) statusDetails(dst **metav1.StatusDetails, depth int) error {
	const field = "responseStatus.details"
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "v1.StatusDetails")
	}
	if *dst == nil {
		*dst = new(metav1.StatusDetails)
	}
	s := *dst
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		switch lookupField(detailsFields, k) {
		case 0:
			err = d.string(&s.Name, depth+1, field+".name")
		case 1:
			err = d.internString(&s.Group, depth+1, field+".group")
		case 2:
			err = d.internString(&s.Kind, depth+1, field+".kind")
		case 3:
			err = d.string((*string)(&s.UID), depth+1, field+".uid")
		case 4:
			err = d.causes(&s.Causes, depth+1)
		case 5:
			err = d.int32(&s.RetryAfterSeconds, depth+1, field+".retryAfterSeconds")
		default:
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

var causeFields = []string{"reason", "message", "field"}

// causes decodes StatusDetails.causes with encoding/json's in-place slice
// semantics; the field is rare enough that it needs no fast path.
func (d *eventDecoder) causes(dst *[]metav1.StatusCause, depth int) error {
	const field = "responseStatus.details.causes"
	switch d.Data[d.Pos] {
	case '[':
	case 'n':
		*dst = nil
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "[]v1.StatusCause")
	}
	s := *dst
	n := 0
	more, err := d.ArrayStart()
	for more && err == nil {
		if n >= len(s) {
			if n < cap(s) {
				s = s[:n+1]
			} else {
				s = append(s, metav1.StatusCause{})
			}
		}
		if err = d.cause(&s[n], depth+1); err != nil {
			return err
		}
		n++
		more, err = d.ArrayNext()
	}
	if err != nil {
		return err
	}
	if n < len(s) {
		s = s[:n]
	}
	if n == 0 {
		s = []metav1.StatusCause{}
	}
	*dst = s
	return nil
}

func (d *eventDecoder) cause(c *metav1.StatusCause, depth int) error {
	const field = "responseStatus.details.causes"
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "v1.StatusCause")
	}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		switch lookupField(causeFields, k) {
		case 0:
			err = d.internString((*string)(&c.Type), depth+1, field+".reason")
		case 1:
			err = d.string(&c.Message, depth+1, field+".message")
		case 2:
			err = d.string(&c.Field, depth+1, field+".field")
		default:
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

// integer parses a number literal the way encoding/json fills an integer
// field: strconv.ParseInt semantics, so fractions and exponents are refused
// even when they denote an integer.
func integer(lit []byte, lo, hi int64) (int64, bool) {
	neg := false
	if lit[0] == '-' {
		neg, lit = true, lit[1:]
	}
	var u uint64
	for _, c := range lit {
		if !jsonscan.IsDigit(c) {
			return 0, false
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > uint64(-lo) {
			return 0, false
		}
		return -int64(u), true
	}
	if u > uint64(hi) {
		return 0, false
	}
	return int64(u), true
}

func (d *eventDecoder) int32(dst *int32, depth int, field string) error {
	c := d.Data[d.Pos]
	if c == 'n' {
		return d.Literal()
	}
	if c != '-' && !jsonscan.IsDigit(c) {
		return d.Mismatch(depth, field, "int32")
	}
	lit, err := d.Number()
	if err != nil {
		return err
	}
	v, ok := integer(lit, math.MinInt32, math.MaxInt32)
	if !ok {
		return &jsonscan.TypeError{Value: "number " + string(lit), Field: field, Want: "int32"}
	}
	*dst = int32(v)
	return nil
}

func (d *eventDecoder) int64Ptr(dst **int64, depth int, field string) error {
	c := d.Data[d.Pos]
	if c == 'n' {
		*dst = nil
		return d.Literal()
	}
	if c != '-' && !jsonscan.IsDigit(c) {
		return d.Mismatch(depth, field, "int64")
	}
	lit, err := d.Number()
	if err != nil {
		return err
	}
	v, ok := integer(lit, math.MinInt64, math.MaxInt64)
	if !ok {
		return &jsonscan.TypeError{Value: "number " + string(lit), Field: field, Want: "int64"}
	}
	if *dst == nil {
		*dst = new(int64)
	}
	**dst = v
	return nil
}

// raw keeps a body as a slice of the input, validated but not decoded.
func (d *eventDecoder) raw(dst **runtime.Unknown, slot *runtime.Unknown, depth int) error {
	start := d.Pos
	if err := d.Skip(depth); err != nil {
		return err
	}
	raw := d.Data[start:d.Pos:d.Pos]
	if jsonscan.IsNull(raw) {
		*dst = nil
		return nil
	}
	*slot = runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON}
	*dst = slot
	return nil
}

// timestamp decodes requestReceivedTimestamp and stageTimestamp: RFC 3339
// with any number of fractional digits, null or "" for none.
func (d *eventDecoder) timestamp(dst *metav1.MicroTime, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '"':
	case 'n':
		dst.Time = time.Time{}
		return d.Literal()
	default:
		start := d.Pos
		if err := d.Skip(depth); err != nil {
			return err
		}
		return &timestampError{raw: d.Data[start:d.Pos], field: field}
	}
	start, end, _, err := d.StringEnd()
	if err != nil {
		return err
	}
	// Like the tolerant parser before it, this reads the string's raw
	// text: a timestamp spelt with escapes is not a timestamp.
	t, err := parseTimestamp(d.Data[start:end], &d.stamps)
	if err != nil {
		return err
	}
	dst.Time = t
	return nil
}

// timestampError is a timestamp member that is not a string.
type timestampError struct {
	raw   []byte
	field string
}

func (e *timestampError) Error() string {
	return "decoding " + e.field + ": timestamp must be a string, got " + truncate(e.raw, 40)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
