package ingest

import (
	"errors"
	"io"
	"sync/atomic"
)

// limiter bounds the requests and body bytes ingest holds at once. It never
// blocks: a request that does not fit is refused at once with 429, so the
// apiserver backs off instead of its requests queueing here, each holding a
// body in memory, while the producer is slow.
type limiter struct {
	maxRequests, maxBytes int64
	requests, bytes       atomic.Int64
}

func (l *limiter) acquireRequest() bool {
	if l.requests.Add(1) > l.maxRequests {
		l.requests.Add(-1)
		return false
	}
	return true
}

func (l *limiter) releaseRequest() { l.requests.Add(-1) }

func (l *limiter) acquireBytes(n int64) bool {
	if l.bytes.Add(n) > l.maxBytes {
		l.bytes.Add(-n)
		return false
	}
	return true
}

func (l *limiter) releaseBytes(n int64) {
	if n > 0 {
		l.bytes.Add(-n)
	}
}

// errBudget reports that a body outgrew the in-flight byte budget.
var errBudget = errors.New("in-flight byte budget exhausted")

// budgetReader charges the bytes it reads to the limiter, beyond what was
// reserved up front (the declared Content-Length of an identity body). A
// gzip or chunked body, whose size is unknown until read, is charged as it
// decompresses.
type budgetReader struct {
	r        io.Reader
	lim      *limiter
	reserved int64
	read     int64
}

// budgetStep is the least a budgetReader reserves at a time, so that small
// reads do not each touch the shared counter.
const budgetStep = 256 << 10

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	if b.read > b.reserved {
		need := max(b.read-b.reserved, budgetStep)
		if !b.lim.acquireBytes(need) {
			return n, errBudget
		}
		b.reserved += need
	}
	return n, err
}
