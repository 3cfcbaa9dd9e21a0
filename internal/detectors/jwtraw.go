package detectors

import (
	"bytes"
	"strconv"

	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/jsonscan"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// jwtFieldOf reads body.<obj>.<key> of the event's request or response
// body (src), as jwtField does of the decoded body. No other reader
// decodes a TokenReview's body, so the generic decode (a map per object,
// eleven for a redacted token) was most of unsigned-jwt's cost: 6 % of
// BenchmarkDecodeDetectDefaultRules for the 1.6 % of events that are
// TokenReviews. A body not decoded yet is read straight from its JSON
// instead (jwtRawField), the token record decoded into its struct; a body
// another reader decoded, or one the raw reader cannot vouch for, is read
// as before.
func jwtFieldOf(ev *pipeline.Event, src, obj, key string) (any, bool) {
	u := ev.RequestObject
	if src == pipeline.FromResponse {
		u = ev.ResponseObject
	}
	if u != nil && len(u.Raw) > 0 && !ev.BodyDecoded(src) {
		if v, present, ok := jwtRawField(u.Raw, obj, key); ok {
			return v, present
		}
	}
	if src == pipeline.FromResponse {
		return jwtField(ev.ResponseBody(), obj, key)
	}
	return jwtField(ev.RequestBody(), obj, key)
}

// jwtDecoded is a token field that held an object, decoded by the raw
// reader into the record jwtRecordFromBody would have made of it.
type jwtDecoded struct {
	rec credential.JWTRecord
	ok  bool
}

// jwtRawMaxDepth bounds the nesting the raw reader walks; deeper bodies go
// to the generic decoder, which accepts up to 10,000 levels.
const jwtRawMaxDepth = 64

// jwtRawField is jwtField(decoded body, obj, key) computed from the body's
// JSON. ok is false when it cannot be sure of giving the same answer: a
// member of the path or of the token record repeated (the decoded map
// keeps the last), nesting past jwtRawMaxDepth, invalid JSON. v is the field's string, a jwtDecoded for
// an object, or nil for anything else (which record reads as no token).
// Every byte of the body is checked as the generic decode checks it,
// numbers' range included, since a body that does not decode has no
// fields at all.
func jwtRawField(raw []byte, obj, key string) (v any, present, ok bool) {
	r := jwtRaw{d: jsonscan.Scanner{Data: raw}}
	c, err := r.d.Peek()
	if err != nil || c != '{' {
		return nil, false, false
	}
	seenObj := false
	ok = r.object(0, func(k []byte, depth int) bool {
		if string(k) != obj {
			return r.skip(depth)
		}
		if seenObj {
			return false
		}
		seenObj = true
		if r.d.Data[r.d.Pos] != '{' {
			return r.skip(depth)
		}
		seenKey := false
		return r.object(depth, func(k []byte, depth int) bool {
			if string(k) != key {
				return r.skip(depth)
			}
			if seenKey {
				return false
			}
			seenKey, present = true, true
			switch r.d.Data[r.d.Pos] {
			case '"':
				s, ok := r.str()
				v = s
				return ok
			case '{':
				var dec jwtDecoded
				if !r.record(depth, &dec.rec) {
					return false
				}
				dec.ok = !r.bad && dec.rec.Redacted == credential.KindJWT
				if !dec.ok {
					dec.rec = credential.JWTRecord{}
				}
				v = dec
				return true
			}
			return r.skip(depth)
		})
	})
	if !ok {
		return nil, false, false
	}
	if r.d.WS(); r.d.Pos != len(r.d.Data) {
		return nil, false, false
	}
	return v, present, true
}

// jwtRaw is the raw reader's state; bad, as bodyReader's, records a value
// of the wrong type, which rejects the token record.
type jwtRaw struct {
	d       jsonscan.Scanner
	bad     bool
	scratch []byte // member names with escapes, unquoted
}

// object walks the object at d.Pos (depth: the containers around it),
// calling member with each member's name, unquoted as the generic decode
// unquotes it (valid until the next name), and d.Pos at its value, which
// member must consume. It reports false on invalid JSON or when member
// does.
func (r *jwtRaw) object(depth int, member func(k []byte, depth int) bool) bool {
	if depth >= jwtRawMaxDepth {
		return false
	}
	d := &r.d
	more, err := d.ObjectStart()
	for err == nil && more {
		var k []byte
		if k, err = d.StrScratch(&r.scratch); err != nil || !r.colon() {
			return false
		}
		if !member(k, depth+1) {
			return false
		}
		more, err = d.ObjectNext()
	}
	return err == nil
}

// colon consumes a member name's ':' and the whitespace around it.
func (r *jwtRaw) colon() bool {
	d := &r.d
	if c, err := d.Peek(); err != nil || c != ':' {
		return false
	}
	d.Pos++
	_, err := d.Peek()
	return err == nil
}

// skip validates and consumes any value.
func (r *jwtRaw) skip(depth int) bool {
	d := &r.d
	switch c := d.Data[d.Pos]; {
	case c == '{':
		return r.object(depth, func(_ []byte, depth int) bool { return r.skip(depth) })
	case c == '[':
		if depth >= jwtRawMaxDepth {
			return false
		}
		more, err := d.ArrayStart()
		for err == nil && more {
			if !r.skip(depth + 1) {
				return false
			}
			more, err = d.ArrayNext()
		}
		return err == nil
	case c == '"':
		_, _, err := d.Content()
		return err == nil
	case c == '-' || jsonscan.IsDigit(c):
		_, ok := r.number(false)
		return ok
	case c == 't' || c == 'f' || c == 'n':
		return d.Literal() == nil
	}
	return false
}

// number reads a number as the generic decode does: a float64, and a
// failure where strconv.ParseFloat fails (out of range). A number with
// neither exponent nor more than 300 characters is below float64's
// largest, so when the value is not wanted only those are parsed.
func (r *jwtRaw) number(wanted bool) (float64, bool) {
	num, err := r.d.Number()
	if err != nil {
		return 0, false
	}
	if !wanted && len(num) <= 300 && !bytes.ContainsAny(num, "eE") {
		return 0, true
	}
	f, err := strconv.ParseFloat(string(num), 64)
	return f, err == nil
}

// str reads a string value.
func (r *jwtRaw) str() (string, bool) {
	s, err := r.d.StrString()
	return s, err == nil
}

// strField is bodyReader.str: a string, "" for null, bad otherwise.
func (r *jwtRaw) strField(dst *string, depth int) bool {
	switch r.d.Data[r.d.Pos] {
	case '"':
		s, ok := r.str()
		*dst = s
		return ok
	case 'n':
		return r.d.Literal() == nil
	}
	r.bad = true
	return r.skip(depth)
}

// int64Field is bodyReader.int64Ptr.
func (r *jwtRaw) int64Field(dst **int64, depth int) bool {
	c := r.d.Data[r.d.Pos]
	switch {
	case c == 'n':
		*dst = nil
		return r.d.Literal() == nil
	case c == '-' || jsonscan.IsDigit(c):
		f, ok := r.number(true)
		if !ok {
			return false
		}
		*dst = nil
		if f == float64(int64(f)) && f >= -(1<<63) && f < 1<<63 {
			n := int64(f)
			*dst = &n
		} else {
			r.bad = true
		}
		return true
	}
	r.bad = true
	return r.skip(depth)
}

// strListField is bodyReader.strList.
func (r *jwtRaw) strListField(dst *[]string, depth int) bool {
	d := &r.d
	switch d.Data[d.Pos] {
	case 'n':
		*dst = nil
		return d.Literal() == nil
	case '[':
	default:
		r.bad = true
		return r.skip(depth)
	}
	if depth >= jwtRawMaxDepth {
		return false
	}
	out := []string{}
	more, err := d.ArrayStart()
	for err == nil && more {
		var s string
		if !r.strField(&s, depth+1) {
			return false
		}
		out = append(out, s)
		more, err = d.ArrayNext()
	}
	*dst = out
	return err == nil
}

// objectField walks an object member with member, or reads null as
// absent (nil), or marks anything else bad, as bodyReader.obj.
func (r *jwtRaw) objectField(depth int, present *bool, member func(k []byte, depth int) bool) bool {
	switch r.d.Data[r.d.Pos] {
	case '{':
		*present = true
		return r.object(depth, member)
	case 'n':
		*present = false
		return r.d.Literal() == nil
	}
	r.bad = true
	*present = false
	return r.skip(depth)
}

// once reports whether the bit of seen for a member is new, setting it: a
// repeated member makes the raw reader give up.
func once(seen *uint32, bit uint) bool {
	if *seen&(1<<bit) != 0 {
		return false
	}
	*seen |= 1 << bit
	return true
}

// record decodes a token record into rec as jwtRecordFromBody reads one
// out of the decoded object (its fields; the caller checks bad and
// Redacted).
func (r *jwtRaw) record(depth int, rec *credential.JWTRecord) bool {
	var seen uint32
	return r.object(depth, func(k []byte, depth int) bool {
		switch string(k) {
		case "redacted":
			return once(&seen, 0) && r.strField(&rec.Redacted, depth)
		case "signature":
			return once(&seen, 1) && r.strField(&rec.Signature, depth)
		case "verified":
			return once(&seen, 2) && r.strField(&rec.Verified, depth)
		case "verify_error":
			return once(&seen, 3) && r.strField(&rec.VerifyError, depth)
		case "parse_error":
			return once(&seen, 4) && r.strField(&rec.ParseError, depth)
		case "sha256":
			return once(&seen, 5) && r.strField(&rec.SHA256, depth)
		case "length":
			var n *int64
			if !once(&seen, 6) || !r.int64Field(&n, depth) {
				return false
			}
			rec.Length = 0
			if n != nil {
				rec.Length = int(*n)
			}
			return true
		case "header":
			var present bool
			var hseen uint32
			return once(&seen, 7) && r.objectField(depth, &present, func(k []byte, depth int) bool {
				return r.header(k, depth, &hseen, &rec.Header)
			})
		case "claims":
			var present bool
			var cseen uint32
			return once(&seen, 8) && r.objectField(depth, &present, func(k []byte, depth int) bool {
				return r.claims(k, depth, &cseen, &rec.Claims)
			})
		}
		return r.skip(depth)
	})
}

// header reads one member of a record's header.
func (r *jwtRaw) header(k []byte, depth int, seen *uint32, h *credential.JWTHeader) bool {
	switch string(k) {
	case "alg":
		return once(seen, 0) && r.strField(&h.Alg, depth)
	case "kid":
		return once(seen, 1) && r.strField(&h.Kid, depth)
	case "typ":
		return once(seen, 2) && r.strField(&h.Typ, depth)
	case "other":
		return once(seen, 3) && r.strListField(&h.Other, depth)
	}
	return r.skip(depth)
}

// claims reads one member of a record's claims.
func (r *jwtRaw) claims(k []byte, depth int, seen *uint32, c *credential.JWTClaims) bool {
	switch string(k) {
	case "iss":
		return once(seen, 0) && r.strField(&c.Iss, depth)
	case "sub":
		return once(seen, 1) && r.strField(&c.Sub, depth)
	case "aud":
		return once(seen, 2) && r.strListField(&c.Aud, depth)
	case "exp":
		return once(seen, 3) && r.int64Field(&c.Exp, depth)
	case "iat":
		return once(seen, 4) && r.int64Field(&c.Iat, depth)
	case "nbf":
		return once(seen, 5) && r.int64Field(&c.Nbf, depth)
	case "jti":
		return once(seen, 6) && r.strField(&c.Jti, depth)
	case "kubernetes.io":
		if !once(seen, 7) {
			return false
		}
		var present bool
		var kseen uint32
		k8s := &credential.JWTKubernetes{}
		if !r.objectField(depth, &present, func(k []byte, depth int) bool { return r.kubernetes(k, depth, &kseen, k8s) }) {
			return false
		}
		if present {
			c.Kubernetes = k8s
		}
		return true
	}
	return r.skip(depth)
}

// kubernetes reads one member of the claims' kubernetes.io object.
func (r *jwtRaw) kubernetes(k []byte, depth int, seen *uint32, k8s *credential.JWTKubernetes) bool {
	switch string(k) {
	case "namespace":
		return once(seen, 0) && r.strField(&k8s.Namespace, depth)
	case "serviceaccount":
		return once(seen, 1) && r.objectRef(depth, &k8s.ServiceAccount)
	case "pod":
		return once(seen, 2) && r.objectRef(depth, &k8s.Pod)
	case "node":
		return once(seen, 3) && r.objectRef(depth, &k8s.Node)
	case "secret":
		return once(seen, 4) && r.objectRef(depth, &k8s.Secret)
	case "warnafter":
		return once(seen, 5) && r.int64Field(&k8s.WarnAfter, depth)
	}
	return r.skip(depth)
}

// objectRef is jwtObjectRefFromBody.
func (r *jwtRaw) objectRef(depth int, dst **credential.JWTObjectRef) bool {
	var present bool
	var seen uint32
	ref := &credential.JWTObjectRef{}
	if !r.objectField(depth, &present, func(k []byte, depth int) bool {
		switch string(k) {
		case "name":
			return once(&seen, 0) && r.strField(&ref.Name, depth)
		case "uid":
			return once(&seen, 1) && r.strField(&ref.UID, depth)
		}
		return r.skip(depth)
	}) {
		return false
	}
	if present {
		*dst = ref
	}
	return true
}
