package ingest

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// limiter bounds what ingest holds at once. It never blocks: a request that
// does not fit is refused at once with 429, so the apiserver backs off
// instead of its requests queueing here, each holding a body in memory,
// while the producer is slow.
//
// A request passes two stages, each with its own bound. While its body
// arrives it holds a reader slot (max-reading-requests) and the body bytes
// that have arrived so far; once the body is in, it gives the reader slot
// back and takes a processing slot (max-inflight-requests) for the split,
// redaction and produce, plus a per-event charge on the byte budget
// (max-inflight-bytes). A sender trickling its body therefore holds one of
// many cheap reader slots and only what it actually sent, never one of the
// few processing slots or a declared length it may never send.
type limiter struct {
	maxReaders, maxRequests, maxBytes int64
	readers, requests, bytes          atomic.Int64
	// noDeadlines is set once a request found it could not set read
	// deadlines, so that this is logged once rather than per request.
	noDeadlines atomic.Bool
}

func (l *limiter) acquireReader() bool {
	if l.readers.Add(1) > l.maxReaders {
		l.readers.Add(-1)
		return false
	}
	return true
}

func (l *limiter) releaseReader() { l.readers.Add(-1) }

// requestsFull reports whether every processing slot is taken, without
// taking one: a saturated ingest refuses a request before reading its body,
// which would only be thrown away.
func (l *limiter) requestsFull() bool { return l.requests.Load() >= l.maxRequests }

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

// budgetReader charges the bytes it reads to the limiter as they arrive.
// Nothing is reserved up front, not even a declared Content-Length: a
// sender that declares a large body and stalls would otherwise hold budget
// it never uses and starve everyone else. reserved is what was charged and
// what the caller releases.
type budgetReader struct {
	r        io.Reader
	lim      *limiter
	max      int64 // the most worth reserving: max-body-bytes
	reserved int64
	read     int64
}

// budgetReader charges ahead of what it read, so that small reads do not
// each touch the shared counter: as much again as it holds already, at
// least budgetMinStep and at most budgetStep. The charge ahead is thus at
// most about what arrived, so a sender that sent a few bytes holds only a
// few KiB, and a large body touches the counter once per 256 KiB.
const (
	budgetMinStep = 4 << 10
	budgetStep    = 256 << 10
)

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	if b.read > b.reserved {
		ahead := min(budgetStep, max(b.reserved, budgetMinStep))
		// Never ahead past max-body-bytes, so that a body of exactly that
		// size fits a budget of exactly that size, as Validate promises.
		need := max(b.read-b.reserved, min(ahead, b.max-b.reserved))
		if !b.lim.acquireBytes(need) {
			return n, errBudget
		}
		b.reserved += need
	}
	return n, err
}

// deadlineStep is how far the ideal read deadline may run ahead of the one
// set before rateReader moves it: moving it costs a timer update, and being
// this much stricter than the rule changes nothing for a real sender.
const deadlineStep = 100 * time.Millisecond

// rateReader is a request body as it arrives on the wire, with a minimum
// rate. After a grace period the body must keep up min-body-rate on
// average: the connection's read deadline is kept at
//
//	start + grace + bytes received / rate
//
// so every byte that arrives buys 1/rate of time, and a sender that stalls
// or trickles hits the deadline once its credit runs out. The deadline
// never moves past start + read-timeout, which stays the bound on the whole
// body however fast it comes (start is when the handler began, after the
// headers, so this is slightly later than the server's own ReadTimeout,
// which it replaces). It uses http.ResponseController, which sets
// the deadline on the HTTP/1 connection or the HTTP/2 stream; when the
// ResponseWriter cannot (a wrapper without Unwrap), only the server's
// ReadTimeout applies.
type rateReader struct {
	body   io.ReadCloser
	rc     *http.ResponseController
	start  time.Time
	grace  time.Duration
	rate   int64 // bytes per second
	cutoff time.Time
	read   int64
	set    time.Time // the deadline last set; zero when none was
	off    bool      // deadlines are not supported
}

func newRateReader(w http.ResponseWriter, body io.ReadCloser, cfg Config) *rateReader {
	start := time.Now()
	r := &rateReader{body: body, rc: http.NewResponseController(w), start: start, grace: cfg.BodyRateGrace,
		rate: cfg.MinBodyRate, cutoff: start.Add(cfg.ReadTimeout)}
	r.extend()
	return r
}

func (r *rateReader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if n > 0 {
		r.read += int64(n)
		r.extend()
	}
	return n, err
}

func (r *rateReader) Close() error { return r.body.Close() }

// due is when the body must have sent its next byte.
func (r *rateReader) due() time.Time {
	// In floating point, so that a large body at a low rate cannot
	// overflow a Duration.
	credit := float64(r.read) / float64(r.rate) * float64(time.Second)
	if float64(r.grace)+credit >= float64(r.cutoff.Sub(r.start)) {
		return r.cutoff
	}
	return r.start.Add(r.grace + time.Duration(credit))
}

func (r *rateReader) extend() {
	if r.off {
		return
	}
	d := r.due()
	if !r.set.IsZero() && d.Sub(r.set) < deadlineStep {
		return
	}
	if err := r.rc.SetReadDeadline(d); err != nil {
		r.off = true
		return
	}
	r.set = d
}

// finish puts back the whole-request deadline once the body is read. The
// server reads the connection in the background while the handler
// produces, and a deadline passing there would cancel the request's
// context: the last rate deadline may be only moments away, read-timeout
// is what the server itself would have set.
func (r *rateReader) finish() {
	if !r.off && !r.set.IsZero() {
		_ = r.rc.SetReadDeadline(r.cutoff)
	}
}
