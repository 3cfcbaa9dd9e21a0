package pipeline

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends f as encoding/json writes it (json.Marshal when
// escapeHTML, an Encoder with SetEscapeHTML(false) otherwise, without the
// Encoder's newline), byte for byte, without reflection: detect scan prints
// a finding per line and the findings table stores their evidence, and
// encoding/json's reflective walk was a tenth of scan's time on an
// incident's logs. A time encoding/json refuses (a year outside 0-9999)
// goes through encoding/json, for its error.
func (f *Finding) AppendJSON(dst []byte, escapeHTML bool) ([]byte, error) {
	if !rfc3339OK(f.Time) {
		b, err := marshalJSON(f, escapeHTML)
		return append(dst, b...), err
	}
	dst = append(dst, `{"finding_id":`...)
	dst = AppendJSONString(dst, f.ID, escapeHTML)
	dst = append(dst, `,"time":"`...)
	dst = f.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","cluster":`...)
	dst = AppendJSONString(dst, f.Cluster, escapeHTML)
	dst = append(dst, `,"detector":`...)
	dst = AppendJSONString(dst, f.Detector, escapeHTML)
	dst = append(dst, `,"severity":`...)
	dst = AppendJSONString(dst, f.Severity.String(), escapeHTML)
	dst = append(dst, `,"audit_id":`...)
	dst = AppendJSONString(dst, f.AuditID, escapeHTML)
	dst = append(dst, `,"stage":`...)
	dst = AppendJSONString(dst, f.Stage, escapeHTML)
	dst = append(dst, `,"summary":`...)
	dst = AppendJSONString(dst, f.Summary, escapeHTML)
	dst = append(dst, `,"evidence":`...)
	if f.Evidence == nil {
		dst = append(dst, "null"...)
	} else {
		dst = AppendEvidenceJSON(dst, f.Evidence, escapeHTML)
	}
	dst = append(dst, `,"username":`...)
	dst = AppendJSONString(dst, f.Username, escapeHTML)
	dst = append(dst, `,"groups":`...)
	if f.Groups == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, g := range f.Groups {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, g, escapeHTML)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"credential_id":`...)
	dst = AppendJSONString(dst, f.CredentialID, escapeHTML)
	dst = append(dst, `,"source_ip":`...)
	dst = AppendJSONString(dst, f.SourceIP, escapeHTML)
	dst = append(dst, `,"user_agent":`...)
	dst = AppendJSONString(dst, f.UserAgent, escapeHTML)
	dst = append(dst, `,"verb":`...)
	dst = AppendJSONString(dst, f.Verb, escapeHTML)
	dst = append(dst, `,"request_uri":`...)
	dst = AppendJSONString(dst, f.RequestURI, escapeHTML)
	dst = append(dst, `,"resource":`...)
	dst = AppendJSONString(dst, f.Resource, escapeHTML)
	dst = append(dst, `,"subresource":`...)
	dst = AppendJSONString(dst, f.Subresource, escapeHTML)
	dst = append(dst, `,"namespace":`...)
	dst = AppendJSONString(dst, f.Namespace, escapeHTML)
	dst = append(dst, `,"name":`...)
	dst = AppendJSONString(dst, f.Name, escapeHTML)
	dst = append(dst, `,"response_code":`...)
	dst = strconv.AppendInt(dst, int64(f.Code), 10)
	dst = append(dst, `,"mitre_technique":`...)
	dst = AppendJSONString(dst, f.MITRE, escapeHTML)
	return append(dst, '}'), nil
}

// AppendEvidenceJSON appends ev as encoding/json writes the slice (an
// empty, non-nil slice as [], nil as null).
func AppendEvidenceJSON(dst []byte, ev []Evidence, escapeHTML bool) []byte {
	if ev == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i := range ev {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"field":`...)
		dst = AppendJSONString(dst, ev[i].Field, escapeHTML)
		dst = append(dst, `,"value":`...)
		dst = AppendJSONString(dst, ev[i].Value, escapeHTML)
		dst = append(dst, `,"source":`...)
		dst = AppendJSONString(dst, ev[i].Source, escapeHTML)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// rfc3339OK reports whether time.Time's MarshalJSON accepts t: a four-digit
// year and a zone offset under 24 hours.
func rfc3339OK(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off > -24*3600 && off < 24*3600
}

func marshalJSON(v any, escapeHTML bool) ([]byte, error) {
	if escapeHTML {
		return json.Marshal(v)
	}
	var buf jsonBuffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf[:len(buf)-1], nil // the Encoder's newline
}

type jsonBuffer []byte

func (b *jsonBuffer) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

const hexDigits = "0123456789abcdef"

// Bytes repeated in every lane of a word, for plainWord and htmlWord.
const (
	lanes01  = 0x0101010101010101
	lanes80  = 0x8080808080808080
	lanesSp  = 0x20 * lanes01
	lanesQt  = '"' * lanes01
	lanesBs  = '\\' * lanes01
	lanesLt  = '<' * lanes01
	lanesGt  = '>' * lanes01
	lanesAmp = '&' * lanes01
)

// plainWord is non-zero when a byte of the word w needs AppendJSONString's
// look: not ASCII, below space, " or \. htmlWord is non-zero when one is
// < > or &, which escapeHTML escapes. The tests are the usual
// word-at-a-time ones: x-lanes01 & ^x & lanes80 is non-zero iff a byte of
// x is zero, and w-n*lanes01 & ^w & lanes80 iff a byte of w is below n
// (n at most 128).
func plainWord(w uint64) uint64 {
	return w&lanes80 | (w-lanesSp)&^w&lanes80 | zeroByte(w^lanesQt) | zeroByte(w^lanesBs)
}

func htmlWord(w uint64) uint64 {
	return zeroByte(w^lanesLt) | zeroByte(w^lanesGt) | zeroByte(w^lanesAmp)
}

func zeroByte(x uint64) uint64 { return (x - lanes01) & ^x & lanes80 }

// AppendJSONString appends s as encoding/json encodes a string: ", \ and control
// characters escaped (\b \f \n \r \t by name, others as \u00XX), with
// escapeHTML <, > and & as \u003c \u003e \u0026, invalid UTF-8 as \ufffd,
// and U+2028 and U+2029 escaped.
func AppendJSONString(dst []byte, s string, escapeHTML bool) []byte {
	// Most of a finding's strings (ids, names, URIs, summaries) need no
	// escape: found so a word at a time, then copied at once. This path
	// cost a third of the instructions of the loop below, which was a
	// twentieth of a scan's on an incident's logs.
	if plainString(s, escapeHTML) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	return appendEscaped(dst, s, escapeHTML)
}

// plainBytes[b] and plainHTMLBytes[b] report an ASCII byte
// AppendJSONString copies as it is, without and with escapeHTML.
var plainBytes, plainHTMLBytes = func() (plain, html [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		plain[b] = b != '"' && b != '\\'
		html[b] = plain[b] && b != '<' && b != '>' && b != '&'
	}
	return plain, html
}()

// plainString reports whether AppendJSONString copies every byte of s as
// it is: ASCII, no control character, no " or \, and with escapeHTML no
// <, > or &. A string of eight bytes or more is read a word at a time, its
// last word overlapping the one before.
func plainString(s string, escapeHTML bool) bool {
	n := len(s)
	if n < 8 {
		tab := &plainBytes
		if escapeHTML {
			tab = &plainHTMLBytes
		}
		for i := 0; i < n; i++ {
			if !tab[s[i]] {
				return false
			}
		}
		return true
	}
	for i := 0; ; i += 8 {
		if i+8 > n {
			i = n - 8
		}
		w := load64(s[i : i+8])
		if plainWord(w) != 0 || escapeHTML && htmlWord(w) != 0 {
			return false
		}
		if i+8 == n {
			return true
		}
	}
}

// load64 reads the eight bytes of t as a little-endian word: one load.
func load64(t string) uint64 {
	_ = t[7]
	return uint64(t[0]) | uint64(t[1])<<8 | uint64(t[2])<<16 | uint64(t[3])<<24 |
		uint64(t[4])<<32 | uint64(t[5])<<40 | uint64(t[6])<<48 | uint64(t[7])<<56
}

// appendEscaped is AppendJSONString for a string with a byte to escape or
// to check as UTF-8.
func appendEscaped(dst []byte, s string, escapeHTML bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs a look: most of a
		// finding's strings are plain ASCII (ids, names, URIs). Written
		// out here rather than called: a call per word cost as much as
		// the test (a function holding this loop was too large to inline).
		for i+8 <= len(s) {
			w := load64(s[i : i+8])
			if plainWord(w) != 0 || escapeHTML && htmlWord(w) != 0 {
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || (b != '<' && b != '>' && b != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
