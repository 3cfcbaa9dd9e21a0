// Package kafkatest gives tests a Kafka cluster: by default an in-process
// broker speaking the Kafka protocol (franz-go's kfake), or the real brokers
// named by KAFKA_BROKERS, so the same tests run in CI without a broker and
// against Kafka itself when one is available.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// EnvBrokers names the environment variable that switches tests to a real
// cluster: a comma-separated list of bootstrap addresses.
const EnvBrokers = "KAFKA_BROKERS"

// fakeBrokers is how many brokers the in-process cluster runs. Three, like a
// minimal production cluster, so partition leaders and the group coordinator
// are spread over several brokers and the client's per-broker routing is
// exercised, not just a single connection.
const fakeBrokers = 3

// adminTimeout bounds topic creation and deletion on a real cluster.
const adminTimeout = 30 * time.Second

// Cluster is one test's Kafka cluster and the topic it should use.
type Cluster struct {
	// Brokers are the bootstrap addresses to give clients.
	Brokers []string
	// Topic is the topic to produce to and consume from. With a real
	// broker it is a fresh, uniquely named topic, so tests never see each
	// other's records.
	Topic string

	t          testing.TB
	partitions int

	mu    sync.Mutex
	fake  *kfake.Cluster // nil when real or stopped
	real  bool
	dir   string     // kfake's data directory, so a restart keeps the log
	ports []int      // kfake's ports, rebound on restart
	own   *ownBroker // the test's own real broker, from WithOutages
}

// Option changes what Start gives a test.
type Option func(*options)

type options struct {
	outages bool
}

// WithOutages asks for a cluster the test may Stop and Restart. In process
// every cluster can; against real Kafka (KAFKA_BROKERS set) the test gets a
// broker of its own, started by scripts/kafka.sh in a temp dir, because
// stopping the shared broker would fail every other test using it. Without
// java and mvn the test is skipped, or fails under AUDITPIPE_REQUIRE_SERVICES.
func WithOutages() Option { return func(o *options) { o.outages = true } }

// Start returns a cluster holding topic with the given number of partitions.
// It is shut down (or, for a real cluster, the topic deleted) in t.Cleanup.
func Start(t testing.TB, topic string, partitions int, opts ...Option) *Cluster {
	t.Helper()
	if partitions < 1 {
		t.Fatalf("kafkatest: partitions must be at least 1, got %d", partitions)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{t: t, partitions: partitions}
	if env := strings.TrimSpace(os.Getenv(EnvBrokers)); env != "" {
		brokers := strings.Split(env, ",")
		if o.outages {
			c.own = startOwnBroker(t)
			brokers = []string{c.own.bootstrap}
		}
		c.startReal(topic, brokers)
		return c
	}
	c.Topic = topic
	c.dir = t.TempDir()
	fake, err := c.newFake()
	if err != nil {
		t.Fatalf("kafkatest: starting in-process kafka: %v", err)
	}
	c.fake = fake
	t.Cleanup(c.close)
	c.Brokers = fake.ListenAddrs()
	if c.ports, err = portsOf(c.Brokers); err != nil {
		t.Fatalf("kafkatest: reading in-process kafka ports: %v", err)
	}
	return c
}

// Real reports whether the cluster is an external broker from KAFKA_BROKERS.
func (c *Cluster) Real() bool { return c.real }

// Stop shuts the brokers down, as a broker outage would: their ports refuse
// connections until Restart. A real broker is the test's own (WithOutages),
// stopped with SIGTERM like a rolling restart would; without WithOutages the
// test is skipped, since a test must not stop a shared broker.
func (c *Cluster) Stop() {
	c.t.Helper()
	if c.own != nil {
		c.own.stop(c.t)
		return
	}
	if c.real {
		c.t.Skip("kafkatest: Stop on a real cluster needs Start(..., WithOutages())")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fake == nil {
		return
	}
	c.fake.Close()
	c.fake = nil
}

// Restart brings stopped brokers back on the same addresses with the same
// data (topics, records, committed offsets), like a broker restart.
func (c *Cluster) Restart() {
	c.t.Helper()
	if c.own != nil {
		c.own.start(c.t)
		return
	}
	if c.real {
		c.t.Skip("kafkatest: Restart on a real cluster needs Start(..., WithOutages())")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fake != nil {
		return
	}
	fake, err := c.newFake(kfake.Ports(c.ports...))
	if err != nil {
		// A port reused by another process in between is the only
		// expected cause; it is rare on the ephemeral range.
		c.t.Fatalf("kafkatest: restarting in-process kafka on %v: %v", c.Brokers, err)
	}
	c.fake = fake
}

func (c *Cluster) newFake(opts ...kfake.Opt) (*kfake.Cluster, error) {
	opts = append([]kfake.Opt{
		kfake.NumBrokers(fakeBrokers),
		kfake.SeedTopics(int32(c.partitions), c.Topic),
		kfake.DataDir(c.dir),
	}, opts...)
	return kfake.NewCluster(opts...)
}

func (c *Cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fake != nil {
		c.fake.Close()
		c.fake = nil
	}
}

func portsOf(addrs []string) ([]int, error) {
	ports := make([]int, len(addrs))
	for i, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		if ports[i], err = strconv.Atoi(p); err != nil {
			return nil, err
		}
	}
	return ports, nil
}

// topicUnsafe matches what Kafka refuses in a topic name.
var topicUnsafe = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

func (c *Cluster) startReal(topic string, brokers []string) {
	c.t.Helper()
	c.real = true
	for i := range brokers {
		brokers[i] = strings.TrimSpace(brokers[i])
	}
	c.Brokers = brokers

	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := topic + "-" + topicUnsafe.ReplaceAllString(c.t.Name(), "_") + "-" + hex.EncodeToString(suffix[:])
	if len(name) > 200 {
		name = name[len(name)-200:]
	}
	c.Topic = name

	transport := &kafkago.Transport{}
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: transport}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	resp, err := client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic: name, NumPartitions: c.partitions, ReplicationFactor: -1,
	}}})
	if err == nil {
		err = resp.Errors[name]
	}
	if err != nil {
		transport.CloseIdleConnections()
		c.t.Fatalf("kafkatest: creating topic %s on %v: %v", name, brokers, err)
	}
	if c.own != nil {
		// The test's own broker is removed with its data in t.Cleanup.
		transport.CloseIdleConnections()
		return
	}
	c.t.Cleanup(func() {
		defer transport.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		resp, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{name}})
		if err == nil {
			err = resp.Errors[name]
		}
		if err != nil && !errors.Is(err, kafkago.UnknownTopicOrPartition) {
			c.t.Logf("kafkatest: deleting topic %s: %v", name, err)
		}
	})
}
