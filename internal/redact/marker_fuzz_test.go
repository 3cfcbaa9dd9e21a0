package redact_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/redact/redacttest"
)

// markerEncoding is one way a credential can be written into a string of an
// audit event: the text inserted, and its cores, the substrings that must
// not survive redaction in any form.
type markerEncoding struct {
	name  string
	text  string
	cores []string
	// keyword encodings ("Bearer x", "Basic x") are only a credential
	// after a word boundary: glued to a letter before ("xBearer") they
	// are just a word, so a space is put between.
	keyword bool
	// escape rewrites some characters of text as JSON \u escapes in the
	// encoded event, chosen by the fuzz input.
	escape bool
}

// markerEncodings builds every encoding once. All of it is derived from
// fixed seeds (no random key), so a failing input reproduces exactly.
func markerEncodings() []markerEncoding {
	claims := func(name string) string {
		c := redacttest.PodClaims(issued)
		c["auditpipe.test/marker"] = "fuzz-marker-" + name
		b, err := json.Marshal(c)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	const kid = "Vk1cR2m8TgWQbX4ZpLh0n3sYa6uJd9eFq5wCiK7oBEM"
	std := `{"alg":"RS256","kid":"` + kid + `"}`
	jwt := func(header, name string) string {
		return redacttest.Forged(header, claims(name), "sig-"+name, 256)
	}
	// parts: the whole token, its payload and its signature.
	parts := func(tok string) []string { return redacttest.JWTParts(tok) }

	raw := jwt(std, "raw")
	ew := jwt("{\n  \"alg\": \"RS256\",\n  \"kid\": \""+kid+"\"\n}", "ew")
	eyAi := jwt(`{ "alg": "RS256", "kid": "`+kid+`" }`, "eyAi")
	pct := jwt(std, "pct")
	pctLower := jwt(std, "pct-lower")
	escaped := jwt(std, "escaped")
	bearerJWT := jwt(std, "bearer-upper")

	// Padded: every segment in base64url with '=' padding, each of a
	// length that needs it.
	pad := func(s string) string {
		for len(s)%3 == 0 {
			s += " "
		}
		return base64.URLEncoding.EncodeToString([]byte(s))
	}
	padded := pad(std) + "." + pad(claims("padded")) + "." + base64.URLEncoding.EncodeToString(redacttest.PseudoRandom("sig-padded", 256))
	paddedCores := []string{padded}
	for _, seg := range strings.Split(padded, ".")[1:] {
		paddedCores = append(paddedCores, strings.TrimRight(seg, "="))
	}

	const opaque = "fzBearerOpaque7Kq2Wm9Xr4Tz8Lb3"
	basic := base64.StdEncoding.EncodeToString([]byte("fuzz-deployer:fzBasicPw-4Hq9Lx2"))
	const kcfgToken = "fzKcfgTok3nW8r2Qx6Zm1Vb5"
	keyData := base64.StdEncoding.EncodeToString([]byte(redacttest.FakePrivateKeyPEM(redacttest.PEMEC, "client-key-data", 121)))
	const password = "fzKcfgPw-Tr0ub4dor-x7Lq"
	pemCase := func(blockType string, n int) markerEncoding {
		p := redacttest.FakePrivateKeyPEM(blockType, "pem-"+blockType, n)
		var cores []string
		for _, l := range redacttest.PEMBodyLines(p) {
			if len(l) >= 16 {
				cores = append(cores, l)
			}
		}
		return markerEncoding{name: "PEM " + blockType, text: p, cores: cores}
	}
	return []markerEncoding{
		{name: "JWT", text: raw, cores: parts(raw)},
		{name: "JWT with ew header", text: ew, cores: parts(ew)},
		{name: "JWT with eyAi header", text: eyAi, cores: parts(eyAi)},
		{name: "JWT with %2E dots", text: strings.ReplaceAll(pct, ".", "%2E"), cores: parts(pct)[1:]},
		{name: "JWT with %2e dots", text: strings.ReplaceAll(pctLower, ".", "%2e"), cores: parts(pctLower)[1:]},
		{name: "JWT with \\u escapes", text: escaped, cores: parts(escaped), escape: true},
		{name: "JWT with = padding", text: padded, cores: paddedCores},
		{name: "Bearer opaque", text: "Bearer " + opaque, cores: []string{opaque}, keyword: true},
		{name: "BEARER JWT", text: "BEARER " + bearerJWT, cores: parts(bearerJWT), keyword: true},
		{name: "Basic", text: "Basic " + basic, cores: []string{basic}, keyword: true},
		{name: "kubeconfig token", text: "\n    token: " + kcfgToken + "\n", cores: []string{kcfgToken}},
		{name: "kubeconfig client-key-data", text: "\n    client-key-data: " + keyData + "\n", cores: []string{keyData, keyData[len(keyData)/2-16 : len(keyData)/2+16]}},
		{name: "kubeconfig password", text: "\n    password: " + password + "\n", cores: []string{password}},
		pemCase(redacttest.PEMRSA, 1190),
		pemCase(redacttest.PEMEC, 121),
		pemCase(redacttest.PEMPKCS8, 138),
	}
}

// markerSite is one string of a decoded event: an object key or a string
// value, with its path for naming seeds.
type markerSite struct {
	path string // "user.extra.k.0"; keys are "KEY:" + path
}

// markerSites lists v's strings in a deterministic order: map keys sorted, each
// key before its value, arrays in order.
func markerSites(v any, path string, out []markerSite) []markerSite {
	join := func(p, k string) string {
		if p == "" {
			return k
		}
		return p + "." + k
	}
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, markerSite{path: "KEY:" + join(path, k)})
			out = markerSites(x[k], join(path, k), out)
		}
	case []any:
		for i, e := range x {
			out = markerSites(e, join(path, strconv.Itoa(i)), out)
		}
	case string:
		out = append(out, markerSite{path: path})
	}
	return out
}

