package detectors

import (
	"hash/maphash"
	"strings"
	"time"
)

// burstCounter counts distinct refused requests per subject (a source IP,
// a principal) in fixed buckets of event time, and reports a subject's
// bucket once, when it reaches min distinct items (paths, targets). It is
// the enumeration logic shared by anonymous-access (unauthenticated sources)
// and denied-burst (authenticated principals). Buckets are slices of event
// time, so the result does not depend on arrival order and a report's
// identity (cluster, subject, bucket) is the same after a restart or a
// redelivery. The cost: a burst split by a bucket boundary is only reported
// if one side alone reaches the threshold.
type burstCounter struct {
	min    int
	window time.Duration
	seed   maphash.Seed
	// bursts holds one entry per cluster, subject and bucket.
	bursts *Window[burstKey, *burstState]
}

// Bounds on what a burst report quotes. User agents and paths are
// client-chosen: a scanner must not be able to grow a finding, or the state
// behind it, by varying them.
const (
	burstMaxAgents  = 3
	burstMaxSamples = 5
)

// burstKey identifies one subject's refused requests in one bucket.
type burstKey struct {
	cluster string
	subject string
	bucket  int64 // bucket start, Unix nanoseconds
}

// burstState is what the Window remembers of one subject in one bucket.
type burstState struct {
	items   []uint64 // distinct item hashes, at most min of them
	fired   bool
	n401    int
	n403    int
	agents  []string // first few distinct user agents
	samples []string // first few distinct items as quoted
}

// burstReport is a copy of a burst taken under the Window's lock.
type burstReport struct {
	start      time.Time
	n401, n403 int
	agents     []string
	samples    []string
}

// newBurstCounter counts up to min distinct items per bucket of window for
// at most maxEntries subjects and buckets.
func newBurstCounter(min int, window time.Duration, maxEntries int) *burstCounter {
	return &burstCounter{
		min:    min,
		window: window,
		seed:   maphash.MakeSeed(),
		// Every event of a bucket lies within one window of the entry's last
		// sighting, so a ttl of two windows never expires a live bucket; old
		// buckets leave through the LRU cap.
		bursts: NewWindow[burstKey, *burstState](maxEntries, 2*window),
	}
}

// add counts item (refused with code, 401 or otherwise 403) for subject at
// event time at; sample is how the item is quoted in a report. It returns
// the burst when this item completes it, once per subject and bucket.
func (b *burstCounter) add(cluster, subject string, at time.Time, item, sample string, code int32, agent string) (burstReport, bool) {
	start := at.Truncate(b.window)
	key := burstKey{cluster: cluster, subject: subject, bucket: start.UnixNano()}
	h := maphash.String(b.seed, item)
	var report burstReport
	var done bool
	b.bursts.Update(key, at, func(s *burstState, ok bool) *burstState {
		if !ok || s == nil {
			s = &burstState{}
		}
		if s.fired {
			return s // reported; a redelivery or the tail of the burst adds nothing
		}
		for _, p := range s.items {
			if p == h {
				return s // a repeat, or the same event delivered twice
			}
		}
		s.items = append(s.items, h)
		if code == 401 {
			s.n401++
		} else {
			s.n403++
		}
		if len(s.samples) < burstMaxSamples {
			s.samples = append(s.samples, sample)
		}
		if len(s.agents) < burstMaxAgents && !anonContains(s.agents, agent) {
			s.agents = append(s.agents, strings.Clone(agent))
		}
		if len(s.items) >= b.min {
			s.fired, done = true, true
			report = burstReport{
				start: start,
				n401:  s.n401, n403: s.n403,
				agents:  append([]string(nil), s.agents...),
				samples: append([]string(nil), s.samples...),
			}
			s.items, s.samples, s.agents = nil, nil, nil // not needed once reported
		}
		return s
	})
	return report, done
}

// Len returns the number of subjects and buckets held.
func (b *burstCounter) Len() int { return b.bursts.Len() }
