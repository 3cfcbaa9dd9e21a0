package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/cloud"
	"github.com/auditpipe/auditpipe/internal/cloud/eks"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Amazon EKS writes kube-apiserver's audit log to CloudWatch Logs; a
// subscription filter hands it to Kinesis Data Firehose, whose HTTP
// endpoint destination POSTs it to /firehose/{cluster}. This file speaks
// Firehose's side of that protocol ("HTTP Endpoint Delivery Request and
// Response Specifications"):
//
//   - The answer is always Firehose's JSON ({"requestId", "timestamp",
//     "errorMessage"}), uncompressed, with a Content-Length.
//   - 200 means every event is durable. Firehose treats 413 as a permanent
//     failure (the batch is dropped, not even written to the error bucket)
//     and retries every other status with backoff for the stream's retry
//     duration, then writes the batch to its S3 backup.
//   - So what retrying can fix (Kafka down: 503; ingest saturated: 429; a
//     body too slow: 408; a bad access key: 401) is answered with a
//     retryable status, and the redelivery, which carries the same request
//     id and records, is deduplicated event by event.
//   - What retrying cannot fix inside a well-formed request (a record that
//     is not gzip or JSON, an event that fails validation, log events of a
//     stream that is not an audit stream) is counted, logged with the
//     request id and left out, and the rest of the batch answered 200
//     with an errorMessage saying what was left out. Answering an error
//     would have Firehose resend the whole batch for up to two hours,
//     holding back every newer audit event behind it, and then park it
//     in S3 anyway: a poison record is counted and skipped, as a Kafka
//     consumer would (auditpipe_ingest_firehose_records_total,
//     auditpipe_ingest_events_rejected_total).
//   - A body that is not a Firehose request at all is answered 400
//     (Firehose never sends one; if it did, its retries end in the S3
//     backup, where the batch can be inspected). A request beyond the size
//     limits is answered 413, as Firehose's spec reserves it for.

// Firehose's headers.
const (
	HeaderFirehoseRequestID = "X-Amz-Firehose-Request-Id"
	HeaderFirehoseAccessKey = "X-Amz-Firehose-Access-Key"
	HeaderFirehoseSourceARN = "X-Amz-Firehose-Source-Arn"
)

// MetricFirehoseRecords counts Firehose records by what they held: data
// (audit events), control (CloudWatch Logs' CONTROL_MESSAGE), other_stream
// (a log stream of the cluster's log group that is not an audit stream),
// rejected (a record that could not be decoded).
const MetricFirehoseRecords = "auditpipe_ingest_firehose_records_total"

// Results in MetricFirehoseRecords.
const (
	FirehoseRecordData        = "data"
	FirehoseRecordControl     = "control"
	FirehoseRecordOtherStream = "other_stream"
	FirehoseRecordRejected    = "rejected"
)

// firehoseDecodedFactor bounds what one Firehose request may decompress
// to, as a multiple of max-body-bytes. CloudWatch Logs gzips every record
// and audit JSON compresses about tenfold, so a body at the limit holds
// about ten times the limit of events; they are produced in chunks of at
// most max-body-bytes and max-events-per-request, each charged to the
// in-flight budget like a webhook request, so memory stays bounded. The
// factor bounds the CPU a body of gzip bombs costs (gzip expands up to
// about 1000:1): beyond it the request is refused with 413.
const firehoseDecodedFactor = 16

// maxRequestIDBytes cuts the request id echoed in answers and logs: a
// Firehose id is a GUID, anything longer is not Firehose's.
const maxRequestIDBytes = 128

type firehoseMetrics struct {
	records *prometheus.CounterVec
}

func newFirehoseMetrics(reg prometheus.Registerer) (*firehoseMetrics, error) {
	m := &firehoseMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricFirehoseRecords,
			Help: "Kinesis Data Firehose records received, by what they held (data, control, other_stream, rejected)."}, []string{"result"}),
	}
	for _, r := range []string{FirehoseRecordData, FirehoseRecordControl, FirehoseRecordOtherStream, FirehoseRecordRejected} {
		m.records.WithLabelValues(r)
	}
	if err := registerInto(reg, &m.records); err != nil {
		return nil, fmt.Errorf("registering firehose metrics: %w", err)
	}
	return m, nil
}

