package auditjson

import (
	"bytes"
	"hash/maphash"
	"sync/atomic"

	authnv1 "k8s.io/api/authentication/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// The caches of recently decoded users and object references. An audit
// stream repeats them whole, not just their maps and strings: every
// request one credential makes carries the same username, uid, groups and
// extra (for a bound service-account token, its credential id and its
// pod's and node's names and uids), and a cluster's requests go to a
// working set of objects (leases renewed every few seconds, nodes'
// status, the lists and watches of its controllers): on the realistic
// stream (internal/bench, 20,000 events) 19,140 objectRefs are 882
// distinct ones. Decoding the user and the objectRef was 14 % of
// BenchmarkDecodeDetectDefaultRules' time although extra already came
// from extraCache: their strings were looked up one by one. A repeated
// one now costs one search for a '}', one hash and one comparison.
//
// They follow the map caches (decode_mapcache.go): direct-mapped, atomic
// pointers to immutable entries, an entry stored only the second time in
// a row its slot sees it, bounded whatever the input (prefixCacheSlots
// entries of at most maxPrefixBytes of JSON each). A user object nests a
// map (extra), so it need not end at its first '}'; the lookup still
// hashes only the bytes up to the first '}' (as many as the object's end
// at most), and an entry, which holds the complete JSON object it decoded
// from, is a hit when the input starts with those bytes exactly: a JSON
// object ends where its own bytes say, so the input's object is then the
// entry's, byte for byte, and decodes to the same value. Only a value
// decoded into an empty destination is cached or served from the cache:
// a repeated member merges into what the first one left, as with
// encoding/json.
const (
	prefixCacheBits  = 10
	prefixCacheSlots = 1 << prefixCacheBits
	maxPrefixBytes   = 2048
)

// prefixEntry is one cached value and the JSON it was decoded from, both
// immutable once stored.
type prefixEntry[V any] struct {
	raw string
	v   V
}

type prefixCache[V any] struct {
	slots  [prefixCacheSlots]atomic.Pointer[prefixEntry[V]]
	missed [prefixCacheSlots]atomic.Uint64
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
	userCache      prefixCache[cachedUser]
	objectRefCache prefixCache[auditv1.ObjectReference]
)

// lookup returns the cached entry whose JSON data (from the object's '{')
// starts with, and fills p for a store after a miss.
func (c *prefixCache[V]) lookup(data []byte, p *mapProbe) (*prefixEntry[V], bool) {
	head := data
	if len(head) > maxPrefixBytes {
		head = head[:maxPrefixBytes]
	}
	end := bytes.IndexByte(head, '}')
	if end < 0 {
		return nil, false
	}
	p.n, p.h = end+1, maphash.Bytes(cacheSeed, head[:end+1])
	e := c.slots[p.h>>(64-prefixCacheBits)].Load()
	if e != nil && len(e.raw) <= len(data) && string(data[:len(e.raw)]) == e.raw {
		return e, true
	}
	return nil, false
}

// store caches v, just decoded from raw (the whole object) into an empty
// destination, when the slot's last miss had the same hash.
func (c *prefixCache[V]) store(raw []byte, p *mapProbe, v V) {
	if p.n == 0 || len(raw) > maxPrefixBytes || p.n > len(raw) {
		return
	}
	i := p.h >> (64 - prefixCacheBits)
	if c.missed[i].Load() != p.h {
		c.missed[i].Store(p.h)
		return
	}
	c.slots[i].Store(&prefixEntry[V]{raw: string(raw), v: v})
}
