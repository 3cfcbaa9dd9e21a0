package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/auditpipe/auditpipe/internal/credential"
)

// Credentials in free text: any string of an event (a request URI, an
// annotation, user.extra, a status message, a custom resource's field, a
// ConfigMap holding a kubeconfig) is searched for them, after
// percent-decoding, since a URI may encode any byte. Each search is one
// forward pass (or a look-back of bounded length at each separator), so
// the whole is linear in the string, whatever an attacker puts in it.
//
// What is found is replaced in place, the rest of the string kept:
//   - a JWT (header.payload[.signature…], base64url with or without
//     padding, spaces allowed around the dots; its header decodes to '{'
//     followed by a quote or white space, so `eyJ`, `eyAi` and `ew…`
//     headers are all caught, even glued to other text);
//   - what follows "Bearer " or "Basic " (any case; also after '+' or
//     %20, as in a query);
//   - the value after a "token", "password", "passwd", "client-key-data",
//     "client-secret" or "api-key" key and ':' or '=' (kubeconfig YAML,
//     JSON held in a string, query parameters such as access_token=);
//   - a PEM private key block, BEGIN to END;
//   - the password of a URL's user information (scheme://user:pass@host).
//
// JWTs and bearer tokens become "redacted:sha256:<hex>": they are
// unguessable, so the hash identifies the token across events without
// revealing it. Everything else becomes "redacted:secret", with an HMAC
// under the configured fingerprint key when there is one.

const (
	redactedSHA    = "redacted:sha256:"
	redactedSecret = "redacted:secret"
)

// kvKeys are names whose value, in text, is a credential. They match at
// the end of a longer name too (access_token, id-token), case-insensitively.
var kvKeys = []string{"token", "password", "passwd", "client-key-data", "client-secret", "api-key", "api_key", "apikey"}

// found is one credential in the decoded view of a string.
type found struct {
	start, end int
	hashed     bool // replaced by its SHA-256 rather than as a secret
}

// textState is the scratch space of the text search, reused across strings.
type textState struct {
	view  []byte  // percent-decoded string
	index []int32 // view offset -> string offset
	found []found
	out   []byte
}

// scrub returns s with every credential replaced, or nil when it has none.
// The result is valid until the next call.
func (t *textState) scrub(r *Redactor, s []byte) []byte {
	if len(s) < 6 {
		return nil
	}
	v := s
	t.index = t.index[:0]
	// Each search runs only where the byte it hinges on occurs. A short
	// string (names, UIDs, paths: most of an event) is read once for all
	// of them; a long one is searched by the vectorised checks, each far
	// faster per byte than a loop, so either way the common string costs
	// little more than one look at its bytes.
	var trig uint8
	dots := 0
	if len(s) <= maxShortText {
		if trig, dots = shortTriggers(s); trig&trigPercent != 0 {
			v = t.percentDecode(s)
			trig, dots = shortTriggers(v)
		}
	} else {
		if bytes.IndexByte(s, '%') >= 0 {
			v = t.percentDecode(s)
		}
		trig, dots = longTriggers(v)
	}
	t.found = t.found[:0]
	if dots >= 2 {
		t.findJWTs(v)
	}
	if trig&trigB != 0 {
		t.findAuthSchemes(v)
	}
	if trig&trigSep != 0 {
		t.findKeyValues(v)
	}
	// findPEM finds only blocks whose label says PRIVATE KEY: looking
	// for that is cheaper than for "-----", which each dash of a UUID or
	// a hyphenated name starts to match.
	if trig&trigP != 0 && bytes.Contains(v, []byte("PRIVATE KEY")) {
		t.findPEM(v)
	}
	if trig&trigAt != 0 {
		t.findUserinfo(v)
	}
	if len(t.found) == 0 {
		return nil
	}
	// Back to offsets of s, merged where they overlap.
	if len(t.index) > 0 {
		for i := range t.found {
			t.found[i].start = int(t.index[t.found[i].start])
			t.found[i].end = int(t.index[t.found[i].end])
		}
	}
	slices.SortFunc(t.found, func(a, b found) int { return a.start - b.start })
	merged := t.found[:1]
	for _, f := range t.found[1:] {
		last := &merged[len(merged)-1]
		if f.start < last.end {
			last.end = max(last.end, f.end)
			last.hashed = last.hashed && f.hashed
			continue
		}
		merged = append(merged, f)
	}
	out := t.out[:0]
	prev := 0
	for _, f := range merged {
		out = append(out, s[prev:f.start]...)
		out = r.appendReplacement(out, s[f.start:f.end], f.hashed)
		prev = f.end
	}
	out = append(out, s[prev:]...)
	t.out = out
	return out
}

// Trigger bytes of the text searches, as bits of textTriggers.
const (
	trigPercent = 1 << iota // '%': percent-decode first
	trigB                   // 'b' or 'B': Bearer, Basic
	trigSep                 // ':' or '=': key and value
	trigP                   // 'P': PRIVATE KEY
	trigAt                  // '@': URL user information
	trigDot                 // '.': JWT segments, counted apart
)

