package alert

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// sendLog remembers what was delivered, so that a restarted detect neither
// resends a redelivered finding nor restarts a cooldown. It is an
// append-only JSON-lines file: one line per delivered alert, written after
// the receiver accepted it. On open the file is read, trimmed to the live
// cooldowns and the newest maxIDs finding ids, and rewritten atomically
// (temporary file, fsync, rename), so it stays small however long detect
// runs. Lines are not fsynced one by one: a crash may forget the last few
// sends, which costs a duplicate message, never a lost one.
//
// A nil *sendLog remembers nothing.
type sendLog struct {
	path      string
	maxIDs    int
	retention time.Duration

	mu    sync.Mutex
	f     *os.File
	lines int
	ids   map[string]struct{} // receiver + "\x00" + finding id
	order []string            // ids in insertion order, for trimming
	keys  map[string]time.Time
}

type logLine struct {
	Receiver string    `json:"r"`
	Key      string    `json:"k,omitempty"`
	Time     time.Time `json:"t"`
	IDs      []string  `json:"ids,omitempty"`
}

// idsPerLine packs compacted ids into lines of this many.
const idsPerLine = 500

func openSendLog(path string, maxIDs int, retention time.Duration, now time.Time) (*sendLog, error) {
	l := &sendLog{path: path, maxIDs: maxIDs, retention: retention, ids: map[string]struct{}{}, keys: map[string]time.Time{}}
	data, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("opening alert state: %w", err)
	default:
		sc := bufio.NewScanner(data)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var ln logLine
			// A torn last line (crash mid-append) is skipped: it costs one
			// duplicate message at most.
			if json.Unmarshal(sc.Bytes(), &ln) != nil {
				continue
			}
			l.add(ln)
		}
		err := sc.Err()
		data.Close()
		if err != nil {
			return nil, fmt.Errorf("reading alert state %s: %w", path, err)
		}
	}
	if err := l.compact(now); err != nil {
		return nil, err
	}
	return l, nil
}

// add applies one line to the in-memory state. Callers hold mu or own l.
func (l *sendLog) add(ln logLine) {
	if ln.Key != "" {
		k := ln.Receiver + "\x00" + ln.Key
		if ln.Time.After(l.keys[k]) {
			l.keys[k] = ln.Time
		}
	}
	for _, id := range ln.IDs {
		k := ln.Receiver + "\x00" + id
		if _, ok := l.ids[k]; !ok {
			l.ids[k] = struct{}{}
			l.order = append(l.order, k)
		}
	}
	if over := len(l.order) - l.maxIDs; over > 0 {
		for _, k := range l.order[:over] {
			delete(l.ids, k)
		}
		l.order = slices.Delete(l.order, 0, over)
	}
}

// compact drops expired cooldowns and rewrites the file from memory.
func (l *sendLog) compact(now time.Time) error {
	for k, t := range l.keys {
		if now.Sub(t) >= l.retention {
			delete(l.keys, k)
		}
	}
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("compacting alert state: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	lines := 0
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r, key := splitNUL(k)
		err = errors.Join(err, enc.Encode(logLine{Receiver: r, Key: key, Time: l.keys[k]}))
		lines++
	}
	for i := 0; i < len(l.order); i += idsPerLine {
		chunk := l.order[i:min(i+idsPerLine, len(l.order))]
		// Each line holds one receiver's ids; split the chunk where the
		// receiver changes.
		for len(chunk) > 0 {
			r, _ := splitNUL(chunk[0])
			j := 0
			var ids []string
			for ; j < len(chunk); j++ {
				cr, id := splitNUL(chunk[j])
				if cr != r {
					break
				}
				ids = append(ids, id)
			}
			err = errors.Join(err, enc.Encode(logLine{Receiver: r, Time: now, IDs: ids}))
			lines++
			chunk = chunk[j:]
		}
	}
	err = errors.Join(err, w.Flush(), f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compacting alert state %s: %w", l.path, err)
	}
	if d, derr := os.Open(filepath.Dir(l.path)); derr == nil {
		// Best effort: the rename is already done; a failed directory
		// sync only widens the window in which a crash loses it.
		_ = d.Sync()
		d.Close()
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, err = os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("opening alert state: %w", err)
	}
	l.lines = lines
	return nil
}

func splitNUL(s string) (a, b string) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// sentID reports whether finding id was already delivered to receiver.
func (l *sendLog) sentID(receiver, id string) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.ids[receiver+"\x00"+id]
	return ok
}

// lastSent is when the cooldown key was last delivered to receiver.
func (l *sendLog) lastSent(receiver, key string) time.Time {
	if l == nil {
		return time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[receiver+"\x00"+key]
}

// record appends the delivered alerts of g.
func (l *sendLog) record(g *Group, at time.Time) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var buf []byte
	for _, a := range g.Alerts {
		ln := logLine{Receiver: g.Receiver, Key: a.Key, Time: at, IDs: a.IDs}
		l.add(ln)
		b, err := json.Marshal(ln)
		if err != nil {
			return fmt.Errorf("encoding alert state: %w", err)
		}
		buf = append(append(buf, b...), '\n')
		l.lines++
	}
	if l.f == nil {
		return errors.New("appending alert state: closed")
	}
	if _, err := l.f.Write(buf); err != nil {
		return fmt.Errorf("appending alert state: %w", err)
	}
	// Rewrite once the file holds far more lines than the state it
	// describes, so that it stays bounded between restarts too.
	if l.lines > 2*(len(l.keys)+len(l.order)/idsPerLine+1)+1000 {
		return l.compact(at)
	}
	return nil
}

func (l *sendLog) close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
