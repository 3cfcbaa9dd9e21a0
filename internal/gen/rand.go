package gen

import (
	"math"
	"math/rand/v2"
)

// rng wraps a seeded PCG source. math/rand/v2's PCG is specified
// bit-for-bit, so a seed yields the same stream on every Go version and
// platform, which the committed sample relies on.
type rng struct {
	r *rand.Rand
}

func newRNG(seed int64) *rng {
	return &rng{r: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))}
}

// intn returns an int in [0, n).
func (r *rng) intn(n int) int { return r.r.IntN(n) }

// between returns an int in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.r.IntN(hi-lo+1) }

// chance reports true with probability p.
func (r *rng) chance(p float64) bool { return r.r.Float64() < p }

// exp returns an exponentially distributed value with the given mean, the
// gap between arrivals of a Poisson process. It is computed from a uniform
// draw rather than ExpFloat64 so that the stream depends only on PCG.
func (r *rng) exp(mean float64) float64 {
	return -math.Log(1-r.r.Float64()) * mean
}

// pick returns a random element of s.
func pick[T any](r *rng, s []T) T { return s[r.r.IntN(len(s))] }

// uuid returns a random (version 4) UUID in its canonical text form.
func (r *rng) uuid() string {
	var b [36]byte
	r.appendUUID(b[:0])
	return string(b[:])
}

func (r *rng) appendUUID(dst []byte) []byte {
	hi, lo := r.r.Uint64(), r.r.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	var raw [16]byte
	for i := range 8 {
		raw[i] = byte(hi >> (56 - 8*i))
		raw[8+i] = byte(lo >> (56 - 8*i))
	}
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// suffixAlphabet is what the apiserver's name generator draws from
// (k8s.io/apimachinery/pkg/util/rand: no vowels, no 0/1/3, so that generated
// names never spell words).
const suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// suffix returns n characters as generateName appends.
func (r *rng) suffix(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = suffixAlphabet[r.r.IntN(len(suffixAlphabet))]
	}
	return string(b)
}

// hex returns n random lowercase hex digits.
func (r *rng) hex(n int) string {
	return string(r.appendHex(make([]byte, 0, n), n))
}

// bytes fills b with random bytes.
func (r *rng) bytes(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := r.r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// appendHex appends n random lowercase hex digits.
func (r *rng) appendHex(b []byte, n int) []byte {
	for n > 0 {
		v := r.r.Uint64()
		for i := 0; i < 16 && n > 0; i++ {
			b = append(b, hexDigits[v&0xf])
			v >>= 4
			n--
		}
	}
	return b
}
