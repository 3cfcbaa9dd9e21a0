package ingest

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// dedupKey identifies one event for the deduplication window: its cluster,
// auditID and stage, and pipeline.ContentHash, so that a client-chosen
// auditID reused by another request (the Audit-ID header) does not suppress
// that request's events.
func dedupKey(cluster, auditID, stage string, content uint64) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(cluster)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(auditID)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(stage)
	_, _ = d.Write([]byte{0})
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], content)
	_, _ = d.Write(buf[:])
	return d.Sum64()
}

// window remembers the keys of events the producer acknowledged, for a time
// and up to a number of entries, so that a batch the apiserver resends
// (it resends the whole list on any error) is not produced again.
//
// Entries leave in the order they were added: when they are older than the
// window or when the window is full. A hit does not refresh an entry: the
// apiserver's retries of one batch end within minutes of the first attempt,
// so the age that matters is the age since acceptance. Memory is about 40
// bytes an entry (a map slot and a ring slot), 40 MB at the default million.
type window struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	seen  map[uint64]int64 // key -> when added, Unix nanoseconds
	ring  []ringEntry      // insertion order, oldest at head
	head  int
	count int
}

type ringEntry struct {
	key uint64
	at  int64
}

func newWindow(ttl time.Duration, max int, now func() time.Time) *window {
	if now == nil {
		now = time.Now
	}
	return &window{ttl: ttl, max: max, now: now, seen: make(map[uint64]int64)}
}

// filter reports for each key whether it was added within the window,
// reusing out.
func (w *window) filter(keys []uint64, out []bool) []bool {
	if cap(out) < len(keys) {
		out = make([]bool, len(keys))
	}
	out = out[:len(keys)]
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now().UnixNano()
	for i, k := range keys {
		at, ok := w.seen[k]
		out[i] = ok && now-at < int64(w.ttl)
	}
	return out
}

// add records keys as durable.
func (w *window) add(keys []uint64) {
	if len(keys) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now().UnixNano()
	w.expire(now)
	for _, k := range keys {
		if w.count == w.max {
			w.pop()
		}
		w.push(ringEntry{key: k, at: now})
		w.seen[k] = now
	}
}

// len returns the number of entries held.
func (w *window) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

func (w *window) expire(now int64) {
	for w.count > 0 && now-w.ring[w.head].at >= int64(w.ttl) {
		w.pop()
	}
}

// pop drops the oldest ring entry, and its map entry unless the key was
// added again since (then the map holds the newer time).
func (w *window) pop() {
	e := w.ring[w.head]
	if w.seen[e.key] == e.at {
		delete(w.seen, e.key)
	}
	w.head = (w.head + 1) % len(w.ring)
	w.count--
}

func (w *window) push(e ringEntry) {
	if w.count == len(w.ring) {
		// Grow by doubling, up to max, unrolling the ring in order.
		n := min(max(2*len(w.ring), 1024), w.max)
		ring := make([]ringEntry, n)
		for i := range w.count {
			ring[i] = w.ring[(w.head+i)%len(w.ring)]
		}
		w.ring, w.head = ring, 0
	}
	w.ring[(w.head+w.count)%len(w.ring)] = e
	w.count++
}
