package eventhubs_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/eventhubs"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
)

// testTimeout bounds each blocking step: a hang guard, not a performance
// assertion (the machine is shared).
const testTimeout = 90 * time.Second

const (
	hubName    = "insights-logs-kube-audit"
	testCluser = "prod-eu1"
	resourceID = "/SUBSCRIPTIONS/6F1C2B7A-0D4E-4C8B-9A51-2E7F3D8C4B10/RESOURCEGROUPS/PROD-EU1-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-EU1"
	// connString is shaped as az prints primaryConnectionString; the key
	// is made up.
	connString = "Endpoint=sb://auditpipe-test.servicebus.windows.net/;SharedAccessKeyName=auditpipe-listen;SharedAccessKey=q3Vb8n1Zr0cT6yJm4Hs9Xk2Lw7Pa5Ee1Ud0Gf3Ri8Co=;EntityPath=" + hubName
)

func verifyNoLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// hub is an in-process broker playing Event Hubs' Kafka endpoint: TLS with a
// certificate from a test CA, SASL PLAIN required, the only user
// $ConnectionString with the connection string as its password.
type hub struct {
	bootstrap string
	caFile    string
	ca        *x509.CertPool
	fake      *kfake.Cluster
}

func startHub(t *testing.T, partitions int) *hub {
	t.Helper()
	caCert, caKey := newCA(t)
	leaf := newLeaf(t, caCert, caKey)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	fake, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(int32(partitions), hubName),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", eventhubs.ConnectionStringUser, connString),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}),
	)
	if err != nil {
		t.Fatalf("starting the fake event hub: %v", err)
	}
	t.Cleanup(fake.Close)
	return &hub{bootstrap: fake.ListenAddrs()[0], caFile: caFile, ca: pool, fake: fake}
}

func (h *hub) transport() *kafkago.Transport {
	return &kafkago.Transport{
		TLS:  &tls.Config{RootCAs: h.ca, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
		SASL: plain.Mechanism{Username: eventhubs.ConnectionStringUser, Password: connString},
	}
}

// send writes bodies to the hub as Azure Monitor would: one message each,
// spread over the partitions.
func (h *hub) send(t *testing.T, bodies ...[]byte) {
	t.Helper()
	tr := h.transport()
	defer tr.CloseIdleConnections()
	w := &kafkago.Writer{Addr: kafkago.TCP(h.bootstrap), Topic: hubName, Transport: tr, Balancer: &kafkago.RoundRobin{}, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	msgs := make([]kafkago.Message, len(bodies))
	for i, b := range bodies {
		msgs[i] = kafkago.Message{Value: b}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("sending %d messages to the hub: %v", len(bodies), err)
	}
}

// committedAll reports whether group has committed every message of the hub.
func (h *hub) committedAll(t *testing.T, group string) bool {
	t.Helper()
	tr := h.transport()
	defer tr.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(h.bootstrap), Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	committed, err := client.ConsumerOffsets(ctx, kafkago.TopicAndGroup{Topic: hubName, GroupId: group})
	if err != nil {
		t.Logf("reading committed offsets: %v", err)
		return false
	}
	ends := h.endOffsets(t, client, len(committed))
	for p, end := range ends {
		if end > 0 && committed[p] != end {
			return false
		}
	}
	return true
}

// committedAny reports whether group committed anything at all.
func (h *hub) committedAny(t *testing.T, group string) bool {
	t.Helper()
	tr := h.transport()
	defer tr.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(h.bootstrap), Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	committed, err := client.ConsumerOffsets(ctx, kafkago.TopicAndGroup{Topic: hubName, GroupId: group})
	if err != nil {
		t.Fatalf("reading committed offsets: %v", err)
	}
	for _, off := range committed {
		if off > 0 {
			return true
		}
	}
	return false
}

func (h *hub) endOffsets(t *testing.T, client *kafkago.Client, _ int) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	md, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{hubName}})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("reading hub metadata: %v", err)
	}
	var reqs []kafkago.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafkago.LastOffsetOf(p.ID))
	}
	resp, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{hubName: reqs}})
	if err != nil {
		t.Fatalf("listing hub offsets: %v", err)
	}
	ends := map[int]int64{}
	for _, po := range resp.Topics[hubName] {
		ends[po.Partition] = po.LastOffset
	}
	return ends
}

