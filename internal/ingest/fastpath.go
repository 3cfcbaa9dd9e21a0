package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// The fast path reads an EventList and its items in one validating pass over
// the bytes, keeping only what ingest needs to key, hash and deduplicate an
// event, instead of decoding every item into an auditv1.Event.
//
// It is sound rather than complete: it accepts an item only when it is sure
// pipeline.DecodeEvent would accept it and yield the same fields. Anything
// unusual (an escaped or case-folded key, a duplicate key, a null inside an
// array, a number encoding/json might refuse, an escaped string in a field
// it extracts) makes it give up, and the caller falls back to the full
// decoder, which then accepts the item or names its error. So a malformed
// item is always rejected with the full decoder's message and index. The
// differential fuzz targets in fastpath_test.go hold it to that.

// maxFastDepth bounds nesting on the fast path; deeper documents (legal up to
// encoding/json's 10,000) go to the full decoder.
const maxFastDepth = 512

type nodeKind uint8

const (
	kAny         nodeKind = iota // any JSON value, validated and skipped
	kString                      // string or null
	kInt32                       // integer literal in int32 range, or null
	kInt64                       // integer literal in int64 range, or null
	kTime                        // RFC 3339 string, empty string, or null
	kStringSlice                 // array of strings, or null
	kStringMap                   // object of strings, or null
	kExtraMap                    // object of string arrays (user.extra), or null
	kObject                      // struct: fields matched as encoding/json does
	kObjectSlice                 // array of kObject
)

// slot names a field the fast path extracts; 0 extracts nothing.
type slot uint8

const (
	slotNone slot = iota
	slotKind
	slotAPIVersion
	slotAuditID
	slotStage
	slotRequestURI
	slotVerb
	slotUsername
	slotUserAgent
	slotSourceIPs
	slotExtra
	slotReceived
	slotStageTime
	slotCount
)

type field struct {
	name string
	n    *node
	slot slot
}

type node struct {
	kind   nodeKind
	fields []field // kObject, kObjectSlice
}

var (
	nAny         = &node{kind: kAny}
	nString      = &node{kind: kString}
	nInt32       = &node{kind: kInt32}
	nInt64       = &node{kind: kInt64}
	nTime        = &node{kind: kTime}
	nStringSlice = &node{kind: kStringSlice}
	nStringMap   = &node{kind: kStringMap}
	nExtraMap    = &node{kind: kExtraMap}
)

func object(fields ...field) *node { return &node{kind: kObject, fields: fields} }

func stringFields(names ...string) []field {
	fs := make([]field, len(names))
	for i, n := range names {
		fs[i] = field{name: n, n: nString}
	}
	return fs
}

// eventSchema mirrors pipeline's wireEvent: auditv1.Event with
// authnv1.UserInfo, auditv1.ObjectReference and metav1.Status as
// encoding/json sees them.
var eventSchema = func() *node {
	user := func(extract bool) *node {
		u, e := slotNone, slotNone
		if extract {
			u, e = slotUsername, slotExtra
		}
		return object(
			field{name: "username", n: nString, slot: u},
			field{name: "uid", n: nString},
			field{name: "groups", n: nStringSlice},
			field{name: "extra", n: nExtraMap, slot: e},
		)
	}
	cause := object(stringFields("reason", "message", "field")...)
	details := object(append(stringFields("name", "group", "kind", "uid"),
		field{name: "causes", n: &node{kind: kObjectSlice, fields: cause.fields}},
		field{name: "retryAfterSeconds", n: nInt32})...)
	listMeta := object(append(stringFields("selfLink", "resourceVersion", "continue"),
		field{name: "remainingItemCount", n: nInt64})...)
	status := object(append(stringFields("kind", "apiVersion", "status", "message", "reason"),
		field{name: "metadata", n: listMeta},
		field{name: "details", n: details},
		field{name: "code", n: nInt32})...)
	return object(
		field{name: "kind", n: nString, slot: slotKind},
		field{name: "apiVersion", n: nString, slot: slotAPIVersion},
		field{name: "level", n: nString},
		field{name: "auditID", n: nString, slot: slotAuditID},
		field{name: "stage", n: nString, slot: slotStage},
		field{name: "requestURI", n: nString, slot: slotRequestURI},
		field{name: "verb", n: nString, slot: slotVerb},
		field{name: "user", n: user(true)},
		field{name: "impersonatedUser", n: user(false)},
		field{name: "authenticationMetadata", n: object(stringFields("impersonationConstraint")...)},
		field{name: "sourceIPs", n: nStringSlice, slot: slotSourceIPs},
		field{name: "userAgent", n: nString, slot: slotUserAgent},
		field{name: "objectRef", n: object(stringFields("resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource")...)},
		field{name: "responseStatus", n: status},
		field{name: "requestObject", n: nAny},
		field{name: "responseObject", n: nAny},
		field{name: "requestReceivedTimestamp", n: nTime, slot: slotReceived},
		field{name: "stageTimestamp", n: nTime, slot: slotStageTime},
		field{name: "annotations", n: nStringMap},
	)
}()

