package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Result is what became of one batch of events.
type Result struct {
	// Accepted counts events that are durable: produced now, or already
	// produced within the deduplication window.
	Accepted int
	// Produced counts events handed to the producer and acknowledged.
	Produced int
	// Deduplicated counts events not produced again.
	Deduplicated int
	// Truncated counts events that lost their bodies to the size limit.
	Truncated int
	// Rejected names the events refused, by index in the batch.
	Rejected []Rejection
}

// batchState is the scratch space of one batch, pooled across requests.
type batchState struct {
	items []([]byte)
	msgs  []pipeline.Message
	keys  []uint64
	dup   []bool
	seen  map[uint64]struct{}
	ev    fastEvent
	full  pipeline.Event
	// pre holds each item's fields when the split scanned it (webhook
	// requests on the fast path); empty otherwise.
	pre []preEvent
}

func (h *Handler) getState() *batchState {
	if st, ok := h.pool.Get().(*batchState); ok {
		return st
	}
	return &batchState{seen: make(map[uint64]struct{})}
}

// putState clears st's references to request bodies before pooling it.
func (h *Handler) putState(st *batchState) {
	clear(st.items)
	clear(st.msgs)
	st.items, st.msgs, st.keys, st.dup, st.pre = st.items[:0], st.msgs[:0], st.keys[:0], st.dup[:0], st.pre[:0]
	clear(st.seen)
	st.ev = fastEvent{sourceIPs: st.ev.sourceIPs[:0]}
	st.full.Reset()
	h.pool.Put(st)
}

// Ingest makes one batch of events durable: each item (one event's JSON) is
// truncated if over the size limit, redacted, validated, keyed, and
// produced unless the deduplication window shows it durable already. It is
// the webhook's per-batch path; replay uses it for log files. An error means
// the producer failed (retryable unless pipeline.IsPermanent); rejected
// items are reported in the Result, not as an error.
func (h *Handler) Ingest(ctx context.Context, cluster string, items [][]byte) (Result, error) {
	if err := ValidateCluster(cluster); err != nil {
		return Result{}, err
	}
	st := h.getState()
	defer h.putState(st)
	return h.ingest(ctx, cluster, items, st)
}

func (h *Handler) ingest(ctx context.Context, cluster string, items [][]byte, st *batchState) (Result, error) {
	var res Result
	h.m.batchEvents.Observe(float64(len(items)))
	reject := func(i int, reason string, err error) {
		res.Rejected = append(res.Rejected, Rejection{Index: i, Reason: reason, Error: err.Error()})
		h.m.eventsRejected.WithLabelValues(reason).Inc()
	}
	// Keys of one batch share an arena: one allocation instead of one per
	// event. It is not pooled, since the producer may still hold the keys
	// after a cancelled Produce returns.
	arena := make([]byte, 0, len(items)*(len(cluster)+48))
	limit := h.cfg.MaxEventBytes
	for i, item := range items {
		orig := item
		truncated := false
		if int64(len(item)) > limit {
			out, err := truncateEvent(item)
			if err != nil {
				reject(i, ReasonMalformed, err)
				continue
			}
			item, truncated = out, true
		}
		if h.redact != nil {
			out, _, err := h.redact.Event(item)
			if err != nil {
				reject(i, ReasonMalformed, fmt.Errorf("redacting event: %w", err))
				continue
			}
			item = out
		}
		if int64(len(item)) > limit && !truncated {
			// Redaction grew the event past the limit.
			out, err := truncateEvent(item)
			if err != nil {
				reject(i, ReasonMalformed, err)
				continue
			}
			item, truncated = out, true
		}
		// The split already scanned the item unless truncation or
		// redaction changed it since.
		var pre *fastEvent
		if i < len(st.pre) && st.pre[i].ok && len(item) == len(orig) && (len(item) == 0 || &item[0] == &orig[0]) {
			pre = &st.pre[i].ev
		}
		key, dk, err := h.keyOf(cluster, item, pre, st, &arena)
		if err != nil {
			reject(i, ReasonMalformed, err)
			continue
		}
		if int64(len(item)) > limit {
			// Only metadata is left and it is still too large: the
			// apiserver's truncate backend drops such an event; here the
			// sender is told which one.
			reject(i, ReasonTooLarge, fmt.Errorf("event of %d bytes exceeds the %d-byte limit (max-event-bytes) even without its request and response bodies", len(item), limit))
			continue
		}
		if truncated {
			res.Truncated++
		}
		// The same event twice in one batch (a log replayed with an
		// overlapping rotated copy) is produced once.
		if _, ok := st.seen[dk]; ok {
			res.Deduplicated++
			continue
		}
		st.seen[dk] = struct{}{}
		st.msgs = append(st.msgs, pipeline.Message{Key: key, Value: item, Cluster: cluster})
		st.keys = append(st.keys, dk)
	}
	h.m.truncated.Add(float64(res.Truncated))

	// Drop events made durable within the window, under one lock.
	msgs, keys := st.msgs, st.keys
	if h.window != nil {
		st.dup = h.window.filter(keys, st.dup)
		n := 0
		for i := range msgs {
			if st.dup[i] {
				res.Deduplicated++
				continue
			}
			msgs[n], keys[n] = msgs[i], keys[i]
			n++
		}
		msgs, keys = msgs[:n], keys[:n]
	}
	h.m.deduplicated.Add(float64(res.Deduplicated))
	h.m.events.WithLabelValues("rejected").Add(float64(len(res.Rejected)))

	if len(msgs) > 0 {
		start := time.Now()
		err := h.prod.Produce(ctx, msgs)
		h.m.produceDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			// Events are marked durable only once acknowledged: a failed
			// produce must not make the resend look like a duplicate.
			// Those the producer says were acknowledged are marked, so the
			// resend does not produce them twice.
			var partial interface{ Acknowledged() []bool }
			if h.window != nil && errors.As(err, &partial) {
				if acked := partial.Acknowledged(); len(acked) == len(keys) {
					n := 0
					for i, ok := range acked {
						if ok {
							keys[n] = keys[i]
							n++
						}
					}
					h.window.add(keys[:n])
				}
			}
			res.Accepted = res.Deduplicated
			return res, err
		}
		if h.window != nil {
			h.window.add(keys)
		}
		res.Produced = len(msgs)
	}
	res.Accepted = res.Produced + res.Deduplicated
	h.m.events.WithLabelValues("accepted").Add(float64(res.Accepted))
	return res, nil
}

// keyOf validates one event and returns its message key and deduplication
// key, on the fast path when it can.
func (h *Handler) keyOf(cluster string, item []byte, pre *fastEvent, st *batchState, arena *[]byte) ([]byte, uint64, error) {
	var sub, auditID, stage string
	var content uint64
	if pre == nil && !h.cfg.FullDecode && scanEvent(item, &st.ev) {
		pre = &st.ev
	}
	if pre != nil {
		sub, auditID, stage, content = pre.subject(), pre.str[slotAuditID], pre.str[slotStage], pre.contentHash()
	} else {
		if err := st.full.Decode(cluster, item); err != nil {
			return nil, 0, err
		}
		sub, auditID, stage, content = st.full.Subject(), string(st.full.AuditID), string(st.full.Stage), st.full.Hash
	}
	// The key is "<cluster>/<subject>", as pipeline.MessageKey builds it.
	start := len(*arena)
	*arena = append(*arena, cluster...)
	*arena = append(*arena, '/')
	*arena = append(*arena, sub...)
	key := (*arena)[start:len(*arena):len(*arena)]
	return key, dedupKey(cluster, auditID, stage, content), nil
}
