// Package jsonscan is the one JSON scanner auditpipe runs over an audit
// event's bytes: splitting an EventList, redacting credentials and decoding
// the event all walk the input with it, so that they cannot disagree about
// where a value starts and ends, what a string holds after unescaping, or
// which input is valid at all.
//
// It validates exactly as encoding/json's scanner does (every input
// encoding/json refuses is refused here, worded the same way), in a single
// pass that is linear in the input, with nesting bounded by MaxDepth. It
// is hand-written rather than built on a library because it wins the
// benchmark that decided it (internal/bench, BenchmarkScanner; medians of
// six runs on the realistic stream, one core): it validates at 791 MB/s
// against fastjson's parser at 648 and jsontext's ReadValue at 510, and the
// event decoder built on it (auditjson.DecodeEvent, 323 MB/s) is 1.3x a
// jsontext token walk that only reads each string's value (about 240
// MB/s) without building anything. Callers read Data and Pos directly:
// the scanner is a cursor, not an iterator, so the structural code around
// it decides what each value means.
package jsonscan

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

// MaxDepth is encoding/json's limit on nested objects and arrays; a
// body nested deeper is refused the same way, and the recursion in Skip
// stays bounded.
const MaxDepth = 10000

// SyntaxError is a syntax error at a byte offset, worded like encoding/json's.
type SyntaxError struct {
	Msg    string
	Offset int // -1 when the input ended early
}

func (e *SyntaxError) Error() string {
	if e.Offset < 0 {
		return e.Msg
	}
	return fmt.Sprintf("%s (offset %d)", e.Msg, e.Offset)
}

// TypeError reports a well-formed value of the wrong JSON type for its field.
type TypeError struct {
	Value string // JSON type or number literal, as encoding/json names it
	Field string // dotted path from the document root
	Want  string // Go type
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("cannot unmarshal %s into field %s of type %s", e.Value, e.Field, e.Want)
}

// ErrUnexpectedEnd reports input that ended inside a value.
var ErrUnexpectedEnd = &SyntaxError{Msg: "unexpected end of JSON input", Offset: -1}

