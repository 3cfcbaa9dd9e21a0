package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Dir is the spool directory; created when missing.
	Dir string
	// SegmentBytes starts a new segment once the current one is larger.
	// Default DefaultSegmentBytes.
	SegmentBytes int64
}

// WithDefaults returns c with unset fields set to their defaults.
func (c WriterConfig) WithDefaults() WriterConfig {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	return c
}

// Validate reports every problem in c (after defaults), each naming its key.
func (c WriterConfig) Validate() error {
	if c.Dir == "" {
		return errors.New("spool.dir: directory not set")
	}
	return nil
}

// Writer appends messages to the spool. It is the pipeline.Producer used
// when ingest runs without Kafka. One process may write a spool at a time.
type Writer struct {
	cfg  WriterConfig
	log  *slog.Logger
	lock *os.File

	mu     sync.Mutex
	seg    uint64
	f      *os.File
	size   int64
	buf    []byte
	closed bool
}

var _ pipeline.Producer = (*Writer)(nil)

// NewWriter opens the spool for appending, taking its writer lock.
func NewWriter(cfg WriterConfig, log *slog.Logger) (*Writer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("opening spool: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := ensureDir(cfg.Dir); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening spool lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("locking spool %s (is another ingest writing to it?): %w", cfg.Dir, err)
	}
	w := &Writer{cfg: cfg, log: log, lock: lock}
	segs, err := listSegments(cfg.Dir)
	if err != nil {
		w.Close()
		return nil, err
	}
	next := uint64(1)
	if len(segs) > 0 {
		next = segs[len(segs)-1]
	}
	if err := w.open(next); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func (w *Writer) open(seg uint64) error {
	path := filepath.Join(w.cfg.Dir, segmentName(seg))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening spool segment: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening spool segment: %w", err)
	}
	size := st.Size()
	if size > 0 {
		// A crash may have left a torn last line; readers skip up to the
		// last newline, so start a fresh segment rather than appending to
		// a line that never ended.
		if torn, err := endsTorn(path, size); err != nil || torn {
			f.Close()
			if err != nil {
				return err
			}
			return w.open(seg + 1)
		}
	}
	if w.f != nil {
		w.f.Close()
	}
	w.seg, w.f, w.size = seg, f, size
	return nil
}

func endsTorn(path string, size int64) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("checking spool segment: %w", err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return false, fmt.Errorf("checking spool segment: %w", err)
	}
	return b[0] != '\n', nil
}

// Produce appends msgs and fsyncs before returning, so that a 200 from
// ingest means the events survive a crash.
func (w *Writer) Produce(ctx context.Context, msgs []pipeline.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("appending to spool: writer closed")
	}
	buf := w.buf[:0]
	for i, m := range msgs {
		var err error
		if buf, err = appendLine(buf, m); err != nil {
			return pipeline.Permanent(fmt.Errorf("encoding spool line for message %d: %w", i, err))
		}
	}
	w.buf = buf
	if w.size > 0 && w.size+int64(len(buf)) > w.cfg.SegmentBytes {
		if err := w.open(w.seg + 1); err != nil {
			return err
		}
	}
	n, err := w.f.Write(buf)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("appending to spool: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing spool: %w", err)
	}
	return nil
}

// Close closes the segment and releases the lock. It is safe to call twice.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	var err error
	if w.f != nil {
		err = w.f.Close()
	}
	if w.lock != nil {
		w.lock.Close()
	}
	return err
}

// appendLine writes m as one JSON line. The event is copied byte for byte
// (json.Marshal would re-escape it); it must be valid JSON, and is compacted
// if it spans lines.
func appendLine(buf []byte, m pipeline.Message) ([]byte, error) {
	cluster, _ := json.Marshal(m.Cluster)
	key, _ := json.Marshal(string(m.Key))
	buf = append(buf, `{"cluster":`...)
	buf = append(buf, cluster...)
	buf = append(buf, `,"key":`...)
	buf = append(buf, key...)
	buf = append(buf, `,"event":`...)
	if bytes.ContainsAny(m.Value, "\r\n") || !json.Valid(m.Value) {
		var c bytes.Buffer
		if err := json.Compact(&c, m.Value); err != nil {
			return buf, err
		}
		buf = append(buf, c.Bytes()...)
	} else {
		buf = append(buf, m.Value...)
	}
	return append(buf, '}', '\n'), nil
}
