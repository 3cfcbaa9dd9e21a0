package eks

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/cloud"
)

const auditEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0d6f7c1e-3b9a-4f25-8e61-2c4b5a7d9e10","stage":"ResponseComplete","requestURI":"/api/v1/secrets?limit=500","verb":"list","user":{"username":"arn:aws:iam::111122223333:role/ci-deployer","uid":"aws-iam-authenticator:111122223333:AROAEXAMPLEROLEID0001","groups":["system:authenticated"]},"sourceIPs":["52.94.133.131"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46","objectRef":{"resource":"secrets","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-04T07:12:40.118342Z","stageTimestamp":"2026-12-04T07:12:40.163907Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`

// payload is a subscription payload shaped as the CloudWatch Logs docs show
// it, holding msgs.
func payload(msgs ...string) []byte {
	type le struct {
		ID        string `json:"id"`
		Timestamp int64  `json:"timestamp"`
		Message   string `json:"message"`
	}
	p := struct {
		MessageType         string   `json:"messageType"`
		Owner               string   `json:"owner"`
		LogGroup            string   `json:"logGroup"`
		LogStream           string   `json:"logStream"`
		SubscriptionFilters []string `json:"subscriptionFilters"`
		LogEvents           []le     `json:"logEvents"`
	}{"DATA_MESSAGE", "111122223333", "/aws/eks/prod-eu1/cluster", "kube-apiserver-audit-5f2b8c0e", []string{"auditpipe"}, nil}
	for i, m := range msgs {
		p.LogEvents = append(p.LogEvents, le{fmt.Sprintf("%056d", 3700+i), 1764832360118, m})
	}
	b, _ := json.Marshal(p)
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestParseFirehoseRequest(t *testing.T) {
	rec := gz(payload(auditEvent))
	b64 := base64.StdEncoding.EncodeToString(rec)
	body := `{"requestId":"ed4acda5-034f-9f42-bba1-f29aea6d7d8f","timestamp":1578090901599,"records":[{"data":"` +
		b64 + `"},{"data":"` + strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte("hello world/?>")), "/", `\/`) + `"},{"data":""}],"future":{"x":[1]}}`
	req, err := ParseFirehoseRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.RequestID != "ed4acda5-034f-9f42-bba1-f29aea6d7d8f" || req.Timestamp != 1578090901599 || req.Len() != 3 {
		t.Fatalf("got %+v", req)
	}
	got, err := req.Record(0, nil)
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("record 0: %v", err)
	}
	if got, err := req.Record(1, nil); err != nil || string(got) != "hello world/?>" {
		t.Fatalf("record 1 (escaped slashes): %q %v", got, err)
	}
	if got, err := req.Record(2, nil); err != nil || len(got) != 0 {
		t.Fatalf("record 2 (empty, which Firehose permits): %q %v", got, err)
	}
	plain, err := Gunzip(got0(t, req), 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, rest, err := ParseSubscription(plain)
	if err != nil || len(rest) != 0 {
		t.Fatalf("payload: %v, %d bytes left", err, len(rest))
	}
	if sub.MessageType != DataMessage || sub.Owner != "111122223333" || ClusterFromLogGroup(sub.LogGroup) != "prod-eu1" ||
		!IsAuditStream(sub.LogStream) || len(sub.LogEvents) != 1 || string(sub.LogEvents[0].Message) != auditEvent || sub.SubscriptionFilters[0] != "auditpipe" {
		t.Fatalf("payload %+v", sub)
	}

	f := func(body, want string) {
		t.Helper()
		_, err := ParseFirehoseRequest([]byte(body))
		if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want a malformed one containing %q", body, err, want)
		}
	}
	f(`[]`, "not a JSON object")
	f(`{"records":[]}`, "no requestId")
	f(`{"requestId":"x"}`, "no records")
	f(`{"requestId":1,"records":[]}`, "requestId")
	f(`{"requestId":"x","records":[{"data":1}]}`, "records.data")
	f(`{"requestId":"x","records":[{}]}`, "has no data")
	f(`{"requestId":"x","records":[{"data":"aGk="}],}`, "invalid character")
	f(`{"requestId":"x","records":[{"data":"aGk="} {"data":""}]}`, "after array element")
	f(`{"requestId":"x","records":[]} {}`, "after top-level value")
	f(`{"requestId":"x","timestamp":1.5,"records":[]}`, "timestamp")
	f(`{"requestId":"x","records":[`+strings.Repeat(`{"data":""},`, MaxFirehoseRecords)+`{"data":""}]}`, "more than 10000 records")
	req, _ = ParseFirehoseRequest([]byte(`{"requestId":"x","records":[{"data":"not base64!"}]}`))
	if _, err := req.Record(0, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad base64: %v", err)
	}
}

