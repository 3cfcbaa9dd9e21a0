package auditjson

import (
	"errors"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// Why an event did not decode, as DecodeReason names it: a short,
// bounded set, fit for a summary line or a metric label.
const (
	DecodeReasonNotJSON       = "not_json"        // not a JSON object, or malformed JSON
	DecodeReasonTruncated     = "truncated"       // JSON that ends inside a value
	DecodeReasonWrongType     = "wrong_type"      // a field of the wrong JSON type
	DecodeReasonBadTimestamp  = "bad_timestamp"   // a timestamp that is not RFC 3339
	DecodeReasonNotAuditEvent = "not_audit_event" // another kind or apiVersion
	DecodeReasonOther         = "other"
)

// typeMetaError is a kind or apiVersion other than the one expected.
type typeMetaError struct{ msg string }

func (e *typeMetaError) Error() string { return e.msg }

// DecodeReason classifies an error from Decode, DecodeEvent or
// SplitEventList.
func DecodeReason(err error) string {
	var (
		syn *jsonscan.SyntaxError
		typ *jsonscan.TypeError
		ts  *TimestampError
		tse *timestampError
		tm  *typeMetaError
	)
	switch {
	case errors.As(err, &ts):
		return DecodeReasonBadTimestamp
	case errors.As(err, &tm):
		return DecodeReasonNotAuditEvent
	case errors.As(err, &typ), errors.As(err, &tse):
		return DecodeReasonWrongType
	case errors.As(err, &syn):
		if syn.Offset < 0 {
			return DecodeReasonTruncated
		}
		return DecodeReasonNotJSON
	case errors.Is(err, ErrNotJSON):
		return DecodeReasonNotJSON
	}
	return DecodeReasonOther
}
