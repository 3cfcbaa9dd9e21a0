package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/ingest"
)

// firehoseRequests wraps events as EKS's path delivers them: CloudWatch
// Logs subscription payloads of up to perRecord events of one audit
// stream, gzip-compressed, base64 in Firehose requests of up to
// perRequest records, each body gzip-compressed as a stream configured
// with ContentEncoding GZIP sends it.
func firehoseRequests(events []gen.Event, perRecord, perRequest int) [][]byte {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	type logEvent struct {
		ID        string `json:"id"`
		Timestamp int64  `json:"timestamp"`
		Message   string `json:"message"`
	}
	type payload struct {
		MessageType         string     `json:"messageType"`
		Owner               string     `json:"owner"`
		LogGroup            string     `json:"logGroup"`
		LogStream           string     `json:"logStream"`
		SubscriptionFilters []string   `json:"subscriptionFilters"`
		LogEvents           []logEvent `json:"logEvents"`
	}
	type record struct {
		Data string `json:"data"`
	}
	var records []record
	for i := 0; i < len(events); i += perRecord {
		p := payload{MessageType: "DATA_MESSAGE", Owner: "111122223333", LogGroup: "/aws/eks/" + cluster + "/cluster",
			LogStream: "kube-apiserver-audit-5f2b8c0e4d1a9b7c6e3f0a2d4b6c8e1f", SubscriptionFilters: []string{"auditpipe"}}
		for j, ev := range events[i:min(i+perRecord, len(events))] {
			p.LogEvents = append(p.LogEvents, logEvent{ID: fmt.Sprintf("%056d", i+j), Timestamp: ev.Time.UnixMilli(), Message: string(ev.JSON)})
		}
		b, _ := json.Marshal(p)
		records = append(records, record{Data: base64.StdEncoding.EncodeToString(gz(b))})
	}
	var bodies [][]byte
	for i := 0; i < len(records); i += perRequest {
		b, _ := json.Marshal(map[string]any{
			"requestId": fmt.Sprintf("ed4acda5-034f-4f42-bba1-%012d", i),
			"timestamp": time.Now().UnixMilli(),
			"records":   records[i:min(i+perRequest, len(records))],
		})
		bodies = append(bodies, gz(b))
	}
	return bodies
}

// deliverLikeFirehose posts body until it is answered 200, backing off
// between attempts as Firehose does, and returns the statuses it got.
func deliverLikeFirehose(t *testing.T, url string, body []byte) []int {
	t.Helper()
	var codes []int
	backoff := 50 * time.Millisecond
	for attempt := 0; attempt < 60; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		req.Header.Set("X-Amz-Firehose-Protocol-Version", "1.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var fr ingest.FirehoseResponse
		err = json.NewDecoder(resp.Body).Decode(&fr)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("answer %d is not Firehose's format: %v", resp.StatusCode, err)
		}
		codes = append(codes, resp.StatusCode)
		switch {
		case resp.StatusCode == http.StatusOK:
			if fr.ErrorMessage != "" {
				t.Fatalf("200 with %q: events were left out", fr.ErrorMessage)
			}
			return codes
		case resp.StatusCode == http.StatusRequestEntityTooLarge:
			t.Fatalf("413 (Firehose drops the batch): %s", fr.ErrorMessage)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
	t.Fatalf("never answered 200: %v", codes)
	return nil
}

// TestFirehoseEndToEnd sends generated traffic through EKS's path
// (subscription payloads in Firehose requests) while Kafka goes down and
// comes back, with ingest's deduplication window off, then delivers all
// of it again through Firehose and once more through the webhook. Under
// FINAL ClickHouse holds every (auditID, stage) once and every expected
// anonymous-access finding once: nothing lost, nothing duplicated, and
// the two paths collapse into the same rows.
func TestFirehoseEndToEnd(t *testing.T) {
	h := newOutageHarness(t)

	s := generate(t, 1200)
	bodies := firehoseRequests(s.events, 50, 4) // 6 requests of 200 events
	url := h.ingest.URL + "/firehose/" + cluster
	refused := 0
	restarted := make(chan struct{})
	for i, body := range bodies {
		if i == 2 {
			// Kafka goes away; it is back while Firehose is still
			// retrying this request.
			h.kafka.Stop()
			go func() {
				defer close(restarted)
				time.Sleep(time.Second)
				h.kafka.Restart()
			}()
		}
		codes := deliverLikeFirehose(t, url, body)
		refused += len(codes) - 1
	}
	<-restarted
	if refused == 0 {
		t.Fatal("no request was refused during the outage: the test proved nothing")
	}
	t.Logf("%d answers during the outage told Firehose to retry", refused)

	h.startDetect()
	want := uint64(len(s.keys))
	h.waitEventsFinal(want)
	h.checkAnonymousOnce(s, nil)
	// Every stored row says where it came from.
	if n := h.count("SELECT count() FROM {db}.events FINAL WHERE has(annotations.key, 'auditpipe.io/source') AND has(annotations.key, 'auditpipe.io/eks-log')"); n != want {
		t.Errorf("%d of %d rows carry the EKS annotations", n, want)
	}
	findings := h.count("SELECT count() FROM {db}.findings FINAL")

	// Firehose redelivers everything (answers lost), and the apiserver's
	// webhook sends the same events: FINAL changes nothing.
	written := h.sinkCnt.events.Load()
	for _, body := range bodies {
		deliverLikeFirehose(t, url, body)
	}
	h.send(s.events)
	waitFor(t, "the redelivered events to be stored", func() bool { return h.sinkCnt.events.Load() >= written+2*int64(len(s.events)) })
	if got := h.count("SELECT count() FROM {db}.events FINAL"); got != want {
		t.Fatalf("after redelivery: events FINAL = %d, want %d", got, want)
	}
	if got := h.count("SELECT count() FROM {db}.findings FINAL"); got != findings {
		t.Fatalf("after redelivery: findings FINAL = %d, want %d", got, findings)
	}
}
