package auditjson

import (
	"bytes"
	"hash/maphash"
	"sync/atomic"

	authnv1 "k8s.io/api/authentication/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// The caches of recently decoded objects. An audit stream repeats its
// maps whole: user.extra is the same for every request one credential
// makes (its credential id, and for a bound service-account token the
// pod's and node's names and uids), and the annotations of most events
// are the authorizer's decision and reason, which repeat per user and
// role. On the realistic stream (internal/bench, 20,000 events) the
// 14,944 extra maps are 36 distinct ones and the 10,010 annotation maps
// 445. Building each map again (a map allocation, and a cache lookup per
// key and value) was 12 % of BenchmarkDecodeDetectDefaultRules' time
// before its share of the garbage collector. It repeats its users and
// object references whole too: every request of one credential carries
// the same username, uid, groups and extra, and a cluster's requests go
// to a working set of objects (leases renewed every few seconds, nodes'
// status, the lists and watches of its controllers): 19,140 objectRefs
// are 882 distinct ones. Decoding those two, string by string, was 14 %
// of the same benchmark's time once extra came from its cache. A
// repeated object now costs one search for a '}', one hash and one
// comparison, and is returned shared. Decoded maps, and the []string
// values of extra, are therefore read-only for every caller: nothing in
// auditpipe writes to an event's Annotations or User/ImpersonatedUser.Extra
// (the one map written, gke's converter's, is made by the converter). A
// cached user's groups and objectRef are copied into the event's own
// slots instead.
//
// The caches follow the string cache (decode_intern.go): direct-mapped,
// a slot holding the last object whose raw JSON hashed there, atomic
// pointers to immutable entries so that concurrent decoders share them
// without locks, and bounded whatever the input: objectCacheSlots
// entries per cache, each at most maxCachedObject bytes of JSON (and maps
// at most maxMapMembers members). Unlike a string, an object is stored
// only the second time in a row its slot sees it (each slot remembers the
// hash of the last object that missed there): storing copies the JSON and
// allocates an entry, which on a stream whose maps never repeat cost 29 %
// more instructions per event than no cache at all, and an object seen
// once would evict one that repeats.
//
// A lookup must not scan the object first (that would double the cost of
// a miss), so it hashes the bytes up to the first '}' (as many as the
// object's end at most: a map of strings ends there, a user after its
// extra, unless a string holds a '}'), and an entry, which holds the
// complete JSON object it decoded from, is a hit when the input starts
// with those bytes exactly: a JSON object ends where its own bytes say,
// so the input's object is then the entry's, byte for byte, and decodes
// to the same value. Only an object decoded into an empty destination is
// cached or served from the cache: a repeated member merges into what the
// first one left, as with encoding/json.
const (
	objectCacheBits  = 10
	objectCacheSlots = 1 << objectCacheBits
	// maxCachedObject bounds an entry's JSON: the longest users of the
	// realistic stream are about 600 bytes (a bound token's, its extra
	// about 400).
	maxCachedObject = 2048
	// maxMapMembers bounds a cached map's members: the decoders build
	// maps of up to this many members from a stack buffer, and larger
	// maps are rare enough not to be worth caching.
	maxMapMembers = 8
)

// objectEntry is one cached value and the JSON it was decoded from, both
// immutable once stored.
type objectEntry[V any] struct {
	raw string
	v   V
}

// objectCache is a direct-mapped cache of decoded objects keyed by their
// raw JSON.
type objectCache[V any] struct {
	slots [objectCacheSlots]atomic.Pointer[objectEntry[V]]
	// missed holds, per slot, the hash of the last object that missed
	// there and was not stored.
	missed [objectCacheSlots]atomic.Uint64
}

// cachedUser is a user as userCache holds it. groups is the entry's own
// copy (an event's groups are carved from the event's slots, see
// stringsOf); extra is shared as extraCache shares it.
type cachedUser struct {
	username, uid string
	groups        []string
	extra         map[string]authnv1.ExtraValue
}

var (
	annotationCache objectCache[map[string]string]
	extraCache      objectCache[map[string]authnv1.ExtraValue]
	userCache       objectCache[cachedUser]
	objectRefCache  objectCache[auditv1.ObjectReference]
)

// cacheProbe is what a lookup learnt, for the store after a miss: n is
// the length of the bytes up to and including the first '}' (0 when there
// was none within maxCachedObject), h their hash.
type cacheProbe struct {
	n int
	h uint64
}

// lookup returns the cached entry whose JSON data (from the object's '{')
// starts with, and fills p for a store after a miss.
func (c *objectCache[V]) lookup(data []byte, p *cacheProbe) (*objectEntry[V], bool) {
	head := data
	if len(head) > maxCachedObject {
		head = head[:maxCachedObject]
	}
	end := bytes.IndexByte(head, '}')
	if end < 0 {
		return nil, false
	}
	p.n, p.h = end+1, maphash.Bytes(cacheSeed, head[:end+1])
	e := c.slots[p.h>>(64-objectCacheBits)].Load()
	if e != nil && len(e.raw) <= len(data) && string(data[:len(e.raw)]) == e.raw {
		return e, true
	}
	return nil, false
}

// store caches v, just decoded from raw (the whole object) into an empty
// destination, when the lookup found a '}' and the slot's last miss had
// the same hash. A race between decoders only decides which value the
// slot keeps.
func (c *objectCache[V]) store(raw []byte, p *cacheProbe, v V) {
	if p.n == 0 || len(raw) > maxCachedObject || p.n > len(raw) {
		return
	}
	i := p.h >> (64 - objectCacheBits)
	if c.missed[i].Load() != p.h {
		c.missed[i].Store(p.h)
		return
	}
	c.slots[i].Store(&objectEntry[V]{raw: string(raw), v: v})
}
