// Package auditlog reads audit log files as kube-apiserver's log backend
// writes them: one JSON event a line, plain or gzip (rotated files are often
// compressed under names that do not say so), single files or directories
// of a rotated set. detect scan, ingest replay and auditsend share it.
//
// A line may also hold a whole EventList (a captured webhook body, an
// export of one): Events hands out its items one by one.
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

	"github.com/auditpipe/auditpipe/internal/auditjson"
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
//
// A file whose first non-blank line opens a JSON object or array without
// closing it (`{`, `[`, `{"records": [`: a pretty-printed document such as
// jq or az print, or an Azure blob written before 2018) is one document, not
// lines: fn gets it whole, as the first line's number, up to MaxLine bytes.
func Lines(path string, fn func(line int, data []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// The scanner reads a plain file straight into its buffer: through a
	// bufio.Reader every byte was copied once more (about 1 % of detect
	// scan). The magic bytes read to tell gzip are put back in front; a
	// read error recurs, and is reported, in the scanner's next read.
	var magic [2]byte
	n, _ := io.ReadFull(f, magic[:])
	r := io.MultiReader(bytes.NewReader(magic[:n]), f)
	if n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(bufio.NewReaderSize(r, 1<<20))
		if err != nil {
			return fmt.Errorf("opening gzip %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), MaxLine)
	var (
		first = true
		doc   []byte // the document being gathered, when the file is one
		start int    // its first line
	)
	for line := 1; sc.Scan(); line++ {
		data := bytes.TrimSpace(sc.Bytes())
		if len(data) == 0 {
			continue
		}
		if first {
			first = false
			if opensDocument(data) {
				doc, start = append([]byte(nil), data...), line
				continue
			}
		}
		if doc != nil {
			if len(doc)+1+len(data) > MaxLine {
				return fmt.Errorf("reading %s: the JSON document starting on line %d exceeds %d bytes", path, start, MaxLine)
			}
			doc = append(append(doc, '\n'), data...)
			continue
		}
		if err := fn(line, data); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if doc != nil {
		return fn(start, doc)
	}
	return nil
}

// opensDocument reports a first line that starts a JSON object or array and
// ends inside it: the first line of a pretty-printed document. An audit log
// line, or a corrupt one, does not end with an opening bracket.
func opensDocument(line []byte) bool {
	first, last := line[0], line[len(line)-1]
	return (first == '{' || first == '[') && (last == '{' || last == '[')
}

// plainEventPrefix starts every event the apiserver's log backend writes
// (kind is the first field of auditv1.Event): a single event, not an
// EventList ("EventList" follows the quote) nor a provider's envelope.
var plainEventPrefix = []byte(`{"kind":"Event",`)

// Events calls fn with every event of the file at path: each line (see
// Lines), or each item of a line that holds an EventList, item numbering
// them from 1 (0 for a plain line). Items of an audit.k8s.io/v1beta1 list
// are marked with that apiVersion, as webhook items omit it, so that
// whoever decodes them knows to convert them. A line that names EventList
// but whose envelope does not decode is handed over whole: the caller's
// decoder reports what is wrong with it.
//
// GKE's audit logs are recognised too, and converted to audit events
// (internal/cloud/gke): `gcloud logging read --format=json` output, one
// JSON array streamed entry by entry (gcloudArray), and LogEntry JSON
// lines (gcloudLine).
func Events(path string, fn func(line, item int, data []byte) error) error {
	// A gcloud export is one JSON array of any size: streamed entry by
	// entry rather than gathered by Lines.
	if ok, err := gcloudArray(path, fn); ok || err != nil {
		return err
	}
	return Lines(path, func(line int, data []byte) error {
		// The common case first: a line the apiserver's log backend
		// wrote starts with its kind, and one event is no envelope. It
		// spares every line the envelope checks below, each a search of
		// the whole line (an eighth of detect scan's time).
		if bytes.HasPrefix(data, plainEventPrefix) {
			return fn(line, 0, data)
		}
		// Provider exports first: each recognises its own envelope
		// and reports false for anything else.
		if ok, err := azureRecords(line, data, fn); ok {
			return err
		}
		if ok, err := cloudWatch(line, data, fn); ok {
			return err
		}
		if ok, err := gcloudLine(line, data, fn); ok {
			return err
		}
		if !bytes.Contains(data, []byte(`"EventList"`)) {
			return fn(line, 0, data)
		}
		items, apiVersion, err := auditjson.SplitEventListVersion(data, nil, 0)
		if err != nil {
			return fn(line, 0, data)
		}
		for i, it := range items {
			if apiVersion == auditjson.AuditAPIVersionV1beta1 {
				it = withAPIVersion(it, apiVersion)
			}
			if err := fn(line, i+1, it); err != nil {
				return err
			}
		}
		return nil
	})
}

// withAPIVersion returns a copy of the JSON object item whose first member
// is apiVersion: v. A member the item has itself comes later and, as in
// encoding/json, wins. Anything but an object is returned as it is.
func withAPIVersion(item []byte, v string) []byte {
	if len(item) < 2 || item[0] != '{' {
		return item
	}
	out := make([]byte, 0, len(item)+len(v)+16)
	out = append(out, `{"apiVersion":"`...)
	out = append(out, v...)
	out = append(out, '"')
	if rest := bytes.TrimSpace(item[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, item[1:]...)
}
