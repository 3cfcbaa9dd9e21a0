package rules

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// bodyPath is a parsed body path: a small JSONPath subset.
//
//	spec.containers[*].securityContext.privileged
//	metadata.labels["pod-security.kubernetes.io/enforce"]
//	spec.volumes[0].hostPath.path
type bodyPath struct {
	text  string
	steps []pathStep
	multi bool // has a [*]: eval returns a list
	// keys are the path's keys, quoted as JSON writes them ("key"), last
	// first, that absentIn may test for; slash[i]: keys[i] holds a '/',
	// which the escape \/ also writes.
	keys  [][]byte
	slash []bool
}

// absentIn reports whether raw, a body not decoded yet, certainly yields
// nothing for the path: eval finds a value only under every key of the
// path, and a key is in the decoded body only if its quoted bytes are in
// raw, unless an escape wrote one of its characters: \u for any (not
// looked into further), \/ for '/'. Keys holding '"', '\' or control
// characters are never tested. Rules read many paths a body lacks
// (object() falls back to the request for each), and this test costs a
// search of the raw bytes where a decode cost a map per object.
func (p *bodyPath) absentIn(raw []byte) bool {
	if len(p.keys) == 0 || len(raw) == 0 {
		return false
	}
	escapes := -1 // whether raw has \u, looked up once a key is missing
	for i, key := range p.keys {
		if bytes.Contains(raw, key) {
			continue
		}
		if escapes < 0 {
			escapes = 0
			if bytes.Contains(raw, []byte(`\u`)) {
				escapes = 1
			}
		}
		if escapes == 1 {
			return false
		}
		if !p.slash[i] || !bytes.Contains(raw, []byte(`\/`)) {
			return true
		}
	}
	return false
}

// maxAbsentKeys bounds the keys absentIn searches a body for: a rule's path
// can name hundreds, and each is a pass over the body.
const maxAbsentKeys = 4

// setKeys fills keys and slash once the steps are parsed: the keys the
// path names, the last first (the most specific, so the likeliest to be
// missing), each once, at most maxAbsentKeys.
func (p *bodyPath) setKeys() {
	seen := map[string]bool{}
	for i := len(p.steps) - 1; i >= 0 && len(p.keys) < maxAbsentKeys; i-- {
		st := p.steps[i]
		if st.kind != stepKey || seen[st.key] || !testableKey(st.key) {
			continue
		}
		seen[st.key] = true
		p.keys = append(p.keys, []byte(`"`+st.key+`"`))
		p.slash = append(p.slash, strings.IndexByte(st.key, '/') >= 0)
	}
}

// testableKey: a key whose quoted bytes in raw JSON are exactly '"', the
// key, '"' (escapes aside): none of its characters needs escaping.
func testableKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return true
}

type pathStep struct {
	key   string
	index int // >= 0 for [N]
	kind  stepKind
}

type stepKind uint8

const (
	stepKey stepKind = iota
	stepIndex
	stepAll
)

// maxPathLen bounds a path so a hostile rule file cannot make one huge.
const maxPathLen = 512

func parseBodyPath(s string) (*bodyPath, error) {
	if s == "" {
		return nil, errors.New("empty path")
	}
	if len(s) > maxPathLen {
		return nil, fmt.Errorf("path longer than %d characters", maxPathLen)
	}
	p := &bodyPath{text: s}
	in := strings.TrimPrefix(strings.TrimPrefix(s, "$"), ".")
	first := true
	for in != "" {
		switch {
		case in[0] == '[':
			end := strings.IndexByte(in, ']')
			if end < 0 {
				return nil, fmt.Errorf("path %q: unclosed [", s)
			}
			inner := in[1:end]
			switch {
			case inner == "*":
				p.steps = append(p.steps, pathStep{kind: stepAll})
				p.multi = true
			case len(inner) >= 2 && (inner[0] == '"' || inner[0] == '\'') && inner[len(inner)-1] == inner[0]:
				// Keys may hold "]", so find the closing quote first.
				q := inner[0]
				close := strings.IndexByte(in[2:], q)
				if close < 0 || len(in) < close+4 || in[close+3] != ']' {
					return nil, fmt.Errorf("path %q: bad quoted key", s)
				}
				p.steps = append(p.steps, pathStep{kind: stepKey, key: in[2 : close+2]})
				end = close + 3
			default:
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("path %q: want [N], [*] or [\"key\"], got [%s]", s, inner)
				}
				p.steps = append(p.steps, pathStep{kind: stepIndex, index: n})
			}
			in = in[end+1:]
		case in[0] == '.' && !first:
			in = in[1:]
			if in == "" || in[0] == '.' || in[0] == '[' {
				return nil, fmt.Errorf("path %q: empty key", s)
			}
		default:
			end := strings.IndexAny(in, ".[")
			if end < 0 {
				end = len(in)
			}
			if end == 0 {
				return nil, fmt.Errorf("path %q: empty key", s)
			}
			key := in[:end]
			if strings.ContainsAny(key, "]\"' ") {
				return nil, fmt.Errorf("path %q: bad key %q", s, key)
			}
			p.steps = append(p.steps, pathStep{kind: stepKey, key: key})
			in = in[end:]
		}
		first = false
	}
	p.setKeys()
	return p, nil
}

// eval reads the path from a decoded JSON body. It reports whether anything
// was found: for a path with [*], whether the list is not empty.
func (p *bodyPath) eval(body any) (any, bool) {
	if body == nil {
		return nil, false
	}
	if !p.multi {
		v, ok := walkPath(body, p.steps)
		return v, ok && v != nil
	}
	var out []any
	collectPath(body, p.steps, &out)
	if len(out) == 0 {
		return nil, false
	}
	return out, true
}

func walkPath(v any, steps []pathStep) (any, bool) {
	for _, st := range steps {
		switch st.kind {
		case stepKey:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[st.key]; !ok {
				return nil, false
			}
		case stepIndex:
			l, ok := v.([]any)
			if !ok || st.index >= len(l) {
				return nil, false
			}
			v = l[st.index]
		}
	}
	return v, true
}

// collectPath expands each [*] and appends what the rest of the path finds
// in every element; elements where it finds nothing are skipped.
func collectPath(v any, steps []pathStep, out *[]any) {
	for i, st := range steps {
		if st.kind != stepAll {
			w, ok := walkPath(v, steps[i:i+1])
			if !ok {
				return
			}
			v = w
			continue
		}
		switch c := v.(type) {
		case []any:
			for _, e := range c {
				collectPath(e, steps[i+1:], out)
			}
		case map[string]any:
			for _, e := range c {
				collectPath(e, steps[i+1:], out)
			}
		}
		return
	}
	if v != nil {
		*out = append(*out, v)
	}
}
