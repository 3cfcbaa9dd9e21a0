package pipeline

import (
	"strconv"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// maxBodyDepth is encoding/json's limit on nesting: a body nested deeper
// does not decode, as it would not with json.Unmarshal.
const maxBodyDepth = 10000

// decodeBody decodes a request or response body into what json.Unmarshal
// into an any yields (map[string]any, []any, string, float64, bool, nil),
// equal value for equal value, or reports false where json.Unmarshal
// fails: invalid JSON, a number out of float64's range, nesting past
// 10,000 levels. It walks the body once with the project's scanner
// instead of encoding/json's validate-then-decode with reflection: the
// body decode was a third of detect's time per event on the realistic
// stream. Linear in the body, depth bounded.
func decodeBody(data []byte) (any, bool) {
	d := jsonscan.Scanner{Data: data}
	if _, err := d.Peek(); err != nil {
		return nil, false
	}
	v, ok := bodyValue(&d, 0)
	if !ok {
		return nil, false
	}
	if d.WS(); d.Pos != len(d.Data) {
		return nil, false
	}
	return v, true
}

// bodyValue decodes the value at d.Pos (not whitespace), depth being the
// containers it is inside.
func bodyValue(d *jsonscan.Scanner, depth int) (any, bool) {
	switch c := d.Data[d.Pos]; {
	case c == '{':
		if depth >= maxBodyDepth {
			return nil, false
		}
		m := map[string]any{}
		more, err := d.ObjectStart()
		for err == nil && more {
			var k []byte
			if k, err = d.Key(); err != nil {
				break
			}
			key := string(k)
			v, ok := bodyValue(d, depth+1)
			if !ok {
				return nil, false
			}
			m[key] = v
			more, err = d.ObjectNext()
		}
		return m, err == nil
	case c == '[':
		if depth >= maxBodyDepth {
			return nil, false
		}
		s := make([]any, 0)
		more, err := d.ArrayStart()
		for err == nil && more {
			v, ok := bodyValue(d, depth+1)
			if !ok {
				return nil, false
			}
			s = append(s, v)
			more, err = d.ArrayNext()
		}
		return s, err == nil
	case c == '"':
		s, err := d.StrString()
		return s, err == nil
	case c == '-' || jsonscan.IsDigit(c):
		num, err := d.Number()
		if err != nil {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(num), 64)
		return f, err == nil
	case c == 't' || c == 'f' || c == 'n':
		if err := d.Literal(); err != nil {
			return nil, false
		}
		switch c {
		case 't':
			return true, true
		case 'f':
			return false, true
		}
		return nil, true
	}
	return nil, false
}