// maxShortText is the length up to which a string's trigger bytes are
// found by one table-driven loop rather than one vectorised search each:
// below it the calls cost more than the loop.
const maxShortText = 128

var textTriggers = func() (t [256]uint8) {
	t['%'] = trigPercent
	t['b'], t['B'] = trigB, trigB
	t[':'], t['='] = trigSep, trigSep
	t['P'] = trigP
	t['@'] = trigAt
	t['.'] = trigDot
	return t
}()

// shortTriggers returns the trigger bytes v holds and its count of dots,
// in one pass.
func shortTriggers(v []byte) (trig uint8, dots int) {
	for _, c := range v {
		b := textTriggers[c]
		trig |= b
		if b == trigDot {
			dots++
		}
	}
	return trig, dots
}

// longTriggers is shortTriggers by vectorised searches, for long strings.
// Of the dots it counts at most two, all the JWT search asks.
func longTriggers(v []byte) (trig uint8, dots int) {
	if i := bytes.IndexByte(v, '.'); i >= 0 {
		dots = 1
		if bytes.IndexByte(v[i+1:], '.') >= 0 {
			dots = 2
		}
	}
	if bytes.IndexByte(v, 'b') >= 0 || bytes.IndexByte(v, 'B') >= 0 {
		trig |= trigB
	}
	if bytes.IndexByte(v, ':') >= 0 || bytes.IndexByte(v, '=') >= 0 {
		trig |= trigSep
	}
	if bytes.IndexByte(v, 'P') >= 0 {
		trig |= trigP
	}
	if bytes.IndexByte(v, '@') >= 0 {
		trig |= trigAt
	}
	return trig, dots
}

// appendReplacement appends what stands in for a credential.
func (r *Redactor) appendReplacement(out, secret []byte, hashed bool) []byte {
	if hashed {
		sum := sha256.Sum256(secret)
		out = append(out, redactedSHA...)
		return hex.AppendEncode(out, sum[:])
	}
	out = append(out, redactedSecret...)
	if r.fpKey != nil {
		m := hmac.New(sha256.New, r.fpKey)
		m.Write(secret)
		out = append(out, ":hmac-sha256:"...)
		out = hex.AppendEncode(out, m.Sum(nil))
	}
	return out
}

// percentDecode decodes %XX escapes into t.view, recording for each view
// byte the offset of the string it came from.
func (t *textState) percentDecode(s []byte) []byte {
	v := t.view[:0]
	idx := t.index[:0]
	for i := 0; i < len(s); {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := hexVal(s[i+1])
			lo, ok2 := hexVal(s[i+2])
			if ok1 && ok2 {
				v = append(v, byte(hi<<4|lo))
				idx = append(idx, int32(i))
				i += 3
				continue
			}
		}
		v = append(v, s[i])
		idx = append(idx, int32(i))
		i++
	}
	idx = append(idx, int32(len(s)))
	t.view, t.index = v, idx
	return v
}

func hexVal(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// findJWTs records every JWT credential.FindJWTs finds in v: the
// search is shared with detectors, which must not import the redactor.
func (t *textState) findJWTs(v []byte) {
	credential.FindJWTs(v, func(start, end int) {
		t.found = append(t.found, found{start: start, end: end, hashed: true})
	})
}

// findAuthSchemes finds the credential after "Bearer" or "Basic" (any
// case) and white space or '+'. It visits each 'b' once.
func (t *textState) findAuthSchemes(v []byte) {
	var next byteFinder
	for i := 0; i < len(v); i++ {
		if i = next.index(v, i); i < 0 {
			return
		}
		// Only "be…" and "ba…" can start a scheme: one byte rules out
		// the other words before two case-folding compares.
		if i+1 >= len(v) || (v[i+1]|0x20 != 'e' && v[i+1]|0x20 != 'a') {
			continue
		}
		var n int
		var hashed bool
		switch {
		case i+6 < len(v) && bytes.EqualFold(v[i:i+6], []byte("bearer")):
			n, hashed = 6, true
		case i+5 < len(v) && bytes.EqualFold(v[i:i+5], []byte("basic")):
			n = 5
		default:
			continue
		}
		j := i + n
		if !isSpace(v[j]) && v[j] != '+' {
			continue
		}
		for j < len(v) && (isSpace(v[j]) || v[j] == '+') {
			j++
		}
		k := j
		for k < len(v) && isCredential(v[k]) {
			k++
		}
		if looksLikeCredential(v[j:k]) {
			t.found = append(t.found, found{start: j, end: k, hashed: hashed})
		}
		i = max(i, k-1)
	}
}

// byteFinder finds the next 'b' or 'B' at or after a position. It keeps
// the next of each it found, so that a string with many of one and few of
// the other is still searched in linear time.
type byteFinder struct {
	lo, up     int
	loOK, upOK bool
}

func (f *byteFinder) index(v []byte, from int) int {
	if !f.loOK || (f.lo >= 0 && f.lo < from) {
		f.lo, f.loOK = indexFrom(v, from, 'b'), true
	}
	if !f.upOK || (f.up >= 0 && f.up < from) {
		f.up, f.upOK = indexFrom(v, from, 'B'), true
	}
	switch {
	case f.lo < 0:
		return f.up
	case f.up < 0:
		return f.lo
	}
	return min(f.lo, f.up)
}

func indexFrom(v []byte, from int, c byte) int {
	if j := bytes.IndexByte(v[from:], c); j >= 0 {
		return from + j
	}
	return -1
}

// looksLikeCredential tells a credential after "Bearer" or "Basic" from
// prose ("invalid bearer token", "basic authentication"): tokens and
// base64 are long, or hold a digit or punctuation; words are neither.
func looksLikeCredential(c []byte) bool {
	if len(c) >= 20 {
		return true
	}
	if len(c) < 6 {
		return false
	}
	for _, b := range c {
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z') {
			return true
		}
	}
	return false
}

