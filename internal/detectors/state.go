package detectors

import (
	"container/list"
	"sync"
	"time"
)

// Window is the bounded memory of a stateful detector: a map from key to
// value with LRU eviction beyond maxEntries and expiry of entries not touched
// for ttl. Time is the events' own time (stage timestamps), never the wall
// clock, so replays and out-of-order delivery behave like live traffic.
//
// State is lost on restart. That is acceptable: findings carry deterministic
// ids, so a correlation re-found after a restart does not create a second
// row, and one missed because its first half arrived before the restart is
// the documented cost.
type Window[K comparable, V any] struct {
	mu         sync.Mutex
	maxEntries int
	ttl        time.Duration
	ll         *list.List
	items      map[K]*list.Element
	evicted    uint64
}

type windowEntry[K comparable, V any] struct {
	key  K
	val  V
	seen time.Time
}

// NewWindow makes a Window holding at most maxEntries for ttl each.
func NewWindow[K comparable, V any](maxEntries int, ttl time.Duration) *Window[K, V] {
	return &Window[K, V]{
		maxEntries: maxEntries,
		ttl:        ttl,
		ll:         list.New(),
		items:      make(map[K]*list.Element),
	}
}

// Update calls fn with the current value for key (the zero value and false
// when absent or expired at now) and stores what fn returns, marking the
// entry as seen at the later of its last time and now. fn runs under the
// Window's lock: it must not call back into the Window.
func (w *Window[K, V]) Update(key K, now time.Time, fn func(v V, ok bool) V) V {
	w.mu.Lock()
	defer w.mu.Unlock()
	if el, ok := w.items[key]; ok {
		e := el.Value.(*windowEntry[K, V])
		if now.Sub(e.seen) > w.ttl {
			var zero V
			e.val = fn(zero, false)
			e.seen = now
		} else {
			e.val = fn(e.val, true)
			if now.After(e.seen) {
				e.seen = now
			}
		}
		w.ll.MoveToFront(el)
		return e.val
	}
	e := &windowEntry[K, V]{key: key, val: fn(*new(V), false), seen: now}
	w.items[key] = w.ll.PushFront(e)
	for w.ll.Len() > w.maxEntries {
		oldest := w.ll.Back()
		w.ll.Remove(oldest)
		delete(w.items, oldest.Value.(*windowEntry[K, V]).key)
		w.evicted++
	}
	return e.val
}

// Get returns the value for key if present and not expired at now.
func (w *Window[K, V]) Get(key K, now time.Time) (V, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if el, ok := w.items[key]; ok {
		e := el.Value.(*windowEntry[K, V])
		if now.Sub(e.seen) <= w.ttl {
			return e.val, true
		}
	}
	var zero V
	return zero, false
}

// Len returns the number of entries held, expired ones included until they
// are evicted.
func (w *Window[K, V]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ll.Len()
}
