package pipeline

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The scanner below is the lexical half of the audit-event decoder: a
// single pass over the input that validates JSON exactly as encoding/json's
// scanner does (so that every input encoding/json refuses is refused here
// too) while handing the structural half (decode_event.go) unquoted strings,
// number literals and raw values without reflection or per-token
// allocation.

// maxNestingDepth is encoding/json's limit on nested objects and arrays; a
// body nested deeper is refused the same way, and the recursion in skip
// stays bounded.
const maxNestingDepth = 10000

// decodeError is a syntax error at a byte offset, worded like encoding/json's.
type decodeError struct {
	msg string
	off int
}

func (e *decodeError) Error() string {
	if e.off < 0 {
		return e.msg
	}
	return fmt.Sprintf("%s (offset %d)", e.msg, e.off)
}

// typeError reports a well-formed value of the wrong JSON type for its field.
type typeError struct {
	value string // JSON type or number literal, as encoding/json names it
	field string // dotted path from the event
	want  string // Go type
}

func (e *typeError) Error() string {
	return fmt.Sprintf("cannot unmarshal %s into field %s of type %s", e.value, e.field, e.want)
}

var errUnexpectedEnd = &decodeError{msg: "unexpected end of JSON input", off: -1}

// decoder walks data once; i is the offset of the next unread byte.
type decoder struct {
	data []byte
	i    int
}

// quoteChar formats c the way encoding/json's syntax errors do.
func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(c))
	return "'" + s[1:len(s)-1] + "'"
}

func (d *decoder) syntax(context string) error {
	if d.i >= len(d.data) {
		return errUnexpectedEnd
	}
	return &decodeError{msg: "invalid character " + quoteChar(d.data[d.i]) + " " + context, off: d.i}
}

// ws skips JSON whitespace (exactly space, tab, CR and LF).
func (d *decoder) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it.
func (d *decoder) peek() (byte, error) {
	d.ws()
	if d.i >= len(d.data) {
		return 0, errUnexpectedEnd
	}
	return d.data[d.i], nil
}

// objectStart consumes the '{' at d.i and reports whether a member follows;
// when it does, d.i is at the member's opening quote.
func (d *decoder) objectStart() (bool, error) {
	d.i++
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case '}':
		d.i++
		return false, nil
	case '"':
		return true, nil
	}
	return false, d.syntax("looking for beginning of object key string")
}

// objectNext consumes the ',' or '}' after a member's value and reports
// whether another member follows (d.i then at its opening quote).
func (d *decoder) objectNext() (bool, error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case ',':
		d.i++
		if c, err = d.peek(); err != nil {
			return false, err
		}
		if c != '"' {
			return false, d.syntax("looking for beginning of object key string")
		}
		return true, nil
	case '}':
		d.i++
		return false, nil
	}
	return false, d.syntax("after object key:value pair")
}

// key reads a member name and its colon, leaving d.i at the value. The name
// is unquoted; it aliases the input unless it had escapes or invalid UTF-8,
// and is only valid until the next call.
func (d *decoder) key() ([]byte, error) {
	k, err := d.str()
	if err != nil {
		return nil, err
	}
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c != ':' {
		return nil, d.syntax("after object key")
	}
	d.i++
	if _, err := d.peek(); err != nil {
		return nil, err
	}
	return k, nil
}

// arrayStart consumes the '[' at d.i and reports whether an element
// follows; d.i is then at the element.
func (d *decoder) arrayStart() (bool, error) {
	d.i++
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	if c == ']' {
		d.i++
		return false, nil
	}
	return true, nil
}

// arrayNext consumes the ',' or ']' after an element and reports whether
// another element follows.
func (d *decoder) arrayNext() (bool, error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case ',':
		d.i++
		_, err := d.peek()
		return err == nil, err
	case ']':
		d.i++
		return false, nil
	}
	return false, d.syntax("after array element")
}

