package gen

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// reencode decodes data into the apiserver's own audit.k8s.io/v1 type and
// encodes it again as the log backend does (encoding/json, HTML escaping
// on). Output equal to the input means the input has exactly the field
// order, omissions, escaping and timestamp format of real apiserver output.
func reencode(t *testing.T, data []byte) []byte {
	t.Helper()
	var ev auditv1.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("decoding into auditv1.Event: %v\n%s", err, data)
	}
	out, err := json.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWireFormatMatchesAPIServerEncoding(t *testing.T) {
	g := New(Config{Seed: 21, AttackRatio: 0.2})
	for i := range 5000 {
		js := g.Next().JSON
		if got := reencode(t, js); !bytes.Equal(got, js) {
			t.Fatalf("event %d differs from the apiserver's encoding of it:\nours: %s\napi:  %s", i, js, got)
		}
	}
}

func TestFixturesMatchAPIServerEncoding(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testdataDir, "events", "*.json"))
	for _, path := range files {
		name := filepath.Base(path)
		if name == "timestamp-no-fraction.json" || name == "timestamp-nanoseconds.json" {
			continue // deliberately not what metav1.MicroTime writes
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.TrimSuffix(data, []byte("\n"))
		if got := reencode(t, data); !bytes.Equal(got, data) {
			t.Errorf("%s differs from the apiserver's encoding of it:\nfile: %s\napi:  %s", name, data, got)
		}
	}
}
