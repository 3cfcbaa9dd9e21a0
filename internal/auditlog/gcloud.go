package auditlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/auditpipe/auditpipe/internal/cloud/gke"
)

// gcloudPeek is how much of a file is looked at to recognise `gcloud
// logging read --format=json` output. gcloud prints keys sorted, so
// "logName" and "protoPayload" come before the bodies (request, response),
// within the first few KiB of the first entry.
const gcloudPeek = 64 << 10

// gcloudArray hands fn the audit events of a file holding a JSON array of
// LogEntries, as `gcloud logging read --format=json` writes it: one array
// pretty-printed over many lines, or compacted on one. It streams: each
// entry is decoded on its own, and one larger than MaxLine is an error, so
// memory is bounded per entry however large the export. Entries are items
// 1, 2, … of line 1 (`jq '.[N-1]'` shows item N). It reports false, having
// read nothing, for any other file.
func gcloudArray(path string, fn func(line, item int, data []byte) error) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return false, nil // Lines reports it
		}
		defer zr.Close()
		r = zr
	}
	zbr := bufio.NewReaderSize(r, gcloudPeek)
	head, _ := zbr.Peek(gcloudPeek)
	head = bytes.TrimLeft(head, " \t\r\n")
	if bytes.Equal(bytes.TrimRight(head, " \t\r\n"), []byte("[]")) {
		// What gcloud prints when nothing matched: no events, and
		// nothing for the caller to count as malformed.
		return true, nil
	}
	if len(head) == 0 || head[0] != '[' || !gke.IsLogEntry(head) {
		return false, nil
	}
	lr := &entryLimit{r: zbr, left: gcloudPeek}
	dec := json.NewDecoder(lr)
	if _, err := dec.Token(); err != nil {
		return true, fmt.Errorf("reading %s: %w", path, err)
	}
	for item := 1; dec.More(); item++ {
		// The limit counts bytes read while decoding this entry, read-ahead
		// of the next ones included, so the decoder's buffer never grows
		// past about twice it: reads stop once the entry is complete.
		lr.left = gcloudMaxEntry + min(gcloudMaxEntry, gcloudPeek)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, errEntryTooLarge) {
				return true, fmt.Errorf("reading %s: LogEntry %d exceeds %d bytes", path, item, gcloudMaxEntry)
			}
			return true, fmt.Errorf("reading %s: LogEntry %d: %w", path, item, err)
		}
		if err := fn(1, item, logEntryEvent(raw)); err != nil {
			return true, err
		}
	}
	lr.left = gcloudPeek
	if _, err := dec.Token(); err != nil {
		return true, fmt.Errorf("reading %s: after the last LogEntry: %w", path, err)
	}
	return true, nil
}

var errEntryTooLarge = errors.New("log entry too large")

// gcloudMaxEntry bounds one LogEntry of an array; a variable so that tests
// can lower it.
var gcloudMaxEntry int64 = MaxLine

// entryLimit fails reads once left bytes have been read: the per-entry
// bound of gcloudArray.
type entryLimit struct {
	r    io.Reader
	left int64
}

func (l *entryLimit) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errEntryTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// gcloudLine hands fn the audit event of a line (or a pretty-printed
// document Lines gathered) that holds one LogEntry: a LogEntry per line
// as `jq -c '.[]'` or a Pub/Sub pull writes them. It reports false for
// anything else.
func gcloudLine(line int, data []byte, fn func(line, item int, data []byte) error) (bool, error) {
	if len(data) == 0 || data[0] != '{' || !gke.IsLogEntry(data) {
		return false, nil
	}
	return true, fn(line, 0, logEntryEvent(data))
}

// logEntryEvent converts a LogEntry into its audit event. One that does
// not convert (not a Kubernetes audit entry, or broken) is handed on as it
// is: the caller's decoder finds no audit event in it and counts it, as it
// counts any other line that is not one.
func logEntryEvent(entry []byte) []byte {
	ev, err := gke.Convert(entry)
	if err != nil {
		return entry
	}
	return ev
}
