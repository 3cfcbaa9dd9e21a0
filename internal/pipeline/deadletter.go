package pipeline

import "context"

// Dead-letter reasons, the label values of processor.MetricDetectDLQ. Fixed and few
// so the series stay bounded.
const (
	// ReasonDecode: the record is not an audit event.
	ReasonDecode = "decode"
	// ReasonOversized: the record exceeds processor.Config.MaxRecordBytes.
	ReasonOversized = "oversized"
	// ReasonRejected: the sink refused the record's rows permanently.
	ReasonRejected = "rejected"
)

// DeadLetter is a record that can never be stored, with the reason.
type DeadLetter struct {
	Record Record
	Reason string
	Err    error
}

// DeadLetterSink keeps records detect gives up on, so an operator can
// inspect and replay them. Write returns nil only once every letter is
// durable; an error is retried like a sink error, and the batch's offsets
// are not committed until it succeeds.
type DeadLetterSink interface {
	WriteDeadLetters(ctx context.Context, dls []DeadLetter) error
}
