package pipeline

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// refLRU is requestLRU written plainly: keys in a slice from most to least
// recently seen.
type refLRU struct {
	max   int
	ttl   time.Duration
	order []requestKey
	seen  map[requestKey]time.Time
}

func (r *refLRU) drop(k requestKey) {
	r.order = slices.DeleteFunc(r.order, func(x requestKey) bool { return x == k })
	delete(r.seen, k)
}

func (r *refLRU) front(k requestKey) {
	r.order = slices.DeleteFunc(r.order, func(x requestKey) bool { return x == k })
	r.order = slices.Insert(r.order, 0, k)
}

func (r *refLRU) has(k requestKey, now time.Time) bool {
	s, ok := r.seen[k]
	if !ok {
		return false
	}
	if now.Sub(s) > r.ttl {
		r.drop(k)
		return false
	}
	r.front(k)
	return true
}

func (r *refLRU) add(k requestKey, now time.Time) {
	if _, ok := r.seen[k]; !ok && len(r.order) >= r.max {
		r.drop(r.order[len(r.order)-1])
	}
	r.seen[k] = now
	r.front(k)
}

// TestRequestLRUModel runs random operations on a requestLRU and on
// refLRU and compares every answer and, after each, the order of what
// each remembers: the index links, the free list and eviction of the
// least recently seen must agree with the plain version.
func TestRequestLRUModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for run := range 50 {
		l := newRequestLRU(1+rng.IntN(6), 10*time.Second)
		r := &refLRU{max: l.max, ttl: l.ttl, seen: map[requestKey]time.Time{}}
		for step := range 400 {
			k := newRequestKey([]string{"a", "b"}[rng.IntN(2)], uint64(rng.IntN(10)))
			now := base.Add(time.Duration(step+rng.IntN(30)) * time.Second)
			var got, want bool
			switch op := rng.IntN(4); op {
			case 0:
				got, want = l.has(k, now), r.has(k, now)
			case 1:
				got = l.remove(k, now)
				want = r.has(k, now)
				r.drop(k)
			case 2:
				l.add(k, now)
				r.add(k, now)
			case 3:
				got = l.hasOrAdd(k, now)
				if want = r.has(k, now); !want {
					r.add(k, now)
				}
			}
			if got != want {
				t.Fatalf("run %d step %d: got %v, want %v", run, step, got, want)
			}
			var order []requestKey
			for i := l.head; i != noEntry; i = l.ents[i].next {
				order = append(order, l.ents[i].key)
			}
			if !slices.Equal(order, r.order) || l.len() != len(r.order) {
				t.Fatalf("run %d step %d: remembers %v (len %d), want %v", run, step, order, l.len(), r.order)
			}
		}
	}
}

// TestStageGateConfigBounds: the LRUs index entries with int32, so a
// bound past math.MaxInt32 is refused rather than wrapping.
func TestStageGateConfigBounds(t *testing.T) {
	tooMany := math.MaxInt32
	tooMany++ // a variable, so that 32-bit builds compile (it wraps negative there, still refused)
	for _, c := range []struct {
		cfg StageGateConfig
		ok  bool
	}{
		{StageGateConfig{}.WithDefaults(), true},
		{StageGateConfig{OpenRequests: math.MaxInt32, DoneRequests: math.MaxInt32}.WithDefaults(), true},
		{StageGateConfig{OpenRequests: tooMany}.WithDefaults(), false},
		{StageGateConfig{DoneRequests: tooMany}.WithDefaults(), false},
		{StageGateConfig{OpenRequests: -1, DoneRequests: 1, OpenTTL: 1, DoneTTL: 1}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v, want ok %v", c.cfg, err, c.ok)
		}
	}
}

// TestInstantSince: an instant kept without its Location measures the
// same durations as the time.Time it was made from, saturation included.
func TestInstantSince(t *testing.T) {
	at := time.Date(2026, 12, 5, 0, 30, 0, 123456789, time.UTC)
	times := []time.Time{
		{}, at, at.In(time.FixedZone("x", -8*3600)), at.Add(-time.Nanosecond), at.Add(time.Hour + 1),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Unix(0, 0), time.Unix(-1, 999999999),
	}
	for _, then := range times {
		for _, now := range times {
			if got, want := instantOf(then).since(now), now.Sub(then); got != want {
				t.Errorf("instantOf(%v).since(%v) = %v, want %v", then, now, got, want)
			}
		}
	}
}
