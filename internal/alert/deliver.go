package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// deliverer sends one message to one destination. Its error is a
// *deliveryError when the destination answered, telling whether a retry
// can help.
type deliverer interface {
	deliver(ctx context.Context, g *Group) error
}

// deliveryError classifies a failed attempt where it happened.
type deliveryError struct {
	status     int
	permanent  bool          // a 4xx other than 429: the same request will fail again
	retryAfter time.Duration // from a 429's Retry-After
	err        error
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

// maxRetryAfter caps a server's Retry-After, so that a bogus date cannot
// park a queue for days; retry.max_elapsed still bounds the total.
const maxRetryAfter = 10 * time.Minute

// parseRetryAfter reads Retry-After as seconds or an HTTP date (RFC 9110
// section 10.2.3). It returns 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		d = time.Duration(max(s, 0)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	}
	return min(d, maxRetryAfter)
}

// postJSON posts body and classifies the outcome. Errors never include the
// URL: a Slack webhook URL is itself the credential, and net/http quotes the
// URL in every *url.Error.
func postJSON(ctx context.Context, client *http.Client, target string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &deliveryError{permanent: true, err: fmt.Errorf("building request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "auditpipe-alert")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &deliveryError{err: fmt.Errorf("posting: %w", err)}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	de := &deliveryError{status: resp.StatusCode, err: fmt.Errorf("posting: status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		de.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	case resp.StatusCode >= 500:
	default:
		de.permanent = true
	}
	return de
}

// sender owns one receiver's queue and delivers its messages one at a
// time, in order, retrying each until it is delivered, refused for good,
// or retry.max_elapsed passes.
type sender struct {
	name  string
	d     deliverer
	q     chan *Group
	retry RetryConfig
	m     *metrics
	log   *slog.Logger
	state *sendLog

	lastDropLog time.Time // owned by the dispatcher, which alone enqueues
}

// dropLogEvery throttles the queue-full warning, which would otherwise
// repeat for every message while a receiver is down.
const dropLogEvery = 10 * time.Second

// enqueue never blocks: the dispatcher serves every receiver, so one dead
// receiver must not stall the others.
func (s *sender) enqueue(g *Group) {
	select {
	case s.q <- g:
	default:
		s.m.dropped.WithLabelValues(s.name).Inc()
		if now := time.Now(); now.Sub(s.lastDropLog) >= dropLogEvery {
			s.lastDropLog = now
			s.log.Warn("alert queue full, dropping messages; raise queue_size or fix the receiver", "alerts", len(g.Alerts), "metric", MetricDropped)
		}
	}
}

func (s *sender) run(ctx context.Context) {
	for g := range s.q {
		s.send(ctx, g)
	}
}

func (s *sender) send(ctx context.Context, g *Group) {
	start := time.Now()
	backoff := time.Duration(s.retry.MinBackoff)
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		err := s.d.deliver(ctx, g)
		s.m.latency.WithLabelValues(s.name).Observe(time.Since(t0).Seconds())
		if err == nil {
			s.m.sent.WithLabelValues(s.name).Inc()
			if err := s.state.record(g, time.Now()); err != nil {
				s.log.Warn("recording sent alert", "err", err)
			}
			return
		}
		var de *deliveryError
		if errors.As(err, &de) && de.permanent {
			s.m.failed.WithLabelValues(s.name).Inc()
			s.log.Error("delivering alert refused, dropping it", "status", de.status, "alerts", len(g.Alerts), "err", err)
			return
		}
		// Jitter keeps several detect replicas from retrying in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		if de != nil && de.retryAfter > 0 {
			wait = de.retryAfter
		}
		if ctx.Err() != nil || time.Since(start)+wait > time.Duration(s.retry.MaxElapsed) {
			s.m.failed.WithLabelValues(s.name).Inc()
			s.log.Error("delivering alert, giving up", "attempts", attempt, "alerts", len(g.Alerts), "err", err)
			return
		}
		s.m.retried.WithLabelValues(s.name).Inc()
		s.log.Warn("delivering alert, will retry", "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, time.Duration(s.retry.MaxBackoff))
	}
}
