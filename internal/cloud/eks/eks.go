// Package eks decodes the formats Amazon EKS audit events travel in on
// their way out of AWS: the CloudWatch Logs subscription payload (what a
// subscription filter hands to Kinesis Data Firehose, gzip-compressed),
// the body Firehose POSTs to an HTTP endpoint destination, and the files
// CloudWatch Logs exports (S3 export tasks, `aws logs filter-log-events`
// and `get-log-events` output). It is pure: no I/O, no goroutines. Ingest's
// Firehose endpoint and the log-file reader (internal/auditlog) share it,
// so that a file and a delivery of the same events decode the same way.
//
// Every input is attacker-controlled: every decoder here is one linear walk
// of internal/jsonscan over bytes already bounded by the caller, and gzip
// output is bounded by a limit the caller gives.
package eks

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// Firehose's documented limits on an HTTP endpoint request
// (docs: "HTTP Endpoint Delivery Request and Response Specifications").
const (
	// MaxFirehoseRecords is the schema's maxItems for records: Firehose
	// never sends more in one request, so a body with more is not
	// Firehose speaking.
	MaxFirehoseRecords = 10000
	// MaxFirehoseRecordBytes is the largest record data before base64
	// (1,024,000 bytes); its base64 form is at most 1,365,336 characters.
	MaxFirehoseRecordBytes = 1024000
	// MaxAccessKeyBytes is the most Firehose sends in
	// X-Amz-Firehose-Access-Key.
	MaxAccessKeyBytes = 4096
	// MaxErrorMessageBytes is the schema's maxLength of a response's
	// errorMessage.
	MaxErrorMessageBytes = 8192
)

// Message types of a CloudWatch Logs subscription payload.
const (
	// DataMessage carries log events.
	DataMessage = "DATA_MESSAGE"
	// ControlMessage is CloudWatch Logs checking that the destination is
	// reachable; it carries no log data.
	ControlMessage = "CONTROL_MESSAGE"
)

// AuditStreamPrefix starts the name of every log stream in which EKS
// writes kube-apiserver's audit log (one stream per apiserver instance).
// The cluster's log group (/aws/eks/<cluster>/cluster) also holds the
// api, authenticator, controllerManager and scheduler streams.
const AuditStreamPrefix = "kube-apiserver-audit"

// Annotations auditpipe adds to an EKS event (with cloud.AnnotationSource
// "eks"): what CloudWatch Logs and Firehose say of where it came from. The
// cluster auditpipe files the event under is the one the sender's
// credential names, as for the webhook; these keep the provider's names
// beside it. Each is left out when the format does not carry it (Firehose's
// message extraction strips the log group, stream and account).
const (
	// AnnotationClusterName is the <cluster> of the log group
	// /aws/eks/<cluster>/cluster.
	AnnotationClusterName = "auditpipe.io/eks-cluster-name"
	// AnnotationAccountID is the AWS account id, the payload's owner.
	AnnotationAccountID = "auditpipe.io/eks-account-id"
	// AnnotationLog is "<log group>:<log stream>"; the stream names the
	// apiserver instance (kube-apiserver-audit-<id>).
	AnnotationLog = "auditpipe.io/eks-log"
	// AnnotationFirehoseARN is the delivering Firehose stream's ARN
	// (X-Amz-Firehose-Source-Arn).
	AnnotationFirehoseARN = "auditpipe.io/eks-firehose-arn"
)

// ErrMalformed marks input that is not the format it claims to be;
// retrying it cannot help.
var ErrMalformed = errors.New("malformed")

// ErrTooLarge marks decompressed data beyond the caller's limit.
var ErrTooLarge = errors.New("decompressed data exceeds the limit")

func malformed(doing string, err error) error {
	return fmt.Errorf("%s: %w: %w", doing, ErrMalformed, err)
}

// FirehoseRequest is the body Kinesis Data Firehose POSTs to an HTTP
// endpoint: {"requestId", "timestamp", "records": [{"data": base64}]}.
// Records stay in the body, undecoded, until Record is asked for one, so
// that a request costs a few bytes per record beyond its body.
type FirehoseRequest struct {
	// RequestID is the body's requestId (the same as the
	// X-Amz-Firehose-Request-Id header); the answer must echo it.
	RequestID string
	// Timestamp is when Firehose generated the request, in milliseconds
	// since the epoch; 0 when absent.
	Timestamp int64
	body      []byte
	records   []span
}

