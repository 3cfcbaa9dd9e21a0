// Package spool is auditpipe's embedded transport: ingest appends messages
// to JSON-lines segment files in a directory and detect tails them. It stands
// in for Kafka when no broker is configured, with the same contract: Produce
// returns once the messages are on disk (fsync), and a consumer resumes from
// its last commit after a restart.
//
// Layout of the directory:
//
//	segment-00000000000000000001.jsonl   messages, one JSON object a line
//	offsets/<group>                      a consumer group's committed position
//	.writer.lock                         held (flock) by the one writer
package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const (
	segmentPrefix = "segment-"
	segmentSuffix = ".jsonl"
	offsetsDir    = "offsets"
	lockFile      = ".writer.lock"

	// DefaultSegmentBytes bounds one segment so that consumed segments can
	// be deleted while the spool keeps growing.
	DefaultSegmentBytes = 64 << 20
)

// line is one message as stored in a segment.
type line struct {
	Cluster string          `json:"cluster"`
	Key     string          `json:"key"`
	Event   json.RawMessage `json:"event"`
}

func segmentName(n uint64) string {
	return fmt.Sprintf("%s%020d%s", segmentPrefix, n, segmentSuffix)
}

// listSegments returns the segment numbers in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing spool segments: %w", err)
	}
	var segs []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, segmentPrefix) || !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, segmentPrefix), segmentSuffix), 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, n)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, nil
}

// position is a consumer's place: the segment and the byte offset of the
// next unread line in it.
type position struct {
	Segment uint64 `json:"segment"`
	Offset  int64  `json:"offset"`
}

func readPosition(path string) (position, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return position{}, nil
	}
	if err != nil {
		return position{}, fmt.Errorf("reading spool offset: %w", err)
	}
	var p position
	if err := json.Unmarshal(data, &p); err != nil {
		return position{}, fmt.Errorf("decoding spool offset %s: %w", path, err)
	}
	return p, nil
}

// writePosition replaces the offset file atomically, so a crash leaves
// either the old or the new position, never a torn one.
func writePosition(path string, p position) error {
	data, _ := json.Marshal(p)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing spool offset: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing spool offset: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing spool offset: %w", err)
	}
	return nil
}

func ensureDir(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, offsetsDir), 0o700); err != nil {
		return fmt.Errorf("creating spool directory: %w", err)
	}
	return nil
}
