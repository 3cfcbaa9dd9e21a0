package auditlog

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/cloud"
	"github.com/auditpipe/auditpipe/internal/cloud/eks"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// cwEvents are realistic audit events as EKS writes them to its
// kube-apiserver-audit streams.
func cwEvents(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, name := range []string{"requestresponse-pod-create", "list-secrets-label-selector-operator", "exec-response-started", "anonymous-secrets-list-allowed", "anonymous-probe-forbidden", "failed-authentication-401"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(bytes.TrimSpace(b)))
	}
	return out
}

const (
	cwGroup       = "/aws/eks/prod-eu1/cluster"
	cwAuditStream = "kube-apiserver-audit-5f2b8c0e4d1a9b7c6e3f0a2d4b6c8e1f"
	cwOtherStream = "kube-apiserver-1b2c3d4e5f60718293a4b5c6d7e8f901"
	klogLine      = "I1204 07:12:40.118342      11 handler.go:286] Adding GroupVersion apps v1 to ResourceManager"
)

type cwLogEvent struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Message   string `json:"message"`
}

// cwPayload is a subscription payload as the CloudWatch Logs docs show it.
func cwPayload(messageType, stream string, msgs ...string) []byte {
	p := map[string]any{"messageType": messageType, "owner": "111122223333", "logGroup": cwGroup, "logStream": stream, "subscriptionFilters": []string{"auditpipe"}}
	var evs []cwLogEvent
	for i, m := range msgs {
		evs = append(evs, cwLogEvent{fmt.Sprintf("%056d", 3700+i), 1764832360118 + int64(i), m})
	}
	p["logEvents"] = evs
	b, _ := json.Marshal(p)
	return b
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestEventsCloudWatch reads each form EKS audit logs leave CloudWatch Logs
// in, without flags: every one yields the audit events, and only them.
func TestEventsCloudWatch(t *testing.T) {
	events := cwEvents(t)

	// An export task's object: <timestamp> <message>, gzip, the
	// apiserver's own log exported from the same group beside the audit
	// events.
	var export bytes.Buffer
	for i, e := range events {
		fmt.Fprintf(&export, "2026-12-04T07:12:%02d.%03dZ %s\n", 40+i, i*7, e)
		if i == 2 {
			fmt.Fprintf(&export, "2026-12-04T07:12:42.500Z %s\n", klogLine)
		}
	}

	// aws logs filter-log-events --log-group-name /aws/eks/prod-eu1/cluster
	// prints indented JSON; a stream that is not an audit stream is left out.
	type cliEvent struct {
		LogStreamName string `json:"logStreamName"`
		Timestamp     int64  `json:"timestamp"`
		Message       string `json:"message"`
		IngestionTime int64  `json:"ingestionTime"`
		EventID       string `json:"eventId"`
	}
	filter := struct {
		Events             []cliEvent `json:"events"`
		SearchedLogStreams []any      `json:"searchedLogStreams"`
		NextToken          string     `json:"nextToken"`
	}{SearchedLogStreams: []any{}, NextToken: "Bxkq6kVGFtq2y_MoigeqscPOdhXVbhiVtLoAmXb5jCrI7fXLrcUQNsTLkEvKHhkfxQnsh0KFN2d3d"}
	for i, e := range events {
		filter.Events = append(filter.Events, cliEvent{cwAuditStream, 1764832360118 + int64(i), e, 1764832361200 + int64(i), fmt.Sprintf("%056d", 37+i)})
		if i == 0 {
			filter.Events = append(filter.Events, cliEvent{cwOtherStream, 1764832360119, klogLine, 1764832361201, fmt.Sprintf("%056d", 99)})
		}
	}
	filterOut, _ := json.MarshalIndent(filter, "", "    ")
	// aws logs get-log-events --log-stream-name … | jq -c: one line, no
	// stream per event.
	type getEvent struct {
		Timestamp     int64  `json:"timestamp"`
		Message       string `json:"message"`
		IngestionTime int64  `json:"ingestionTime"`
	}
	get := struct {
		Events            []getEvent `json:"events"`
		NextForwardToken  string     `json:"nextForwardToken"`
		NextBackwardToken string     `json:"nextBackwardToken"`
	}{NextForwardToken: "f/3700", NextBackwardToken: "b/3700"}
	for i, e := range events {
		get.Events = append(get.Events, getEvent{1764832360118 + int64(i), e, 1764832361200})
	}
	getOut, _ := json.Marshal(get)

	// Firehose delivering to S3 without decompression concatenates the
	// records, each a gzip member: a CONTROL_MESSAGE, payloads of the
	// audit stream, one of another stream.
	var firehoseS3 []byte
	for _, p := range [][]byte{
		cwPayload("CONTROL_MESSAGE", "", "CWL CONTROL MESSAGE: Checking health of destination Firehose."),
		cwPayload("DATA_MESSAGE", cwAuditStream, events[:4]...),
		cwPayload("DATA_MESSAGE", cwOtherStream, klogLine),
		cwPayload("DATA_MESSAGE", cwAuditStream, events[4:]...),
	} {
		firehoseS3 = append(firehoseS3, gzipped(p)...)
	}

	for _, tc := range []struct {
		name    string
		content []byte
		wantLog string // the provider-log annotation of the first event
	}{
		{"export task 000000.gz", gzipped(export.Bytes()), ""},
		{"filter-log-events", filterOut, ":" + cwAuditStream},
		{"get-log-events compacted", getOut, ""},
		{"Firehose to S3, gzip members", firehoseS3, cwGroup + ":" + cwAuditStream},
		{"one payload, uncompressed", cwPayload("DATA_MESSAGE", cwAuditStream, events...), cwGroup + ":" + cwAuditStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "000000.gz")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			var got []string
			var first pipeline.Event
			err := Events(path, func(line, item int, data []byte) error {
				var ev pipeline.Event
				if err := auditjson.Decode(&ev, "prod-eu1", data); err != nil {
					return fmt.Errorf("line %d item %d: %w: %s", line, item, err, data)
				}
				if len(got) == 0 {
					first = ev
				}
				got = append(got, string(ev.AuditID)+"/"+string(ev.Stage))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, e := range events {
				var ev pipeline.Event
				auditjson.Decode(&ev, "x", []byte(e))
				want = append(want, string(ev.AuditID)+"/"+string(ev.Stage))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
			if first.Annotations[cloud.AnnotationSource] != "eks" || first.Annotations[eks.AnnotationLog] != tc.wantLog {
				t.Errorf("annotations %v", first.Annotations)
			}
		})
	}
}

// A plain audit log, and lines that only look like CloudWatch's, are read
// as before.
func TestEventsCloudWatchLookalikes(t *testing.T) {
	events := cwEvents(t)
	lines := []string{
		events[0],
		// An event whose body mentions the payload's member names.
		strings.Replace(events[1], `"verb":`, `"messageType":"x","logEvents":[],"verb":`, 1),
		`{"messageType":"DATA_MESSAGE","logEvents":[`, // a cut payload: the caller's to report
		`2026-13-45T99:99:99Z {"a":1}`,
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600)
	var got []string
	if err := Events(path, func(line, item int, data []byte) error {
		got = append(got, fmt.Sprintf("%d.%d %s", line, item, data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		if i >= len(got) || got[i] != fmt.Sprintf("%d.0 %s", i+1, l) {
			t.Errorf("line %d not handed on as it is (%d lines handed on)", i+1, len(got))
		}
	}
}