// span is one record's data string, as bounds in the body.
type span struct {
	start, end int
	escaped    bool
}

// Len is the number of records.
func (r *FirehoseRequest) Len() int { return len(r.records) }

// Record appends the base64-decoded data of record i to dst[:0] and
// returns it.
func (r *FirehoseRequest) Record(i int, dst []byte) ([]byte, error) {
	s := r.records[i]
	raw := r.body[s.start:s.end]
	if s.escaped {
		// Base64 has no character JSON must escape, but an encoder may
		// still write "\/" for '/'.
		raw = jsonscan.Unquote(nil, raw)
	}
	n := base64.StdEncoding.DecodedLen(len(raw))
	if n > MaxFirehoseRecordBytes+3 {
		return nil, malformed(fmt.Sprintf("decoding record %d", i), fmt.Errorf("%d bytes of base64, more than a Firehose record holds", len(raw)))
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	n, err := base64.StdEncoding.Decode(dst, raw)
	if err != nil {
		return nil, malformed(fmt.Sprintf("decoding record %d", i), fmt.Errorf("data is not base64: %w", err))
	}
	return dst[:n], nil
}

// ParseFirehoseRequest checks body against Firehose's request schema and
// returns the request. requestId and records are required; members
// Firehose may add later are skipped. More than MaxFirehoseRecords
// records, or a record without a string data, is malformed.
func ParseFirehoseRequest(body []byte) (*FirehoseRequest, error) {
	const doing = "decoding Firehose request"
	d := jsonscan.Scanner{Data: body}
	c, err := d.Peek()
	if err != nil {
		return nil, malformed(doing, err)
	}
	if c != '{' {
		return nil, malformed(doing, errors.New("body is not a JSON object"))
	}
	req := &FirehoseRequest{body: body}
	var haveID, haveRecords bool
	more, err := d.ObjectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.Key(); err != nil {
			break
		}
		switch string(key) {
		case "requestId":
			if body[d.Pos] != '"' {
				return nil, malformed(doing, d.Mismatch(1, "requestId", "string"))
			}
			if req.RequestID, err = d.StrString(); err != nil {
				return nil, malformed(doing, err)
			}
			haveID = true
		case "timestamp":
			if c := body[d.Pos]; c != '-' && !jsonscan.IsDigit(c) {
				return nil, malformed(doing, d.Mismatch(1, "timestamp", "int64"))
			}
			num, err := d.Number()
			if err != nil {
				return nil, malformed(doing, err)
			}
			if req.Timestamp, err = strconv.ParseInt(string(num), 10, 64); err != nil {
				return nil, malformed(doing, fmt.Errorf("timestamp %.40q: %w", num, err))
			}
		case "records":
			if body[d.Pos] != '[' {
				return nil, malformed(doing, d.Mismatch(1, "records", "array"))
			}
			if err := req.parseRecords(&d); err != nil {
				return nil, malformed(doing, err)
			}
			haveRecords = true
		default:
			err = d.Skip(1)
		}
		if err == nil {
			more, err = d.ObjectNext()
		}
	}
	if err != nil {
		return nil, malformed(doing, err)
	}
	if d.WS(); d.Pos != len(body) {
		return nil, malformed(doing, d.Syntax("after top-level value"))
	}
	switch {
	case !haveID:
		return nil, malformed(doing, errors.New("no requestId"))
	case !haveRecords:
		return nil, malformed(doing, errors.New("no records"))
	}
	return req, nil
}

