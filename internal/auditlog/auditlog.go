// Package auditlog reads audit log files as kube-apiserver's log backend
// writes them: one JSON event a line, plain or gzip (rotated files are often
// compressed under names that do not say so), single files or directories
// of a rotated set. detect scan, ingest replay and auditsend share it.
package auditlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// MaxLine bounds one log line. RequestResponse events of large objects
// reach a few MiB; anything beyond is not an audit event.
const MaxLine = 64 << 20

// ExpandPaths turns directories into their regular files, sorted by name
// (lumberjack's timestamped backups sort before the active file), and
// keeps files as given.
func ExpandPaths(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(names)
		out = append(out, names...)
	}
	return out, nil
}

// Lines calls fn with every non-blank line of the file at path (trimmed,
// valid only during the call) and its 1-based line number, decompressing
// gzip by its magic bytes. An error from fn stops the read and is returned.
func Lines(path string, fn func(line int, data []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("opening gzip %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), MaxLine)
	for line := 1; sc.Scan(); line++ {
		data := bytes.TrimSpace(sc.Bytes())
		if len(data) == 0 {
			continue
		}
		if err := fn(line, data); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}