// literal consumes true, false or null at d.i.
func (d *decoder) literal() error {
	var want string
	switch d.data[d.i] {
	case 't':
		want = "true"
	case 'f':
		want = "false"
	default:
		want = "null"
	}
	rest := d.data[d.i:]
	for j := 1; j < len(want); j++ {
		if j >= len(rest) {
			d.i = len(d.data)
			return errUnexpectedEnd
		}
		if rest[j] != want[j] {
			d.i += j
			return d.syntax("in literal " + want + " (expecting " + quoteChar(want[j]) + ")")
		}
	}
	d.i += len(want)
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number consumes a number literal at d.i and returns its text.
func (d *decoder) number() ([]byte, error) {
	data, start := d.data, d.i
	j := d.i
	if data[j] == '-' {
		j++
	}
	if j >= len(data) {
		d.i = j
		return nil, errUnexpectedEnd
	}
	switch c := data[j]; {
	case c == '0':
		j++
	case '1' <= c && c <= '9':
		j++
		for j < len(data) && isDigit(data[j]) {
			j++
		}
	default:
		d.i = j
		return nil, d.syntax("in numeric literal")
	}
	if j < len(data) && data[j] == '.' {
		j++
		if j >= len(data) || !isDigit(data[j]) {
			d.i = j
			return nil, d.syntax("after decimal point in numeric literal")
		}
		for j < len(data) && isDigit(data[j]) {
			j++
		}
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		if j >= len(data) || !isDigit(data[j]) {
			d.i = j
			return nil, d.syntax("in exponent of numeric literal")
		}
		for j < len(data) && isDigit(data[j]) {
			j++
		}
	}
	d.i = j
	return data[start:j], nil
}

// plain marks the bytes a string can hold verbatim on the fast path:
// printable ASCII other than '"' and '\\'. Anything else (escapes, control
// characters, UTF-8 that needs validating) takes the slow path.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// opaque marks the bytes a skipped string can hold verbatim: everything
// but '"', '\\' and control characters. encoding/json does not validate
// UTF-8 while scanning, so neither does skip.
var opaque = func() (t [256]bool) {
	for c := 0x20; c < 0x100; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// SWAR constants: every byte set to 0x01, 0x80, and the bytes a string
// scan stops at.
const (
	lsb    = 0x0101010101010101
	msb    = 0x8080808080808080
	quote  = '"' * lsb
	bslash = '\\' * lsb
	space  = ' ' * lsb
)

// zeroBytes flags (0x80) each zero byte of x. A flag may also be set above
// a true one (borrows propagate upwards), never below it, so the lowest
// flag is exact.
func zeroBytes(x uint64) uint64 { return (x - lsb) &^ x & msb }

// scanOpaque returns the index of the first byte at or after j that ends a
// skipped string's run of verbatim bytes ('"', '\\' or a control
// character), or len(data). It reads eight bytes at a time.
func scanOpaque(data []byte, j int) int {
	for ; j+8 <= len(data); j += 8 {
		x := binary.LittleEndian.Uint64(data[j:])
		// Bytes below 0x20: x-0x20 borrows, unless the byte is 0x80 or
		// more, which &^x excludes.
		m := zeroBytes(x^quote) | zeroBytes(x^bslash) | ((x - space) &^ x & msb)
		if m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	for j < len(data) && opaque[data[j]] {
		j++
	}
	return j
}

// scanPlain is scanOpaque that also stops at bytes of 0x80 and above
// (UTF-8 the slow path must validate).
func scanPlain(data []byte, j int) int {
	for ; j+8 <= len(data); j += 8 {
		x := binary.LittleEndian.Uint64(data[j:])
		m := zeroBytes(x^quote) | zeroBytes(x^bslash) | ((x - space) & msb) | (x & msb)
		if m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	for j < len(data) && plain[data[j]] {
		j++
	}
	return j
}

// stringEnd validates the string whose opening quote is at d.i, leaving d.i
// after its closing quote. It returns the raw content's bounds and whether
// the content has escapes.
func (d *decoder) stringEnd() (start, end int, escaped bool, err error) {
	data := d.data
	start = d.i + 1
	j := start
	for {
		j = scanOpaque(data, j)
		if j >= len(data) {
			d.i = j
			return 0, 0, false, errUnexpectedEnd
		}
		switch c := data[j]; {
		case c == '"':
			d.i = j + 1
			return start, j, escaped, nil
		case c == '\\':
			escaped = true
			j++
			if j >= len(data) {
				d.i = j
				return 0, 0, false, errUnexpectedEnd
			}
			switch data[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				j++
				for k := 0; k < 4; k++ {
					if j >= len(data) {
						d.i = j
						return 0, 0, false, errUnexpectedEnd
					}
					if !isHex(data[j]) {
						d.i = j
						return 0, 0, false, d.syntax("in \\u hexadecimal character escape")
					}
					j++
				}
			default:
				d.i = j
				return 0, 0, false, d.syntax("in string escape code")
			}
		default: // control character
			d.i = j
			return 0, 0, false, d.syntax("in string literal")
		}
	}
}

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// str reads the string at d.i and returns its unquoted content. Plain
// content (the usual case) aliases the input; content with escapes or
// invalid UTF-8 is unquoted into a new buffer, as encoding/json does.
func (d *decoder) str() ([]byte, error) {
	data := d.data
	start := d.i + 1
	j := scanPlain(data, start)
	if j < len(data) && data[j] == '"' {
		d.i = j + 1
		return data[start:j], nil
	}
	start, end, escaped, err := d.stringEnd()
	if err != nil {
		return nil, err
	}
	raw := data[start:end]
	if !escaped && utf8.Valid(raw) {
		return raw, nil
	}
	return unquote(make([]byte, 0, len(raw)+utf8.UTFMax), raw), nil
}

// strString is str converted to a string. Content str had to unquote is
// already a fresh buffer, so it becomes the string without a second copy.
func (d *decoder) strString() (string, error) {
	data := d.data
	start := d.i + 1
	j := scanPlain(data, start)
	if j < len(data) && data[j] == '"' {
		d.i = j + 1
		return string(data[start:j]), nil
	}
	start, end, escaped, err := d.stringEnd()
	if err != nil {
		return "", err
	}
	raw := data[start:end]
	if !escaped && utf8.Valid(raw) {
		return string(raw), nil
	}
	b := unquote(make([]byte, 0, len(raw)+utf8.UTFMax), raw)
	if len(b) == 0 {
		return "", nil
	}
	// b is never written again, so it can back the string as
	// strings.Builder does.
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// unquote appends the decoded content of a validated string to dst with
// encoding/json's rules: invalid UTF-8 and unpaired surrogates become
// U+FFFD.
func unquote(dst, s []byte) []byte {
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			r++
			switch e := s[r]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := hex4(s[r+1 : r+5])
				r += 5
				if utf16.IsSurrogate(rr) {
					if r+6 <= len(s) && s[r] == '\\' && s[r+1] == 'u' {
						if dec := utf16.DecodeRune(rr, hex4(s[r+2:r+6])); dec != unicode.ReplacementChar {
							r += 6
							dst = utf8.AppendRune(dst, dec)
							continue
						}
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
			r++
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			dst = utf8.AppendRune(dst, rr) // RuneError for invalid bytes
		}
	}
	return dst
}

// hex4 decodes four validated hex digits, or returns -1 when s is not four
// hex digits (a surrogate's partner that is not an escape).
func hex4(s []byte) rune {
	var r rune
	for _, c := range s {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// skip validates and consumes the value at d.i. depth counts the objects
// and arrays enclosing it.
func (d *decoder) skip(depth int) error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch c {
	case '"':
		_, _, _, err := d.stringEnd()
		return err
	case '{':
		if depth >= maxNestingDepth {
			return &decodeError{msg: "exceeded max depth", off: d.i}
		}
		more, err := d.objectStart()
		for more && err == nil {
			if _, _, _, err = d.stringEnd(); err != nil {
				return err
			}
			if c, err = d.peek(); err != nil {
				return err
			}
			if c != ':' {
				return d.syntax("after object key")
			}
			d.i++
			if err = d.skip(depth + 1); err != nil {
				return err
			}
			more, err = d.objectNext()
		}
		return err
	case '[':
		if depth >= maxNestingDepth {
			return &decodeError{msg: "exceeded max depth", off: d.i}
		}
		more, err := d.arrayStart()
		for more && err == nil {
			if err = d.skip(depth + 1); err != nil {
				return err
			}
			more, err = d.arrayNext()
		}
		return err
	case 't', 'f', 'n':
		return d.literal()
	}
	if c == '-' || isDigit(c) {
		_, err := d.number()
		return err
	}
	return d.syntax("looking for beginning of value")
}

// mismatch validates the value at d.i, which has the wrong type for field,
// and reports it the way encoding/json would.
func (d *decoder) mismatch(depth int, field, want string) error {
	start := d.i
	if err := d.skip(depth); err != nil {
		return err
	}
	var value string
	switch c := d.data[start]; c {
	case '"':
		value = "string"
	case '{':
		value = "object"
	case '[':
		value = "array"
	case 't', 'f':
		value = "bool"
	default:
		value = "number"
		if want != "string" {
			value = "number " + string(d.data[start:d.i])
		}
	}
	return &typeError{value: value, field: field, want: want}
}

// isNull reports whether the raw value is the literal null.
func isNull(raw []byte) bool { return bytes.Equal(raw, []byte("null")) }
