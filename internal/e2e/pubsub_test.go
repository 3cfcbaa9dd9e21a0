package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/cloud/gke"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// httpToGRPC is the google.rpc.Code GKE writes for an HTTP status.
var httpToGRPC = map[int32]int{400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 422: 3, 429: 8, 500: 13, 503: 14, 504: 4}

// logEntryOf writes a generated audit event as GKE logs it: a LogEntry
// with an AuditLog protoPayload, methodName and resourceName from the
// objectRef (or the path of a non-resource request), the principal, the
// caller, the annotations as labels, the bodies, a gRPC status, and
// operation.first/last for the stage. ok is false for what GKE never
// exports (RequestReceived, Panic).
func logEntryOf(t *testing.T, ge gen.Event, seq int) (entry []byte, ok bool) {
	t.Helper()
	var ev auditv1.Event
	if err := auditjson.DecodeEvent(ge.JSON, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Stage != auditv1.StageResponseStarted && ev.Stage != auditv1.StageResponseComplete {
		return nil, false
	}
	var method, resource string
	if r := ev.ObjectRef; r != nil {
		version := r.APIVersion
		if version == "" {
			version = "v1"
		}
		group, mgroup := r.APIGroup, "core"
		if group == "" {
			group = "core"
		} else {
			parts := strings.Split(strings.TrimSuffix(group, ".k8s.io"), ".")
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
			mgroup = strings.Join(parts, ".")
		}
		method = "io.k8s." + mgroup + "." + version + "." + r.Resource
		resource = group + "/" + version
		if r.Namespace != "" {
			resource += "/namespaces/" + r.Namespace
		}
		resource += "/" + r.Resource
		if r.Name != "" {
			resource += "/" + r.Name
		}
		if r.Subresource != "" {
			method += "." + r.Subresource
			resource += "/" + r.Subresource
		}
		method += "." + ev.Verb
	} else {
		method = "io.k8s." + ev.Verb
		resource, _, _ = strings.Cut(ev.RequestURI, "?")
	}
	status := map[string]any{}
	if ev.ResponseStatus != nil && ev.ResponseStatus.Code >= 400 {
		code, ok := httpToGRPC[ev.ResponseStatus.Code]
		if !ok {
			code = 2
		}
		status = map[string]any{"code": code, "message": ev.ResponseStatus.Message}
	}
	payload := map[string]any{
		"@type": gke.AuditLogType, "serviceName": "k8s.io", "methodName": method, "resourceName": resource,
		"authenticationInfo": map[string]any{"principalEmail": ev.User.Username},
		"requestMetadata":    map[string]any{"callerSuppliedUserAgent": ev.UserAgent},
		"status":             status,
	}
	if len(ev.SourceIPs) > 0 {
		payload["requestMetadata"].(map[string]any)["callerIp"] = ev.SourceIPs[0]
	}
	if ev.RequestObject != nil {
		payload["request"] = json.RawMessage(ev.RequestObject.Raw)
	}
	if ev.ResponseObject != nil {
		payload["response"] = json.RawMessage(ev.ResponseObject.Raw)
	}
	first, last := false, true
	if ev.Stage == auditv1.StageResponseStarted {
		first, last = true, false
	}
	b, err := json.Marshal(map[string]any{
		"insertId": fmt.Sprintf("%s-%d", ev.AuditID, seq), "logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity",
		"timestamp": ev.StageTimestamp.Format(time.RFC3339Nano), "receiveTimestamp": ev.StageTimestamp.Add(4 * time.Second).Format(time.RFC3339Nano),
		"labels":    ev.Annotations,
		"operation": map[string]any{"id": string(ev.AuditID), "producer": "k8s.io", "first": first, "last": last},
		"resource": map[string]any{"type": "k8s_cluster", "labels": map[string]string{
			"cluster_name": cluster, "location": "europe-west1", "project_id": "acme-prod"}},
		"protoPayload": payload,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}

// deliverLikePubSub posts a push until it is acknowledged (2xx), backing
// off as Pub/Sub does, and returns how many attempts were refused.
func deliverLikePubSub(t *testing.T, url string, body []byte) int {
	t.Helper()
	backoff := 50 * time.Millisecond
	for attempt := 0; attempt < 60; attempt++ {
		resp, err := http.Post(url, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Error(err)
			return attempt
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return attempt
		case resp.StatusCode == http.StatusBadRequest:
			t.Errorf("push answered 400 (would be dead-lettered): %s", body)
			return attempt
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
	t.Errorf("push never acknowledged")
	return 60
}

// TestPubSubEndToEnd sends generated traffic through GKE's path (one
// LogEntry per Pub/Sub push, 16 pushes at a time as Pub/Sub sends them)
// while Kafka goes down and comes back, with ingest's deduplication
// window off, then has Pub/Sub deliver everything again. Under FINAL
// ClickHouse holds every (auditID, stage) GKE exports once, and every
// expected anonymous-access finding once: nothing lost, nothing
// duplicated.
func TestPubSubEndToEnd(t *testing.T) {
	h := newOutageHarness(t)

	s := generate(t, 800)
	var pushes [][]byte
	keys := map[string]bool{}
	exported := map[string]bool{} // auditIDs GKE exports an entry of
	for i, ge := range s.events {
		entry, ok := logEntryOf(t, ge, i)
		if !ok {
			continue
		}
		conv, err := gke.Convert(entry)
		if err != nil {
			t.Fatalf("event %d: %v\n%s", i, err, entry)
		}
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, cluster, conv); err != nil {
			t.Fatal(err)
		}
		keys[string(ev.AuditID)+"/"+string(ev.Stage)] = true
		exported[string(ev.AuditID)] = true
		pushes = append(pushes, []byte(`{"message":{"data":"`+base64.StdEncoding.EncodeToString(entry)+
			`","messageId":"`+fmt.Sprint(9_000_000+i)+`","publishTime":"2026-11-30T10:00:00Z"},"subscription":"projects/acme-prod/subscriptions/auditpipe-gke-prod-eu1"}`))
	}
	url := h.ingest.URL + "/pubsub/" + cluster
	deliverAll := func(outage bool) int64 {
		var refused atomic.Int64
		var wg sync.WaitGroup
		work := make(chan []byte)
		for range 16 {
			wg.Go(func() {
				for b := range work {
					refused.Add(int64(deliverLikePubSub(t, url, b)))
				}
			})
		}
		for i, b := range pushes {
			if outage && i == len(pushes)/3 {
				// Kafka goes away a third of the way in; it is back a
				// second later, while Pub/Sub is still retrying.
				h.kafka.Stop()
				go func() {
					time.Sleep(time.Second)
					h.kafka.Restart()
				}()
			}
			work <- b
		}
		close(work)
		wg.Wait()
		return refused.Load()
	}
	refused := deliverAll(true)
	if refused == 0 {
		t.Fatal("no push was refused during the outage: the test proved nothing")
	}
	t.Logf("%d pushes, %d answers during the outage told Pub/Sub to retry", len(pushes), refused)

	h.startDetect()
	want := uint64(len(keys))
	h.waitEventsFinal(want)
	h.checkAnonymousOnce(s, func(id string) bool { return exported[id] })
	if n := h.count("SELECT count() FROM {db}.events FINAL WHERE has(annotations.value, 'gke') AND has(annotations.key, 'auditpipe.io/gke-cluster-name')"); n != want {
		t.Errorf("%d of %d rows carry the GKE annotations", n, want)
	}
	findings := h.count("SELECT count() FROM {db}.findings FINAL")

	// Pub/Sub delivers at least once: everything again changes nothing.
	written := h.sinkCnt.events.Load()
	deliverAll(false)
	waitFor(t, "the redelivered events to be stored", func() bool { return h.sinkCnt.events.Load() >= written+int64(len(pushes)) })
	if got := h.count("SELECT count() FROM {db}.events FINAL"); got != want {
		t.Fatalf("after redelivery: events FINAL = %d, want %d", got, want)
	}
	if got := h.count("SELECT count() FROM {db}.findings FINAL"); got != findings {
		t.Fatalf("after redelivery: findings FINAL = %d, want %d", got, findings)
	}
}
