package detectors

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// The readers in body.go replace typed json.Unmarshal calls. These
// differential tests keep the typed structs the detectors used to decode
// into and check that both read the same thing from the same body, except
// where the old decode was looser than the apiserver (keys matched without
// regard to case, a repeated object key merged into the earlier one), and
// numbers that ingest never writes into a redacted token record: an
// integer claim written with a fraction or exponent (1.7e9), which the new
// reader accepts when it is whole, or with more than 15 digits, beyond
// float64's exact integers.

// podSpecTypedWire is the struct podSpecDecodeBody used to decode into.
type podSpecTypedWire struct {
	Kind     string           `json:"kind"`
	Metadata podSpecTypedMeta `json:"metadata"`
	Spec     struct {
		podSpecSpec
		Template    *podSpecTypedTemplate `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template *podSpecTypedTemplate `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

type podSpecTypedMeta struct {
	Name            string            `json:"name"`
	GenerateName    string            `json:"generateName"`
	Namespace       string            `json:"namespace"`
	Annotations     map[string]string `json:"annotations"`
	OwnerReferences []struct {
		Kind       string `json:"kind"`
		Name       string `json:"name"`
		Controller *bool  `json:"controller"`
	} `json:"ownerReferences"`
}

type podSpecTypedTemplate struct {
	Metadata podSpecTypedMeta `json:"metadata"`
	Spec     podSpecSpec      `json:"spec"`
}

// podSpecTyped is the old typed reading of one body for shape t: the spec,
// the annotations and the controller owner.
func podSpecTyped(raw []byte, t podSpecShape) (spec podSpecSpec, ann map[string]string, meta podSpecMeta, ok bool) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 || raw[0] != '{' {
		return spec, nil, meta, false
	}
	var w podSpecTypedWire
	if json.Unmarshal(raw, &w) != nil || w.Kind == "Status" {
		return spec, nil, meta, false
	}
	meta = podSpecMeta{Name: w.Metadata.Name, GenerateName: w.Metadata.GenerateName, Namespace: w.Metadata.Namespace, Annotations: w.Metadata.Annotations}
	for _, or := range w.Metadata.OwnerReferences {
		if or.Controller != nil && *or.Controller {
			meta.Owner = or.Kind + "/" + or.Name
			break
		}
	}
	switch t {
	case podSpecShapePod:
		return w.Spec.podSpecSpec, w.Metadata.Annotations, meta, true
	case podSpecShapeTemplate:
		if w.Spec.Template != nil {
			return w.Spec.Template.Spec, w.Spec.Template.Metadata.Annotations, meta, true
		}
	case podSpecShapeCronJob:
		if jt := w.Spec.JobTemplate; jt != nil && jt.Spec.Template != nil {
			return jt.Spec.Template.Spec, jt.Spec.Template.Metadata.Annotations, meta, true
		}
	}
	return podSpecSpec{}, nil, meta, true
}

// canonicalJSON reports whether raw is valid JSON whose objects repeat no
// key, whose keys match no name in names except exactly, and whose
// numbers are plain integers of at most 15 digits: the bodies on which the
// old and new readers are meant to agree.
func canonicalJSON(raw []byte, names map[string]string) bool {
	if !json.Valid(raw) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.obj && top.key
		if top != nil && top.obj {
			top.key = !top.key
		}
		switch v := tok.(type) {
		case json.Number:
			if strings.ContainsAny(string(v), ".eE") || len(strings.TrimPrefix(string(v), "-")) > 15 {
				return false
			}
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
			}
		case string:
			if isKey {
				if top.keys[v] {
					return false
				}
				top.keys[v] = true
				if n, ok := names[strings.ToLower(v)]; ok && n != v {
					return false
				}
			}
		}
	}
}

// fieldNames lists the JSON names the readers know, by lower case.
var fieldNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range strings.Fields(`kind metadata spec template jobTemplate name generateName namespace annotations
		ownerReferences controller nodeName serviceAccountName serviceAccount imagePullSecrets securityContext
		containers initContainers ephemeralContainers os privileged appArmorProfile seccompProfile type
		localhostProfile image imagePullPolicy redacted header claims signature verified verify_error parse_error
		sha256 length alg kid typ other iss sub aud exp iat nbf jti kubernetes.io serviceaccount pod node secret
		uid warnafter`) {
		m[strings.ToLower(n)] = n
	}
	return m
}()

func bodySeeds(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var ev auditv1.Event
		if json.Unmarshal(data, &ev) != nil {
			continue
		}
		if ev.RequestObject != nil {
			f.Add(ev.RequestObject.Raw)
		}
		if ev.ResponseObject != nil {
			f.Add(ev.ResponseObject.Raw)
		}
	}
	f.Add([]byte(`{"spec":{"containers":[{"image":5}]}}`))
	f.Add([]byte(`{"metadata":{"annotations":{"a":null,"b":"c"}},"spec":{"template":null,"os":{}}}`))
	f.Add([]byte(`{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"initContainers":[null,{"securityContext":{"privileged":true,"appArmorProfile":{"type":"Unconfined","localhostProfile":null}}}]}}}}}}`))
	f.Add([]byte(`{"redacted":"jwt","header":{"alg":"none","other":["jku"]},"claims":{"exp":1e20,"aud":"x"}}`))
	f.Add([]byte(`{"redacted":"jwt","claims":{"exp":1700000000,"iat":1.5,"kubernetes.io":{"pod":{"name":"p"},"warnafter":null}},"length":12}`))
}

// FuzzPodSpecView checks the pod-spec view read from the shared decode
// against the typed decode it replaced, for every shape.
func FuzzPodSpecView(f *testing.F) {
	bodySeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !canonicalJSON(raw, fieldNames) {
			return
		}
		var body any
		_ = json.Unmarshal(raw, &body)
		ev := &pipeline.Event{}
		ev.ObjectRef = &auditv1.ObjectReference{Namespace: "ns", Name: "obj"}
		for _, shape := range []podSpecShape{podSpecShapePod, podSpecShapeTemplate, podSpecShapeCronJob} {
			spec, ann, meta, ok := podSpecTyped(raw, shape)
			o, got := podSpecDecodeBody(ev, podSpecTarget{shape: shape}, body, pipeline.FromRequest)
			if ok != got {
				t.Fatalf("shape %d: typed ok=%v, view ok=%v for %s", shape, ok, got, raw)
			}
			if !ok {
				continue
			}
			if !reflect.DeepEqual(o.Spec, spec) || !reflect.DeepEqual(o.Annotations, ann) || o.Owner != meta.Owner {
				t.Fatalf("shape %d: view %+v %v %q, typed %+v %v %q for %s", shape, o.Spec, o.Annotations, o.Owner, spec, ann, meta.Owner, raw)
			}
		}
	})
}

// FuzzJWTRecordView checks jwtRecordFromBody against
// credential.ParseJWTRecord on the same JSON.
func FuzzJWTRecordView(f *testing.F) {
	bodySeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !canonicalJSON(raw, fieldNames) {
			return
		}
		want, wantOK := credential.ParseJWTRecord(raw)
		var body any
		_ = json.Unmarshal(raw, &body)
		m, isObj := body.(map[string]any)
		if !isObj {
			if wantOK {
				t.Fatalf("ParseJWTRecord accepted a non-object %s", raw)
			}
			return
		}
		got, gotOK := jwtRecordFromBody(m)
		if gotOK != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("view %v %+v, typed %v %+v for %s", gotOK, got, wantOK, want, raw)
		}
	})
}
