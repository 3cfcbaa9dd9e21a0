package redact

import (
	"bytes"
	"encoding/json"
	"strings"
)

// The scanner below walks JSON that json.Valid has already accepted, so it
// only has to find where values start and end, never to report syntax
// errors. Working on byte offsets instead of decoding lets the redactor
// splice replacements into the event and leave every other byte, including
// key order and the apiserver's escaping, exactly as it arrived.

// skipWS returns the index of the first non-whitespace byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string that starts at b[i]
// (which is '"').
func skipString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		// The quote is escaped iff an odd number of backslashes precede it.
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// member is one name/value pair of a JSON object, as offsets into the
// scanned buffer. key is the raw name between its quotes, still escaped.
type member struct {
	key        []byte
	start, end int // the value's span
}

// members calls fn for every member of the object whose '{' is at b[i],
// in document order. It does nothing when b[i] is not an object.
func members(b []byte, i int, fn func(m member)) {
	if i >= len(b) || b[i] != '{' {
		return
	}
	i = skipWS(b, i+1)
	for i < len(b) && b[i] == '"' {
		ke := skipString(b, i)
		key := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return
		}
		vs := skipWS(b, i+1)
		ve := skipValue(b, vs)
		fn(member{key: key, start: vs, end: ve})
		i = skipWS(b, ve)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// elements calls fn with the span of every element of the array whose '['
// is at b[i]. It does nothing when b[i] is not an array.
func elements(b []byte, i int, fn func(start, end int)) {
	if i >= len(b) || b[i] != '[' {
		return
	}
	i = skipWS(b, i+1)
	for i < len(b) && b[i] != ']' {
		ve := skipValue(b, i)
		fn(i, ve)
		i = skipWS(b, ve)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// fieldIs reports whether a raw object key names the struct field name the
// way encoding/json matches it: case-insensitively (with Unicode simple
// folding, so "ſ" matches "s") after unescaping. Bodies are decoded by
// encoding/json downstream, so anything it would read as the field must be
// treated as the field here, or a key spelt "Spec" would smuggle a token
// past the redactor.
func fieldIs(key []byte, name string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return bytes.EqualFold(key, []byte(name))
	}
	s, ok := unquote(key)
	return ok && strings.EqualFold(s, name)
}

// mapKeyIs reports whether a raw object key equals name exactly after
// unescaping, as a map key does in encoding/json.
func mapKeyIs(key []byte, name string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key) == name
	}
	s, ok := unquote(key)
	return ok && s == name
}

// unquote decodes the contents of a JSON string (without its quotes).
func unquote(raw []byte) (string, bool) {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw), true
	}
	buf := make([]byte, 0, len(raw)+2)
	buf = append(buf, '"')
	buf = append(buf, raw...)
	buf = append(buf, '"')
	var s string
	if err := json.Unmarshal(buf, &s); err != nil {
		return "", false
	}
	return s, true
}

// stringValue decodes the JSON string at b[start:end]; ok is false when the
// value is not a string.
func stringValue(b []byte, start, end int) (string, bool) {
	if end-start < 2 || b[start] != '"' {
		return "", false
	}
	return unquote(b[start+1 : end-1])
}
