package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// Dir is the spool directory.
	Dir string
	// Group names the consumer whose position is kept in offsets/<Group>.
	// Default "auditpipe-detect".
	Group string
	// PollInterval is how often the tail of the last segment is checked for
	// new lines. Default 100ms.
	PollInterval time.Duration
	// DeleteConsumed removes segments wholly before the committed position.
	DeleteConsumed bool
}

// DefaultGroup is the reader group detect uses, as its Kafka consumer group.
const DefaultGroup = "auditpipe-detect"

// DefaultPollInterval is how often a reader at the end of the spool looks
// for new lines: a tenth of a second keeps embedded mode's latency well
// under detect's one-second batches at the cost of a stat per tick.
const DefaultPollInterval = 100 * time.Millisecond

// WithDefaults returns c with unset fields set to their defaults.
func (c ReaderConfig) WithDefaults() ReaderConfig {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	return c
}

// Validate reports every problem in c (after defaults), each naming its key.
func (c ReaderConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("spool.dir: directory not set"))
	}
	// The group names a file under offsets/: it must stay there.
	if c.Group == "." || c.Group == ".." || strings.ContainsAny(c.Group, `/\`) {
		errs = append(errs, fmt.Errorf("spool.group %q must be a plain file name", c.Group))
	}
	return errors.Join(errs...)
}

// Reader tails the spool as a pipeline.Source. Record.Partition carries the
// segment number and Record.Offset the byte offset just past the record's
// line, so committing a record resumes after it.
type Reader struct {
	cfg ReaderConfig
	log *slog.Logger

	// Fetch is called from one goroutine at a time; Commit may be called
	// from another, so the committed position has its own lock.
	seg    uint64
	off    int64
	f      *os.File
	br     *bufio.Reader
	closed bool

	commitMu  sync.Mutex
	committed position
}

var _ pipeline.Source = (*Reader)(nil)

// ErrClosed is returned by Fetch after Close.
var ErrClosed = errors.New("spool reader closed")

// NewReader opens the spool for reading from the group's committed position.
func NewReader(cfg ReaderConfig, log *slog.Logger) (*Reader, error) {
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
	pos, err := readPosition(filepath.Join(cfg.Dir, offsetsDir, cfg.Group))
	if err != nil {
		return nil, err
	}
	return &Reader{cfg: cfg, log: log, seg: pos.Segment, off: pos.Offset, committed: pos}, nil
}

// Fetch returns the next message, waiting for one to be written.
func (r *Reader) Fetch(ctx context.Context) (pipeline.Record, error) {
	for {
		if r.closed {
			return pipeline.Record{}, ErrClosed
		}
		rec, ok, err := r.next()
		if err != nil {
			return pipeline.Record{}, err
		}
		if ok {
			return rec, nil
		}
		select {
		case <-ctx.Done():
			return pipeline.Record{}, ctx.Err()
		case <-time.After(r.cfg.PollInterval):
		}
	}
}

// next reads one complete line if there is one.
func (r *Reader) next() (pipeline.Record, bool, error) {
	for {
		if r.f == nil {
			opened, err := r.openCurrent()
			if err != nil || !opened {
				return pipeline.Record{}, false, err
			}
		}
		data, err := r.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it whole.
			full := append([]byte(nil), data...)
			for errors.Is(err, bufio.ErrBufferFull) {
				data, err = r.br.ReadSlice('\n')
				full = append(full, data...)
			}
			data = full
		}
		if err == io.EOF {
			// An incomplete line is still being written: rewind to its
			// start and wait. Move on only when a later segment exists,
			// which the writer starts only after finishing this one.
			if _, serr := r.f.Seek(r.off, io.SeekStart); serr != nil {
				return pipeline.Record{}, false, fmt.Errorf("seeking spool segment: %w", serr)
			}
			r.br.Reset(r.f)
			later, lerr := r.laterSegment()
			if lerr != nil || later == 0 {
				return pipeline.Record{}, false, lerr
			}
			if len(data) > 0 {
				r.log.Warn("skipping torn line at the end of a spool segment", "segment", r.seg, "offset", r.off, "bytes", len(data))
			}
			r.f.Close()
			r.f, r.seg, r.off = nil, later, 0
			continue
		}
		if err != nil {
			return pipeline.Record{}, false, fmt.Errorf("reading spool segment: %w", err)
		}
		r.off += int64(len(data))
		rec := pipeline.Record{Partition: int(r.seg), Offset: r.off}
		var l line
		if err := json.Unmarshal(bytes.TrimSpace(data), &l); err != nil {
			// Returned as a record whose value fails to decode, so the
			// caller's poison handling (count, dead-letter, commit) applies
			// exactly as for a bad Kafka message.
			rec.Value = append([]byte(nil), data...)
			return rec, true, nil
		}
		rec.Cluster, rec.Key, rec.Value = l.Cluster, []byte(l.Key), l.Event
		return rec, true, nil
	}
}

// openCurrent opens segment r.seg at r.off, or the first segment after it
// when r.seg is gone (deleted, or 0 on a fresh spool).
func (r *Reader) openCurrent() (bool, error) {
	segs, err := listSegments(r.cfg.Dir)
	if err != nil {
		return false, err
	}
	for _, s := range segs {
		if s < r.seg {
			continue
		}
		if s > r.seg {
			r.seg, r.off = s, 0
		}
		f, err := os.Open(filepath.Join(r.cfg.Dir, segmentName(s)))
		if err != nil {
			return false, fmt.Errorf("opening spool segment: %w", err)
		}
		if _, err := f.Seek(r.off, io.SeekStart); err != nil {
			f.Close()
			return false, fmt.Errorf("seeking spool segment: %w", err)
		}
		r.f = f
		if r.br == nil {
			r.br = bufio.NewReaderSize(f, 1<<20)
		} else {
			r.br.Reset(f)
		}
		return true, nil
	}
	return false, nil
}

func (r *Reader) laterSegment() (uint64, error) {
	segs, err := listSegments(r.cfg.Dir)
	if err != nil {
		return 0, err
	}
	for _, s := range segs {
		if s > r.seg {
			return s, nil
		}
	}
	return 0, nil
}

// Commit records the position after the last of recs, durably.
func (r *Reader) Commit(_ context.Context, recs []pipeline.Record) error {
	if len(recs) == 0 {
		return nil
	}
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	pos := r.committed
	for _, rec := range recs {
		p := position{Segment: uint64(rec.Partition), Offset: rec.Offset}
		if p.Segment > pos.Segment || (p.Segment == pos.Segment && p.Offset > pos.Offset) {
			pos = p
		}
	}
	if pos == r.committed {
		return nil
	}
	if err := writePosition(filepath.Join(r.cfg.Dir, offsetsDir, r.cfg.Group), pos); err != nil {
		return err
	}
	r.committed = pos
	if r.cfg.DeleteConsumed {
		segs, err := listSegments(r.cfg.Dir)
		if err != nil {
			return err
		}
		for _, s := range segs {
			if s >= pos.Segment {
				break
			}
			if err := os.Remove(filepath.Join(r.cfg.Dir, segmentName(s))); err != nil && !errors.Is(err, os.ErrNotExist) {
				r.log.Warn("deleting consumed spool segment", "segment", s, "err", err)
			}
		}
	}
	return nil
}

// Close stops the reader. It is safe to call twice.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
