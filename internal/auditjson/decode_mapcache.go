package auditjson

import (
	"bytes"
	"hash/maphash"
	"sync/atomic"

	authnv1 "k8s.io/api/authentication/v1"
)

// The caches of recently decoded maps. An audit stream repeats its maps
// whole: user.extra is the same for every request one credential makes
// (its credential id, and for a bound service-account token the pod's
// and node's names and uids), and the annotations of most events are the
// authorizer's decision and reason, which repeat per user and role. On
// the realistic stream (internal/bench, 20,000 events) the 14,944 extra
// maps are 36 distinct ones and the 10,010 annotation maps 445. Building
// each map again (a map allocation, and a cache lookup per key and
// value) was 12 % of BenchmarkDecodeDetectDefaultRules' time before its
// share of the garbage collector; a repeated map now costs
// one scan for its closing brace, one hash and one comparison, and is
// returned shared. Decoded maps, and the []string values of extra, are
// therefore read-only for every caller: nothing in auditpipe writes to
// an event's Annotations or User/ImpersonatedUser.Extra (the one map
// written, gke's converter's, is made by the converter).
//
// The caches follow the string cache (decode_intern.go): direct-mapped,
// a slot holding the last map whose raw JSON hashed there, atomic
// pointers to immutable entries so that concurrent decoders share them
// without locks, and bounded whatever the input: mapCacheSlots entries
// per cache, each at most maxMapBytes of JSON and maxMapMembers members.
// Unlike a string, a map is stored only the second time in a row its
// slot sees it (each slot remembers the hash of the last map that missed
// there): storing copies the JSON and allocates an entry, which on a
// stream whose maps never repeat cost 29 % more instructions per event
// than no cache at all, and a map seen once would evict one that
// repeats.
//
// A lookup must not scan the object first (that would double the cost of
// a miss), so it hashes the bytes up to the first '}', which ends a map
// of strings or of string arrays unless a key or value contains a '}'.
// Only maps that end at their first '}' are stored, and a hit requires
// the input to start with the entry's bytes exactly: since an entry is a
// complete JSON object and a JSON value ends where its own bytes say, the
// object in the input is then the entry's, byte for byte, and decodes to
// the same map. Maps with a '}' inside a string are never cached and
// decode as before.
const (
	mapCacheBits  = 10
	mapCacheSlots = 1 << mapCacheBits
	// maxMapBytes bounds an entry's JSON: the longest maps of the
	// realistic stream are about 400 bytes (an extra of a bound token).
	maxMapBytes = 1024
	// maxMapMembers bounds an entry's members: the decoders build maps
	// of up to this many members from a stack buffer, and larger maps
	// are rare enough not to be worth caching.
	maxMapMembers = 8
)

// mapEntry is one cached map and the JSON it was decoded from; both are
// immutable once stored.
type mapEntry[M any] struct {
	raw string
	m   M
}

// mapCache is a direct-mapped cache of decoded maps keyed by their raw JSON.
type mapCache[M any] struct {
	slots [mapCacheSlots]atomic.Pointer[mapEntry[M]]
	// missed holds, per slot, the hash of the last map that missed
	// there and was not stored.
	missed [mapCacheSlots]atomic.Uint64
}

var (
	annotationCache mapCache[map[string]string]
	extraCache      mapCache[map[string]authnv1.ExtraValue]
)

// mapProbe is what a lookup learnt, for the store after a miss: n is the
// length of the bytes up to and including the first '}' (0 when there
// was none within maxMapBytes), h their hash.
type mapProbe struct {
	n int
	h uint64
}

// lookup returns the cached map whose JSON data starts with; data starts
// at the object's '{'.
func (c *mapCache[M]) lookup(data []byte, p *mapProbe) (M, bool) {
	var zero M
	if len(data) > maxMapBytes {
		data = data[:maxMapBytes]
	}
	end := bytes.IndexByte(data, '}')
	if end < 0 {
		return zero, false
	}
	cand := data[:end+1]
	p.n, p.h = len(cand), maphash.Bytes(cacheSeed, cand)
	if e := c.slots[p.h>>(64-mapCacheBits)].Load(); e != nil && e.raw == string(cand) {
		return e.m, true
	}
	return zero, false
}

// store caches m, just decoded from raw, when raw is what the lookup
// hashed (the object ended at its first '}') and the last map to miss in
// its slot had the same hash: the map repeats. A race between decoders
// only decides which map the slot keeps.
func (c *mapCache[M]) store(raw []byte, p *mapProbe, m M) {
	if p.n == 0 || p.n != len(raw) {
		return
	}
	i := p.h >> (64 - mapCacheBits)
	if c.missed[i].Load() != p.h {
		c.missed[i].Store(p.h)
		return
	}
	c.slots[i].Store(&mapEntry[M]{raw: string(raw), m: m})
}
