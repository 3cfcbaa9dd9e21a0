package auditjson

import (
	"errors"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// PeekStage reports the stage Decode would decode from data, without
// decoding the event: it validates data as one JSON value, as Decode does,
// and reads only the top-level kind, apiVersion and stage members, matched
// by the event decoder's own code (eventDecoder.member: exact names, else
// case-insensitively, escaped names unquoted; a repeated member wins over
// the ones before it, a null one leaves them). Every other member is
// skipped with the validator. ok is false when it cannot be sure: data is
// not valid JSON or not an object, a stage, kind or apiVersion value is
// escaped (PeekStage does not unquote) or not a string (Decode fails), or
// kind or apiVersion name something Decode refuses. When ok, Decode fails (a member of the wrong
// type: PeekStage does not look at them) or yields that stage; Decode
// yields "" for an event without one.
//
// Like the decoder it is linear in the input and bounds nesting by
// jsonscan.MaxDepth.
func PeekStage(data []byte) (auditv1.Stage, bool) {
	stage, ok := peekStage(data, "")
	return auditv1.Stage(stage), ok
}

// IsRequestReceived reports whether PeekStage would report stage
// RequestReceived, giving up (false) at the first stage member that holds
// anything else: what a reader that skips RequestReceived events calls on
// every line, for which the other stages cost a few members' scan rather
// than a validation of the whole event.
func IsRequestReceived(data []byte) bool {
	stage, ok := peekStage(data, auditv1.StageRequestReceived)
	return ok && string(stage) == string(auditv1.StageRequestReceived)
}

// peekStage is PeekStage, the stage returned as it is in data (so that
// IsRequestReceived allocates nothing); with only set it gives up as soon
// as a stage member holds a value other than only.
func peekStage(data []byte, only auditv1.Stage) ([]byte, bool) {
	d := eventDecoder{Scanner: jsonscan.Scanner{Data: data}}
	if c, err := d.Peek(); err != nil || c != '{' {
		return nil, false
	}
	// The last value of each member seen, as it is in data (plain
	// content, no escapes); nil until one is.
	var kind, apiVersion, stage []byte
	next := 0
	more, err := d.ObjectStart()
	for more && err == nil {
		var f int
		if f, err = d.member(eventMembers, &next); err != nil {
			return nil, false
		}
		switch f {
		case evKind:
			err = peekString(&d, &kind)
		case evAPIVersion:
			err = peekString(&d, &apiVersion)
		case evStage:
			if err = peekString(&d, &stage); err == nil && only != "" && stage != nil && string(stage) != string(only) {
				return nil, false
			}
		default:
			err = d.Skip(1)
		}
		if err != nil {
			return nil, false
		}
		more, err = d.ObjectNext()
	}
	if err != nil {
		return nil, false
	}
	d.WS()
	if d.Pos < len(data) {
		return nil, false
	}
	// checkTypeMeta's test for an Event, without converting the values
	// to strings (which would allocate: its error quotes them).
	switch string(apiVersion) {
	case "", AuditAPIVersion, AuditAPIVersionV1beta1:
	default:
		return nil, false
	}
	if string(kind) != "" && string(kind) != KindEvent {
		return nil, false
	}
	return stage, true
}

// errPeekUnsure stops peekStage at a value it does not read as the decoder
// would without unquoting or a type error: an escaped string, or one of
// another type.
var errPeekUnsure = errors.New("auditjson: value the peek does not read")

// peekString reads a string member's value as the decoder's string fields
// do (internString): a string replaces *dst, null leaves it. A string
// that needs unquoting, or a value of another type, is errPeekUnsure.
func peekString(d *eventDecoder, dst *[]byte) error {
	switch d.Data[d.Pos] {
	case '"':
		raw, unquote, err := d.Content()
		if err != nil {
			return err
		}
		if unquote {
			return errPeekUnsure
		}
		// Non-nil even when empty (it slices data): "stage":"" is a
		// stage, which the only check must see.
		*dst = raw
		return nil
	case 'n':
		return d.Literal()
	}
	return errPeekUnsure
}