func got0(t *testing.T, req *FirehoseRequest) []byte {
	t.Helper()
	b, err := req.Record(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGunzipBounded(t *testing.T) {
	bomb := gz(bytes.Repeat([]byte("A"), 10<<20))
	if _, err := Gunzip(bomb, 1<<20, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("10 MiB into a 1 MiB limit: %v", err)
	}
	out, err := Gunzip(append(gz([]byte("ab")), gz([]byte("cd"))...), 4, nil)
	if err != nil || string(out) != "abcd" {
		t.Fatalf("concatenated members: %q %v", out, err)
	}
	if _, err := Gunzip([]byte("\x1f\x8bnope"), 10, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("corrupt: %v", err)
	}
}

func TestParseSubscriptionControlAndConcatenated(t *testing.T) {
	control := `{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1432826855000,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}`
	data := []byte(control + string(payload(auditEvent, auditEvent)))
	s1, rest, err := ParseSubscription(data)
	if err != nil || s1.MessageType != ControlMessage {
		t.Fatalf("first: %+v %v", s1, err)
	}
	s2, rest, err := ParseSubscription(rest)
	if err != nil || len(s2.LogEvents) != 2 || len(rest) != 0 {
		t.Fatalf("second: %v, %d events, %d left", err, len(s2.LogEvents), len(rest))
	}
	for _, bad := range []string{`{"logEvents":[]}`, `{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1"}]}`, `{"messageType":"DATA_MESSAGE","logEvents":[{"message":1}]}`, `{"messageType":2}`, `"x"`} {
		if _, _, err := ParseSubscription([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestExportFormats(t *testing.T) {
	f := func(line, want string, ok bool) {
		t.Helper()
		msg, got := ParseExportLine([]byte(line))
		if got != ok || string(msg) != want {
			t.Errorf("%q: %q %v, want %q %v", line, msg, got, want, ok)
		}
	}
	f(`2026-12-04T07:12:40.163Z `+auditEvent, auditEvent, true)
	f(`2026-12-04T07:12:40Z {"a":1}`, `{"a":1}`, true)
	f(`2026-12-04T07:12:40.163Z I1204 07:12:40.118342 11 handler.go:286] Adding`, `I1204 07:12:40.118342 11 handler.go:286] Adding`, true)
	f(auditEvent, "", false)
	f(`12345 {"a":1}`, "", false)
	f(`2026-13-04T07:12:40.163Z {"a":1}`, "", false)

	out := `{
    "events": [
        {
            "logStreamName": "kube-apiserver-audit-5f2b8c0e",
            "timestamp": 1764832360118,
            "message": ` + string(mustJSON(auditEvent)) + `,
            "ingestionTime": 1764832361200,
            "eventId": "37000000000000000000000000000000000000000000000000000000"
        },
        {
            "logStreamName": "kube-apiserver-1b2c3d",
            "timestamp": 1764832360119,
            "message": "I1204 07:12:40.118342 handler.go:286] Adding GroupVersion",
            "ingestionTime": 1764832361200,
            "eventId": "37000000000000000000000000000000000000000000000000000001"
        }
    ],
    "searchedLogStreams": [],
    "nextToken": "Bxkq6kVGFtq2y_MoigeqscPOdhXVbhiVtLoAmXb5jCrI7fXLrcUQNsTLkEvKHhkfxQnsh0KFN2d3d"
}`
	if !LooksLikeLogEventsOutput([]byte(out)) || LooksLikeLogEventsOutput([]byte(auditEvent)) {
		t.Fatal("LooksLikeLogEventsOutput")
	}
	evs, err := ParseLogEventsOutput([]byte(out))
	if err != nil || len(evs) != 2 || string(evs[0].Message) != auditEvent || !IsAuditStream(evs[0].LogStream) || IsAuditStream(evs[1].LogStream) {
		t.Fatalf("%+v %v", evs, err)
	}
}

func mustJSON(s string) []byte { b, _ := json.Marshal(s); return b }

func TestSplitMessages(t *testing.T) {
	var got []string
	err := SplitMessages([]byte(auditEvent+"\n{\n  \"a\": 1\n}{\"b\":2}\n\n"), func(m []byte) error {
		got = append(got, string(m))
		return nil
	})
	if err != nil || len(got) != 3 || got[0] != auditEvent || got[1] != `{"a":1}` || got[2] != `{"b":2}` {
		t.Fatalf("%q %v", got, err)
	}
	if err := SplitMessages([]byte(`{"a":1} {"b":`), func([]byte) error { return nil }); !errors.Is(err, ErrMalformed) {
		t.Fatalf("cut short: %v", err)
	}
}

func TestAnnotate(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		out, err := cloud.Annotate([]byte(in), cloud.AnnotationSource, "eks", AnnotationAccountID, "", AnnotationClusterName, `a"b`)
		if err != nil || string(out) != want {
			t.Errorf("%s:\ngot  %s (%v)\nwant %s", in, out, err, want)
		}
	}
	ours := `"auditpipe.io/source":"eks","auditpipe.io/eks-cluster-name":"a\"b"`
	f(`{"auditID":"x"}`, `{"annotations":{`+ours+`},"auditID":"x"}`)
	f(`{}`, `{"annotations":{`+ours+`}}`)
	f(`{"annotations":null,"a":1}`, `{"annotations":{`+ours+`},"a":1}`)
	f(`{"a":1,"annotations":{"k":"v","auditpipe.io/source":"gke","z":"w"}}`, `{"a":1,"annotations":{`+ours+`,"k":"v","z":"w"}}`)
	f(`{"annotations":{}}`, `{"annotations":{`+ours+`}}`)
	if _, err := cloud.Annotate([]byte(`{"annotations":[]}`), "k", "v"); err == nil {
		t.Error("annotations that are not an object were accepted")
	}
	if _, err := cloud.Annotate([]byte(`[1]`), "k", "v"); err == nil {
		t.Error("a non-object event was accepted")
	}
}

func FuzzFirehoseRequest(f *testing.F) {
	f.Add([]byte(`{"requestId":"ed4acda5-034f-9f42-bba1-f29aea6d7d8f","timestamp":1578090901599,"records":[{"data":"aGVsbG8="},{"data":"aGVsbG8gd29ybGQ="}]}`))
	f.Add([]byte(`{"requestId":"x","records":[{"data":"` + base64.StdEncoding.EncodeToString(gz(payload(auditEvent))) + `"}]}`))
	f.Add([]byte(`{"requestId":"x","records":[{"data":"a\/b="}],"timestamp":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseFirehoseRequest(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not marked malformed: %v", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if req.Len() > MaxFirehoseRecords {
			t.Fatalf("%d records", req.Len())
		}
		var buf []byte
		for i := range req.Len() {
			var err error
			if buf, err = req.Record(i, buf); err != nil {
				continue
			}
			if plain, err := Gunzip(buf, 1<<20, nil); err == nil {
				_, _, _ = ParseSubscription(plain)
			}
		}
	})
}

func FuzzSubscription(f *testing.F) {
	f.Add(payload(auditEvent, `{"a":1}`))
	f.Add([]byte(`{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE"}]}`))
	f.Add([]byte(`{"events":[{"logStreamName":"kube-apiserver-audit-1","timestamp":1,"message":"{\"a\":1}"}],"nextToken":"x"}`))
	f.Add([]byte(`2026-12-04T07:12:40.163Z ` + auditEvent))
	f.Add([]byte(auditEvent + "\n" + auditEvent))
	f.Fuzz(func(t *testing.T, data []byte) {
		if sub, rest, err := ParseSubscription(data); err == nil {
			consumed := data[:len(data)-len(rest)]
			if !json.Valid(consumed) {
				t.Fatalf("accepted invalid JSON %q", consumed)
			}
			for _, le := range sub.LogEvents {
				_ = Compact(le.Message)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error not marked malformed: %v", err)
		}
		if evs, err := ParseLogEventsOutput(data); err == nil {
			if !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			_ = evs
		}
		_, _ = ParseExportLine(data)
		_ = SplitMessages(data, func(m []byte) error {
			if !json.Valid(m) || bytes.ContainsAny(m, "\r\n") {
				t.Fatalf("split out %q", m)
			}
			return nil
		})
		if out, err := cloud.Annotate(data, cloud.AnnotationSource, "eks"); err == nil {
			var ev struct {
				Annotations map[string]string `json:"annotations"`
			}
			if !json.Valid(out) {
				t.Fatalf("annotated %q into invalid JSON %q", data, out)
			}
			if json.Unmarshal(out, &ev) == nil && ev.Annotations[cloud.AnnotationSource] != "eks" && bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
				// encoding/json may read another member when keys
				// differ only in case; only a plain decode must agree.
				if !bytes.Contains(bytes.ToLower(data), []byte(`"annotations"`)) || bytes.Count(bytes.ToLower(data), []byte(`"annotations"`)) == bytes.Count(data, []byte(`"annotations"`)) {
					t.Fatalf("annotated %q: %q lost the annotation", data, out)
				}
			}
		}
	})
}
