package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/cloud"
	"github.com/auditpipe/auditpipe/internal/cloud/eks"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// eksIAMSecretList is a request as EKS logs it for an IAM role mapped by
// aws-iam-authenticator (the username is the role's ARN, the extras carry
// the STS session): a cluster-wide list of secrets.
const eksIAMSecretList = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0d6f7c1e-3b9a-4f25-8e61-2c4b5a7d9e10","stage":"ResponseComplete","requestURI":"/api/v1/secrets?limit=500","verb":"list","user":{"username":"arn:aws:iam::111122223333:role/ci-deployer","uid":"aws-iam-authenticator:111122223333:AROAEXAMPLEROLEID0001","groups":["system:authenticated"],"extra":{"accessKeyId":["ASIAEXAMPLEKEY000001"],"arn":["arn:aws:sts::111122223333:assumed-role/ci-deployer/gh-actions-8812"],"canonicalArn":["arn:aws:iam::111122223333:role/ci-deployer"],"principalId":["AROAEXAMPLEROLEID0001"],"sessionName":["gh-actions-8812"]}},"sourceIPs":["52.94.133.131"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46","objectRef":{"resource":"secrets","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-04T07:12:40.118342Z","stageTimestamp":"2026-12-04T07:12:40.163907Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"ci-deployer-admin\" of ClusterRole \"cluster-admin\" to Group \"ci-deployers\""}}`

// eksEvents are realistic audit events: a pod created at RequestResponse
// level, an IAM role listing secrets, an exec, an anonymous list allowed,
// an anonymous request denied, and a failed authentication.
func eksEvents(t *testing.T) []string {
	t.Helper()
	out := []string{eksIAMSecretList}
	for _, name := range []string{"requestresponse-pod-create", "exec-response-started", "anonymous-secrets-list-allowed", "anonymous-probe-forbidden", "failed-authentication-401"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(bytes.TrimSpace(b)))
	}
	return out
}

// cwLogEvent and cwPayload are the CloudWatch Logs subscription payload
// exactly as the CloudWatch Logs and Firehose documentation show it.
type cwLogEvent struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Message   string `json:"message"`
}

type cwPayload struct {
	MessageType         string       `json:"messageType"`
	Owner               string       `json:"owner"`
	LogGroup            string       `json:"logGroup"`
	LogStream           string       `json:"logStream"`
	SubscriptionFilters []string     `json:"subscriptionFilters"`
	LogEvents           []cwLogEvent `json:"logEvents"`
}

const (
	testLogGroup  = "/aws/eks/prod-eu1/cluster"
	testLogStream = "kube-apiserver-audit-5f2b8c0e4d1a9b7c6e3f0a2d4b6c8e1f"
	testSourceARN = "arn:aws:firehose:eu-west-1:111122223333:deliverystream/eks-audit-prod-eu1"
	testAccessKey = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c"
)

// dataMessage is a DATA_MESSAGE of the audit stream holding msgs.
func dataMessage(stream string, msgs ...string) []byte {
	p := cwPayload{MessageType: "DATA_MESSAGE", Owner: "111122223333", LogGroup: testLogGroup, LogStream: stream,
		SubscriptionFilters: []string{"auditpipe"}}
	for i, m := range msgs {
		// CloudWatch's event ids are 56-digit strings.
		p.LogEvents = append(p.LogEvents, cwLogEvent{ID: fmt.Sprintf("%056d", 37000000000000+i), Timestamp: 1764832360118 + int64(i), Message: m})
	}
	b, _ := json.Marshal(p)
	return b
}

// controlMessage is what CloudWatch Logs sends to check a destination.
func controlMessage() []byte {
	b, _ := json.Marshal(cwPayload{MessageType: "CONTROL_MESSAGE", Owner: "CloudwatchLogs", LogGroup: "", LogStream: "", SubscriptionFilters: []string{},
		LogEvents: []cwLogEvent{{ID: "", Timestamp: 1764832360000, Message: "CWL CONTROL MESSAGE: Checking health of destination Firehose."}}})
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// firehoseBody is Firehose's request body with records (raw bytes, encoded
// here as Firehose does).
func firehoseBody(requestID string, records ...[]byte) []byte {
	type rec struct {
		Data string `json:"data"`
	}
	body := struct {
		RequestID string `json:"requestId"`
		Timestamp int64  `json:"timestamp"`
		Records   []rec  `json:"records"`
	}{RequestID: requestID, Timestamp: 1764832365599}
	for _, r := range records {
		body.Records = append(body.Records, rec{Data: base64.StdEncoding.EncodeToString(r)})
	}
	b, _ := json.Marshal(body)
	return b
}

// postFirehose sends body as Firehose does (its headers, optionally
// gzip), returning the status and the decoded answer, which must be
// Firehose's format whatever the status.
func postFirehose(t *testing.T, url, key string, body []byte, gzipBody bool) (int, FirehoseResponse) {
	t.Helper()
	var reqID struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(body, &reqID)
	if gzipBody {
		body = gz(body)
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Firehose-Protocol-Version", "1.0")
	req.Header.Set(HeaderFirehoseRequestID, reqID.RequestID)
	req.Header.Set(HeaderFirehoseSourceARN, testSourceARN)
	req.Header.Set("User-Agent", "Amazon Kinesis Data Firehose Agent/1.0")
	if key != "" {
		req.Header.Set(HeaderFirehoseAccessKey, key)
	}
	if gzipBody {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("answer %d has Content-Type %q, Firehose accepts only application/json", resp.StatusCode, ct)
	}
	if resp.Header.Get("Content-Length") == "" {
		t.Errorf("answer %d has no Content-Length, which Firehose requires", resp.StatusCode)
	}
	var fr FirehoseResponse
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fr); err != nil {
		t.Fatalf("answer %d is not Firehose's response format: %v: %s", resp.StatusCode, err, raw)
	}
	if fr.RequestID != reqID.RequestID || fr.Timestamp < time.Now().Add(-time.Hour).UnixMilli() {
		t.Errorf("answer %d: requestId %q timestamp %d, want the request's id %q and now", resp.StatusCode, fr.RequestID, fr.Timestamp, reqID.RequestID)
	}
	return resp.StatusCode, fr
}

// firehoseServer is ingest behind the TLS listener's authentication, with
// one access key bound to prod-eu1.
func firehoseServer(t *testing.T, prod pipeline.Producer, cfg Config) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "firehose-keys.yaml")
	if err := os.WriteFile(keys, []byte("tokens:\n- name: firehose-prod-eu1\n  token: "+testAccessKey+"\n  cluster: prod-eu1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	auth, err := NewAuthenticator(AuthConfig{FirehoseAccessKeyFile: keys}, nil, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, prod, nil, nil, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(auth.Require(h))
	t.Cleanup(srv.Close)
	return srv, reg
}

// auditIDs returns the (auditID, stage) of each message, in order.
func auditIDs(t *testing.T, msgs []pipeline.Message) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, m.Cluster, m.Value); err != nil {
			t.Fatalf("produced message does not decode: %v", err)
		}
		out = append(out, string(ev.AuditID)+"/"+string(ev.Stage))
	}
	return out
}

func wantIDs(t *testing.T, events []string) []string {
	t.Helper()
	var out []string
	for _, e := range events {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "x", []byte(e)); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(ev.AuditID)+"/"+string(ev.Stage))
	}
	return out
}

func TestFirehoseDeliversSubscriptionPayloads(t *testing.T) {
	events := eksEvents(t)
	for _, gzipBody := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-encoding-gzip=%v", gzipBody), func(t *testing.T) {
			prod := &memProducer{}
			srv, reg := firehoseServer(t, prod, Config{})
			body := firehoseBody("ed4acda5-034f-9f42-bba1-f29aea6d7d8f",
				gz(controlMessage()),
				gz(dataMessage(testLogStream, events[:4]...)),
				// The cluster's log group also holds the apiserver's own
				// log when that log type is enabled: not audit events.
				gz(dataMessage("kube-apiserver-1b2c3d4e5f60718293a4b5c6d7e8f901", "I1204 07:12:40.118342      11 handler.go:286] Adding GroupVersion apps v1 to ResourceManager")),
				gz(dataMessage("kube-apiserver-audit-0a1b2c3d4e5f60718293a4b5c6d7e8f9", events[4:]...)),
			)
			code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, body, gzipBody)
			if code != http.StatusOK || resp.ErrorMessage != "" {
				t.Fatalf("got %d %+v, want 200 without error", code, resp)
			}
			msgs := prod.snapshot()
			if got, want := auditIDs(t, msgs), wantIDs(t, events); !slices.Equal(got, want) {
				t.Fatalf("produced %v, want %v", got, want)
			}
			var ev pipeline.Event
			if err := auditjson.Decode(&ev, msgs[0].Cluster, msgs[0].Value); err != nil {
				t.Fatal(err)
			}
			if msgs[0].Cluster != "prod-eu1" || string(msgs[0].Key) != "prod-eu1/arn:aws:iam::111122223333:role/ci-deployer" {
				t.Errorf("message 0: cluster %q key %q", msgs[0].Cluster, msgs[0].Key)
			}
			wantAnn := map[string]string{
				cloud.AnnotationSource:          "eks",
				eks.AnnotationClusterName:       "prod-eu1",
				eks.AnnotationAccountID:         "111122223333",
				eks.AnnotationLog:               testLogGroup + ":" + testLogStream,
				eks.AnnotationFirehoseARN:       testSourceARN,
				"authorization.k8s.io/decision": "allow",
			}
			for k, v := range wantAnn {
				if ev.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, ev.Annotations[k], v)
				}
			}
			for result, want := range map[string]float64{FirehoseRecordData: 2, FirehoseRecordControl: 1, FirehoseRecordOtherStream: 1, FirehoseRecordRejected: 0} {
				if got := counterValue(t, reg, MetricFirehoseRecords, map[string]string{"result": result}); got != want {
					t.Errorf("%s{result=%q} = %v, want %v", MetricFirehoseRecords, result, got, want)
				}
			}
			// Firehose redelivers the same request after a lost answer:
			// nothing is produced twice.
			if code, _ := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, body, gzipBody); code != http.StatusOK {
				t.Fatalf("redelivery: %d", code)
			}
			if n := len(prod.snapshot()); n != len(events) {
				t.Fatalf("after redelivery %d messages, want %d", n, len(events))
			}
		})
	}
}

// With Firehose's decompression and message extraction on, each record
// holds the log events' messages themselves, one per line.
func TestFirehoseExtractedMessages(t *testing.T) {
	events := eksEvents(t)
	prod := &memProducer{}
	srv, _ := firehoseServer(t, prod, Config{})
	body := firehoseBody("53f1a0c2-9d7e-4b8a-a6f5-1e2d3c4b5a69",
		[]byte(strings.Join(events[:3], "\n")+"\n"),
		[]byte(events[3]),
		[]byte(strings.Join(events[4:], "\n")),
	)
	code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, body, true)
	if code != http.StatusOK || resp.ErrorMessage != "" {
		t.Fatalf("got %d %+v", code, resp)
	}
	msgs := prod.snapshot()
	if got, want := auditIDs(t, msgs), wantIDs(t, events); !slices.Equal(got, want) {
		t.Fatalf("produced %v, want %v", got, want)
	}
	var ev pipeline.Event
	_ = auditjson.Decode(&ev, msgs[0].Cluster, msgs[0].Value)
	// Firehose stripped the log group: only what the request says is kept.
	if ev.Annotations[cloud.AnnotationSource] != "eks" || ev.Annotations[eks.AnnotationFirehoseARN] != testSourceARN || ev.Annotations[eks.AnnotationLog] != "" {
		t.Errorf("annotations %v", ev.Annotations)
	}
	// Decompression on without extraction: the payload, uncompressed.
	prod2 := &memProducer{}
	srv2, _ := firehoseServer(t, prod2, Config{})
	code, _ = postFirehose(t, srv2.URL+"/firehose/prod-eu1", testAccessKey, firehoseBody("r2", dataMessage(testLogStream, events...)), false)
	if got, want := auditIDs(t, prod2.snapshot()), wantIDs(t, events); code != http.StatusOK || !slices.Equal(got, want) {
		t.Fatalf("uncompressed payload: %d, produced %v", code, got)
	}
}

// The same events delivered by the webhook and by Firehose make the same
// Kafka messages, but for auditpipe's provider annotations, and the same
// findings.
func TestFirehoseSameAsWebhook(t *testing.T) {
	events := eksEvents(t)
	viaWebhook := &memProducer{}
	srv := newTestServer(t, viaWebhook)
	if code, resp, _ := post(t, srv.URL+"/audit/prod-eu1", eventList(events...)); code != http.StatusOK {
		t.Fatalf("webhook: %d %+v", code, resp)
	}
	viaFirehose := &memProducer{}
	fsrv, _ := firehoseServer(t, viaFirehose, Config{})
	if code, resp := postFirehose(t, fsrv.URL+"/firehose/prod-eu1", testAccessKey,
		firehoseBody("0c9e8d7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f", gz(dataMessage(testLogStream, events[:2]...)), gz(dataMessage(testLogStream, events[2:]...))), true); code != http.StatusOK {
		t.Fatalf("firehose: %d %+v", code, resp)
	}
	a, b := viaWebhook.snapshot(), viaFirehose.snapshot()
	if len(a) != len(events) || len(b) != len(events) {
		t.Fatalf("webhook produced %d, Firehose %d, want %d each", len(a), len(b), len(events))
	}
	for i := range a {
		if string(a[i].Key) != string(b[i].Key) || a[i].Cluster != b[i].Cluster {
			t.Errorf("message %d: webhook key %q/%q, Firehose %q/%q", i, a[i].Cluster, a[i].Key, b[i].Cluster, b[i].Key)
		}
		wa, wb := withoutProviderAnnotations(t, a[i].Value), withoutProviderAnnotations(t, b[i].Value)
		if wa != wb {
			t.Errorf("message %d differs beyond the provider annotations:\nwebhook  %s\nfirehose %s", i, wa, wb)
		}
	}
	fa, fb := findings(t, a), findings(t, b)
	if len(fa) == 0 {
		t.Fatal("the events raise no finding: the comparison would prove nothing")
	}
	if !slices.Equal(fa, fb) {
		t.Fatalf("findings differ:\nwebhook  %v\nfirehose %v", fa, fb)
	}
	t.Logf("%d findings from either path: %v", len(fa), fa)
}

// withoutProviderAnnotations is the message with auditpipe's provider
// annotations removed, re-encoded with sorted keys.
func withoutProviderAnnotations(t *testing.T, value []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(value, &m); err != nil {
		t.Fatal(err)
	}
	if ann, ok := m["annotations"].(map[string]any); ok {
		for k := range ann {
			if strings.HasPrefix(k, cloud.AnnotationPrefix) {
				delete(ann, k)
			}
		}
		if len(ann) == 0 {
			delete(m, "annotations")
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// findings runs detect's built-in detectors over produced messages, as
// detect would over what it consumes, and returns the findings' ids and
// detectors, sorted.
func findings(t *testing.T, msgs []pipeline.Message) []string {
	t.Helper()
	set, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, m.Cluster, m.Value); err != nil {
			t.Fatal(err)
		}
		for _, f := range set.Detect(&ev, nil) {
			out = append(out, f.Detector+":"+f.ID)
		}
	}
	slices.Sort(out)
	return out
}

func TestFirehoseAuthentication(t *testing.T) {
	events := eksEvents(t)
	prod := &memProducer{}
	srv, reg := firehoseServer(t, prod, Config{})
	body := firehoseBody("a1b2c3d4-e5f6-4789-8abc-def012345678", gz(dataMessage(testLogStream, events[0])))

	if code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", "", body, false); code != http.StatusUnauthorized || resp.ErrorMessage == "" {
		t.Errorf("no key: %d %+v, want 401 with a message", code, resp)
	}
	if code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", "0000000000000000wrongwrongwrong00", body, false); code != http.StatusUnauthorized || strings.Contains(resp.ErrorMessage, "wrong") {
		t.Errorf("wrong key: %d %+v, want 401 not echoing the key", code, resp)
	}
	// A webhook bearer token is not a Firehose credential, and the access
	// key is no credential for the webhook.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/audit/prod-eu1", strings.NewReader(eventList(events[0])))
	req.Header.Set(HeaderFirehoseAccessKey, testAccessKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("access key on /audit: %d, want 401", resp.StatusCode)
	}
	// A key bound to prod-eu1 cannot deliver for another cluster.
	if code, _ := postFirehose(t, srv.URL+"/firehose/staging", testAccessKey, body, false); code != http.StatusForbidden {
		t.Errorf("other cluster: %d, want 403", code)
	}
	if n := len(prod.snapshot()); n != 0 {
		t.Fatalf("%d events produced by refused requests", n)
	}
	if got := counterValue(t, reg, MetricAuthFailures, map[string]string{"reason": ReasonBadAccessKey}); got != 1 {
		t.Errorf("bad_access_key failures = %v, want 1", got)
	}
	if got := counterValue(t, reg, MetricAuthFailures, map[string]string{"reason": ReasonNoCredentials}); got != 2 {
		t.Errorf("no_credentials failures = %v, want 2 (Firehose without key, /audit without token)", got)
	}
	if code, _ := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, body, false); code != http.StatusOK {
		t.Fatalf("right key: %d", code)
	}

	// On the insecure listener a caller without a key is let through and
	// the path names the cluster, as for /audit there.
	keys := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(keys, []byte(testAccessKey+",firehose-prod-eu1,prod-eu1\n"), 0o600)
	auth, err := NewAuthenticator(AuthConfig{FirehoseAccessKeyFile: keys}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	prod2 := &memProducer{}
	h, _ := New(Config{}, prod2, nil, nil, nil, nil)
	insecure := httptest.NewServer(auth.Optional(h))
	defer insecure.Close()
	if code, _ := postFirehose(t, insecure.URL+"/firehose/dev-local", "", body, false); code != http.StatusOK {
		t.Fatalf("insecure without key: %d", code)
	}
	if code, _ := postFirehose(t, insecure.URL+"/firehose/dev-local", "0000000000000000wrongwrongwrong00", body, false); code != http.StatusUnauthorized {
		t.Fatalf("insecure with a wrong key: %d, want 401", code)
	}
	if m := prod2.snapshot(); len(m) != 1 || m[0].Cluster != "dev-local" {
		t.Fatalf("insecure listener produced %+v", m)
	}
}

// Records and events that can never be accepted are left out and counted;
// the rest is produced and Firehose is told 200, so it does not resend
// the batch for its whole retry duration.
func TestFirehosePoisonRecordsAreSkipped(t *testing.T) {
	events := eksEvents(t)
	prod := &memProducer{}
	srv, reg := firehoseServer(t, prod, Config{})
	noAuditID := strings.Replace(events[1], `"stage":"ResponseComplete"`, `"stage":"Bogus"`, 1)
	body := firehoseBody("5b6c7d8e-9f00-4a1b-8c2d-3e4f5a6b7c8d",
		gz(dataMessage(testLogStream, events[0], noAuditID)),
		[]byte("\x1f\x8b\x08\x00garbage"),       // gzip magic, broken stream
		[]byte(`{"messageType":"DATA_MESSAGE"`), // cut short
		gz(dataMessage(testLogStream, events[2])),
	)
	code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, body, false)
	if code != http.StatusOK || !strings.Contains(resp.ErrorMessage, "left out 2 records and 1 events") {
		t.Fatalf("got %d %+v, want 200 naming what was left out", code, resp)
	}
	if got, want := auditIDs(t, prod.snapshot()), wantIDs(t, []string{events[0], events[2]}); !slices.Equal(got, want) {
		t.Fatalf("produced %v, want %v", got, want)
	}
	if got := counterValue(t, reg, MetricFirehoseRecords, map[string]string{"result": FirehoseRecordRejected}); got != 2 {
		t.Errorf("rejected records = %v, want 2", got)
	}

	// A body that is not a Firehose request: 400, which Firehose retries
	// and finally writes to its S3 backup.
	for _, bad := range []string{`not json`, `{"records":[]}`, `{"requestId":"x","records":[{"data":1}]}`, `{"requestId":"x"}`} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/firehose/prod-eu1", strings.NewReader(bad))
		req.Header.Set(HeaderFirehoseAccessKey, testAccessKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var fr FirehoseResponse
		err = json.NewDecoder(resp.Body).Decode(&fr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || err != nil || fr.ErrorMessage == "" || fr.Timestamp == 0 {
			t.Errorf("%s: %d %+v %v, want 400 in Firehose's format", bad, resp.StatusCode, fr, err)
		}
	}
}

// Firehose requests are produced in chunks within max-events-per-request
// and max-body-bytes, and a request that decompresses beyond the bound is
// refused with 413, which Firehose does not retry.
func TestFirehoseLimits(t *testing.T) {
	events := eksEvents(t)
	prod := &countingProducer{}
	srv, _ := firehoseServer(t, prod, Config{MaxEventsPerRequest: 2, MaxBodyBytes: 64 << 10})
	code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, firehoseBody("c1", gz(dataMessage(testLogStream, events...))), false)
	if code != http.StatusOK {
		t.Fatalf("chunked: %d %+v", code, resp)
	}
	if got, want := auditIDs(t, prod.snapshot()), wantIDs(t, events); !slices.Equal(got, want) {
		t.Fatalf("produced %v, want %v", got, want)
	}
	if prod.calls != 3 {
		t.Errorf("%d produce calls for 6 events at 2 a request, want 3", prod.calls)
	}

	// A gzip bomb: each record within the per-record bound, together far
	// beyond 16 × max-body-bytes.
	bomb := gz(dataMessage(testLogStream, `{"pad":"`+strings.Repeat("A", 60<<10)+`"}`))
	var recs [][]byte
	for range 20 {
		recs = append(recs, bomb)
	}
	code, resp = postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, firehoseBody("c2", recs...), false)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(resp.ErrorMessage, "decompress") {
		t.Fatalf("bomb: %d %+v, want 413", code, resp)
	}
	// A body beyond max-body-bytes once its Content-Encoding is undone.
	big := firehoseBody("c3", bytes.Repeat([]byte("x"), 80<<10))
	if code, _ := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, big, true); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("large gzip body: %d, want 413", code)
	}
}

type countingProducer struct {
	memProducer
	calls int
}

func (p *countingProducer) Produce(ctx context.Context, msgs []pipeline.Message) error {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	return p.memProducer.Produce(ctx, msgs)
}

// With Kafka down Firehose is told to retry (503), and its redelivery of
// the same request, once Kafka is back, leaves every event in Kafka once.
func TestFirehoseKafkaDownThenRedelivered(t *testing.T) {
	const partitions = 2
	events := eksEvents(t)
	kc := kafkatest.Start(t, "audit-events", partitions, kafkatest.WithOutages())
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: kc.Brokers, Topic: kc.Topic, WriteTimeout: 2 * time.Second, MaxAttempts: 2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	srv, _ := firehoseServer(t, prod, Config{RetryAfter: time.Second})

	first := firehoseBody("11111111-2222-4333-8444-555555555555", gz(dataMessage(testLogStream, events[:2]...)))
	if code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, first, true); code != http.StatusOK {
		t.Fatalf("before the outage: %d %+v", code, resp)
	}
	kc.Stop()
	// The second request repeats an event of the first (CloudWatch
	// redelivers too) and brings new ones.
	second := firehoseBody("66666666-7777-4888-9999-000000000000", gz(dataMessage(testLogStream, events[1:]...)))
	code, resp := postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, second, true)
	if code == http.StatusOK || code == http.StatusRequestEntityTooLarge {
		t.Fatalf("Kafka down: %d %+v, want a status Firehose retries", code, resp)
	}
	t.Logf("Kafka down: %d %s", code, resp.ErrorMessage)
	kc.Restart()
	// Firehose retries with backoff until its retry duration ends.
	for attempt := 1; ; attempt++ {
		code, resp = postFirehose(t, srv.URL+"/firehose/prod-eu1", testAccessKey, second, true)
		if code == http.StatusOK {
			break
		}
		if attempt == 30 {
			t.Fatalf("redelivery still %d %+v", code, resp)
		}
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
	inKafka := map[string]int{}
	for _, m := range consumeAll(t, kc.Brokers, kc.Topic, partitions) {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod-eu1", m.Value); err != nil {
			t.Fatal(err)
		}
		inKafka[string(ev.AuditID)+"/"+string(ev.Stage)]++
	}
	for _, id := range wantIDs(t, events) {
		if c := inKafka[id]; c != 1 && !(c == 2 && kc.Real()) {
			t.Errorf("%s is in Kafka %d times, want once", id, c)
		}
	}
	if len(inKafka) != len(events) {
		t.Errorf("Kafka holds %d distinct events, want %d", len(inKafka), len(events))
	}
}