func (r *FirehoseRequest) parseRecords(d *jsonscan.Scanner) error {
	more, err := d.ArrayStart()
	for more && err == nil {
		if len(r.records) == MaxFirehoseRecords {
			return fmt.Errorf("more than %d records, Firehose's maximum", MaxFirehoseRecords)
		}
		if c := d.Data[d.Pos]; c != '{' {
			return d.Mismatch(2, "records", "object")
		}
		s := span{start: -1}
		var inner bool
		inner, err = d.ObjectStart()
		for inner && err == nil {
			var key []byte
			if key, err = d.Key(); err != nil {
				return err
			}
			if string(key) == "data" {
				if d.Data[d.Pos] != '"' {
					return d.Mismatch(3, "records.data", "string")
				}
				if s.start, s.end, s.escaped, err = d.StringEnd(); err != nil {
					return err
				}
			} else if err = d.Skip(3); err != nil {
				return err
			}
			inner, err = d.ObjectNext()
		}
		if err != nil {
			return err
		}
		if s.start < 0 {
			return fmt.Errorf("record %d has no data", len(r.records))
		}
		r.records = append(r.records, s)
		more, err = d.ArrayNext()
	}
	return err
}

// Gunzip appends the decompression of the gzip data to dst[:0], refusing
// (ErrTooLarge) output beyond limit bytes: a record of a few hundred
// kilobytes can otherwise expand a thousandfold. Concatenated gzip members
// decompress one after the other, as gzip(1) does.
func Gunzip(data []byte, limit int64, dst []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, malformed("opening gzip", err)
	}
	defer zr.Close()
	buf := bytes.NewBuffer(dst[:0])
	n, err := buf.ReadFrom(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, malformed("decompressing gzip", err)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return buf.Bytes(), nil
}

// IsGzip reports whether data starts with gzip's magic bytes.
func IsGzip(data []byte) bool { return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b }

// LogEvent is one log event of a subscription payload.
type LogEvent struct {
	ID        string
	Timestamp int64 // milliseconds since the epoch
	// LogStream is the event's stream where the format names it per
	// event (the CLI's logStreamName); a payload names it once.
	LogStream string
	// Message is the log line: for an EKS audit stream, one audit event's
	// JSON. It is a fresh copy, not aliasing the payload.
	Message []byte
}

// Subscription is a CloudWatch Logs subscription payload, decompressed:
// what a subscription filter sends to Kinesis Data Streams, Firehose or
// Lambda.
type Subscription struct {
	MessageType         string
	Owner               string // the AWS account id
	LogGroup            string
	LogStream           string
	SubscriptionFilters []string
	LogEvents           []LogEvent
}

// LooksLikeSubscription is a cheap test for data worth handing to
// ParseSubscription: both member names occur in it.
func LooksLikeSubscription(data []byte) bool {
	return bytes.Contains(data, []byte(`"messageType"`)) && bytes.Contains(data, []byte(`"logEvents"`))
}

// ParseSubscription decodes one subscription payload (already
// decompressed) from the start of data and returns it with the bytes
// after it, so that concatenated payloads (a Firehose-to-S3 object, whose
// gzip members decompress back to back) can be read one by one. A
// payload needs a string messageType at its top level; members CloudWatch
// may add later are skipped.
func ParseSubscription(data []byte) (Subscription, []byte, error) {
	const doing = "decoding CloudWatch Logs subscription payload"
	var s Subscription
	d := jsonscan.Scanner{Data: data}
	c, err := d.Peek()
	if err != nil {
		return s, nil, malformed(doing, err)
	}
	if c != '{' {
		return s, nil, malformed(doing, errors.New("not a JSON object"))
	}
	str := func(field string, dst *string) error {
		if d.Data[d.Pos] == 'n' {
			return d.Literal()
		}
		if d.Data[d.Pos] != '"' {
			return d.Mismatch(1, field, "string")
		}
		v, err := d.StrString()
		*dst = v
		return err
	}
	haveType := false
	more, err := d.ObjectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.Key(); err != nil {
			break
		}
		switch string(key) {
		case "messageType":
			err = str("messageType", &s.MessageType)
			haveType = err == nil && s.MessageType != ""
		case "owner":
			err = str("owner", &s.Owner)
		case "logGroup":
			err = str("logGroup", &s.LogGroup)
		case "logStream":
			err = str("logStream", &s.LogStream)
		case "subscriptionFilters":
			err = parseStrings(&d, &s.SubscriptionFilters)
		case "logEvents":
			err = parseLogEvents(&d, &s.LogEvents)
		default:
			err = d.Skip(1)
		}
		if err == nil {
			more, err = d.ObjectNext()
		}
	}
	if err != nil {
		return s, nil, malformed(doing, err)
	}
	if !haveType {
		return s, nil, malformed(doing, errors.New("no messageType"))
	}
	d.WS()
	return s, data[d.Pos:], nil
}