// Scanner is a cursor over one JSON document: Data is the input, Pos the
// offset of the next unread byte. Its methods validate as they consume and
// hand out unquoted strings, number literals and raw values without
// reflection or per-token allocation.
type Scanner struct {
	Data []byte
	Pos  int
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

// Syntax returns the syntax error for the byte at d.Pos, worded as
// encoding/json words it, context saying what was expected.
func (d *Scanner) Syntax(context string) error {
	if d.Pos >= len(d.Data) {
		return ErrUnexpectedEnd
	}
	return &SyntaxError{Msg: "invalid character " + quoteChar(d.Data[d.Pos]) + " " + context, Offset: d.Pos}
}

// WS skips JSON whitespace (exactly space, tab, CR and LF).
func (d *Scanner) WS() {
	for d.Pos < len(d.Data) {
		switch d.Data[d.Pos] {
		case ' ', '\t', '\n', '\r':
			d.Pos++
		default:
			return
		}
	}
}

// Peek returns the next non-space byte without consuming it.
func (d *Scanner) Peek() (byte, error) {
	// Compact JSON, the usual input, has no whitespace to skip: one
	// comparison instead of WS's loop.
	if d.Pos < len(d.Data) && d.Data[d.Pos] > ' ' {
		return d.Data[d.Pos], nil
	}
	d.WS()
	if d.Pos >= len(d.Data) {
		return 0, ErrUnexpectedEnd
	}
	return d.Data[d.Pos], nil
}

// ObjectStart consumes the '{' at d.Pos and reports whether a member follows;
// when it does, d.Pos is at the member's opening quote.
func (d *Scanner) ObjectStart() (bool, error) {
	d.Pos++
	c, err := d.Peek()
	if err != nil {
		return false, err
	}
	switch c {
	case '}':
		d.Pos++
		return false, nil
	case '"':
		return true, nil
	}
	return false, d.Syntax("looking for beginning of object key string")
}

// ObjectNext consumes the ',' or '}' after a member's value and reports
// whether another member follows (d.Pos then at its opening quote).
func (d *Scanner) ObjectNext() (bool, error) {
	// Compact JSON first: `,"` or `}` with no whitespace around.
	if p := d.Pos; p+1 < len(d.Data) {
		switch d.Data[p] {
		case ',':
			if d.Data[p+1] == '"' {
				d.Pos = p + 1
				return true, nil
			}
		case '}':
			d.Pos = p + 1
			return false, nil
		}
	}
	c, err := d.Peek()
	if err != nil {
		return false, err
	}
	switch c {
	case ',':
		d.Pos++
		if c, err = d.Peek(); err != nil {
			return false, err
		}
		if c != '"' {
			return false, d.Syntax("looking for beginning of object key string")
		}
		return true, nil
	case '}':
		d.Pos++
		return false, nil
	}
	return false, d.Syntax("after object key:value pair")
}

// Key reads a member name and its colon, leaving d.Pos at the value. The name
// is unquoted; it aliases the input unless it had escapes or invalid UTF-8,
// and is only valid until the next call.
func (d *Scanner) Key() ([]byte, error) {
	k, err := d.Str()
	if err != nil {
		return nil, err
	}
	c, err := d.Peek()
	if err != nil {
		return nil, err
	}
	if c != ':' {
		return nil, d.Syntax("after object key")
	}
	d.Pos++
	if _, err := d.Peek(); err != nil {
		return nil, err
	}
	return k, nil
}

// Members is a list of member names prepared for MemberIn.
type Members struct {
	names []string
	pats  []memberPat
}

// memberWords is how many eight-byte words of a pattern MemberIn compares
// as words: `"name":` patterns of up to 24 bytes (every member name of
// an audit event but requestReceivedTimestamp and authenticationMetadata)
// are matched without a call to compare the rest.
const memberWords = 3

// memberPat is one `"name":` pattern as MemberIn compares it.
type memberPat struct {
	words [memberWords]uint64 // its first bytes, little-endian, zero-padded
	masks [memberWords]uint64 // which bytes of words are the pattern's
	n     int                 // its length
	pat   string
}

// NewMembers prepares names, which must need no escaping in JSON (plain
// printable ASCII other than '"' and '\\'), for MemberIn.
func NewMembers(names ...string) *Members {
	m := &Members{names: names}
	for _, n := range names {
		p := memberPat{pat: `"` + n + `":`}
		p.n = len(p.pat)
		for k := 0; k < 8*memberWords && k < p.n; k++ {
			p.words[k/8] |= uint64(p.pat[k]) << (8 * (k % 8))
			p.masks[k/8] |= 0xff << (8 * (k % 8))
		}
		m.pats = append(m.pats, p)
	}
	return m
}

// Names returns the names m was prepared from, in order.
func (m *Members) Names() []string { return m.names }

// MemberIn is a fast path for Key in objects whose member names are
// known: if the member at d.Pos (its opening quote) is spelt exactly
// `"name":` for the first of m's names at or after index from that
// matches, it consumes the name and the colon and returns the name's
// index; otherwise it consumes nothing and returns -1, and the caller
// reads the member with Key. Encoders write a struct's members in its
// field order, so a caller that passes the index after the last member
// matched finds each name at the first or second try, each try one
// comparison of eight bytes (and of a word or two more for a longer
// name once they match), without scanning the name or looking it up.
// The names need no escaping, so matching the raw bytes is matching the
// value. As with Key, the caller must then check that a value follows
// (Peek).
func (d *Scanner) MemberIn(m *Members, from int) int {
	data := d.Data[d.Pos:]
	if len(data) < 8*memberWords {
		return d.memberInShort(m, from)
	}
	x := binary.LittleEndian.Uint64(data)
	pats := m.pats
	for i := from; i < len(pats); i++ {
		p := &pats[i]
		if x&p.masks[0] != p.words[0] {
			continue
		}
		if p.n > 8 {
			if binary.LittleEndian.Uint64(data[8:])&p.masks[1] != p.words[1] {
				continue
			}
			if p.n > 16 {
				if binary.LittleEndian.Uint64(data[16:])&p.masks[2] != p.words[2] {
					continue
				}
				if p.n > 24 && (len(data) < p.n || string(data[24:p.n]) != p.pat[24:]) {
					continue
				}
			}
		}
		d.Pos += p.n
		return i
	}
	return -1
}

// memberInShort is MemberIn near the end of the input, where the words
// cannot be loaded.
func (d *Scanner) memberInShort(m *Members, from int) int {
	data := d.Data[d.Pos:]
	for i := from; i < len(m.pats); i++ {
		if pat := m.pats[i].pat; len(data) >= len(pat) && string(data[:len(pat)]) == pat {
			d.Pos += len(pat)
			return i
		}
	}
	return -1
}

// ArrayStart consumes the '[' at d.Pos and reports whether an element
// follows; d.Pos is then at the element.
func (d *Scanner) ArrayStart() (bool, error) {
	d.Pos++
	c, err := d.Peek()
	if err != nil {
		return false, err
	}
	if c == ']' {
		d.Pos++
		return false, nil
	}
	return true, nil
}

// ArrayNext consumes the ',' or ']' after an element and reports whether
// another element follows.
func (d *Scanner) ArrayNext() (bool, error) {
	// Compact JSON first: a ',' directly followed by the next element, or
	// a ']'.
	if p := d.Pos; p+1 < len(d.Data) {
		switch d.Data[p] {
		case ',':
			if d.Data[p+1] > ' ' {
				d.Pos = p + 1
				return true, nil
			}
		case ']':
			d.Pos = p + 1
			return false, nil
		}
	}
	c, err := d.Peek()
	if err != nil {
		return false, err
	}
	switch c {
	case ',':
		d.Pos++
		_, err := d.Peek()
		return err == nil, err
	case ']':
		d.Pos++
		return false, nil
	}
	return false, d.Syntax("after array element")
}

// Literal consumes true, false or null at d.Pos.
func (d *Scanner) Literal() error {
	var want string
	switch d.Data[d.Pos] {
	case 't':
		want = "true"
	case 'f':
		want = "false"
	default:
		want = "null"
	}
	rest := d.Data[d.Pos:]
	for j := 1; j < len(want); j++ {
		if j >= len(rest) {
			d.Pos = len(d.Data)
			return ErrUnexpectedEnd
		}
		if rest[j] != want[j] {
			d.Pos += j
			return d.Syntax("in literal " + want + " (expecting " + quoteChar(want[j]) + ")")
		}
	}
	d.Pos += len(want)
	return nil
}

// IsDigit reports an ASCII digit.
func IsDigit(c byte) bool { return '0' <= c && c <= '9' }

// Number consumes a number literal at d.Pos and returns its text.
func (d *Scanner) Number() ([]byte, error) {
	data, start := d.Data, d.Pos
	j := d.Pos
	if data[j] == '-' {
		j++
	}
	if j >= len(data) {
		d.Pos = j
		return nil, ErrUnexpectedEnd
	}
	switch c := data[j]; {
	case c == '0':
		j++
	case '1' <= c && c <= '9':
		j++
		for j < len(data) && IsDigit(data[j]) {
			j++
		}
	default:
		d.Pos = j
		return nil, d.Syntax("in numeric literal")
	}
	if j < len(data) && data[j] == '.' {
		j++
		if j >= len(data) || !IsDigit(data[j]) {
			d.Pos = j
			return nil, d.Syntax("after decimal point in numeric literal")
		}
		for j < len(data) && IsDigit(data[j]) {
			j++
		}
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		if j >= len(data) || !IsDigit(data[j]) {
			d.Pos = j
			return nil, d.Syntax("in exponent of numeric literal")
		}
		for j < len(data) && IsDigit(data[j]) {
			j++
		}
	}
	d.Pos = j
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

// scanOpaque returns the index of the first byte at or after j that ends a
// skipped string's run of verbatim bytes ('"', '\\' or a control
// character), or len(data). It reads eight bytes at a time.
func scanOpaque(data []byte, j int) int {
	// rest shrinks as the scan goes: its length proves each load in
	// bounds, so the loop has no bounds checks.
	for rest := data[j:]; len(rest) >= 8; rest = rest[8:] {
		x := binary.LittleEndian.Uint64(rest)
		// As in scanPlain, the three subtractions flag the stop bytes
		// (a zero byte of x^quote or x^bslash, a byte of x below 0x20;
		// a borrow can only flag bytes above a true flag, so the lowest
		// flag is exact), and bytes of 0x80 and above, which never stop
		// a skip, are masked out once, with &^x: 9 operations per 8
		// bytes instead of 13.
		m := (((x ^ quote) - lsb) | ((x ^ bslash) - lsb) | (x - space)) &^ x & msb
		if m != 0 {
			return len(data) - len(rest) + bits.TrailingZeros64(m)/8
		}
		j += 8
	}
	for j < len(data) && opaque[data[j]] {
		j++
	}
	return j
}

// scanPlain is scanOpaque that also stops at bytes of 0x80 and above
// (UTF-8 the slow path must validate). Since those stop it anyway, its
// tests need not exclude them: y-lsb flags a zero byte of y (and bytes of
// 0x81 and above, which x&msb flags too), x-space a byte below 0x20 (and
// bytes of 0xA0 and above), each subtraction's borrow can only flag bytes
// above one it truly flagged, so the lowest flag is still exact; and the
// flags are masked once, at the end: 9 operations per 8 bytes instead of
// scanOpaque's 14.
func scanPlain(data []byte, j int) int {
	for rest := data[j:]; len(rest) >= 8; rest = rest[8:] {
		x := binary.LittleEndian.Uint64(rest)
		q := (x ^ quote) - lsb
		b := (x ^ bslash) - lsb
		c := x - space
		m := (q | b | c | x) & msb
		if m != 0 {
			return len(data) - len(rest) + bits.TrailingZeros64(m)/8
		}
		j += 8
	}
	for j < len(data) && plain[data[j]] {
		j++
	}
	return j
}

// StringEnd validates the string whose opening quote is at d.Pos, leaving d.Pos
// after its closing quote. It returns the raw content's bounds and whether
// the content has escapes.
func (d *Scanner) StringEnd() (start, end int, escaped bool, err error) {
	data := d.Data
	start = d.Pos + 1
	j := start
	for {
		j = scanOpaque(data, j)
		if j >= len(data) {
			d.Pos = j
			return 0, 0, false, ErrUnexpectedEnd
		}
		switch c := data[j]; {
		case c == '"':
			d.Pos = j + 1
			return start, j, escaped, nil
		case c == '\\':
			escaped = true
			j++
			if j >= len(data) {
				d.Pos = j
				return 0, 0, false, ErrUnexpectedEnd
			}
			switch data[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				j++
				for k := 0; k < 4; k++ {
					if j >= len(data) {
						d.Pos = j
						return 0, 0, false, ErrUnexpectedEnd
					}
					if !isHex(data[j]) {
						d.Pos = j
						return 0, 0, false, d.Syntax("in \\u hexadecimal character escape")
					}
					j++
				}
			default:
				d.Pos = j
				return 0, 0, false, d.Syntax("in string escape code")
			}
		default: // control character
			d.Pos = j
			return 0, 0, false, d.Syntax("in string literal")
		}
	}
}

func isHex(c byte) bool {
	return IsDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// Content reads the string at d.Pos and returns its raw content (between
// the quotes, aliasing the input) and whether it must go through Unquote to
// give the string's value: it has escapes or invalid UTF-8. Plain content,
// the usual case, takes one vectorised scan.
func (d *Scanner) Content() (raw []byte, unquote bool, err error) {
	data := d.Data
	start := d.Pos + 1
	j := scanPlain(data, start)
	if j < len(data) && data[j] == '"' {
		d.Pos = j + 1
		return data[start:j], false, nil
	}
	start, end, escaped, err := d.StringEnd()
	if err != nil {
		return nil, false, err
	}
	raw = data[start:end]
	return raw, escaped || !utf8.Valid(raw), nil
}

// Str reads the string at d.Pos and returns its unquoted content. Plain
// content (the usual case) aliases the input; content with escapes or
// invalid UTF-8 is unquoted into a new buffer, as encoding/json does.
func (d *Scanner) Str() ([]byte, error) {
	raw, unquote, err := d.Content()
	if err != nil || !unquote {
		return raw, err
	}
	return Unquote(make([]byte, 0, len(raw)+utf8.UTFMax), raw), nil
}

// StrString is Str converted to a string. Content Str had to unquote is
// already a fresh buffer, so it becomes the string without a second copy.
func (d *Scanner) StrString() (string, error) {
	raw, unquote, err := d.Content()
	if err != nil {
		return "", err
	}
	if !unquote {
		return string(raw), nil
	}
	b := Unquote(make([]byte, 0, len(raw)+utf8.UTFMax), raw)
	if len(b) == 0 {
		return "", nil
	}
	// b is never written again, so it can back the string as
	// strings.Builder does.
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// StrScratch is Str for callers that do not keep the content: content that
// needs unquoting goes into *scratch, reused from call to call, so that
// reading escaped strings does not allocate. The result is valid until
// *scratch is next used.
func (d *Scanner) StrScratch(scratch *[]byte) ([]byte, error) {
	raw, unquote, err := d.Content()
	if err != nil || !unquote {
		return raw, err
	}
	*scratch = Unquote((*scratch)[:0], raw)
	return *scratch, nil
}

// Unquote appends the decoded content of a validated string to dst with
// encoding/json's rules: invalid UTF-8 and unpaired surrogates become
// U+FFFD.
func Unquote(dst, s []byte) []byte {
	for r := 0; r < len(s); {
		// Copy the run up to the next escape or non-ASCII byte at once:
		// most of an escaped string is plain (a URI with a \u0026, a
		// reason with two \").
		if j := scanPlain(s, r); j > r {
			dst = append(dst, s[r:j]...)
			if r = j; r >= len(s) {
				break
			}
		}
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

// Skip validates and consumes the value at d.Pos. depth counts the objects
// and arrays enclosing it.
//
// An object or array is first skipped by skipCompact, one loop over the
// bytes of compact JSON, and a string by compactStringEnd; anything
// else, and any value those do not accept, goes through skip, the recursive walk that
// words its errors as encoding/json does.
func (d *Scanner) Skip(depth int) error {
	if p := d.Pos; p < len(d.Data) {
		switch d.Data[p] {
		case '{', '[':
			if d.skipCompact(depth) {
				return nil
			}
		case '"':
			// A string, as skipCompact skips one.
			if k := compactStringEnd(d.Data, p+1); k >= 0 {
				d.Pos = k
				return nil
			}
		}
	}
	return d.skip(depth)
}

// skipCompact skips the object or array at d.Pos, at nesting depth depth,
// when it is compact JSON it can vouch for: no whitespace, strings
// without control characters, at most 64 levels deep (and
// within MaxDepth). It reports whether it did; when it did not, d.Pos is
// unchanged and skip, which accepts exactly what encoding/json accepts,
// decides, from the start: what skipCompact accepts is a subset of that,
// so Skip's result is skip's, and an input that fails late costs two
// linear passes, never more. Bodies are what this is for: skipping
// requestObject and responseObject with a call per token was about 15 %
// of detect scan's instructions (pod specs are hundreds of short
// strings).
func (d *Scanner) skipCompact(depth int) bool {
	data := d.Data
	j := d.Pos
	// stack holds a bit per open container, innermost lowest: 1 for an
	// array, 0 for an object; n counts them.
	var stack uint64
	n := 0
value:
	if j >= len(data) {
		return false
	}
	switch c := data[j]; c {
	case '"':
		// Most strings have no escape: one scan finds their end.
		if k := scanOpaque(data, j+1); k < len(data) && data[k] == '"' {
			j = k + 1
		} else if j = compactStringEnd(data, k); j < 0 {
			return false
		}
	case '{', '[':
		if n == 64 || depth+n >= MaxDepth {
			return false
		}
		j++
		// An empty container: c+2 is ']' for '[' and '}' for '{'.
		if j < len(data) && data[j] == c+2 {
			j++
			goto after
		}
		stack <<= 1
		n++
		if c == '[' {
			stack |= 1
			goto value
		}
		goto key
	case 't':
		if len(data)-j < 4 || string(data[j:j+4]) != "true" {
			return false
		}
		j += 4
	case 'f':
		if len(data)-j < 5 || string(data[j:j+5]) != "false" {
			return false
		}
		j += 5
	case 'n':
		if len(data)-j < 4 || string(data[j:j+4]) != "null" {
			return false
		}
		j += 4
	default:
		if c != '-' && !IsDigit(c) {
			return false
		}
		start := d.Pos
		d.Pos = j
		_, err := d.Number()
		j, d.Pos = d.Pos, start
		if err != nil {
			return false
		}
	}
after:
	if n == 0 {
		d.Pos = j
		return true
	}
	if j >= len(data) {
		return false
	}
	switch data[j] {
	case ',':
		j++
		if stack&1 == 0 {
			goto key
		}
		goto value
	case '}':
		if stack&1 != 0 {
			return false
		}
	case ']':
		if stack&1 == 0 {
			return false
		}
	default:
		return false
	}
	j++
	stack >>= 1
	n--
	goto after
key:
	if j >= len(data) || data[j] != '"' {
		return false
	}
	if k := scanOpaque(data, j+1); k < len(data) && data[k] == '"' {
		j = k + 1
	} else if j = compactStringEnd(data, k); j < 0 {
		return false
	}
	if j >= len(data) || data[j] != ':' {
		return false
	}
	j++
	goto value
}

// compactStringEnd returns the index after the closing quote of the
// string whose content starts at j, or -1 where skip would refuse it or
// say where it fails (a control character, a bad escape, the end of the
// input). Escapes are checked as StringEnd checks them: the keys of a
// stored object's managedFields are written with \" (k:{\"name\":…}), and
// refusing them sent every such body through skipCompact up to its first
// escape and then through skip again from the start.
func compactStringEnd(data []byte, j int) int {
	for {
		j = scanOpaque(data, j)
		if j >= len(data) {
			return -1
		}
		switch data[j] {
		case '"':
			return j + 1
		case '\\':
			if j+1 >= len(data) {
				return -1
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if len(data)-j < 6 || !isHex(data[j+2]) || !isHex(data[j+3]) || !isHex(data[j+4]) || !isHex(data[j+5]) {
					return -1
				}
				j += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

// skip is Skip's recursive walk.
func (d *Scanner) skip(depth int) error {
	c, err := d.Peek()
	if err != nil {
		return err
	}
	switch c {
	case '"':
		_, _, _, err := d.StringEnd()
		return err
	case '{':
		if depth >= MaxDepth {
			return &SyntaxError{Msg: "exceeded max depth", Offset: d.Pos}
		}
		more, err := d.ObjectStart()
		for more && err == nil {
			if _, _, _, err = d.StringEnd(); err != nil {
				return err
			}
			if c, err = d.Peek(); err != nil {
				return err
			}
			if c != ':' {
				return d.Syntax("after object key")
			}
			d.Pos++
			if err = d.skip(depth + 1); err != nil {
				return err
			}
			more, err = d.ObjectNext()
		}
		return err
	case '[':
		if depth >= MaxDepth {
			return &SyntaxError{Msg: "exceeded max depth", Offset: d.Pos}
		}
		more, err := d.ArrayStart()
		for more && err == nil {
			if err = d.skip(depth + 1); err != nil {
				return err
			}
			more, err = d.ArrayNext()
		}
		return err
	case 't', 'f', 'n':
		return d.Literal()
	}
	if c == '-' || IsDigit(c) {
		_, err := d.Number()
		return err
	}
	return d.Syntax("looking for beginning of value")
}

// StringOrNull decodes the string at d.Pos into dst, as encoding/json does
// for a string field: null leaves dst as it was, any other type is a
// TypeError naming field. depth counts the containers enclosing the value.
func (d *Scanner) StringOrNull(dst *string, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '"':
		s, err := d.StrString()
		if err != nil {
			return err
		}
		*dst = s
		return nil
	case 'n':
		return d.Literal()
	}
	return d.Mismatch(depth, field, "string")
}

// Mismatch validates the value at d.Pos, which has the wrong type for field,
// and reports it the way encoding/json would.
func (d *Scanner) Mismatch(depth int, field, want string) error {
	start := d.Pos
	if err := d.Skip(depth); err != nil {
		return err
	}
	var value string
	switch c := d.Data[start]; c {
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
			value = "number " + string(d.Data[start:d.Pos])
		}
	}
	return &TypeError{Value: value, Field: field, Want: want}
}

// IsNull reports whether the raw value is the literal null.
func IsNull(raw []byte) bool { return bytes.Equal(raw, []byte("null")) }

// Valid reports whether data is one JSON value (surrounded by optional
// whitespace) that encoding/json would accept.
func Valid(data []byte) bool {
	d := Scanner{Data: data}
	if err := d.Skip(0); err != nil {
		return false
	}
	d.WS()
	return d.Pos == len(d.Data)
}

// Reset points the scanner at data, from its start.
func (d *Scanner) Reset(data []byte) { d.Data, d.Pos = data, 0 }
