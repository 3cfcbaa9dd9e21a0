package ingest

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/cloud/gke"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// MetricPubSubMessages counts Pub/Sub push messages by result: accepted
// (durable, or already durable), skipped (a LogEntry that is not a
// Kubernetes audit entry, acknowledged and dropped), malformed (answered
// 400: Pub/Sub redelivers it until its dead-letter policy or retention
// ends), retry (answered 429/503: Kafka or ingest could not take it yet),
// failed (answered 500).
const MetricPubSubMessages = "auditpipe_ingest_pubsub_messages_total"

// Results in MetricPubSubMessages.
const (
	PubSubAccepted  = "accepted"
	PubSubSkipped   = "skipped"
	PubSubMalformed = "malformed"
	PubSubRetry     = "retry"
	PubSubFailed    = "failed"
)

// ReasonNotKubernetesAudit is MetricEventsRejected's reason for a Pub/Sub
// message whose LogEntry is not a Kubernetes audit entry.
const ReasonNotKubernetesAudit = "not_kubernetes_audit"

// registerPubSub serves GKE's audit logs as a Pub/Sub push subscription
// delivers them: POST /pubsub/{cluster}, one LogEntry per request. The
// cluster is the credential's, as for /audit.
func (h *Handler) registerPubSub(reg prometheus.Registerer) error {
	h.pubsubMessages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricPubSubMessages,
		Help: "Pub/Sub push messages by result (accepted, skipped, malformed, retry, failed).",
	}, []string{"result"})
	for _, r := range []string{PubSubAccepted, PubSubSkipped, PubSubMalformed, PubSubRetry, PubSubFailed} {
		h.pubsubMessages.WithLabelValues(r)
	}
	if err := registerInto(reg, &h.pubsubMessages); err != nil {
		return fmt.Errorf("registering pubsub metrics: %w", err)
	}
	h.mux.HandleFunc("POST "+PubSubPathPrefix, h.servePubSub)
	h.mux.HandleFunc("POST "+PubSubPathPrefix+"/{cluster}", h.servePubSub)
	return nil
}

// servePubSub answers one push request. Pub/Sub acknowledges the message
// on 102, 200, 201, 202 or 204 and redelivers it, with backoff, on
// anything else, until the subscription's retention (7 days by default)
// or dead-letter policy ends. So:
//   - 200 only once Kafka acknowledged the event (or the deduplication
//     window shows it durable: a redelivery);
//   - 503 (or 429) when Kafka or ingest cannot take it now: redelivered;
//   - 400 for a message that can never succeed (not a push envelope, bad
//     base64, a LogEntry that does not convert): redelivered until the
//     dead-letter topic takes it (the README's setup configures one with 5
//     attempts), so a poison message is parked rather than lost or
//     retried for a week;
//   - 200 for a LogEntry that is not a Kubernetes audit entry (a sink
//     filter broader than needed): counted as skipped, since no retry can
//     make it one.
func (h *Handler) servePubSub(w http.ResponseWriter, r *http.Request) {
	cluster, code, err := resolveCluster(r, h.cfg.DefaultCluster)
	if err != nil {
		reason := ReasonMalformed
		if code == http.StatusForbidden {
			reason = ReasonForbidden
		}
		h.pubsubMessages.WithLabelValues(PubSubMalformed).Inc()
		h.refuse(w, code, reason, err)
		return
	}
	body, release, ok := h.admitBody(w, r)
	if !ok {
		h.pubsubMessages.WithLabelValues(PubSubRetry).Inc()
		return
	}
	defer release()

	push, data, err := gke.DecodePush(body)
	if err != nil {
		h.pubsubMessages.WithLabelValues(PubSubMalformed).Inc()
		h.log.Warn("decoding pub/sub push, answering 400", "cluster", cluster, "subscription", push.Subscription, "message_id", push.ID(), "err", err)
		h.refuse(w, http.StatusBadRequest, ReasonMalformed, err)
		return
	}
	ev, err := gke.Convert(data)
	if errors.Is(err, gke.ErrNotKubernetesAudit) {
		h.pubsubMessages.WithLabelValues(PubSubSkipped).Inc()
		h.m.eventsRejected.WithLabelValues(ReasonNotKubernetesAudit).Inc()
		h.log.Debug("skipping pub/sub message that is not a kubernetes audit entry", "cluster", cluster, "subscription", push.Subscription, "message_id", push.ID(), "err", err)
		h.reply(w, http.StatusOK, Response{Error: "skipped: " + err.Error()})
		return
	}
	if err != nil {
		h.pubsubMessages.WithLabelValues(PubSubMalformed).Inc()
		h.m.eventsRejected.WithLabelValues(ReasonMalformed).Inc()
		h.log.Warn("converting pub/sub LogEntry, answering 400", "cluster", cluster, "subscription", push.Subscription, "message_id", push.ID(), "err", err)
		h.reply(w, http.StatusBadRequest, Response{RejectedCount: 1, Rejected: []Rejection{{Index: 0, Reason: ReasonMalformed, Error: rejectionError(err)}}, Error: "converting LogEntry: " + rejectionError(err)})
		return
	}

	res, err := h.IngestAnnotated(r.Context(), cluster, [][]byte{ev})
	switch {
	case err != nil && pipeline.IsPermanent(err):
		h.pubsubMessages.WithLabelValues(PubSubFailed).Inc()
		h.log.Error("producing pub/sub event", "cluster", cluster, "message_id", push.ID(), "err", err)
		h.reply(w, http.StatusInternalServerError, Response{Error: "producing events: " + err.Error()})
	case err != nil:
		h.pubsubMessages.WithLabelValues(PubSubRetry).Inc()
		h.log.Warn("producing pub/sub event, pub/sub will redeliver", "cluster", cluster, "message_id", push.ID(), "err", err)
		h.reply(w, http.StatusServiceUnavailable, Response{Error: "event store unavailable, retry later: " + err.Error()})
	case res.RejectedCount > 0:
		h.pubsubMessages.WithLabelValues(PubSubMalformed).Inc()
		h.log.Warn("rejecting pub/sub event, answering 400", "cluster", cluster, "message_id", push.ID(), "reason", res.Rejected[0].Reason, "err", res.Rejected[0].Error)
		h.reply(w, http.StatusBadRequest, Response{Rejected: res.Rejected, RejectedCount: res.RejectedCount, Error: "1 of 1 events rejected"})
	default:
		h.pubsubMessages.WithLabelValues(PubSubAccepted).Inc()
		h.reply(w, http.StatusOK, Response{Accepted: res.Accepted})
	}
}

// admitBody applies /audit's admission to a request (receive: the
// declared length, the processing and reader slots, the byte budget, the
// body rate and size limits), then one event's charge. It answers the
// request itself when it refuses it (ok false); otherwise release frees
// what the request holds.
func (h *Handler) admitBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), ok bool) {
	refuse := func(code int, reason string, err error) { h.refuse(w, code, reason, err) }
	body, releaseBody, ok := h.receive(w, r, refuse)
	if !ok {
		return nil, nil, false
	}
	// The LogEntry decoded from the body and the event converted from it
	// are each about the body's size again: chargeItems counts one copy.
	charged, err := h.chargeItems(1, 2*len(body))
	if err != nil {
		releaseBody()
		refuse(http.StatusTooManyRequests, ReasonTooManyRequests, err)
		return nil, nil, false
	}
	return body, func() {
		h.lim.releaseBytes(charged)
		releaseBody()
	}, true
}