// FirehoseResponse is the body of every answer on the Firehose path, as
// Firehose's spec requires it.
type FirehoseResponse struct {
	RequestID    string `json:"requestId"`
	Timestamp    int64  `json:"timestamp"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// isFirehosePath reports whether path is served by serveFirehose, whose
// callers authenticate with Firehose's access key.
func isFirehosePath(path string) bool {
	return path == "/firehose" || strings.HasPrefix(path, "/firehose/")
}

// firehoseRequestID is the request's X-Amz-Firehose-Request-Id, cut to a
// sane length; the body's requestId, the same by the spec, replaces it
// once the body is read.
func firehoseRequestID(r *http.Request) string {
	return cutUTF8(r.Header.Get(HeaderFirehoseRequestID), maxRequestIDBytes)
}

func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeFirehose writes a Firehose answer. It is also how the
// authentication layer refuses a Firehose caller.
func writeFirehose(w http.ResponseWriter, code int, requestID, msg string, retryAfter time.Duration) {
	body, _ := json.Marshal(FirehoseResponse{RequestID: requestID, Timestamp: time.Now().UnixMilli(), ErrorMessage: cutUTF8(msg, eks.MaxErrorMessageBytes)})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if (code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests) && retryAfter > 0 {
		// Firehose keeps its own backoff; the header is for anyone else.
		h.Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func (h *Handler) replyFirehose(w http.ResponseWriter, code int, requestID, msg string) {
	h.m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	writeFirehose(w, code, requestID, msg, h.cfg.RetryAfter)
}

// firehoseBatch gathers the audit events of one Firehose request into
// chunks, each within max-events-per-request and max-body-bytes, and makes
// each durable before the next is decoded.
type firehoseBatch struct {
	h       *Handler
	r       *http.Request
	cluster string
	items   [][]byte
	bytes   int64
	// decoded is what the request's records decompressed to so far.
	decoded    int64
	maxDecoded int64
	res        Result
	rejected   int // records and events left out
	firstErr   string
}

// errFirehoseTooLarge marks a request that decompresses beyond
// firehoseDecodedFactor × max-body-bytes.
var errFirehoseTooLarge = errors.New("firehose request too large")

// add queues one audit event, flushing the chunk first if it would not
// fit.
func (b *firehoseBatch) add(ev []byte) error {
	if len(b.items) > 0 && (len(b.items)+1 > b.h.cfg.MaxEventsPerRequest || b.bytes+int64(len(ev)) > b.h.cfg.MaxBodyBytes) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.items = append(b.items, ev)
	b.bytes += int64(len(ev))
	return nil
}

// flush makes the queued events durable, charging them to the in-flight
// budget as a webhook request of that size is charged.
func (b *firehoseBatch) flush() error {
	if len(b.items) == 0 {
		return nil
	}
	charged, err := b.h.chargeItems(len(b.items), int(b.bytes))
	if err != nil {
		return fmt.Errorf("%w: %w", errBudget, err)
	}
	defer b.h.lim.releaseBytes(charged)
	st := b.h.getState()
	defer b.h.putState(st)
	st.annotated = true // records went through cloud.Annotate
	res, err := b.h.ingestBatch(b.r.Context(), b.cluster, b.items, st)
	b.res.Accepted += res.Accepted
	b.res.Produced += res.Produced
	b.res.Deduplicated += res.Deduplicated
	b.res.Truncated += res.Truncated
	b.res.RejectedCount += res.RejectedCount
	if res.RejectedCount > 0 {
		b.reject(fmt.Sprintf("%d events rejected, first: %s", res.RejectedCount, res.Rejected[0].Error), 0)
	}
	clear(b.items)
	b.items, b.bytes = b.items[:0], 0
	return err
}

// reject notes n records or events left out; msg describes the first.
func (b *firehoseBatch) reject(msg string, n int) {
	b.rejected += n
	if b.firstErr == "" {
		b.firstErr = msg
	}
}

func (h *Handler) serveFirehose(w http.ResponseWriter, r *http.Request) {
	reqID := firehoseRequestID(r)
	cluster, code, err := resolveCluster(r, h.cfg.DefaultCluster)
	if err != nil {
		reason := ReasonMalformed
		if code == http.StatusForbidden {
			reason = ReasonForbidden
		}
		h.m.rejected.WithLabelValues(reason).Inc()
		h.replyFirehose(w, code, reqID, err.Error())
		return
	}
	body, release, ok := h.receive(w, r, func(code int, reason string, err error) {
		h.m.rejected.WithLabelValues(reason).Inc()
		h.replyFirehose(w, code, reqID, err.Error())
	})
	if !ok {
		return
	}
	defer release()

	req, err := eks.ParseFirehoseRequest(body)
	if err != nil {
		h.m.rejected.WithLabelValues(ReasonMalformed).Inc()
		h.log.Warn("refusing Firehose request", "request_id", reqID, "cluster", cluster, "err", err)
		h.replyFirehose(w, http.StatusBadRequest, reqID, err.Error())
		return
	}
	reqID = cutUTF8(req.RequestID, maxRequestIDBytes)
	b := &firehoseBatch{h: h, r: r, cluster: cluster, maxDecoded: firehoseDecodedFactor * h.cfg.MaxBodyBytes}
	source := cutUTF8(r.Header.Get(HeaderFirehoseSourceARN), 256)
	err = h.firehoseRecords(b, req, source)
	if err == nil {
		err = b.flush()
	}
	if err != nil {
		var code int
		var msg string
		switch {
		case errors.Is(err, errFirehoseTooLarge):
			h.m.rejected.WithLabelValues(ReasonBodyTooLarge).Inc()
			code, msg = http.StatusRequestEntityTooLarge, err.Error()
		case errors.Is(err, errBudget):
			h.m.rejected.WithLabelValues(ReasonTooManyRequests).Inc()
			code, msg = http.StatusTooManyRequests, err.Error()
		case pipeline.IsPermanent(err):
			h.log.Error("producing Firehose events", "request_id", reqID, "cluster", cluster, "err", err)
			code, msg = http.StatusInternalServerError, "producing events: "+err.Error()
		default:
			h.log.Warn("producing Firehose events, Firehose will retry", "request_id", reqID, "cluster", cluster, "err", err)
			code, msg = http.StatusServiceUnavailable, "event store unavailable, retry later: "+err.Error()
		}
		h.replyFirehose(w, code, reqID, msg)
		return
	}
	if b.rejected > 0 || b.res.RejectedCount > 0 {
		msg := fmt.Sprintf("left out %d records and %d events that can never be accepted (%d events accepted); first: %s",
			b.rejected, b.res.RejectedCount, b.res.Accepted, b.firstErr)
		h.log.Warn("rejecting Firehose records", "request_id", reqID, "cluster", cluster, "records", req.Len(),
			"rejected_records", b.rejected, "rejected_events", b.res.RejectedCount, "accepted", b.res.Accepted, "first", b.firstErr)
		h.replyFirehose(w, http.StatusOK, reqID, msg)
		return
	}
	h.replyFirehose(w, http.StatusOK, reqID, "")
}

// firehoseRecords decodes every record of req into b. A record that
// cannot be decoded is counted and left out; the error returned is one
// the whole request fails with (too large, the budget, the producer).
func (h *Handler) firehoseRecords(b *firehoseBatch, req *eks.FirehoseRequest, source string) error {
	var raw, plain []byte
	for i := range req.Len() {
		var err error
		if raw, err = req.Record(i, raw); err != nil {
			h.fh.records.WithLabelValues(FirehoseRecordRejected).Inc()
			b.reject(err.Error(), 1)
			continue
		}
		data := raw
		if eks.IsGzip(raw) {
			// Firehose's own decompression is off: the record is
			// CloudWatch Logs' gzip payload.
			limit := min(h.cfg.MaxBodyBytes, b.maxDecoded-b.decoded)
			plain, err = eks.Gunzip(raw, limit, plain)
			if errors.Is(err, eks.ErrTooLarge) && limit < h.cfg.MaxBodyBytes {
				return fmt.Errorf("%w: its records decompress to more than %d bytes (%d × max-body-bytes): lower the Firehose stream's buffering size",
					errFirehoseTooLarge, b.maxDecoded, firehoseDecodedFactor)
			}
			if err != nil {
				h.fh.records.WithLabelValues(FirehoseRecordRejected).Inc()
				b.reject(fmt.Sprintf("record %d: %v", i, err), 1)
				continue
			}
			data = plain
		}
		b.decoded += int64(len(data))
		if b.decoded > b.maxDecoded {
			return fmt.Errorf("%w: its records decompress to more than %d bytes (%d × max-body-bytes): lower the Firehose stream's buffering size",
				errFirehoseTooLarge, b.maxDecoded, firehoseDecodedFactor)
		}
		if err := h.firehoseRecord(b, i, data, source); err != nil {
			return err
		}
	}
	return nil
}

// firehoseRecord queues the events of one decompressed record: a
// CloudWatch Logs subscription payload, or, with Firehose's message
// extraction on, the audit events themselves.
func (h *Handler) firehoseRecord(b *firehoseBatch, i int, data []byte, source string) error {
	if eks.LooksLikeSubscription(data) {
		sub, _, err := eks.ParseSubscription(data)
		if err == nil {
			return h.firehoseSubscription(b, i, &sub, source)
		}
		// Not a payload after all: perhaps an extracted event that
		// mentions both names. It is tried as such below.
	}
	ours, err := cloud.Members(cloud.AnnotationSource, "eks", eks.AnnotationFirehoseARN, source)
	if err != nil {
		return err
	}
	n := 0
	err = eks.SplitMessages(data, func(msg []byte) error {
		n++
		ev, err := cloud.AnnotateMembers(msg, ours)
		if err != nil {
			// Not an object: the validator would refuse it anyway, and
			// it says so in the event's own terms.
			ev = msg
		}
		return b.add(ev)
	})
	var bad error
	switch {
	case errors.Is(err, eks.ErrMalformed):
		bad = err
	case err != nil:
		return err
	case n == 0:
		bad = errors.New("empty record")
	}
	if bad != nil {
		h.fh.records.WithLabelValues(FirehoseRecordRejected).Inc()
		b.reject(fmt.Sprintf("record %d: %v", i, bad), 1)
		return nil
	}
	h.fh.records.WithLabelValues(FirehoseRecordData).Inc()
	return nil
}

func (h *Handler) firehoseSubscription(b *firehoseBatch, i int, sub *eks.Subscription, source string) error {
	switch {
	case sub.MessageType == eks.ControlMessage:
		h.fh.records.WithLabelValues(FirehoseRecordControl).Inc()
		return nil
	case sub.MessageType != eks.DataMessage:
		h.fh.records.WithLabelValues(FirehoseRecordRejected).Inc()
		b.reject(fmt.Sprintf("record %d: unknown messageType %.64q", i, sub.MessageType), 1)
		return nil
	case !eks.IsAuditStream(sub.LogStream):
		// The cluster's log group also holds the apiserver's, the
		// authenticator's, the scheduler's and the controller
		// manager's own logs, when their types are enabled and the
		// subscription filter lets them through.
		h.fh.records.WithLabelValues(FirehoseRecordOtherStream).Inc()
		return nil
	}
	h.fh.records.WithLabelValues(FirehoseRecordData).Inc()
	// The same annotations for every event of the payload, encoded once.
	ours, err := cloud.Members(
		cloud.AnnotationSource, "eks",
		eks.AnnotationClusterName, eks.ClusterFromLogGroup(sub.LogGroup),
		eks.AnnotationAccountID, sub.Owner,
		eks.AnnotationLog, sub.LogGroup+":"+sub.LogStream,
		eks.AnnotationFirehoseARN, source,
	)
	if err != nil {
		return err
	}
	for _, le := range sub.LogEvents {
		msg := eks.Compact(le.Message)
		ev, err := cloud.AnnotateMembers(msg, ours)
		if err != nil {
			ev = msg
		}
		if err := b.add(ev); err != nil {
			return err
		}
	}
	return nil
}
