package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

const testCluster = "prod-eu1"

// testTimeout bounds each blocking step of a test. It is a hang guard, not a
// performance assertion: generous because this machine is shared.
const testTimeout = 60 * time.Second

// verifyNoLeaks checks, after every other cleanup of t has run (the clients
// closed, the broker stopped), that no goroutine outlived the test. It must be
// called first in the test so that its cleanup runs last.
func verifyNoLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// subjects are the identities events are spread over, as the apiserver would
// see them: bound service-account tokens (keyed by credential-id), users,
// nodes, and an unauthenticated client keyed by its IP.
var subjects = []struct {
	username, credentialID, groups, ip string
}{
	{"system:serviceaccount:ci:deployer", "JTI=7d0c5a2e-3f9b-4c1e-9a8d-0b6f1e2d3c4a", `"system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"`, "10.0.3.17"},
	{"system:serviceaccount:monitoring:prometheus", "JTI=1f2e3d4c-5b6a-4798-8a9b-c0d1e2f3a4b5", `"system:serviceaccounts","system:serviceaccounts:monitoring","system:authenticated"`, "10.0.7.41"},
	{"alice@example.com", "", `"platform-admins","system:authenticated"`, "203.0.113.24"},
	{"bob@example.com", "", `"developers","system:authenticated"`, "198.51.100.77"},
	{"system:node:ip-10-0-1-12.eu-west-1.compute.internal", "", `"system:nodes","system:authenticated"`, "10.0.1.12"},
	{"system:kube-controller-manager", "", `"system:authenticated"`, "10.0.0.5"},
	{"system:serviceaccount:kube-system:coredns", "JTI=9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d", `"system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"`, "10.0.9.3"},
	{"", "", "", "45.83.64.1"}, // failed authentication: keyed by source IP
}

var requests = []struct{ verb, uri, resource, namespace, name string }{
	{"get", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef", "secrets", "kube-system", "bootstrap-token-abcdef"},
	{"list", "/api/v1/namespaces/ci/pods?limit=500", "pods", "ci", ""},
	{"create", "/api/v1/namespaces/ci/pods/deployer-7d9f/exec?command=sh&container=app&stdin=true&stdout=true&tty=true", "pods", "ci", "deployer-7d9f"},
	{"patch", "/apis/apps/v1/namespaces/payments/deployments/api?fieldManager=kubectl-client-side-apply", "deployments", "payments", "api"},
	{"update", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/ip-10-0-1-12.eu-west-1.compute.internal", "leases", "kube-node-lease", "ip-10-0-1-12.eu-west-1.compute.internal"},
	{"watch", "/api/v1/configmaps?allowWatchBookmarks=true&resourceVersion=48210&watch=true", "configmaps", "", ""},
}

// auditEventJSON renders the i-th event of a realistic stream: one line of
// audit.k8s.io/v1 JSON as the apiserver's webhook backend sends it.
func auditEventJSON(i int) []byte {
	s := subjects[i%len(subjects)]
	r := requests[(i/len(subjects))%len(requests)]
	ts := time.Date(2026, 11, 27, 10, 15, 2, 0, time.UTC).Add(time.Duration(i) * 7 * time.Millisecond)
	user := `{}`
	code, decision := 200, `"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"edit\" of ClusterRole \"edit\""`
	if s.username != "" {
		extra := ""
		if s.credentialID != "" {
			extra = fmt.Sprintf(`,"extra":{"authentication.kubernetes.io/credential-id":[%q],"authentication.kubernetes.io/node-name":["ip-10-0-1-12.eu-west-1.compute.internal"],"authentication.kubernetes.io/pod-name":["%s-5f7c9d8b6-x2k4p"],"authentication.kubernetes.io/pod-uid":["3c9e2a71-8d4b-4f0e-b5a6-1d2c3e4f5a6b"]}`, s.credentialID, strings.ReplaceAll(s.username, ":", "-"))
		}
		user = fmt.Sprintf(`{"username":%q,"uid":"6b1e4c2a-9f3d-4e8b-a7c5-%012d","groups":[%s]%s}`, s.username, i%1000, s.groups, extra)
	} else {
		code, decision = 401, `"authentication.k8s.io/failure":"invalid bearer token"`
	}
	objectRef := fmt.Sprintf(`{"resource":%q,"namespace":%q,"name":%q,"apiVersion":"v1"}`, r.resource, r.namespace, r.name)
	return fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%08x-4c1e-4b2a-9f3d-%012x","stage":"ResponseComplete","requestURI":%q,"verb":%q,"user":%s,"sourceIPs":[%q],"userAgent":"kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0","objectRef":%s,"responseStatus":{"metadata":{},"code":%d},"requestReceivedTimestamp":%q,"stageTimestamp":%q,"annotations":{%s}}`,
		i, i, r.uri, r.verb, user, s.ip, objectRef, code,
		ts.Format("2006-01-02T15:04:05.000000Z"), ts.Add(3*time.Millisecond).Format("2006-01-02T15:04:05.000000Z"), decision)
}

// auditMessages builds n messages the way ingest does: decoding each event
// and keying it by cluster and subject.
func auditMessages(t testing.TB, first, n int) []pipeline.Message {
	t.Helper()
	msgs := make([]pipeline.Message, n)
	for i := range msgs {
		raw := auditEventJSON(first + i)
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, testCluster, raw); err != nil {
			t.Fatalf("decoding test event %d: %v\n%s", first+i, err, raw)
		}
		msgs[i] = pipeline.Message{Key: pipeline.MessageKey(testCluster, &ev), Value: raw, Cluster: testCluster}
	}
	return msgs
}

