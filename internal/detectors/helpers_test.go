package detectors

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// testCluster is the cluster name every detector test tags events with.
const testCluster = "prod-eu1"

// decodeTestEvent decodes one audit event JSON as the pipeline would.
func decodeTestEvent(t testing.TB, js string) *pipeline.Event {
	t.Helper()
	var ev pipeline.Event
	if err := auditjson.Decode(&ev, testCluster, []byte(js)); err != nil {
		t.Fatalf("decoding test event: %v\n%s", err, js)
	}
	return &ev
}

// loadTestEvent decodes testdata/<path>.
func loadTestEvent(t testing.TB, path string) *pipeline.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	return decodeTestEvent(t, string(data))
}

// runDetector runs d the way Suite does (authoritative stages only).
func runDetector(d Detector, evs ...*pipeline.Event) []pipeline.Finding {
	s := NewSuite(d)
	var out []pipeline.Finding
	for _, ev := range evs {
		out = s.Detect(ev, out)
	}
	return out
}