// markerPlantAt replaces the k-th string of v (in the order of markerSites) with
// edit(s), renaming the key when it is a key. It reports false when the
// new key would collide with another.
func markerPlantAt(v any, k *int, edit func(string) string) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for key := range x {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		out := make(map[string]any, len(x))
		ok := true
		for _, key := range keys {
			name := key
			if *k == 0 {
				name = edit(key)
				if _, dup := x[name]; dup && name != key {
					ok = false
				}
			}
			*k--
			val, vok := markerPlantAt(x[key], k, edit)
			out[name] = val
			ok = ok && vok
		}
		return out, ok
	case []any:
		out := make([]any, len(x))
		ok := true
		for i, e := range x {
			var eok bool
			out[i], eok = markerPlantAt(e, k, edit)
			ok = ok && eok
		}
		return out, ok
	case string:
		if *k == 0 {
			*k--
			return edit(x), true
		}
		*k--
		return x, true
	}
	return v, true
}

// markerInsertAt inserts text into s at off (modulo, moved back to a rune start
// and out of a percent-escape), separating a keyword encoding from a letter
// or digit before it. Planted inside "%3D" the text would change meaning
// for anything that percent-decodes: "%" + "Bearer" reads as byte 0xBE
// then "arer", "%2" + "eyJ" as ".yJ".
func markerInsertAt(s string, off uint16, enc markerEncoding) string {
	i := int(off) % (len(s) + 1)
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	switch {
	case i >= 1 && s[i-1] == '%':
		i--
	case i >= 2 && s[i-2] == '%':
		i -= 2
	}
	text := enc.text
	if enc.keyword && i > 0 {
		if c := s[i-1]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			text = " " + text
		}
	}
	return s[:i] + text + s[i:]
}

// markerEscape rewrites, in the encoded event, the dots of text and every
// character at an index i with (i+off)%7 == 0 as \u00XX escapes (upper- or
// lower-case hex by off): encoding/json reads the same string, a byte
// search does not.
func markerEscape(event []byte, text string, off uint16) ([]byte, bool) {
	i := bytes.Index(event, []byte(text))
	if i < 0 {
		return nil, false
	}
	hexFmt := `\u%04x`
	if off&1 == 1 {
		hexFmt = `\u%04X`
	}
	var b strings.Builder
	for j := 0; j < len(text); j++ {
		c := text[j]
		if c == '.' || (j+int(off))%7 == 0 {
			fmt.Fprintf(&b, hexFmt, c)
			continue
		}
		b.WriteByte(c)
	}
	out := make([]byte, 0, len(event)+b.Len())
	out = append(out, event[:i]...)
	out = append(out, b.String()...)
	return append(out, event[i+len(text):]...), true
}

// markerStrings returns every key and string value of the JSON in raw,
// decoded: an escaped survival of a secret shows here.
func markerStrings(raw []byte) ([]string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				out = append(out, k)
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			out = append(out, x)
		}
	}
	walk(v)
	return out, nil
}

// plantMarker builds the event with enc planted into its pos-th string at
// byte offset off. ok is false when event is not a JSON object with a
// string in it, or the planted key would collide with another.
func plantMarker(event []byte, pos, off uint16, enc markerEncoding) (out []byte, site string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, "", false
	}
	if _, isObj := v.(map[string]any); !isObj {
		return nil, "", false
	}
	all := markerSites(v, "", nil)
	if len(all) == 0 {
		return nil, "", false
	}
	k := int(pos) % len(all)
	at := k
	planted, ok := markerPlantAt(v, &at, func(s string) string { return markerInsertAt(s, off, enc) })
	if !ok {
		return nil, "", false
	}
	out, err := json.Marshal(planted)
	if err != nil {
		return nil, "", false
	}
	if enc.escape {
		if out, ok = markerEscape(out, enc.text, off); !ok {
			return nil, "", false
		}
	}
	return out, all[k].path, true
}

