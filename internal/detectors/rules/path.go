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
	// lastKey is the path's last key, quoted as JSON writes it ("key"),
	// when absentIn may test for it; nil otherwise.
	lastKey []byte
	// slash: lastKey holds a '/', which the escape \/ also writes.
	slash bool
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
	if p.lastKey == nil || len(raw) == 0 || bytes.Contains(raw, p.lastKey) {
		return false
	}
	if bytes.Contains(raw, []byte(`\u`)) {
		return false
	}
	return !p.slash || !bytes.Contains(raw, []byte(`\/`))
}

// setLastKey fills lastKey and slash once the steps are parsed.
func (p *bodyPath) setLastKey() {
	var key string
	found := false
	for _, st := range p.steps {
		if st.kind == stepKey {
			key, found = st.key, true
		}
	}
	if !found {
		return
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c == '"' || c == '\\' || c < 0x20 {
			return
		}
	}
	p.lastKey = []byte(`"` + key + `"`)
	p.slash = strings.IndexByte(key, '/') >= 0
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
	p.setLastKey()
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
