package credential

import (
	"bytes"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// The JOSE header and the claims are read in one pass each with the
// project's JSON scanner (internal/jsonscan), with no reflection and few
// allocations: the unsigned-jwt detector parses every token that passes
// through a TokenRequest or TokenReview, and decoding them with
// encoding/json (into a map[string]json.RawMessage, then each member
// again) cost 6 % of detect scan's CPU on the realistic stream.
//
// The result, problems included, is what that encoding/json code gave
// for every input, because a token is attacker-chosen input to a security
// detector; jwt_ref_test.go keeps that code and the fuzz targets compare
// the two. Its rules, as json.Unmarshal applies them:
//   - The whole segment must be one valid JSON value (encoding/json
//     validates before it decodes, nesting at most 10,000 deep); anything
//     else, or a value other than an object or null, is "not a JSON
//     object" and nothing of the segment is kept. null is an empty object.
//   - Header parameters and claims are map keys: matched exactly after
//     unquoting (escapes decoded, invalid UTF-8 as U+FFFD), the last of
//     duplicate names the only one read.
//   - A string field reads null as "" and any other type as a problem;
//     a NumericDate reads null as 0, a number out of float64's range or any
//     other type as a problem; aud is a string (null reading as "") or an
//     array whose null and mistyped elements read as "" (the latter with a
//     problem; [] is an empty, non-nil slice).
//   - The kubernetes.io claim was decoded into a struct: its member names
//     (and those of its object references) match case-insensitively under
//     encoding/json's folding, every duplicate is decoded in turn (null
//     keeps a string's value and clears a reference; a second object for a
//     reference merges into the first), and any mistyped member makes the
//     whole claim "malformed". Its warnafter is kept raw and read as a
//     NumericDate at the end, null reading as absent.

// sharedMax is the largest decoded segment whose strings alias it: a
// record's strings then cost no allocation beyond the segment's own, and
// a token's record keeps at most this much alive through any one string.
// Real segments are a few hundred bytes; a larger one (an attacker's) has
// each string copied.
const sharedMax = 2 << 10

// segment holds one decoded segment and hands out its strings.
type segment struct {
	d     jsonscan.Scanner
	whole string // the decoded segment as a string, when it is shared
}

// decodeSegment decodes a base64url segment with or without padding,
// accepting exactly what b64 accepts, into a buffer of its own that is
// never written again (strings may alias it).
func decodeSegment(seg []byte) (segment, bool) {
	src := bytes.TrimRight(seg, "=")
	buf := make([]byte, base64.RawURLEncoding.DecodedLen(len(src)))
	n, err := base64.RawURLEncoding.Decode(buf, src)
	if err != nil {
		return segment{}, false
	}
	s := segment{d: jsonscan.Scanner{Data: buf[:n]}}
	if n > 0 && n <= sharedMax {
		s.whole = unsafe.String(&buf[0], n)
	}
	return s, true
}

// str reads the string at d.Pos: a substring of the segment when it
// needs no unquoting and the segment is shared, else a new string.
func (s *segment) str() (string, error) {
	raw, unquote, err := s.d.Content()
	if err != nil {
		return "", err
	}
	if unquote {
		b := jsonscan.Unquote(make([]byte, 0, len(raw)+utf8.UTFMax), raw)
		if len(b) == 0 {
			return "", nil
		}
		return unsafe.String(&b[0], len(b)), nil
	}
	if s.whole == "" {
		return string(raw), nil
	}
	end := s.d.Pos - 1 // the closing quote
	return s.whole[end-len(raw) : end], nil
}

// stringField reads a value decoded into a Go string the way
// json.Unmarshal does: a string's value; null, which leaves the string as
// it was (keep reports it); or a value of another type, which is
// validated and skipped (bad). depth counts the containers around it.
func (s *segment) stringField(depth int) (v string, keep, bad bool, err error) {
	switch s.d.Data[s.d.Pos] {
	case '"':
		v, err = s.str()
		return v, false, false, err
	case 'n':
		return "", true, false, s.d.Literal()
	}
	return "", false, true, s.d.Skip(depth)
}

// top reads the start of a segment's JSON: more reports that an object
// with members follows (d.Pos at its first key); ok is false when the
// segment is not an object or null.
func (s *segment) top() (more, ok bool) {
	c, err := s.d.Peek()
	if err != nil {
		return false, false
	}
	switch c {
	case '{':
		more, err := s.d.ObjectStart()
		return more, err == nil
	case 'n':
		// null decodes into a map as nothing at all.
		return false, s.d.Literal() == nil
	}
	return false, false
}

// end reports whether only whitespace follows the value just read.
func (s *segment) end() bool {
	s.d.WS()
	return s.d.Pos == len(s.d.Data)
}

func parseHeader(seg []byte, h *JWTHeader) string {
	s, ok := decodeSegment(seg)
	if !ok {
		return "header is not base64url"
	}
	bad, ok := s.header(h)
	if !ok {
		*h = JWTHeader{}
		return "header is not a JSON object"
	}
	if len(h.Other) > 1 {
		// Map keys are unique.
		slices.Sort(h.Other)
		h.Other = slices.Compact(h.Other)
	}
	return joinProblems(bad[:], headerProblems[:])
}

// header reads the header object into h, flagging alg, kid and typ when
// they are not strings; ok is false when the segment is not a JSON
// object.
func (s *segment) header(h *JWTHeader) (bad [3]bool, ok bool) {
	more, ok := s.top()
	if !ok {
		return bad, false
	}
	for more {
		key, err := s.d.Key()
		if err != nil {
			return bad, false
		}
		var dst *string
		i := 0
		switch string(key) {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst, i = &h.Kid, 1
		case "typ":
			dst, i = &h.Typ, 2
		default:
			h.Other = append(h.Other, string(key))
			err = s.d.Skip(1)
		}
		if dst != nil {
			// Only the last of duplicate names counts: each is read
			// afresh, so null or a mistype leaves "".
			*dst, _, bad[i], err = s.stringField(1)
		}
		if err != nil {
			return bad, false
		}
		if more, err = s.d.ObjectNext(); err != nil {
			return bad, false
		}
	}
	return bad, s.end()
}

// headerProblems are parseHeader's problems, in sorted order.
var headerProblems = [...]string{
	"header alg is not a string",
	"header kid is not a string",
	"header typ is not a string",
}

// joinProblems joins the problems flagged in bad, which come in sorted
// order, as the encoding/json code sorted them.
func joinProblems(bad []bool, problems []string) string {
	n, last := 0, 0
	for i, b := range bad {
		if b {
			n, last = n+1, i
		}
	}
	switch n {
	case 0:
		return ""
	case 1:
		return problems[last]
	}
	var sb strings.Builder
	for i, b := range bad {
		if b {
			if sb.Len() > 0 {
				sb.WriteString("; ")
			}
			sb.WriteString(problems[i])
		}
	}
	return sb.String()
}

// Claim problems, in sorted order (a test checks it); claimProblems holds
// their text.
const (
	probAud = iota
	probExp
	probIat
	probIss
	probJti
	probKubernetes
	probWarnAfter
	probLegacyNamespace
	probLegacySecret
	probLegacySAName
	probLegacySAUID
	probNbf
	probSub
	numClaimProblems
)

// legacyPrefix begins the flat claims of legacy secret-based tokens
// (before 1.24).
const legacyPrefix = "kubernetes.io/serviceaccount/"

var claimProblems = [numClaimProblems]string{
	probAud:             "claim aud is not a string or list of strings",
	probExp:             "claim exp is not a number",
	probIat:             "claim iat is not a number",
	probIss:             "claim iss is not a string",
	probJti:             "claim jti is not a string",
	probKubernetes:      "claim kubernetes.io is malformed",
	probWarnAfter:       "claim kubernetes.io.warnafter is not a number",
	probLegacyNamespace: "claim " + legacyPrefix + "namespace is not a string",
	probLegacySecret:    "claim " + legacyPrefix + "secret.name is not a string",
	probLegacySAName:    "claim " + legacyPrefix + "service-account.name is not a string",
	probLegacySAUID:     "claim " + legacyPrefix + "service-account.uid is not a string",
	probNbf:             "claim nbf is not a number",
	probSub:             "claim sub is not a string",
}

// claimsBlock holds what a record's claims point to, allocated once per
// token rather than once per pointer.
type claimsBlock struct {
	k    JWTKubernetes
	refs [4]JWTObjectRef // serviceaccount, pod, node, secret
	nums [4]int64        // exp, iat, nbf, warnafter
	aud  [1]string       // a single audience, the usual case
}

// numDate is a NumericDate claim read so far.
type numDate struct {
	set bool // present, and a number (or null)
	n   int64
}

// kubeClaim is the kubernetes.io claim read so far, as encoding/json's
// struct decode would have left it.
type kubeClaim struct {
	namespace string
	refSet    [4]bool // serviceaccount, pod, node, secret: pointer non-nil
	refs      [4]JWTObjectRef
	warnAfter []byte // raw JSON, as the json.RawMessage it was
	malformed bool   // some member had the wrong type
}

// claimsParser is one parseClaims call's state.
type claimsParser struct {
	segment
	bad    [numClaimProblems]bool
	exp    numDate
	iat    numDate
	nbf    numDate
	kube   kubeClaim
	legacy [4]string // namespace, secret.name, service-account.name, service-account.uid
	blk    *claimsBlock
	fold   [maxFieldName * utf8.UTFMax]byte // foldKey's buffer
}

func parseClaims(seg []byte, c *JWTClaims) string {
	s, ok := decodeSegment(seg)
	if !ok {
		return "claims are not base64url"
	}
	p := claimsParser{segment: s}
	if !p.claims(c) {
		*c = JWTClaims{}
		return "claims are not a JSON object"
	}
	p.finish(c)
	return joinProblems(p.bad[:], claimProblems[:])
}

// claims reads the claims object into c and p; false means the segment is
// not a JSON object.
func (p *claimsParser) claims(c *JWTClaims) bool {
	more, ok := p.top()
	if !ok {
		return false
	}
	for more {
		key, err := p.d.Key()
		if err != nil {
			return false
		}
		switch string(key) {
		case "iss":
			err = p.str(&c.Iss, probIss)
		case "sub":
			err = p.str(&c.Sub, probSub)
		case "jti":
			err = p.str(&c.Jti, probJti)
		case "exp":
			err = p.num(&p.exp, probExp)
		case "iat":
			err = p.num(&p.iat, probIat)
		case "nbf":
			err = p.num(&p.nbf, probNbf)
		case "aud":
			c.Aud, err = p.aud()
		case "kubernetes.io":
			p.kube = kubeClaim{}
			p.bad[probKubernetes] = false
			err = p.kubernetes()
			p.bad[probKubernetes] = p.kube.malformed
		case legacyPrefix + "namespace":
			err = p.str(&p.legacy[0], probLegacyNamespace)
		case legacyPrefix + "secret.name":
			err = p.str(&p.legacy[1], probLegacySecret)
		case legacyPrefix + "service-account.name":
			err = p.str(&p.legacy[2], probLegacySAName)
		case legacyPrefix + "service-account.uid":
			err = p.str(&p.legacy[3], probLegacySAUID)
		default:
			err = p.d.Skip(1)
		}
		if err != nil {
			return false
		}
		if more, err = p.d.ObjectNext(); err != nil {
			return false
		}
	}
	return p.end()
}

// str reads a string claim: only the last of duplicates counts, null or a
// mistype (a problem) reading as "".
func (p *claimsParser) str(dst *string, prob int) error {
	v, _, bad, err := p.stringField(1)
	*dst, p.bad[prob] = v, bad
	return err
}

// num reads a NumericDate claim.
func (p *claimsParser) num(dst *numDate, prob int) error {
	n, ok, err := p.numericDate(1)
	*dst, p.bad[prob] = numDate{set: ok, n: n}, !ok
	return err
}

// numericDate reads a NumericDate as json.Unmarshal into a float64 does
// (null is 0; another type, or a number out of float64's range, is not a
// date, ok false), truncating fractions (RFC 7519 allows them) and
// clamping to int64.
func (p *claimsParser) numericDate(depth int) (n int64, ok bool, err error) {
	d := &p.d
	switch c := d.Data[d.Pos]; {
	case c == 'n':
		return 0, true, d.Literal()
	case c == '-' || jsonscan.IsDigit(c):
		lit, err := d.Number()
		if err != nil {
			return 0, false, err
		}
		n, ok := parseNumericDate(lit)
		return n, ok, nil
	}
	return 0, false, d.Skip(depth)
}

// parseNumericDate converts a valid JSON number literal as json.Unmarshal
// into a float64 and then numericDate did.
func parseNumericDate(lit []byte) (int64, bool) {
	// Integers of up to 15 digits, such as every real timestamp, are
	// exact in a float64: no need for ParseFloat.
	if len(lit) <= 15 {
		neg := lit[0] == '-'
		digits := lit
		if neg {
			digits = lit[1:]
		}
		n, plain := int64(0), true
		for _, c := range digits {
			if !jsonscan.IsDigit(c) {
				plain = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if plain {
			if neg {
				n = -n
			}
			return n, true
		}
	}
	// strconv keeps no reference to the string it is given.
	f, err := strconv.ParseFloat(unsafe.String(&lit[0], len(lit)), 64)
	switch {
	case err != nil || math.IsNaN(f):
		return 0, false
	case f >= math.MaxInt64:
		return math.MaxInt64, true
	case f <= math.MinInt64:
		return math.MinInt64, true
	}
	return int64(f), true
}

// aud reads the aud claim: a string, or an array of strings (RFC 7519
// §4.1.3), as the encoding/json code read it.
func (p *claimsParser) aud() ([]string, error) {
	p.bad[probAud] = false
	d := &p.d
	switch d.Data[d.Pos] {
	case '"', 'n':
		// json.Unmarshal into a string succeeds for null too, with "".
		v, _, _, err := p.stringField(1)
		if err != nil {
			return nil, err
		}
		b := p.block()
		b.aud[0] = v
		return b.aud[:1:1], nil
	case '[':
	default:
		p.bad[probAud] = true
		return nil, d.Skip(1)
	}
	// An array decoded into a []string: [] is empty but not nil, null
	// elements are "", mistyped elements "" with an error, which the
	// encoding/json code reported but kept the slice.
	more, err := d.ArrayStart()
	if err != nil {
		return nil, err
	}
	aud := p.block().aud[:0:1]
	for more {
		v, _, bad, err := p.stringField(2)
		if err != nil {
			return nil, err
		}
		aud = append(aud, v)
		p.bad[probAud] = p.bad[probAud] || bad
		if more, err = d.ArrayNext(); err != nil {
			return nil, err
		}
	}
	return aud, nil
}

// block returns the claims' block, allocating it on first use.
func (p *claimsParser) block() *claimsBlock {
	if p.blk == nil {
		p.blk = new(claimsBlock)
	}
	return p.blk
}

// Indexes of kubeClaim.refs and claimsBlock.refs.
const (
	refServiceAccount = iota
	refPod
	refNode
	refSecret
)

// kubernetes reads the kubernetes.io claim (at depth 1) into p.kube as
// json.Unmarshal into a struct with JWTKubernetes' members (warnafter as a
// json.RawMessage) would have.
func (p *claimsParser) kubernetes() error {
	d, k := &p.d, &p.kube
	switch d.Data[d.Pos] {
	case 'n':
		return d.Literal()
	case '{':
	default:
		k.malformed = true
		return d.Skip(1)
	}
	more, err := d.ObjectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.Key(); err != nil {
			return err
		}
		switch string(foldKey(&p.fold, key)) {
		case "NAMESPACE":
			err = p.kubeString(&k.namespace, 2)
		case "SERVICEACCOUNT":
			err = p.objectRef(refServiceAccount)
		case "POD":
			err = p.objectRef(refPod)
		case "NODE":
			err = p.objectRef(refNode)
		case "SECRET":
			err = p.objectRef(refSecret)
		case "WARNAFTER":
			// Kept raw, the last duplicate replacing the others.
			start := d.Pos
			err = d.Skip(2)
			k.warnAfter = d.Data[start:d.Pos]
		default:
			err = d.Skip(2)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

// kubeString decodes a string member of a struct within kubernetes.io:
// null keeps the value, a mistype makes the claim malformed.
func (p *claimsParser) kubeString(dst *string, depth int) error {
	v, keep, bad, err := p.stringField(depth)
	switch {
	case bad:
		p.kube.malformed = true
	case !keep:
		*dst = v
	}
	return err
}

// objectRef decodes a *JWTObjectRef member of kubernetes.io (at depth 2):
// null clears it, an object is decoded into it (allocated if it was nil,
// merged into what an earlier duplicate decoded if not).
func (p *claimsParser) objectRef(i int) error {
	d, k := &p.d, &p.kube
	switch d.Data[d.Pos] {
	case 'n':
		k.refSet[i], k.refs[i] = false, JWTObjectRef{}
		return d.Literal()
	case '{':
	default:
		k.malformed = true
		return d.Skip(2)
	}
	if !k.refSet[i] {
		k.refSet[i], k.refs[i] = true, JWTObjectRef{}
	}
	ref := &k.refs[i]
	more, err := d.ObjectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.Key(); err != nil {
			return err
		}
		switch string(foldKey(&p.fold, key)) {
		case "NAME":
			err = p.kubeString(&ref.Name, 3)
		case "UID":
			err = p.kubeString(&ref.UID, 3)
		default:
			err = d.Skip(3)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

// maxFieldName bounds the struct member names foldKey's result is compared
// against ("serviceaccount" has 14 runes): folding keeps the number of
// runes, so a longer key matches none of them.
const maxFieldName = 14

// foldKey returns key folded as encoding/json folds a key to match it to
// a struct field case-insensitively (its foldName: ASCII letters upper
// case, other runes the smallest of their Unicode fold orbit, so that
// "ſecret" matches "secret"), in buf; or nil when key is too long to
// match any field.
func foldKey(buf *[maxFieldName * utf8.UTFMax]byte, key []byte) []byte {
	if len(key) > len(buf) {
		return nil
	}
	// A folded rune is never longer than the rune, so the result fits.
	out := buf[:0]
	for i := 0; i < len(key); {
		if c := key[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

// foldRune returns the smallest rune of r's fold orbit, as encoding/json's
// does.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// finish builds c's pointer claims and kubernetes.io (with the legacy
// flat claims' values where it lacks them) from what claims read.
func (p *claimsParser) finish(c *JWTClaims) {
	for i, nd := range [3]*numDate{&p.exp, &p.iat, &p.nbf} {
		if nd.set {
			b := p.block()
			b.nums[i] = nd.n
			switch i {
			case 0:
				c.Exp = &b.nums[0]
			case 1:
				c.Iat = &b.nums[1]
			default:
				c.Nbf = &b.nums[2]
			}
		}
	}
	var k JWTKubernetes
	var refs [4]JWTObjectRef
	var refSet [4]bool
	var warn numDate
	if kube := &p.kube; !kube.malformed {
		k.Namespace = kube.namespace
		refs, refSet = kube.refs, kube.refSet
		if raw := kube.warnAfter; len(raw) > 0 && !jsonscan.IsNull(raw) {
			if raw[0] == '-' || jsonscan.IsDigit(raw[0]) {
				warn.n, warn.set = parseNumericDate(raw)
			}
			p.bad[probWarnAfter] = !warn.set
		}
	}
	ns, secret, sa, saUID := p.legacy[0], p.legacy[1], p.legacy[2], p.legacy[3]
	if k.Namespace == "" {
		k.Namespace = ns
	}
	if !refSet[refServiceAccount] && (sa != "" || saUID != "") {
		refSet[refServiceAccount], refs[refServiceAccount] = true, JWTObjectRef{Name: sa, UID: saUID}
	}
	if !refSet[refSecret] && secret != "" {
		refSet[refSecret], refs[refSecret] = true, JWTObjectRef{Name: secret}
	}
	if k.Namespace == "" && refSet == [4]bool{} && !warn.set {
		return
	}
	b := p.block()
	b.refs = refs
	for i, dst := range [4]**JWTObjectRef{&k.ServiceAccount, &k.Pod, &k.Node, &k.Secret} {
		if refSet[i] {
			*dst = &b.refs[i]
		}
	}
	if warn.set {
		b.nums[3] = warn.n
		k.WarnAfter = &b.nums[3]
	}
	b.k = k
	c.Kubernetes = &b.k
}