// markerEvents are the realistic events markers are planted into: bodies
// (TokenReview, TokenRequest, Pod, a custom resource's status patch, a
// strategic-merge patch), user.extra, a 403 status message, query strings.
// The fuzz input picks one by index rather than carrying the event's bytes:
// what is fuzzed is where and how the marker is planted, and the engine
// spends its time minimising every new kilobyte-sized input otherwise.
var markerEvents = []string{
	"events/tokenreview-unsigned-jwt.json",
	"events/token-request-requestresponse.json",
	"events/requestresponse-pod-create.json",
	"events/bound-service-account-token.json",
	"events/anonymous-probe-forbidden.json",
	"events/list-pods-field-selector.json",
	"demo/sample.jsonl:138",
	"demo/sample.jsonl:17",
	"events/legacy-token.json",
	"events/request-pod-status-patch.json",
}

// markerSeed names a seed by the path of the string to plant in, so that
// the seeds cover bodies, annotations, user.extra, the URI and the status
// message whatever order markerSites gives them.
type markerSeed struct {
	event int // index in markerEvents
	path  string
	off   uint16
	enc   int
}

var markerSeeds = []markerSeed{
	{0, "requestObject.spec.token", 0, 0},
	{1, "requestObject.spec.audiences.0", 5, 1},
	{2, "responseObject.spec.containers.0.image", 3, 2},
	{3, "user.extra.authentication.kubernetes.io/pod-name.0", 7, 3},
	{4, "responseStatus.message", 10, 4},
	{5, "requestURI", 20, 5},
	{6, "requestObject.status.operationState.message", 13, 6},
	{7, "KEY:annotations.authorization.k8s.io/decision", 4, 7},
	{2, "requestObject.metadata.generateName", 9, 8},
	{1, "annotations.authorization.k8s.io/reason", 30, 9},
	{0, "userAgent", 12, 10},
	{2, "KEY:requestObject", 2, 11},
	{3, "requestURI", 16, 12},
	{4, "responseStatus.details.kind", 1, 13},
	{5, "user.username", 6, 14},
	{6, "objectRef.name", 3, 15},
}

// readMarkerEvent reads a testdata event file, or line N of a JSON-lines file.
func readMarkerEvent(t testing.TB, name string) []byte {
	t.Helper()
	file, line, hasLine := strings.Cut(name, ":")
	path := filepath.Join("..", "..", "testdata", file)
	if !hasLine {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.TrimSpace(data)
	}
	n, err := strconv.Atoi(line)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 1; sc.Scan(); i++ {
		if i == n {
			return bytes.Clone(sc.Bytes())
		}
	}
	t.Fatalf("%s has no line %d", file, n)
	return nil
}

// FuzzRedactMarker plants a credential, in one of the encodings above, into
// any string of a realistic audit event (any value or key, at any depth,
// glued at any byte offset into the string) and checks that no core of it
// survives the redactor: neither in the output's bytes nor in any key or
// string value encoding/json decodes from it. The redactor may refuse an
// event instead (nothing of it is forwarded then).
func FuzzRedactMarker(f *testing.F) {
	encs := markerEncodings()
	events := make([][]byte, len(markerEvents))
	for i, name := range markerEvents {
		events[i] = readMarkerEvent(f, name)
	}
	for _, s := range markerSeeds {
		var v any
		if err := json.Unmarshal(events[s.event], &v); err != nil {
			f.Fatalf("%s: %v", markerEvents[s.event], err)
		}
		pos := slices.IndexFunc(markerSites(v, "", nil), func(st markerSite) bool { return st.path == s.path })
		if pos < 0 {
			f.Fatalf("seed: %s has no string at %s", markerEvents[s.event], s.path)
		}
		if _, _, ok := plantMarker(events[s.event], uint16(pos), s.off, encs[s.enc]); !ok {
			f.Fatalf("seed: cannot plant into %s at %s", markerEvents[s.event], s.path)
		}
		f.Add(uint8(s.event), uint16(pos), s.off, uint8(s.enc))
	}
	r, err := redact.New(redact.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, pos, off uint16, encIdx uint8) {
		enc := encs[int(encIdx)%len(encs)]
		in, site, ok := plantMarker(events[int(which)%len(events)], pos, off, enc)
		if !ok {
			return // the planted key collides with another
		}
		// The control: the marker is in what the redactor is given.
		strs, err := markerStrings(in)
		if err != nil {
			t.Fatalf("planted event does not decode: %v", err)
		}
		for _, c := range enc.cores {
			if !slices.ContainsFunc(strs, func(s string) bool { return strings.Contains(s, c) }) {
				t.Fatalf("test bug: core %.12q of %s not in the planted event", c, enc.name)
			}
		}
		out, _, err := r.Event(in)
		if err != nil {
			return // refused: nothing is forwarded
		}
		for _, c := range enc.cores {
			if bytes.Contains(out, []byte(c)) {
				t.Fatalf("%s planted at %s (offset %d) survived redaction: %.24q… in\n%s", enc.name, site, off, c, out)
			}
		}
		strs, err = markerStrings(out)
		if err != nil {
			t.Fatalf("redacted event is not valid JSON: %v\n%s", err, out)
		}
		for _, s := range strs {
			for _, c := range enc.cores {
				if strings.Contains(s, c) {
					t.Fatalf("%s planted at %s (offset %d) survived redaction in escaped form: %.24q… in %.200q", enc.name, site, off, c, s)
				}
			}
		}
	})
}