func newProducer(t testing.TB, c *kafkatest.Cluster, mutate ...func(*kafka.ProducerConfig)) *kafka.Producer {
	t.Helper()
	cfg := kafka.ProducerConfig{Brokers: c.Brokers, Topic: c.Topic}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := kafka.NewProducer(cfg, nil, nil)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing producer: %v", err)
		}
	})
	return p
}

func newConsumer(t testing.TB, c *kafkatest.Cluster, group string) *kafka.Consumer {
	t.Helper()
	cons := closableConsumer(t, c, group)
	t.Cleanup(func() {
		if err := cons.Close(); err != nil {
			t.Errorf("closing consumer: %v", err)
		}
	})
	return cons
}

// filledTopic starts a four-partition cluster holding n audit events.
func filledTopic(t testing.TB, n int) *kafkatest.Cluster {
	t.Helper()
	c := kafkatest.Start(t, "audit-events", 4)
	produce(t, newProducer(t, c), auditMessages(t, 0, n))
	return c
}

// closableConsumer is newConsumer for a test that closes the consumer
// itself and checks the result: the cleanup only closes it when the test
// failed first.
func closableConsumer(t testing.TB, c *kafkatest.Cluster, group string) *kafka.Consumer {
	t.Helper()
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: c.Brokers, Topic: c.Topic, GroupID: group}, nil, nil)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	t.Cleanup(func() { _ = cons.Close() })
	return cons
}

// fetchN fetches exactly n records, failing the test if they do not arrive
// before the hang guard.
func fetchN(t testing.TB, cons *kafka.Consumer, n int) []pipeline.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	recs := make([]pipeline.Record, 0, n)
	for len(recs) < n {
		rec, err := cons.Fetch(ctx)
		if err != nil {
			t.Fatalf("fetching record %d of %d: %v", len(recs)+1, n, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// committedOffsets reads the group's committed offsets (the next offset to
// read) per partition straight from the broker.
func committedOffsets(t testing.TB, c *kafkatest.Cluster, group string) map[int]int64 {
	t.Helper()
	transport := &kafkago.Transport{}
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Transport: transport}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	offs, err := client.ConsumerOffsets(ctx, kafkago.TopicAndGroup{Topic: c.Topic, GroupId: group})
	if err != nil {
		t.Fatalf("reading committed offsets: %v", err)
	}
	return offs
}

// produce writes msgs, failing the test on error.
func produce(t testing.TB, p *kafka.Producer, msgs []pipeline.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := p.Produce(ctx, msgs); err != nil {
		t.Fatalf("producing %d messages: %v", len(msgs), err)
	}
}
