package detectors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// FuzzDetectorSet runs arbitrary input through what detect does with each
// record: decode, then every built-in detector with its default config.
// Malformed input may be rejected, never crash detect, and a finding must
// always name its detector and have an id.
func FuzzDetectorSet(f *testing.F) {
	// Seed with every hand-written event of every detector's tests.
	paths, _ := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	set, err := New(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, testCluster, data); err != nil {
			return
		}
		for _, fd := range set.Detect(&ev, nil) {
			if fd.ID == "" || fd.Detector == "" || strings.ContainsAny(fd.Summary, "\n\r") {
				t.Fatalf("malformed finding %+v", fd)
			}
		}
	})
}
