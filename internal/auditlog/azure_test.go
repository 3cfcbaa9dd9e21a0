package auditlog

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/cloud/aks"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestEventsAzure reads AKS diagnostic records in every wrapping a storage
// account or a saved Event Hubs body gives them, without flags: each yields
// the seven audit events of the fixture (the kube-apiserver record is
// skipped), annotated with the cluster's resource ID.
func TestEventsAzure(t *testing.T) {
	blob, err := os.ReadFile("../cloud/aks/testdata/PT1H.json")
	if err != nil {
		t.Fatal(err)
	}
	envelope, err := os.ReadFile("../cloud/aks/testdata/eventhubs-message.json")
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, envelope, "", "  "); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(blob)
	zw.Close()
	// Two envelopes, one a line, as an Event Hubs capture tool writes them.
	perLine := append(append(append([]byte(nil), envelope...), '\n'), envelope...)

	const wantEvents = 7
	for _, tc := range []struct {
		name    string
		content []byte
		want    int
	}{
		{"PT1H.json (one record a line)", blob, wantEvents},
		{"PT1H.json gzip", gz.Bytes(), wantEvents},
		{"envelope a line", perLine, 2 * wantEvents},
		{"pretty-printed envelope", pretty.Bytes(), wantEvents},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "PT1H.json")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			var got []string
			err := Events(path, func(line, item int, data []byte) error {
				var ev pipeline.Event
				if err := auditjson.Decode(&ev, "prod-eu1", data); err != nil {
					return fmt.Errorf("line %d item %d: %w", line, item, err)
				}
				if id := ev.Annotations[aks.AnnotationResourceID]; !strings.HasSuffix(id, "/MANAGEDCLUSTERS/PROD-EU1") {
					return fmt.Errorf("line %d item %d: resource ID annotation %q", line, item, id)
				}
				got = append(got, string(ev.AuditID))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d events, want %d: %v", len(got), tc.want, got)
			}
			if got[0] != "5e1a7c3b-8d2f-4a6e-b9c0-4f7d1e3a5b82" {
				t.Errorf("first event %s", got[0])
			}
		})
	}
}

// TestEventsAzureLookalikes: plain events and EventLists whose bodies
// mention records or category are not taken for Azure records, and a broken
// envelope is handed over whole for the caller's decoder to report.
func TestEventsAzureLookalikes(t *testing.T) {
	lines := []string{
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","requestObject":{"category":"x","records":[1]}}`,
		`{"records":[{"category":"kube-audit","properties":{"log":"{}"}}`,
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := Events(path, func(line, item int, data []byte) error {
		got = append(got, fmt.Sprintf("%d/%d:%s", line, item, data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1/0:" + lines[0], "2/0:" + lines[1]}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLinesDocumentBounded: a pretty-printed document is read whole, and a
// plain log whose first line is an event is still read line by line.
func TestLinesDocument(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "doc.json")
	os.WriteFile(doc, []byte("\n{\n  \"a\": [\n    1\n  ]\n}\n"), 0o600)
	var got []string
	if err := Lines(doc, func(line int, data []byte) error {
		got = append(got, fmt.Sprintf("%d:%s", line, data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "2:{\n\"a\": [\n1\n]\n}" {
		t.Fatalf("got %q", got)
	}
}
