// Command dashboards writes auditpipe's Grafana dashboards as JSON, built
// with the Grafana foundation SDK. deploy/compose provisions the files it
// writes; a test fails when the committed files are out of date.
//
//	go run ./dashboards                      # writes dashboards/generated
//	go run ./dashboards -out /tmp/dashboards
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// DefaultOut is where `go run ./dashboards` writes, relative to the
// repository root.
const DefaultOut = "dashboards/generated"

func main() {
	out := flag.String("out", DefaultOut, "directory to write the dashboard JSON files to")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "dashboards:", err)
		os.Exit(1)
	}
}

// File is one generated dashboard.
type File struct {
	// Name is the file name, the dashboard uid plus ".json".
	Name string
	// JSON is the dashboard model Grafana's file provisioning reads.
	JSON []byte
}

// Build returns every dashboard as JSON, in a fixed order, and the catalog
// of ClickHouse queries they run. Output is deterministic: the same code
// gives the same bytes.
func Build() ([]File, []Query, error) {
	c := &catalog{}
	var files []File
	for _, f := range []func(*catalog) (dashboard.Dashboard, error){overviewBoard, detectorsBoard, explorerBoard, pipelineBoard} {
		d, err := f(c)
		if err != nil {
			return nil, nil, err
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		// Keep <, > and & readable in SQL and URLs.
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return nil, nil, fmt.Errorf("encoding dashboard %s: %w", *d.Uid, err)
		}
		files = append(files, File{Name: *d.Uid + ".json", JSON: buf.Bytes()})
	}
	return files, c.queries, nil
}

// write replaces the dashboard files in dir. Stale *.json files left by a
// renamed dashboard are removed, so dir holds exactly what Build returns.
func write(dir string) error {
	files, _, err := Build()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	keep := map[string]bool{}
	for _, f := range files {
		keep[f.Name] = true
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.JSON, 0o644); err != nil {
			return fmt.Errorf("writing dashboard: %w", err)
		}
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, p := range old {
		if !keep[filepath.Base(p)] {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("removing stale dashboard: %w", err)
			}
		}
	}
	return nil
}