func parseStrings(d *jsonscan.Scanner, dst *[]string) error {
	if d.Data[d.Pos] == 'n' {
		return d.Literal()
	}
	if d.Data[d.Pos] != '[' {
		return d.Mismatch(1, "subscriptionFilters", "[]string")
	}
	more, err := d.ArrayStart()
	for more && err == nil {
		if d.Data[d.Pos] != '"' {
			return d.Mismatch(2, "subscriptionFilters", "string")
		}
		var v string
		if v, err = d.StrString(); err != nil {
			return err
		}
		*dst = append(*dst, v)
		more, err = d.ArrayNext()
	}
	return err
}

func parseLogEvents(d *jsonscan.Scanner, dst *[]LogEvent) error {
	if d.Data[d.Pos] == 'n' {
		return d.Literal()
	}
	if d.Data[d.Pos] != '[' {
		return d.Mismatch(1, "logEvents", "array")
	}
	more, err := d.ArrayStart()
	for more && err == nil {
		var ev LogEvent
		if ev, err = parseLogEvent(d, "logEvents"); err != nil {
			return err
		}
		*dst = append(*dst, ev)
		more, err = d.ArrayNext()
	}
	return err
}

// parseLogEvent reads one {id, timestamp, message} object, as both the
// subscription payload and the CLI's events[] write it (the CLI adds
// logStreamName, ingestionTime and eventId, which are skipped).
func parseLogEvent(d *jsonscan.Scanner, field string) (LogEvent, error) {
	var ev LogEvent
	if d.Data[d.Pos] != '{' {
		return ev, d.Mismatch(2, field, "object")
	}
	haveMessage := false
	more, err := d.ObjectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.Key(); err != nil {
			return ev, err
		}
		switch c := d.Data[d.Pos]; {
		case string(key) == "id" && c == '"':
			ev.ID, err = d.StrString()
		case string(key) == "logStreamName" && c == '"':
			ev.LogStream, err = d.StrString()
		case string(key) == "timestamp" && (c == '-' || jsonscan.IsDigit(c)):
			var num []byte
			if num, err = d.Number(); err == nil {
				// A timestamp that is not an integer is kept as 0: it
				// is informational, the event has its own.
				ev.Timestamp, _ = strconv.ParseInt(string(num), 10, 64)
			}
		case string(key) == "message":
			if c != '"' {
				return ev, d.Mismatch(3, field+".message", "string")
			}
			// One copy either way: unquoted when it must be, cloned
			// otherwise, since the message outlives the payload.
			var start, end int
			var escaped bool
			if start, end, escaped, err = d.StringEnd(); err == nil {
				raw := d.Data[start:end]
				if escaped || !utf8.Valid(raw) {
					ev.Message = jsonscan.Unquote(make([]byte, 0, len(raw)), raw)
				} else {
					ev.Message = bytes.Clone(raw)
				}
				haveMessage = true
			}
		default:
			err = d.Skip(3)
		}
		if err == nil {
			more, err = d.ObjectNext()
		}
	}
	if err == nil && !haveMessage {
		err = errors.New(field + " entry has no message")
	}
	return ev, err
}

// ClusterFromLogGroup returns the EKS cluster name of a control-plane log
// group, /aws/eks/<cluster>/cluster, or "" for any other group.
func ClusterFromLogGroup(group string) string {
	rest, ok := strings.CutPrefix(group, "/aws/eks/")
	if !ok {
		return ""
	}
	name, ok := strings.CutSuffix(rest, "/cluster")
	if !ok || name == "" || strings.Contains(name, "/") {
		return ""
	}
	return name
}