// listSchema mirrors pipeline's wireList.
var listSchema = object(
	field{name: "kind", n: nString, slot: slotKind},
	field{name: "apiVersion", n: nString, slot: slotAPIVersion},
	field{name: "items", n: &node{kind: kAny}, slot: slotNone}, // handled by splitFast
)

// fastEvent is what the fast path extracts from one event. Its strings alias
// the item's bytes: valid while the item is.
type fastEvent struct {
	str          [slotCount]string
	sourceIPs    []string
	credentialID string
	credSeen     bool
	times        [2]time.Time
}

type scanner struct {
	b     []byte
	i     int
	depth int
	ev    *fastEvent
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) ws() {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a JSON string at s.i and returns its raw contents (between the
// quotes) and whether it holds an escape.
func (s *scanner) str() (raw []byte, escaped, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		// Skip 8 bytes at a time while none of them ends the string,
		// starts an escape or is a control character: most of an audit
		// event's bytes are plain string contents.
		for i+8 <= len(s.b) && !special8(binary.LittleEndian.Uint64(s.b[i:])) {
			i += 8
		}
		if i >= len(s.b) {
			break
		}
		c := s.b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], escaped, true
		case c == '\\':
			escaped = true
			i++
			if i >= len(s.b) {
				return nil, false, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				i += 4
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		}
	}
	return nil, false, false
}

// special8 reports whether any of the 8 bytes in w is '"', '\\' or below
// 0x20, with the classic SWAR tests for a zero byte and a byte below n.
func special8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	less := (w - ones*0x20) & ^w & highs
	return less|hasZero(w^(ones*'"'))|hasZero(w^(ones*'\\')) != 0
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// text returns raw as a string sharing its memory, or false when the value
// would differ after encoding/json's decoding (escapes, invalid UTF-8).
func text(raw []byte, escaped bool) (string, bool) {
	if escaped {
		return unescape(raw)
	}
	if !utf8.Valid(raw) {
		return "", false
	}
	if len(raw) == 0 {
		return "", true
	}
	return unsafe.String(&raw[0], len(raw)), true
}