// isCredential is RFC 6750's b64token alphabet.
func isCredential(c byte) bool {
	return isB64URL(c) || c == '.' || c == '~' || c == '+' || c == '/' || c == '='
}

// findKeyValues finds values after a credential's key and ':' or '='.
func (t *textState) findKeyValues(v []byte) {
	for i := 0; i < len(v); i++ {
		if v[i] != ':' && v[i] != '=' {
			continue
		}
		// Look back over spaces and one closing quote to the key's end.
		k := i
		for k > 0 && (v[k-1] == ' ' || v[k-1] == '\t') {
			k--
		}
		if k > 0 && (v[k-1] == '"' || v[k-1] == '\'') {
			k--
		}
		// The byte before the separator ends every key: most ends are
		// none of theirs (kvKeyLast), and then no compare is needed.
		key := ""
		if k == 0 || !kvKeyLast[v[k-1]] {
			continue
		}
		for _, name := range kvKeys {
			if k >= len(name) && bytes.EqualFold(v[k-len(name):k], []byte(name)) {
				key = name
				break
			}
		}
		if key == "" {
			continue
		}
		j := i + 1
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		end := j
		if j < len(v) && (v[j] == '"' || v[j] == '\'') {
			q := v[j]
			j++
			end = j
			for end < len(v) && v[end] != q && v[end] != '\n' {
				end++
			}
		} else {
			for end < len(v) && !isValueEnd(v[end]) {
				end++
			}
			for end > j && isSpace(v[end-1]) {
				end--
			}
		}
		if end > j && !bytes.HasPrefix(v[j:end], []byte("redacted:")) {
			t.found = append(t.found, found{start: j, end: end, hashed: key == "token"})
		}
		i = max(i, end-1)
	}
}

func isValueEnd(c byte) bool {
	switch c {
	case '\n', '\r', '&', ',', ';', '}', '"', '\'':
		return true
	}
	return false
}

// findPEM finds private key blocks. A block without its END line runs to
// the end of the string.
func (t *textState) findPEM(v []byte) {
	begin := []byte("-----BEGIN ")
	for i := 0; i < len(v); {
		j := bytes.Index(v[i:], begin)
		if j < 0 {
			return
		}
		start := i + j
		labelStart := start + len(begin)
		le := bytes.Index(v[labelStart:min(len(v), labelStart+80)], []byte("-----"))
		if le < 0 || !bytes.Contains(v[labelStart:labelStart+le], []byte("PRIVATE KEY")) {
			i = labelStart
			continue
		}
		end := len(v)
		if e := bytes.Index(v[labelStart+le:], []byte("-----END")); e >= 0 {
			end = labelStart + le + e + len("-----END")
			if tail := bytes.Index(v[end:min(len(v), end+80)], []byte("-----")); tail >= 0 {
				end += tail + len("-----")
			}
		}
		t.found = append(t.found, found{start: start, end: end})
		i = end
	}
}

// findUserinfo finds the password in scheme://user:password@host.
func (t *textState) findUserinfo(v []byte) {
	for i := 0; i < len(v); {
		j := bytes.Index(v[i:], []byte("://"))
		if j < 0 {
			return
		}
		start := i + j + 3
		colon := -1
		k := start
		for ; k < len(v); k++ {
			c := v[k]
			if c == '@' || c == '/' || c == '?' || c == '#' || isSpace(c) || c == '"' {
				break
			}
			if c == ':' && colon < 0 {
				colon = k
			}
		}
		if k < len(v) && v[k] == '@' && colon >= 0 && k > colon+1 {
			t.found = append(t.found, found{start: colon + 1, end: k})
		}
		i = max(k, start)
	}
}
