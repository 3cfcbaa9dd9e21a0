package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/cloud"
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
	// Rejected names the first MaxRejectionsListed events refused, by
	// index in the batch; RejectedCount counts them all, and
	// RejectedReasons by reason. The list is bounded so that a batch of
	// many bad items costs no memory per item beyond the cap.
	Rejected        []Rejection
	RejectedCount   int
	RejectedReasons map[string]int
}

// batchState is the scratch space of one batch, pooled across requests.
type batchState struct {
	items []([]byte)
	msgs  []pipeline.Message
	keys  []uint64
	dup   []bool
	seen  map[uint64]struct{}
	ev    pipeline.Event
	// v1beta1 reports a list sent as audit.k8s.io/v1beta1: its items are
	// rewritten as v1 even when they do not name a version themselves.
	v1beta1 bool
	// annotated reports items that passed through cloud.Annotate on a
	// provider path, so that their auditpipe.io/ annotations are ours.
	// Otherwise any such annotation came with the request and is dropped:
	// detectors trust them (broad-selector stays quiet on a GKE event whose
	// query string was lost), so a webhook caller must not set them.
	annotated bool
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
	st.items, st.msgs, st.keys, st.dup = st.items[:0], st.msgs[:0], st.keys[:0], st.dup[:0]
	clear(st.seen)
	st.ev.Reset()
	st.v1beta1, st.annotated = false, false
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
	return h.ingestBatch(ctx, cluster, items, st)
}

// IngestAnnotated is Ingest for items whose auditpipe.io/ annotations are
// auditpipe's own: events a provider path converted and annotated with
// cloud.Annotate (which drops any the provider's payload carried), and log
// files an operator replays, whose provider exports auditlog converts the
// same way. Ingest drops such annotations instead.
func (h *Handler) IngestAnnotated(ctx context.Context, cluster string, items [][]byte) (Result, error) {
	if err := ValidateCluster(cluster); err != nil {
		return Result{}, err
	}
	st := h.getState()
	defer h.putState(st)
	st.annotated = true
	return h.ingestBatch(ctx, cluster, items, st)
}

// ingestBatch is Ingest with the caller's scratch state: the webhook and
// Firehose paths already hold one and have validated the cluster.
func (h *Handler) ingestBatch(ctx context.Context, cluster string, items [][]byte, st *batchState) (Result, error) {
	var res Result
	h.m.batchEvents.Observe(float64(len(items)))
	reject := func(i int, reason string, err error) {
		res.RejectedCount++
		if res.RejectedReasons == nil {
			res.RejectedReasons = make(map[string]int, 2)
		}
		res.RejectedReasons[reason]++
		h.m.eventsRejected.WithLabelValues(reason).Inc()
		if len(res.Rejected) < MaxRejectionsListed {
			res.Rejected = append(res.Rejected, Rejection{Index: i, Reason: reason, Error: rejectionError(err)})
		}
	}
	// Keys of one batch share an arena: one allocation instead of one per
	// event. It is not pooled, since the producer may still hold the keys
	// after a cancelled Produce returns.
	arena := make([]byte, 0, len(items)*(len(cluster)+48))
	limit := h.cfg.MaxEventBytes
	for i, item := range items {
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
				reject(i, ReasonMalformed, err)
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
		// Decoded as detect will decode it: what is keyed and validated
		// is what is forwarded.
		if err := auditjson.Decode(&st.ev, cluster, item); err != nil {
			reject(i, ReasonMalformed, err)
			continue
		}
		if !st.annotated && hasOwnAnnotation(st.ev.Annotations) {
			out, err := cloud.Annotate(item)
			if err == nil {
				err = auditjson.Decode(&st.ev, cluster, out)
			}
			if err != nil {
				reject(i, ReasonMalformed, fmt.Errorf("dropping auditpipe.io/ annotations: %w", err))
				continue
			}
			item = out
			h.m.forgedAnnotations.Inc()
		}
		if err := validateEvent(&st.ev.Event); err != nil {
			reject(i, ReasonInvalid, err)
			continue
		}
		if st.v1beta1 || st.ev.V1beta1 {
			out, err := json.Marshal(&st.ev.Event)
			if err != nil {
				reject(i, ReasonMalformed, fmt.Errorf("converting v1beta1 event: %w", err))
				continue
			}
			item = out
		}
		key, dk := keyOf(cluster, &st.ev, &arena)
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
	h.m.events.WithLabelValues("rejected").Add(float64(res.RejectedCount))

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

// keyOf returns an event's message key, "<cluster>/<subject>" as
// pipeline.MessageKey builds it (in the batch's arena), and its
// deduplication key.
func keyOf(cluster string, ev *pipeline.Event, arena *[]byte) ([]byte, uint64) {
	start := len(*arena)
	*arena = append(*arena, cluster...)
	*arena = append(*arena, '/')
	*arena = append(*arena, ev.Subject()...)
	key := (*arena)[start:len(*arena):len(*arena)]
	return key, dedupKey(cluster, string(ev.AuditID), string(ev.Stage), ev.Hash())
}

// hasOwnAnnotation reports whether annotations has a key under
// cloud.AnnotationPrefix.
func hasOwnAnnotation(annotations map[string]string) bool {
	for k := range annotations {
		if strings.HasPrefix(k, cloud.AnnotationPrefix) {
			return true
		}
	}
	return false
}
