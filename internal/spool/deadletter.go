package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// DeadLetterFileName is the embedded mode's dead-letter file in the spool
// directory.
const DeadLetterFileName = "dead-letter.jsonl"

// FileDeadLetters appends dead letters to a JSON-lines file, one object a
// line, fsynced before WriteDeadLetters returns. It is embedded mode's
// dead-letter queue.
type FileDeadLetters struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

var _ pipeline.DeadLetterSink = (*FileDeadLetters)(nil)

// deadLetterLine is one line of the file. Value is kept as a string (not
// raw JSON) because it is, by definition, possibly not valid JSON.
type deadLetterLine struct {
	Time      time.Time `json:"time"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error"`
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Cluster   string    `json:"cluster,omitempty"`
	Key       string    `json:"key"`
	Value     string    `json:"value"`
}

// OpenFileDeadLetters opens (creating) path for appending.
func OpenFileDeadLetters(path string) (*FileDeadLetters, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening dead-letter file: %w", err)
	}
	return &FileDeadLetters{f: f, path: path}, nil
}

// WriteDeadLetters appends dls and syncs the file.
func (d *FileDeadLetters) WriteDeadLetters(_ context.Context, dls []pipeline.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	var buf []byte
	now := time.Now().UTC()
	for _, dl := range dls {
		l := deadLetterLine{
			Time: now, Reason: dl.Reason, Partition: dl.Record.Partition, Offset: dl.Record.Offset,
			Cluster: dl.Record.Cluster, Key: string(dl.Record.Key), Value: string(dl.Record.Value),
		}
		if dl.Err != nil {
			l.Error = dl.Err.Error()
		}
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("encoding dead letter: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return fmt.Errorf("writing dead letters to %s: file closed", d.path)
	}
	if _, err := d.f.Write(buf); err != nil {
		return fmt.Errorf("writing dead letters to %s: %w", d.path, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("syncing dead letters to %s: %w", d.path, err)
	}
	return nil
}

// Close closes the file; calling it again is a no-op.
func (d *FileDeadLetters) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	if err != nil {
		return fmt.Errorf("closing dead-letter file: %w", err)
	}
	return nil
}
