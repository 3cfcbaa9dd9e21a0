package redact

import (
	"bytes"
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// Redaction is by shape, not by path: every string and every object of an
// event is visited once, in one pass of the shared scanner, whatever field
// or depth it sits at.
//
//   - Every string value and every object key is searched for credentials
//     (text.go): JWTs, Bearer and Basic credentials, kubeconfig-style
//     "token:" and "password:" values, PEM private keys, URL passwords.
//     A string that holds a JSON document (kubectl's last-applied copy,
//     a JSON kubeconfig) is redacted as a document of its own.
//   - A "token" member of any "spec" or "status" object (TokenReview,
//     TokenRequest, any version, at any depth) becomes a credential.JWTRecord or a
//     credential.SecretRecord.
//   - Any object whose kind is Secret or SecretList (in any case, any
//     apiVersion or none) loses the values of its data and stringData maps
//     (the keys stay) and its last-applied copy; so do the objects held
//     under items, rows and object of such an object, and the bodies of a
//     request whose objectRef names secrets (patches included).
//
// Which objects are Secrets is only known once an object has been read to
// its end (unstructured objects put "kind" after "data"), so the walk first
// records the places that matter and settles them afterwards: linear time,
// and memory proportional to the number of objects, never to depth times
// size.

// role is how a value is held by its parent: the member name it sits under
// (for array elements, the array's).
type role uint8

const (
	roleOther role = iota
	roleData
	roleStringData
	roleItems
	roleRows
	roleObject
	roleMetadata
	roleAnnotations
	roleSpec
	roleStatus
	roleBody // requestObject or responseObject of the event
	roleObjectRef
)

// roleNames maps member names, lower-cased, to roles. Names match as
// encoding/json matches struct fields (case-insensitively), since the
// consumers of these bodies decode them that way.
var roleNames = map[string]role{
	"data": roleData, "stringdata": roleStringData, "items": roleItems,
	"rows": roleRows, "object": roleObject, "metadata": roleMetadata,
	"annotations": roleAnnotations, "spec": roleSpec, "status": roleStatus,
	"requestobject": roleBody, "responseobject": roleBody, "objectref": roleObjectRef,
}

// member is what a member's name says, read once per member.
type member struct {
	role                 role
	kind, path, value    bool // "kind", "path", "value"
	token                bool // "token"
	credential, hashable bool // named like a credential; like a token
}

// maxRoleName is the length of the longest name classify recognises
// ("responseobject"): a longer ASCII name has no role and is none of kind,
// path, value or token, so only credentialName needs to read it.
const maxRoleName = len("responseobject")

// classify reads a member name. It runs on every member of every event, so
// ASCII names (all that apiservers write) take a fast way: lower-cased
// into a small buffer and matched by a switch, and names longer than any
// role (annotation keys) only searched for a credential's suffix. Others
// go the slow way, with Unicode case folding as encoding/json matches
// names.
func classify(key []byte) member {
	var m member
	if !isASCII(key) {
		for name, r := range roleNames {
			if keyIs(key, name) {
				m.role = r
			}
		}
		m.kind, m.path, m.value, m.token = keyIs(key, "kind"), keyIs(key, "path"), keyIs(key, "value"), keyIs(key, "token")
		m.credential = credentialName(key)
		m.hashable = m.credential && len(key) >= 5 && bytes.EqualFold(key[len(key)-5:], []byte("token"))
		return m
	}
	if len(key) > maxRoleName {
		m.credential = credentialName(key)
		m.hashable = m.credential && bytes.EqualFold(key[len(key)-5:], []byte("token"))
		return m
	}
	var buf [maxRoleName]byte
	lower := buf[:len(key)]
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	m.role = roleOf(lower)
	switch string(lower) {
	case "kind":
		m.kind = true
	case "path":
		m.path = true
	case "value":
		m.value = true
	case "token":
		m.token = true
	}
	m.credential = credentialName(lower)
	m.hashable = m.credential && bytes.HasSuffix(lower, []byte("token"))
	return m
}

// roleOf is roleNames[string(lower)] as a switch, which the compiler turns
// into a search by length and bytes without hashing.
func roleOf(lower []byte) role {
	switch string(lower) {
	case "data":
		return roleData
	case "stringdata":
		return roleStringData
	case "items":
		return roleItems
	case "rows":
		return roleRows
	case "object":
		return roleObject
	case "metadata":
		return roleMetadata
	case "annotations":
		return roleAnnotations
	case "spec":
		return roleSpec
	case "status":
		return roleStatus
	case "requestobject", "responseobject":
		return roleBody
	case "objectref":
		return roleObjectRef
	}
	return roleOther
}

// keyIs matches an unescaped member name against a field name the way
// encoding/json does: exactly, else with Unicode case folding.
func keyIs(key []byte, name string) bool {
	if len(key) == len(name) && bytes.EqualFold(key, []byte(name)) {
		return true
	}
	// Folding can change the length (the Kelvin sign, long s).
	return len(key) > len(name) && !isASCII(key) && strings.EqualFold(string(key), name)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// node is one object or array of a document.
type node struct {
	parent  int32
	role    role
	array   bool
	secret  bool // its kind says Secret or SecretList
	bodyStr bool // a body that is a string, not an object (a patch in another encoding)
	start   int
	end     int
}

// deferred is a value whose redaction depends on whether its owner turns
// out to be a Secret.
type deferred struct {
	owner      int32
	start, end int
	what       deferKind
}

type deferKind uint8

const (
	deferData        deferKind = iota // a data value: base64 of the secret
	deferStringData                   // a stringData value
	deferLastApplied                  // the last-applied-configuration annotation
	deferPatchValue                   // a JSON Patch operation's value
	deferPatchData                    // a JSON Patch value at /data/…
	deferWhole                        // a body that is not an object: all of it
)

// lastApplied is the annotation in which kubectl apply keeps the whole
// object it last applied, data included.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// maxNestedDocuments bounds how deep JSON held in strings is redacted as a
// document of its own (an annotation holding a kubeconfig holding …). Each
// level costs one more pass over its bytes, so the bound keeps redaction
// linear; a string nested deeper is still searched as text.
const maxNestedDocuments = 2

// doc holds the walk of one document. Its slices are reused between events.
type doc struct {
	r        *Redactor
	sc       jsonscan.Scanner
	nodes    []node
	deferred []deferred
	edits    []edit
	text     textState
	keyBuf   []byte // unquoted member names
	strBuf   []byte // unquoted string values
	// event is set when the document is an audit event, whose bodies are
	// judged by its objectRef.
	event      bool
	secretsRef bool
	// rootSecret makes the root a Secret whatever it says (a Secret's
	// last-applied copy).
	rootSecret bool
	level      int
	inner      *doc // for documents held in strings, made on first use
}

func (d *doc) reset(data []byte, event, rootSecret bool) {
	d.sc.Reset(data)
	d.nodes, d.deferred, d.edits = d.nodes[:0], d.deferred[:0], d.edits[:0]
	d.event, d.secretsRef, d.rootSecret = event, false, rootSecret
}

// run walks data and returns its redacted form, or data itself when nothing
// was redacted.
func (d *doc) run(data []byte, event, rootSecret bool) ([]byte, error) {
	d.reset(data, event, rootSecret)
	if _, err := d.sc.Peek(); err != nil {
		return nil, err
	}
	if err := d.value(0, -1, roleOther, plainKey); err != nil {
		return nil, err
	}
	d.sc.WS()
	if d.sc.Pos < len(data) {
		return nil, d.sc.Syntax("after top-level value")
	}
	d.settle()
	if len(d.edits) == 0 {
		return data, nil
	}
	return apply(data, d.edits), nil
}

// keyKind is what a member's name says about its string value.
type keyKind uint8

const (
	plainKey      keyKind = iota
	tokenField            // the token of a spec or status: becomes a record
	credentialKey         // named like a credential (password, …): replaced as text
	tokenKey              // named like a token (access_token, …): replaced by its hash
)

// value walks the value at the scanner. parent is the enclosing object or
// array, r the member name it sits under, k what that name says.
func (d *doc) value(depth int, parent int32, r role, k keyKind) error {
	c, err := d.sc.Peek()
	if err != nil {
		return err
	}
	switch c {
	case '{':
		return d.object(depth, parent, r)
	case '[':
		return d.array(depth, parent, r)
	case '"':
		start := d.sc.Pos
		s, err := d.sc.StrScratch(&d.strBuf)
		if err != nil {
			return err
		}
		end := d.sc.Pos
		switch {
		case len(s) == 0 || bytes.HasPrefix(s, []byte("redacted:")):
		case k == tokenField:
			d.edits = append(d.edits, edit{start: start, end: end, repl: d.r.recordJSON(s)})
			return nil
		case k == credentialKey || k == tokenKey:
			d.edits = append(d.edits, edit{start: start, end: end, repl: mustJSON(string(d.r.appendReplacement(nil, s, k == tokenKey)))})
			return nil
		}
		if r == roleBody && parent == 0 && d.event {
			d.nodes = append(d.nodes, node{parent: parent, role: r, bodyStr: true, start: start, end: end})
		}
		d.scrubString(start, end, s)
		return nil
	default:
		return d.sc.Skip(depth)
	}
}

// ownAnnotations are the prefixes of the annotations kube-apiserver itself
// writes into audit events. Their values are never credentials, and some
// are what detectors read: authentication.k8s.io/legacy-token names the
// service account whose legacy token was used, and stale-token says how
// stale it is.
var ownAnnotations = []string{"authentication.k8s.io/", "authorization.k8s.io/", "audit.k8s.io/", "pod-security.kubernetes.io/", "apiserver.latency.k8s.io/", "mutation.webhook.admission.k8s.io/", "validation.policy.admission.k8s.io/"}

// credentialName reports a member name that says its value is a
// credential, as the text search reads "name: value". The suffixes are
// tried first, on the name's last byte: most names end in none of them,
// and the apiserver's own prefixes only matter for a name that does.
func credentialName(key []byte) bool {
	if len(key) == 0 || !kvKeyLast[key[len(key)-1]] {
		return false
	}
	named := false
	for _, name := range kvKeys {
		if len(key) >= len(name) && bytes.EqualFold(key[len(key)-len(name):], []byte(name)) {
			named = true
			break
		}
	}
	if !named {
		return false
	}
	for _, prefix := range ownAnnotations {
		if len(key) > len(prefix) && bytes.EqualFold(key[:len(prefix)], []byte(prefix)) {
			return false
		}
	}
	return true
}

// kvKeyLast marks the bytes a kvKeys name can end with, in either case.
// bytes.EqualFold matches the last len(name) bytes of a name only when
// they are ASCII (a rune that folds to a letter takes more bytes than the
// letter), so a name ending in any other byte matches none.
var kvKeyLast = func() (t [256]bool) {
	for _, name := range kvKeys {
		c := name[len(name)-1]
		t[c] = true
		if 'a' <= c && c <= 'z' {
			t[c-'a'+'A'] = true
		}
	}
	return t
}()

func (d *doc) object(depth int, parent int32, r role) error {
	if depth >= jsonscan.MaxDepth {
		return &jsonscan.SyntaxError{Msg: "exceeded max depth", Offset: d.sc.Pos}
	}
	self := int32(len(d.nodes))
	d.nodes = append(d.nodes, node{parent: parent, role: r, start: d.sc.Pos})
	// A JSON Patch operation of a body: its value may be a secret.
	patchOp := parent >= 0 && d.nodes[parent].array && d.nodes[parent].role == roleBody
	patchValue, patchDataPath := -1, false
	// The values of a data or stringData map belong to the object holding
	// the map: they are secret when it is a Secret.
	dataMap := (r == roleData || r == roleStringData) && parent >= 0 && !d.nodes[parent].array
	more, err := d.sc.ObjectStart()
	for more && err == nil {
		keyStart := d.sc.Pos
		key, err := d.sc.StrScratch(&d.keyBuf)
		if err != nil {
			return err
		}
		d.scrubString(keyStart, d.sc.Pos, key)
		if c, err := d.sc.Peek(); err != nil {
			return err
		} else if c != ':' {
			return d.sc.Syntax("after object key")
		}
		d.sc.Pos++
		if _, err := d.sc.Peek(); err != nil {
			return err
		}
		mk := classify(key)
		kr := mk.role
		if d.event && self == 0 {
			// Only the event's own members are bodies and references.
			if kr == roleObjectRef {
				d.readObjectRef()
				kr = roleOther
			}
		} else if kr == roleBody || kr == roleObjectRef {
			kr = roleOther
		}
		isLastApplied := r == roleAnnotations && parent >= 0 && d.nodes[parent].role == roleMetadata && string(key) == lastApplied
		valStart := d.sc.Pos
		// Everything the name decides is read now: key is scratch that
		// the walk of the value reuses.
		isKind, isPath, isValue := mk.kind, patchOp && mk.path, patchOp && mk.value
		k := plainKey
		switch {
		case mk.token && (r == roleSpec || r == roleStatus):
			k = tokenField
		case mk.hashable:
			k = tokenKey
		case mk.credential:
			k = credentialKey
		}
		switch c := d.sc.Data[valStart]; {
		case c == '"' && (isKind || isPath):
			v, err := d.sc.StrScratch(&d.strBuf)
			if err != nil {
				return err
			}
			if isKind && isSecretKind(v) {
				d.nodes[self].secret = true
			}
			if isPath {
				patchDataPath = bytes.HasPrefix(v, []byte("/data/"))
			}
			d.scrubString(valStart, d.sc.Pos, v)
		default:
			if err := d.value(depth+1, self, kr, k); err != nil {
				return err
			}
		}
		valEnd := d.sc.Pos
		null := jsonscan.IsNull(d.sc.Data[valStart:valEnd])
		switch {
		case null:
		case dataMap:
			what := deferData
			if r == roleStringData {
				what = deferStringData
			}
			d.deferred = append(d.deferred, deferred{owner: parent, start: valStart, end: valEnd, what: what})
		case (kr == roleData || kr == roleStringData) && d.sc.Data[valStart] != '{':
			// A malformed Secret: all of it may be secret.
			d.deferred = append(d.deferred, deferred{owner: self, start: valStart, end: valEnd, what: deferWhole})
		case isValue:
			patchValue = len(d.deferred)
			d.deferred = append(d.deferred, deferred{owner: parent, start: valStart, end: valEnd, what: deferPatchValue})
		case isLastApplied:
			if owner := d.nodes[parent].parent; owner >= 0 {
				d.deferred = append(d.deferred, deferred{owner: owner, start: valStart, end: valEnd, what: deferLastApplied})
			}
		}
		more, err = d.sc.ObjectNext()
		if err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if patchDataPath && patchValue >= 0 {
		d.deferred[patchValue].what = deferPatchData
	}
	d.nodes[self].end = d.sc.Pos
	return nil
}

func (d *doc) array(depth int, parent int32, r role) error {
	if depth >= jsonscan.MaxDepth {
		return &jsonscan.SyntaxError{Msg: "exceeded max depth", Offset: d.sc.Pos}
	}
	self := int32(len(d.nodes))
	d.nodes = append(d.nodes, node{parent: parent, role: r, array: true, start: d.sc.Pos})
	more, err := d.sc.ArrayStart()
	for more && err == nil {
		if err = d.value(depth+1, self, r, plainKey); err != nil {
			return err
		}
		more, err = d.sc.ArrayNext()
	}
	d.nodes[self].end = d.sc.Pos
	return err
}

// readObjectRef notes, without consuming anything, whether the objectRef
// at the scanner names secrets. Any objectRef member that does counts, so
// that a repeated member cannot hide one.
func (d *doc) readObjectRef() {
	sc := jsonscan.Scanner{Data: d.sc.Data, Pos: d.sc.Pos}
	if c, _ := sc.Peek(); c != '{' {
		return
	}
	more, err := sc.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = sc.Key(); err != nil {
			return
		}
		if keyIs(k, "resource") {
			if c, _ := sc.Peek(); c == '"' {
				v, serr := sc.Str()
				if serr != nil {
					return
				}
				if bytes.EqualFold(v, []byte("secrets")) {
					d.secretsRef = true
				}
				more, err = sc.ObjectNext()
				continue
			}
		}
		if err = sc.Skip(1); err != nil {
			return
		}
		more, err = sc.ObjectNext()
	}
}

func isSecretKind(v []byte) bool {
	return bytes.EqualFold(v, []byte("Secret")) || bytes.EqualFold(v, []byte("SecretList"))
}

// settle decides which objects are Secrets and redacts what was deferred.
// Nodes were recorded parent first, so one pass in order sees each
// parent's verdict before its children's.
func (d *doc) settle() {
	if len(d.deferred) == 0 && !d.secretsRef && !d.rootSecret {
		return
	}
	for i := range d.nodes {
		n := &d.nodes[i]
		inSecret := false
		switch {
		case n.parent < 0:
			inSecret = d.rootSecret
		case n.role == roleBody && n.parent == 0 && d.event:
			inSecret = d.secretsRef
		case n.role == roleItems || n.role == roleRows || n.role == roleObject:
			// An element of a Secret list, a row of a table of Secrets,
			// the object of a watch event or table row.
			inSecret = d.nodes[n.parent].secret
		}
		if inSecret {
			n.secret = true
		}
	}
	for _, df := range d.deferred {
		owner := &d.nodes[df.owner]
		if !owner.secret {
			continue
		}
		switch df.what {
		case deferData, deferPatchData:
			d.secretValue(df.start, df.end, true)
		case deferStringData, deferPatchValue, deferWhole:
			d.secretValue(df.start, df.end, false)
		case deferLastApplied:
			d.lastApplied(df.start, df.end)
		}
	}
	for _, n := range d.nodes {
		if n.bodyStr && d.secretsRef {
			d.secretValue(n.start, n.end, false)
		}
	}
}

// secretValue replaces one secret value with a credential.JWTRecord when it is a JWT
// (the token of a service-account-token Secret), else with a credential.SecretRecord.
func (d *doc) secretValue(start, end int, base64Value bool) {
	b := d.sc.Data
	var val []byte
	if b[start] == '"' {
		sc := jsonscan.Scanner{Data: b, Pos: start}
		s, err := sc.Str()
		if err != nil {
			return
		}
		val = s
		if base64Value {
			if dec, err := base64.StdEncoding.DecodeString(string(s)); err == nil {
				val = dec
			}
		}
	} else {
		val = b[start:end]
	}
	if credential.IsJWT(val) {
		d.edits = append(d.edits, edit{start: start, end: end, repl: d.r.recordJSON(val)})
		return
	}
	d.replace(start, end, d.r.secretRecord(val))
}

// lastApplied redacts a Secret's last-applied copy as a Secret document;
// what does not parse as one is replaced whole. It stays a string so that
// metadata still decodes as map[string]string.
func (d *doc) lastApplied(start, end int) {
	sc := jsonscan.Scanner{Data: d.sc.Data, Pos: start}
	s, err := sc.Str()
	if err != nil || len(s) == 0 {
		return
	}
	inner := d.innerDoc()
	var red []byte
	if inner != nil {
		if out, err := inner.run(s, false, true); err == nil {
			red = out
		}
	}
	if red == nil {
		rec := mustJSON(d.r.secretRecord(s))
		red = rec
	}
	d.edits = append(d.edits, edit{start: start, end: end, repl: mustJSON(string(red))})
}

func (d *doc) innerDoc() *doc {
	if d.level >= maxNestedDocuments {
		return nil
	}
	if d.inner == nil {
		d.inner = &doc{r: d.r, level: d.level + 1}
	}
	return d.inner
}

// scrubString searches one string (raw span start:end in the document,
// content s) for credentials and replaces it when it holds any. A string
// that is itself a JSON object or array is redacted as a document.
func (d *doc) scrubString(start, end int, s []byte) {
	if i := skipSpace(s); i < len(s) && (s[i] == '{' || s[i] == '[') {
		if inner := d.innerDoc(); inner != nil {
			if out, err := inner.run(s, false, false); err == nil {
				if &out[0] != &s[0] || len(out) != len(s) {
					d.edits = append(d.edits, edit{start: start, end: end, repl: mustJSON(string(out))})
				}
				return
			}
		}
	}
	if out := d.text.scrub(d.r, s); out != nil {
		d.edits = append(d.edits, edit{start: start, end: end, repl: mustJSON(string(out))})
	}
}

func skipSpace(s []byte) int {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func (d *doc) replace(start, end int, v any) {
	d.edits = append(d.edits, edit{start: start, end: end, repl: mustJSON(v)})
}
