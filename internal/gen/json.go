package gen

import (
	"encoding/base64"
	"strconv"
	"time"
)

// The generator writes JSON by appending to byte slices rather than through
// encoding/json: it feeds benchmarks of the pipeline, so it must be much
// faster than the decoder it is measuring. The field order and formatting
// match what the apiserver's encoder writes (struct field order, map keys
// sorted, compact, RFC 3339 timestamps in UTC with six fractional digits).

// microLayout is metav1.MicroTime's wire format.
const microLayout = "2006-01-02T15:04:05.000000Z07:00"

// secondLayout is metav1.Time's wire format (object timestamps).
const secondLayout = "2006-01-02T15:04:05Z07:00"

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what encoding/json
// escapes (quotes, backslashes, control characters and <, >, & as the
// apiserver's encoder does).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendMicro appends t as a quoted metav1.MicroTime. It is written out by
// hand because time.AppendFormat, which interprets its layout on every
// call, was a fifth of the generator's CPU time; TestAppendMicro holds it
// to microLayout.
func appendMicro(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = append(b, '"')
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = append2(b, int(month), '-')
	b = append2(b, day, 'T')
	b = append2(b, hour, ':')
	b = append2(b, minute, ':')
	b = append2(b, sec, '.')
	us := t.Nanosecond() / 1000
	for d := 100000; d > 0; d /= 10 {
		b = append(b, byte('0'+us/d%10))
	}
	return append(b, 'Z', '"')
}

// append2 appends a two-digit number and a separator.
func append2(b []byte, n int, sep byte) []byte {
	return append(b, byte('0'+n/10), byte('0'+n%10), sep)
}

// appendSecond appends t as a quoted metav1.Time.
func appendSecond(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, secondLayout)
	return append(b, '"')
}

// appendInt appends a decimal integer.
func appendInt(b []byte, n int64) []byte {
	return strconv.AppendInt(b, n, 10)
}

// kv is one map entry; annotations and user.extra are written from sorted
// slices of these, because encoding/json writes map keys in sorted order.
type kv struct{ k, v string }

// appendSortedMap appends {"k":"v",...} with keys sorted. The slices are a
// handful of entries, so insertion sort in place is cheapest.
func appendSortedMap(b []byte, m []kv) []byte {
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && m[j].k < m[j-1].k; j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
	b = append(b, '{')
	for i, e := range m {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, e.k)
		b = append(b, ':')
		b = appendString(b, e.v)
	}
	return append(b, '}')
}

// b64url encodes without padding, as JWT segments are.
var b64url = base64.RawURLEncoding
