package auditlog

import (
	"github.com/auditpipe/auditpipe/internal/cloud"
	"github.com/auditpipe/auditpipe/internal/cloud/eks"
	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// cloudWatch hands fn the audit events of data when it holds one of the
// forms EKS audit logs leave CloudWatch Logs in:
//
//   - a subscription payload ({"messageType": "DATA_MESSAGE", …,
//     "logEvents": [{"message": <event>}]}), or several back to back, as a
//     Firehose-to-S3 object holds them once its gzip members are undone;
//   - the JSON output of `aws logs filter-log-events` or `aws logs
//     get-log-events` ({"events": [{"message": <event>}], …}), pretty-printed
//     as the CLI prints it (Lines hands over such a file whole) or compacted;
//   - a line of an export task's object ("<RFC 3339 timestamp> <event>").
//
// It reports false, having called nothing, for anything else, including
// malformed JSON: the caller's own path reports that. CONTROL_MESSAGEs, the
// log events of streams that are not kube-apiserver audit streams, and
// export lines that hold no JSON object (the apiserver's own log, exported
// from the same log group) are skipped. Events carry what the format says
// of their origin under auditpipe.io/ annotations (cloud.Annotate), as
// those delivered through Firehose do. Items are numbered by log event,
// from 1; an export line is a plain line (item 0).
func cloudWatch(line int, data []byte, fn func(line, item int, data []byte) error) (bool, error) {
	switch {
	case len(data) == 0:
		return false, nil
	case data[0] == '{' && eks.LooksLikeSubscription(data):
		return cloudWatchPayloads(line, data, fn)
	case data[0] == '{' && eks.LooksLikeLogEventsOutput(data):
		evs, err := eks.ParseLogEventsOutput(data)
		if err != nil {
			return false, nil
		}
		for i, le := range evs {
			if le.LogStream != "" && !eks.IsAuditStream(le.LogStream) {
				continue
			}
			log := ""
			if le.LogStream != "" {
				log = ":" + le.LogStream
			}
			if err := fn(line, i+1, annotate(le.Message, cloud.AnnotationSource, "eks", eks.AnnotationLog, log)); err != nil {
				return true, err
			}
		}
		return true, nil
	case jsonscan.IsDigit(data[0]):
		msg, ok := eks.ParseExportLine(data)
		if !ok {
			return false, nil
		}
		if len(msg) == 0 || msg[0] != '{' {
			return true, nil
		}
		return true, fn(line, 0, annotate(msg, cloud.AnnotationSource, "eks"))
	}
	return false, nil
}

// cloudWatchPayloads reads the subscription payloads of data. Payloads are
// decoded before any event is handed on, so that data that is not one
// reports false having called nothing; a corrupt payload after good ones
// is handed on whole, for the caller's decoder to report.
func cloudWatchPayloads(line int, data []byte, fn func(line, item int, data []byte) error) (bool, error) {
	var subs []eks.Subscription
	rest := data
	for len(rest) > 0 {
		sub, r, err := eks.ParseSubscription(rest)
		if err == nil && sub.MessageType != eks.DataMessage && sub.MessageType != eks.ControlMessage {
			// CloudWatch sends no other type: an object that only
			// looks like a payload.
			err = eks.ErrMalformed
		}
		if err != nil {
			if len(subs) == 0 {
				return false, nil
			}
			break
		}
		subs, rest = append(subs, sub), r
	}
	item := 0
	for _, sub := range subs {
		if sub.MessageType != eks.DataMessage || !eks.IsAuditStream(sub.LogStream) {
			continue
		}
		kv := []string{
			cloud.AnnotationSource, "eks",
			eks.AnnotationClusterName, eks.ClusterFromLogGroup(sub.LogGroup),
			eks.AnnotationAccountID, sub.Owner,
			eks.AnnotationLog, sub.LogGroup + ":" + sub.LogStream,
		}
		for _, le := range sub.LogEvents {
			item++
			if err := fn(line, item, annotate(le.Message, kv...)); err != nil {
				return true, err
			}
		}
	}
	if len(rest) > 0 {
		item++
		return true, fn(line, item, rest)
	}
	return true, nil
}

// annotate is cloud.Annotate on a compacted event, or the message as it is
// when it is not a JSON object: the caller's decoder names the problem.
func annotate(msg []byte, kv ...string) []byte {
	msg = eks.Compact(msg)
	if out, err := cloud.Annotate(msg, kv...); err == nil {
		return out
	}
	return msg
}