// unescape decodes a JSON string's escapes (the apiserver writes & as
// \u0026 in every query string). Surrogates and invalid UTF-8, which
// encoding/json replaces, are left to the full decoder.
func unescape(raw []byte) (string, bool) {
	if !utf8.Valid(raw) {
		return "", false
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++ // str() checked that an escape is complete
		switch raw[i] {
		case '"', '\\', '/':
			out = append(out, raw[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			var r rune
			for _, h := range raw[i+1 : i+5] {
				r = r<<4 | rune(unhex(h))
			}
			if utf16.IsSurrogate(r) {
				return "", false
			}
			out = utf8.AppendRune(out, r)
			i += 4
		}
	}
	return string(out), true
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func (s *scanner) literal(lit string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.i += len(lit)
		return true
	}
	return false
}

// number validates a JSON number and reports whether it is a plain integer.
func (s *scanner) number() (raw []byte, integer, ok bool) {
	start := s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return nil, false, false
	}
	integer = true
	if s.peek() == '.' {
		integer = false
		s.i++
		if !s.digits() {
			return nil, false, false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		integer = false
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return nil, false, false
		}
	}
	return s.b[start:s.i], integer, true
}

func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// integerIn reports whether the integer literal raw fits in bits.
func integerIn(raw []byte, bits uint) bool {
	neg := raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	if len(raw) > 19 {
		return false
	}
	var v uint64
	for _, c := range raw {
		v = v*10 + uint64(c-'0')
	}
	limit := uint64(1) << (bits - 1)
	if neg {
		return v <= limit
	}
	return v < limit
}

// skip validates and skips any JSON value.
func (s *scanner) skip() bool {
	switch c := s.peek(); {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{':
		if s.depth++; s.depth > maxFastDepth {
			return false
		}
		s.i++
		s.ws()
		if s.peek() == '}' {
			s.i++
			s.depth--
			return true
		}
		for {
			s.ws()
			if _, _, ok := s.str(); !ok {
				return false
			}
			s.ws()
			if s.peek() != ':' {
				return false
			}
			s.i++
			s.ws()
			if !s.skip() {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
			case '}':
				s.i++
				s.depth--
				return true
			default:
				return false
			}
		}
	case c == '[':
		if s.depth++; s.depth > maxFastDepth {
			return false
		}
		s.i++
		s.ws()
		if s.peek() == ']' {
			s.i++
			s.depth--
			return true
		}
		for {
			s.ws()
			if !s.skip() {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				s.depth--
				return true
			default:
				return false
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		_, _, ok := s.number()
		return ok
	}
}

// lookup finds key among n's fields as encoding/json does: an exact match,
// else a case-insensitive one. It returns -1 for an unknown key and -2 for a
// case-insensitive match, which the fast path leaves to encoding/json.
func (n *node) lookup(key []byte) int {
	for i := range n.fields {
		if string(key) == n.fields[i].name {
			return i
		}
	}
	for i := range n.fields {
		if bytes.EqualFold(key, []byte(n.fields[i].name)) {
			return -2
		}
	}
	return -1
}

// object reads a struct-shaped object with fields n.fields.
func (s *scanner) object(n *node) bool {
	if s.peek() != '{' {
		return false
	}
	if s.depth++; s.depth > maxFastDepth {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	var seen uint64
	for {
		s.ws()
		key, escaped, ok := s.str()
		if !ok || escaped {
			return false
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		switch idx := n.lookup(key); {
		case idx == -2:
			return false
		case idx == -1:
			if !s.skip() {
				return false
			}
		default:
			if seen&(1<<idx) != 0 {
				return false // duplicate key: encoding/json's merge rules differ per kind
			}
			seen |= 1 << idx
			if !s.value(n.fields[idx].n, n.fields[idx].slot) {
				return false
			}
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// value reads a struct field's value of shape n into slot sl.
func (s *scanner) value(n *node, sl slot) bool {
	if s.peek() == 'n' {
		// null leaves a field at its zero value for every kind used here.
		return s.literal("null")
	}
	switch n.kind {
	case kAny:
		return s.skip()
	case kString:
		raw, esc, ok := s.str()
		if !ok {
			return false
		}
		if sl != slotNone {
			if s.ev.str[sl], ok = text(raw, esc); !ok {
				return false
			}
		}
		return true
	case kInt32, kInt64:
		raw, integer, ok := s.number()
		bits := uint(32)
		if n.kind == kInt64 {
			bits = 64
		}
		return ok && integer && integerIn(raw, bits)
	case kTime:
		raw, esc, ok := s.str()
		if !ok || esc {
			return false
		}
		var t time.Time
		if len(raw) > 0 {
			pt, err := time.Parse(time.RFC3339Nano, unsafe.String(&raw[0], len(raw)))
			if err != nil {
				return false
			}
			t = pt.UTC()
		}
		if sl == slotReceived {
			s.ev.times[0] = t
		} else if sl == slotStageTime {
			s.ev.times[1] = t
		}
		return true
	case kStringSlice:
		return s.stringSlice(sl == slotSourceIPs)
	case kStringMap:
		return s.stringMap()
	case kExtraMap:
		return s.extraMap(sl == slotExtra)
	case kObject:
		return s.object(n)
	case kObjectSlice:
		return s.objectSlice(n)
	}
	return false
}

func (s *scanner) stringSlice(keep bool) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	s.ws()
	if keep {
		// An empty array decodes to a non-nil empty slice and null to nil;
		// both mean "no source IP", so the difference does not matter.
		s.ev.sourceIPs = s.ev.sourceIPs[:0]
	}
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		s.ws()
		raw, esc, ok := s.str()
		if !ok {
			return false // null elements and non-strings go to encoding/json
		}
		if keep {
			v, ok := text(raw, esc)
			if !ok {
				return false
			}
			s.ev.sourceIPs = append(s.ev.sourceIPs, v)
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) stringMap() bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		if _, _, ok := s.str(); !ok {
			return false
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if _, _, ok := s.str(); !ok {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) extraMap(keep bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		key, esc, ok := s.str()
		if !ok || (keep && esc) {
			return false // an escaped key might spell credential-id
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if keep && string(key) == pipeline.ExtraCredentialID {
			if s.ev.credSeen {
				return false // duplicate: the last one would win
			}
			s.ev.credSeen = true
			if !s.firstString() {
				return false
			}
		} else if !s.stringSlice(false) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// firstString reads an array of strings, keeping the first as credentialID.
func (s *scanner) firstString() bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for first := true; ; first = false {
		s.ws()
		raw, esc, ok := s.str()
		if !ok {
			return false
		}
		if first {
			if s.ev.credentialID, ok = text(raw, esc); !ok {
				return false
			}
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) objectSlice(n *node) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	elem := &node{kind: kObject, fields: n.fields}
	for {
		s.ws()
		if !s.object(elem) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// scanEvent runs the fast path over one event. ok is false when the full
// decoder must decide.
func scanEvent(item []byte, ev *fastEvent) bool {
	*ev = fastEvent{sourceIPs: ev.sourceIPs[:0]}
	s := scanner{b: item, ev: ev}
	s.ws()
	if !s.object(eventSchema) {
		return false
	}
	s.ws()
	if s.i != len(s.b) {
		return false
	}
	return ev.typeMetaOK()
}

// subject mirrors pipeline.Event.Subject.
func (ev *fastEvent) subject() string {
	if ev.credentialID != "" {
		return ev.credentialID
	}
	if u := ev.str[slotUsername]; u != "" {
		return u
	}
	if len(ev.sourceIPs) > 0 {
		return ev.sourceIPs[0]
	}
	return ""
}

// contentHash computes pipeline.ContentHash from the extracted fields, by
// calling it on an event holding just those: one definition of the hash.
func (ev *fastEvent) contentHash() uint64 {
	var e auditv1.Event
	e.AuditID = types.UID(ev.str[slotAuditID])
	e.Stage = auditv1.Stage(ev.str[slotStage])
	e.Verb = ev.str[slotVerb]
	e.RequestURI = ev.str[slotRequestURI]
	e.User.Username = ev.str[slotUsername]
	e.UserAgent = ev.str[slotUserAgent]
	e.SourceIPs = ev.sourceIPs
	e.RequestReceivedTimestamp.Time = ev.times[0]
	e.StageTimestamp.Time = ev.times[1]
	return pipeline.ContentHash(&e)
}

// splitFast splits an EventList body into its items. ok is false when
// pipeline.SplitEventList must decide (and name the error). When pre is not
// nil, each item is scanned as an event on the way, so that the body is
// read once: pre[i] holds item i's fields when (*pre)[i].ok.
func splitFast(body []byte, items [][]byte, pre *[]preEvent) ([][]byte, bool) {
	var ev fastEvent
	s := scanner{b: body, ev: &ev}
	if pre != nil {
		*pre = (*pre)[:0]
	}
	s.ws()
	if s.peek() != '{' {
		return nil, false
	}
	s.i++
	var seen uint64
	hasItems := false
	s.ws()
	if s.peek() == '}' {
		return nil, false
	}
	for {
		s.ws()
		key, esc, ok := s.str()
		if !ok || esc {
			return nil, false
		}
		s.ws()
		if s.peek() != ':' {
			return nil, false
		}
		s.i++
		s.ws()
		idx := listSchema.lookup(key)
		switch {
		case idx == -2:
			return nil, false
		case idx == -1:
			if !s.skip() {
				return nil, false
			}
		default:
			if seen&(1<<idx) != 0 {
				return nil, false
			}
			seen |= 1 << idx
			f := listSchema.fields[idx]
			if f.name != "items" {
				if !s.value(f.n, f.slot) {
					return nil, false
				}
				break
			}
			if s.peek() != '[' {
				return nil, false // null items and non-arrays go to the full path
			}
			hasItems = true
			s.i++
			s.ws()
			if s.peek() == ']' {
				s.i++
				break
			}
			for done := false; !done; {
				s.ws()
				start := s.i
				if pre != nil {
					if !s.preScan(pre) {
						return nil, false
					}
				} else if !s.skip() {
					return nil, false
				}
				items = append(items, compactItem(s.b[start:s.i]))
				s.ws()
				switch s.peek() {
				case ',':
					s.i++
				case ']':
					s.i++
					done = true
				default:
					return nil, false
				}
			}
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			continue
		case '}':
			s.i++
		default:
			return nil, false
		}
		break
	}
	s.ws()
	if s.i != len(s.b) || !hasItems {
		return nil, false
	}
	if k := ev.str[slotKind]; k != "" && k != pipeline.KindEventList {
		return nil, false
	}
	if v := ev.str[slotAPIVersion]; v != "" && v != pipeline.AuditAPIVersion {
		return nil, false
	}
	if items == nil {
		items = [][]byte{}
	}
	return items, true
}

// compactItem puts an item on one line, as pipeline.SplitEventList does.
// The apiserver writes compact JSON, so this rarely copies.
func compactItem(raw []byte) []byte {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return raw
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// preEvent is an item's fast-path result from the split.
type preEvent struct {
	ev fastEvent
	ok bool
}

// preScan reads one item as an event into the next entry of pre, or, when
// the fast path cannot take it, just skips it.
func (s *scanner) preScan(pre *[]preEvent) bool {
	if len(*pre) < cap(*pre) {
		*pre = (*pre)[:len(*pre)+1]
	} else {
		*pre = append(*pre, preEvent{})
	}
	p := &(*pre)[len(*pre)-1]
	p.ev = fastEvent{sourceIPs: p.ev.sourceIPs[:0]}
	start, depth, outer := s.i, s.depth, s.ev
	s.ev = &p.ev
	p.ok = s.object(eventSchema) && p.ev.typeMetaOK()
	s.ev = outer
	if p.ok {
		return true
	}
	s.i, s.depth = start, depth
	return s.skip()
}

func (ev *fastEvent) typeMetaOK() bool {
	if k := ev.str[slotKind]; k != "" && k != pipeline.KindEvent {
		return false
	}
	v := ev.str[slotAPIVersion]
	return v == "" || v == pipeline.AuditAPIVersion
}