// pipe is one ingest eventhubs instance: the hub as source, the webhook's
// handler, the project's producer to auditpipe's topic.
type pipe struct {
	fwd    *eventhubs.Forwarder
	src    *kafka.Consumer
	prod   *kafka.Producer
	cancel context.CancelFunc
	done   chan error
}

func startPipeReg(t *testing.T, h *hub, out *kafkatest.Cluster, group string, reg prometheus.Registerer) *pipe {
	return startPipe(t, h, out, group, connString, eventhubs.Config{}, reg)
}

func startPipeConn(t *testing.T, h *hub, out *kafkatest.Cluster, group string, conn eventhubs.ConnectionString) *pipe {
	return startPipe(t, h, out, group, conn, eventhubs.Config{}, nil)
}

func startPipe(t *testing.T, h *hub, out *kafkatest.Cluster, group string, conn eventhubs.ConnectionString, cfg eventhubs.Config, reg prometheus.Registerer) *pipe {
	t.Helper()
	src, err := eventhubs.NewSource(eventhubs.SourceConfig{Bootstrap: h.bootstrap, ConnectionString: conn, ConsumerGroup: group, CAFile: h.caFile, ServerName: "127.0.0.1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: out.Brokers, Topic: out.Topic}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.New(ingest.Config{DefaultCluster: testCluser}, prod, red, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster == "" && cfg.Clusters == nil {
		cfg.Cluster = testCluser
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMin, cfg.RetryMax = 100*time.Millisecond, time.Second
	}
	fwd, err := eventhubs.New(cfg, src, ing, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipe{fwd: fwd, src: src, prod: prod, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- fwd.Run(ctx) }()
	t.Cleanup(func() { _ = p.stop(t) })
	return p
}

// stop ends the forwarder, then closes the source and the producer, as
// cmd/ingest does; it returns Run's result.
func (p *pipe) stop(t *testing.T) error {
	t.Helper()
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	p.cancel = nil
	var err error
	select {
	case err = <-p.done:
	case <-time.After(testTimeout):
		t.Fatal("the forwarder did not stop")
	}
	_ = p.src.Close()
	_ = p.prod.Close()
	return err
}

// waitFor polls cond; the deadline only bounds a broken run.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// produced is what reached auditpipe's topic.
type produced struct {
	events []pipeline.Event
	raw    map[string]int // auditID/stage → copies
}

// readTopic reads out's topic from the start through a fresh group until
// want distinct (auditID, stage) pairs have arrived, then keeps reading
// for grace (to catch late duplicates, a hang guard and nothing more).
func readTopic(t *testing.T, out *kafkatest.Cluster, want int) *produced {
	t.Helper()
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: out.Brokers, Topic: out.Topic, GroupID: fmt.Sprintf("verify-%d", time.Now().UnixNano())}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	p := &produced{raw: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for len(p.raw) < want {
		rec, err := cons.Fetch(ctx)
		if err != nil {
			t.Fatalf("reading auditpipe's topic (%d of %d events): %v", len(p.raw), want, err)
		}
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, rec.Cluster, bytes.Clone(rec.Value)); err != nil {
			t.Fatalf("decoding a produced event: %v", err)
		}
		if !strings.HasPrefix(string(rec.Key), rec.Cluster+"/") {
			t.Errorf("key %q does not start with the cluster %q", rec.Key, rec.Cluster)
		}
		p.events = append(p.events, ev)
		p.raw[string(ev.AuditID)+"/"+string(ev.Stage)]++
	}
	return p
}

func (p *produced) duplicates() int {
	n := 0
	for _, c := range p.raw {
		n += c - 1
	}
	return n
}

// fixture returns the Event Hubs message body of testdata: seven audit
// records of both categories and one kube-apiserver record.
func fixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../cloud/aks/testdata/eventhubs-message.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureAuditIDs are the (auditID, stage) pairs of the fixture's audit
// records.
func fixtureAuditIDs(t *testing.T) []string {
	t.Helper()
	var env struct {
		Records []struct {
			Category   string `json:"category"`
			Properties struct {
				Log string `json:"log"`
			} `json:"properties"`
		} `json:"records"`
	}
	if err := json.Unmarshal(fixture(t), &env); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range env.Records {
		if !strings.HasPrefix(r.Category, "kube-audit") {
			continue
		}
		var ev struct{ AuditID, Stage string }
		if err := json.Unmarshal([]byte(r.Properties.Log), &ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.AuditID+"/"+ev.Stage)
	}
	sort.Strings(ids)
	return ids
}

// generated returns n Event Hubs messages of per records each, every
// record a distinct audit event (its auditID numbered from first), shaped
// as AKS sends them.
func generated(t *testing.T, first, n, per int) (bodies [][]byte, ids []string) {
	t.Helper()
	for m := 0; m < n; m++ {
		var recs []map[string]any
		for r := 0; r < per; r++ {
			i := first + m*per + r
			id := fmt.Sprintf("0c1d2e3f-4a5b-4c6d-8e7f-%012d", i)
			ev := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/payments/deployments/api","verb":"patch","user":{"username":"alice@example.com","groups":["platform-admins","system:authenticated"]},"sourceIPs":["192.168.50.23"],"userAgent":"kubectl/v1.34.0 (darwin/arm64) kubernetes/f28b4c9","objectRef":{"resource":"deployments","namespace":"payments","name":"api","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-04T08:00:%02d.%06dZ","stageTimestamp":"2026-12-04T08:00:%02d.%06dZ","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"platform-admins\" of ClusterRole \"cluster-admin\" to Group \"platform-admins\""}}`,
				id, i%60, i%1000000, i%60, (i+1500)%1000000)
			recs = append(recs, map[string]any{
				"operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
				"category":      "kube-audit-admin",
				"ccpNamespace":  "65f1c0de2a9b7e0001c3d4e5",
				"resourceId":    resourceID,
				"properties":    map[string]string{"log": ev + "\n", "stream": "stdout", "pod": "kube-apiserver-7b9c5d8f6-q4m2x"},
				"time":          "2026-12-04T08:00:00Z",
				"Cloud":         "AzureCloud",
				"Environment":   "prod",
			})
			ids = append(ids, id+"/ResponseComplete")
		}
		b, err := json.Marshal(map[string]any{"records": recs})
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	return bodies, ids
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "auditpipe test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "auditpipe-test.servicebus.windows.net"},
		DNSNames:     []string{"auditpipe-test.servicebus.windows.net", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// counter finds the registered collector of name (with one label pair) in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				match := true
				for i := 0; i+1 < len(labels); i += 2 {
					found := false
					for _, lp := range m.GetLabel() {
						if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
							found = true
						}
					}
					match = match && found
				}
				if match {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	})
}

// collectorFunc is a gauge whose value is computed when collected, so
// testutil.ToFloat64 reads the registry's current value.
type collectorFunc func() float64

func (f collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc() }
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(f.desc(), prometheus.GaugeValue, f())
}
func (collectorFunc) desc() *prometheus.Desc {
	return prometheus.NewDesc("test_value", "value read from the registry", nil, nil)
}

// memSource is a Source over records in memory; it calls onEmpty once they
// are all fetched, then blocks.
type memSource struct {
	mu        sync.Mutex
	recs      []pipeline.Record
	committed []pipeline.Record
	empty     int
	onEmpty   func()
}

func (s *memSource) Fetch(ctx context.Context) (pipeline.Record, error) {
	s.mu.Lock()
	if len(s.recs) > 0 {
		r := s.recs[0]
		s.recs = s.recs[1:]
		s.mu.Unlock()
		return r, nil
	}
	s.empty++
	// The first empty fetch ends the batch's wait; the second is the next
	// round's, after the batch was delivered and committed.
	if s.empty == 2 && s.onEmpty != nil {
		s.onEmpty()
	}
	s.mu.Unlock()
	<-ctx.Done()
	return pipeline.Record{}, ctx.Err()
}

func (s *memSource) Commit(_ context.Context, recs []pipeline.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.committed = append(s.committed, recs...)
	return nil
}

type ingestFunc func(ctx context.Context, cluster string, items [][]byte) (ingest.Result, error)

func (f ingestFunc) IngestAnnotated(ctx context.Context, cluster string, items [][]byte) (ingest.Result, error) {
	return f(ctx, cluster, items)
}
