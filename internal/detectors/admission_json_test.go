package detectors

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The structs mutationFinding decoded the annotations into with
// json.Unmarshal before admissionReadMutation and admissionReadPatch.
type (
	admissionMutationTyped struct {
		Configuration string `json:"configuration"`
		Webhook       string `json:"webhook"`
		Mutated       bool   `json:"mutated"`
	}
	admissionPatchTyped struct {
		Patch []struct {
			Op    string          `json:"op"`
			Path  string          `json:"path"`
			Value json.RawMessage `json:"value"`
		} `json:"patch"`
	}
)

// admissionAnnotationSeeds are annotation values as the apiserver writes
// them and the near misses json.Unmarshal refuses or reads differently.
var admissionAnnotationSeeds = []string{
	`{"configuration":"istio-sidecar-injector","webhook":"sidecar-injector.istio.io","mutated":true}`,
	`{"configuration":"c","webhook":"w","mutated":false}`,
	`{"configuration":"c","webhook":"w","mutated":"true"}`,
	`{"Configuration":"c","WEBHOOK":"w","Mutated":true,"extra":[1,{"a":null}]}`,
	`{"configuration":null,"mutated":null}`,
	`null`, ` {} `, `[]`, `"x"`, `{"mutated":true} x`, `{"mutated":true`, `{"mutated":tru}`,
	`{"configuration":"c","webhook":"w","patch":[{"op":"add","path":"/spec/containers/-","value":{"name":"x"}},{"op":"replace","path":"/metadata/labels"}],"patchType":"JSONPatch"}`,
	`{"patch":null}`, `{"patch":[null,{}]}`, `{"patch":{}}`, `{"patch":[1]}`, `{"patch":[{"op":1}]}`, `{"PATCH":[{"OP":"remove","Path":"/a"}]}`,
	`{"patch":[{"op":"add"}],"patch":[]}`, `{"mutated":true,"mutated":false}`, "{\"webhook\":\"a\xffb\",\"mutated\":true}",
}

// checkAdmissionAnnotation compares the readers with json.Unmarshal on raw.
func checkAdmissionAnnotation(t *testing.T, raw string) {
	var wantM admissionMutationTyped
	errM := json.Unmarshal([]byte(raw), &wantM)
	gotM, okM := admissionReadMutation(raw)
	if okM != (errM == nil) || okM && (gotM != admissionMutation(wantM)) {
		t.Errorf("mutation %q: read %+v %v, json.Unmarshal %+v %v", raw, gotM, okM, wantM, errM)
	}
	var wantP admissionPatchTyped
	errP := json.Unmarshal([]byte(raw), &wantP)
	gotP, okP := admissionReadPatch(raw)
	if okP != (errP == nil) {
		t.Errorf("patch %q: read ok %v, json.Unmarshal %v", raw, okP, errP)
		return
	}
	if !okP {
		return
	}
	var want []admissionPatchOp
	if wantP.Patch != nil {
		want = []admissionPatchOp{}
	}
	for _, op := range wantP.Patch {
		want = append(want, admissionPatchOp{Op: op.Op, Path: op.Path})
	}
	if len(gotP) != len(want) || len(want) > 0 && !reflect.DeepEqual(gotP, want) {
		t.Errorf("patch %q: read %+v, json.Unmarshal %+v", raw, gotP, want)
	}
}

// TestAdmissionAnnotationsMatchUnmarshal keeps the annotation readers
// reading what json.Unmarshal read.
func TestAdmissionAnnotationsMatchUnmarshal(t *testing.T) {
	for _, raw := range admissionAnnotationSeeds {
		checkAdmissionAnnotation(t, raw)
	}
}

// FuzzAdmissionAnnotations is TestAdmissionAnnotationsMatchUnmarshal on
// arbitrary values.
func FuzzAdmissionAnnotations(f *testing.F) {
	for _, raw := range admissionAnnotationSeeds {
		f.Add(raw)
	}
	f.Fuzz(checkAdmissionAnnotation)
}