// SplitMessages calls fn with each JSON value of data, which holds
// messages as Firehose's message extraction delivers them: one after the
// other, separated by newlines (or by nothing). Each value is compacted
// onto one line. A syntax error stops the walk: past it, where the next
// value starts cannot be told.
func SplitMessages(data []byte, fn func(msg []byte) error) error {
	d := jsonscan.Scanner{Data: data}
	for {
		d.WS()
		if d.Pos == len(data) {
			return nil
		}
		start := d.Pos
		if err := d.Skip(0); err != nil {
			return malformed("splitting extracted messages", err)
		}
		if err := fn(Compact(data[start:d.Pos])); err != nil {
			return err
		}
	}
}

// Compact returns raw (valid JSON) on one line: audit events travel one a
// line and one a Kafka message. The apiserver writes compact JSON, so the
// usual case returns raw itself.
func Compact(raw []byte) []byte {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return raw
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// IsAuditStream reports whether a log stream is one of EKS's kube-apiserver
// audit streams.
func IsAuditStream(stream string) bool { return strings.HasPrefix(stream, AuditStreamPrefix) }

// LooksLikeLogEventsOutput reports whether data opens a JSON object whose
// first member is "events", as `aws logs filter-log-events` and
// `get-log-events` print their output (pretty or compacted by jq -c).
func LooksLikeLogEventsOutput(data []byte) bool {
	d := jsonscan.Scanner{Data: data}
	if c, err := d.Peek(); err != nil || c != '{' {
		return false
	}
	d.Pos++
	d.WS()
	return bytes.HasPrefix(data[d.Pos:], []byte(`"events"`))
}

// ParseLogEventsOutput decodes the JSON output of `aws logs
// filter-log-events` ({"events": [{logStreamName, timestamp, message,
// ingestionTime, eventId}], "searchedLogStreams", "nextToken"}) or `aws
// logs get-log-events` ({"events": [{timestamp, message, ingestionTime}],
// "nextForwardToken", "nextBackwardToken"}) and returns its events. Other
// members are skipped.
func ParseLogEventsOutput(data []byte) ([]LogEvent, error) {
	const doing = "decoding aws logs output"
	d := jsonscan.Scanner{Data: data}
	c, err := d.Peek()
	if err != nil {
		return nil, malformed(doing, err)
	}
	if c != '{' {
		return nil, malformed(doing, errors.New("not a JSON object"))
	}
	var events []LogEvent
	have := false
	more, err := d.ObjectStart()
	for more && err == nil {
		var key []byte
		if key, err = d.Key(); err != nil {
			break
		}
		if string(key) == "events" {
			if d.Data[d.Pos] != '[' {
				return nil, malformed(doing, d.Mismatch(1, "events", "array"))
			}
			have = true
			var inner bool
			inner, err = d.ArrayStart()
			for inner && err == nil {
				var ev LogEvent
				if ev, err = parseLogEvent(&d, "events"); err != nil {
					break
				}
				events = append(events, ev)
				inner, err = d.ArrayNext()
			}
		} else {
			err = d.Skip(1)
		}
		if err == nil {
			more, err = d.ObjectNext()
		}
	}
	if err == nil {
		if d.WS(); d.Pos != len(data) {
			err = d.Syntax("after top-level value")
		}
	}
	if err != nil {
		return nil, malformed(doing, err)
	}
	if !have {
		return nil, malformed(doing, errors.New("no events"))
	}
	return events, nil
}

// ParseExportLine splits a line of a CloudWatch Logs export to S3, written
// as "<timestamp> <message>" with an RFC 3339 timestamp in UTC, and returns
// the message. ok is false for a line of any other shape.
func ParseExportLine(line []byte) (msg []byte, ok bool) {
	if len(line) == 0 || !jsonscan.IsDigit(line[0]) {
		return nil, false
	}
	sp := bytes.IndexByte(line, ' ')
	// 2024-01-02T03:04:05Z is the shortest form; nanoseconds the longest.
	if sp < len("2006-01-02T15:04:05Z") || sp > len(time.RFC3339Nano)+6 {
		return nil, false
	}
	if _, err := time.Parse(time.RFC3339Nano, string(line[:sp])); err != nil {
		return nil, false
	}
	return bytes.TrimSpace(line[sp+1:]), true
}
