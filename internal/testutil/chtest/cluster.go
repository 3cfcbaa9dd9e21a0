package chtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	// ZooKeeperJar is where Debian's zookeeper package installs the server.
	ZooKeeperJar = "/usr/share/java/zookeeper.jar"
	// ClusterName is the name StartCluster gives the cluster in
	// <remote_servers>, for ON CLUSTER and Distributed(…).
	ClusterName = "auditpipe"
)

// Cluster is a ZooKeeper and shards × replicas ClickHouse servers on
// loopback, configured as the cluster ClusterName, with the macros {shard}
// and {replica} set on each node.
type Cluster struct {
	// Nodes are the servers, shard by shard: Nodes[s*replicas+r].
	Nodes []*Server
	// ZooKeeper is the host:port of the coordination service.
	ZooKeeper string
}

// StartCluster starts the cluster for the duration of the test. Without
// ZooKeeper or ClickHouse it skips the test, or fails it when
// AUDITPIPE_REQUIRE_SERVICES=1.
func StartCluster(t testing.TB, shards, replicas int) *Cluster {
	t.Helper()
	if _, err := os.Stat(ZooKeeperJar); err != nil {
		msg := fmt.Sprintf("ZooKeeper not available (%v); install it with: apt-get install -y zookeeper", err)
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg + " (" + RequireEnv + "=1 forbids skipping)")
		}
		t.Skip(msg)
	}
	zk := startZooKeeper(t)
	c := &Cluster{ZooKeeper: zk}
	for range shards * replicas {
		c.Nodes = append(c.Nodes, Start(t))
	}
	// The nodes' ports are known only once each has started: write the
	// cluster config, then restart every node to read it.
	for i, n := range c.Nodes {
		if err := writeClusterConfig(n.ConfigDir(), c.Nodes, shards, replicas, i, zk); err != nil {
			t.Fatal(err)
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// writeClusterConfig writes config.d/cluster.xml for node i.
func writeClusterConfig(dir string, nodes []*Server, shards, replicas, i int, zk string) error {
	var b strings.Builder
	b.WriteString("<yandex>\n  <remote_servers>\n    <" + ClusterName + ">\n")
	for s := range shards {
		// internal_replication: a Distributed insert goes to one replica and
		// replication copies it, instead of every replica being written.
		b.WriteString("      <shard>\n        <internal_replication>true</internal_replication>\n")
		for r := range replicas {
			host, port, err := net.SplitHostPort(nodes[s*replicas+r].TCPAddr)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "        <replica><host>%s</host><port>%s</port></replica>\n", host, port)
		}
		b.WriteString("      </shard>\n")
	}
	b.WriteString("    </" + ClusterName + ">\n  </remote_servers>\n")
	host, port, err := net.SplitHostPort(zk)
	if err != nil {
		return err
	}
	fmt.Fprintf(&b, "  <zookeeper replace=\"true\"><node><host>%s</host><port>%s</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>\n", host, port)
	fmt.Fprintf(&b, "  <macros replace=\"true\"><shard>%02d</shard><replica>r%d</replica></macros>\n", i/replicas+1, i%replicas+1)
	// Replicas fetch parts from each other over interserver HTTP at this
	// host, which defaults to the machine's hostname.
	b.WriteString("  <interserver_http_host>127.0.0.1</interserver_http_host>\n</yandex>\n")
	if err := os.MkdirAll(filepath.Join(dir, "config.d"), 0o755); err != nil {
		return fmt.Errorf("writing cluster config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.d", "cluster.xml"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing cluster config: %w", err)
	}
	return nil
}

// startZooKeeper runs a standalone ZooKeeper in the test's temporary
// directory and returns its client address once it answers "ruok".
func startZooKeeper(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	_ = l.Close()
	cfg := filepath.Join(dir, "zoo.cfg")
	// A short tick keeps session expiry (2-20 ticks) quick when a test
	// stops a node.
	err = os.WriteFile(cfg, []byte("tickTime=500\ndataDir="+filepath.Join(dir, "data")+
		"\nclientPort="+port+"\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "zookeeper.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("java", "-cp", "/etc/zookeeper/conf:"+ZooKeeperJar, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ZooKeeper: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = logFile.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := zkAsk(addr); err == nil {
			return addr
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("ZooKeeper at %s did not answer in 30 s: %v\n%s", addr, err, log)
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("ZooKeeper exited at start:\n%s", log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// zkAsk sends ZooKeeper's "ruok" and wants "imok".
func zkAsk(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "imok" {
		return errors.New("ZooKeeper answered " + string(buf))
	}
	return nil
}
