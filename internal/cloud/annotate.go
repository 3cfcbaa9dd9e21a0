// Package cloud holds what the managed-Kubernetes sources (EKS, GKE, AKS)
// share: writing the audit annotations under which auditpipe records where
// an event came from. The formats, and each provider's annotation keys,
// live in the subpackages (eks, gke, aks).
package cloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// AnnotationSource names the path an event came by: "eks", "gke".
const AnnotationSource = AnnotationPrefix + "source"

// AnnotationPrefix starts every annotation auditpipe writes. The apiserver
// never writes one, so Annotate drops any an event arrives with: they can
// only be forged.
const AnnotationPrefix = "auditpipe.io/"

// Annotate returns a copy of the audit event JSON ev with the annotations
// kv (key, value, key, value…) set, first among its annotations, and every
// other annotation under AnnotationPrefix dropped. Empty values are left
// out. The apiserver's own annotations stay as they are, byte for byte.
func Annotate(ev []byte, kv ...string) ([]byte, error) {
	ours, err := Members(kv...)
	if err != nil {
		return nil, err
	}
	return AnnotateMembers(ev, ours)
}

// Members encodes the annotations kv (key, value, key, value…) as the
// members of a JSON object, without the braces, leaving out empty values:
// what AnnotateMembers inserts. Encoding them once serves every event of a
// batch that comes from the same place.
func Members(kv ...string) ([]byte, error) {
	if len(kv)%2 != 0 {
		return nil, errors.New("annotating event: odd number of key/value arguments")
	}
	var ours []byte
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		k, _ := json.Marshal(kv[i])
		v, _ := json.Marshal(kv[i+1])
		if len(ours) > 0 {
			ours = append(ours, ',')
		}
		ours = append(append(append(ours, k...), ':'), v...)
	}
	return ours, nil
}

// AnnotateMembers is Annotate with the annotations already encoded by
// Members.
func AnnotateMembers(ev, ours []byte) ([]byte, error) {
	d := jsonscan.Scanner{Data: ev}
	c, err := d.Peek()
	if err != nil {
		return nil, fmt.Errorf("annotating event: %w", err)
	}
	if c != '{' {
		return nil, errors.New("annotating event: event is not a JSON object")
	}
	open := d.Pos
	// The annotations members' values, as spans; an event has one, but
	// every one is rewritten so that no decoder can pick another.
	type span struct{ start, end int }
	var spans []span
	more, err := d.ObjectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.Key(); err != nil {
			break
		}
		start := d.Pos
		if err = d.Skip(1); err != nil {
			break
		}
		// Matched as the decoder matches member names (encoding/json's
		// Unicode case folding): "Annotations" fills the same map.
		if bytes.EqualFold(key, []byte("annotations")) {
			spans = append(spans, span{start, d.Pos})
		}
		more, err = d.ObjectNext()
	}
	if err == nil {
		if d.WS(); d.Pos != len(ev) {
			err = d.Syntax("after top-level value")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("annotating event: %w", err)
	}
	out := make([]byte, 0, len(ev)+len(ours)+32)
	if len(spans) == 0 {
		if len(ours) == 0 {
			return ev, nil
		}
		out = append(out, ev[:open+1]...)
		out = append(out, `"annotations":{`...)
		out = append(append(out, ours...), '}')
		rest := ev[open+1:]
		if r := bytes.TrimLeft(rest, " \t\r\n"); len(r) > 0 && r[0] != '}' {
			out = append(out, ',')
		}
		return append(out, rest...), nil
	}
	last := 0
	for _, s := range spans {
		out = append(out, ev[last:s.start]...)
		var err error
		if out, err = rewriteAnnotations(out, ev[s.start:s.end], ours); err != nil {
			return nil, err
		}
		last = s.end
	}
	return append(out, ev[last:]...), nil
}

// rewriteAnnotations appends the object val with ours first and without
// members under AnnotationPrefix; null becomes an object of ours.
func rewriteAnnotations(out, val, ours []byte) ([]byte, error) {
	if jsonscan.IsNull(val) {
		return append(append(append(out, '{'), ours...), '}'), nil
	}
	if val[0] != '{' {
		return nil, errors.New("annotating event: annotations is not an object")
	}
	out = append(append(out, '{'), ours...)
	n := len(ours)
	d := jsonscan.Scanner{Data: val}
	more, err := d.ObjectStart()
	for more && err == nil {
		start := d.Pos
		var key []byte
		if key, err = d.Key(); err != nil {
			break
		}
		if err = d.Skip(2); err != nil {
			break
		}
		if !bytes.HasPrefix(key, []byte(AnnotationPrefix)) {
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, val[start:d.Pos]...)
			n++
		}
		more, err = d.ObjectNext()
	}
	if err != nil {
		return nil, fmt.Errorf("annotating event: %w", err)
	}
	return append(out, '}'), nil
}
