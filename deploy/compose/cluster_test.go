package compose_test

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadClusterProject loads compose.yaml with the two-node override, as
// `docker compose -f compose.yaml -f compose.cluster.yaml` does.
func loadClusterProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml", "compose.cluster.yaml"},
		cli.WithWorkingDirectory("."),
		cli.WithEnvFiles(".env.example"),
		cli.WithDotEnv,
		cli.WithName("auditpipe"),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading compose.yaml + compose.cluster.yaml with .env.example: %v", err)
	}
	return p
}

// clusterConfig is what the test reads from the mounted config.d files.
type clusterConfig struct {
	RemoteServers struct {
		Clusters []struct {
			XMLName xml.Name
			Shards  []struct {
				InternalReplication bool `xml:"internal_replication"`
				Replicas            []struct {
					Host string `xml:"host"`
					Port string `xml:"port"`
					User string `xml:"user"`
				} `xml:"replica"`
			} `xml:"shard"`
		} `xml:",any"`
	} `xml:"remote_servers"`
	ZooKeeper []struct {
		Host string `xml:"host"`
		Port string `xml:"port"`
	} `xml:"zookeeper>node"`
	Macros struct {
		Shard   string `xml:"shard"`
		Replica string `xml:"replica"`
	} `xml:"macros"`
}

// mountedConfig merges the config.d files service s mounts.
func mountedConfig(t *testing.T, s types.ServiceConfig) (clusterConfig, []string) {
	t.Helper()
	var c clusterConfig
	var files []string
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind || !strings.HasPrefix(v.Target, "/etc/clickhouse-server/config.d/") {
			continue
		}
		files = append(files, filepath.Base(v.Target))
		data, err := os.ReadFile(v.Source)
		if err != nil {
			t.Fatalf("service %s mounts %s: %v", s.Name, v.Source, err)
		}
		// Each file sets its own elements; decoding into the same struct
		// merges them.
		if err := xml.Unmarshal(data, &c); err != nil {
			t.Fatalf("parsing %s: %v", v.Source, err)
		}
		if !v.ReadOnly {
			t.Errorf("service %s mounts %s writable", s.Name, v.Source)
		}
	}
	sort.Strings(files)
	return c, files
}

// TestComposeClusterVariant: the override adds a Keeper and a second
// ClickHouse node, both nodes mount the same cluster definition and their
// own macros, and detect names the cluster the definition defines.
func TestComposeClusterVariant(t *testing.T) {
	p := loadClusterProject(t)
	for _, name := range []string{"clickhouse-keeper", "clickhouse-2", "clickhouse", "detect", "grafana", "ingest", "kafka"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %s missing from the cluster variant", name)
		}
	}
	root := repoRoot(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if rel, err := filepath.Rel(root, v.Source); err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("service %s mounts %s, outside the repository", name, v.Source)
				} else if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s: %v", name, rel, err)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("service %s uses undeclared volume %s", name, v.Source)
				}
			}
		}
	}

	var clusterFlag string
	for _, arg := range p.Services["detect"].Command {
		if v, ok := strings.CutPrefix(arg, "--clickhouse-cluster="); ok {
			clusterFlag = v
		}
	}
	if clusterFlag == "" {
		t.Fatalf("detect runs without --clickhouse-cluster: %q", p.Services["detect"].Command)
	}
	// The override restates detect's command: it must keep every flag of
	// the base file.
	base := loadProject(t).Services["detect"].Command
	for _, arg := range base {
		if !slices.Contains(p.Services["detect"].Command, arg) {
			t.Errorf("detect in the cluster variant lost %q from compose.yaml", arg)
		}
	}

	nodes := []string{"clickhouse", "clickhouse-2"}
	macros := map[[2]string]string{}
	var hosts []string
	for _, node := range nodes {
		s := p.Services[node]
		if s.Hostname != node {
			t.Errorf("service %s has hostname %q; remote_servers and interserver replication address it as %s", node, s.Hostname, node)
		}
		c, files := mountedConfig(t, s)
		if !slices.Equal(files, []string{"macros.xml", "remote-servers.xml"}) {
			t.Errorf("service %s mounts config.d files %v, want macros.xml and remote-servers.xml", node, files)
		}
		if c.Macros.Shard == "" || c.Macros.Replica == "" {
			t.Errorf("service %s sets no {shard} and {replica} macros", node)
		}
		key := [2]string{c.Macros.Shard, c.Macros.Replica}
		if other, dup := macros[key]; dup {
			t.Errorf("services %s and %s share the macros %v: their replicas would collide in Keeper", other, node, key)
		}
		macros[key] = node
		for _, zk := range c.ZooKeeper {
			if _, ok := p.Services[zk.Host]; !ok {
				t.Errorf("service %s's <zookeeper> names %s, not a service", node, zk.Host)
			}
		}
		if len(c.ZooKeeper) == 0 {
			t.Errorf("service %s has no <zookeeper>", node)
		}
		var found bool
		for _, cl := range c.RemoteServers.Clusters {
			if cl.XMLName.Local != clusterFlag {
				continue
			}
			found = true
			hosts = hosts[:0]
			for _, sh := range cl.Shards {
				if !sh.InternalReplication {
					t.Errorf("cluster %s has a shard without internal_replication: Distributed inserts would write every replica", clusterFlag)
				}
				for _, r := range sh.Replicas {
					hosts = append(hosts, r.Host)
					if r.User != "auditpipe" {
						t.Errorf("replica %s is reached as user %q; the image removes the default user", r.Host, r.User)
					}
				}
			}
		}
		if !found {
			t.Errorf("service %s's remote_servers does not define cluster %q that detect names", node, clusterFlag)
		}
	}
	sort.Strings(hosts)
	if !slices.Equal(hosts, nodes) {
		t.Errorf("cluster %s lists hosts %v, want the nodes %v", clusterFlag, hosts, nodes)
	}
	// Without the override, the base file stays one node.
	if _, ok := loadProject(t).Services["clickhouse-2"]; ok {
		t.Error("compose.yaml alone has clickhouse-2")
	}
}

// TestComposeClusterVariables: every variable the override interpolates
// has a default or is documented in .env.example.
func TestComposeClusterVariables(t *testing.T) {
	raw, err := os.ReadFile("compose.cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range composeVar.FindAllStringSubmatch(string(raw), -1) {
		name, mod := m[1], m[2]
		if m[0] == "$$" || strings.HasPrefix(mod, ":-") || strings.HasPrefix(mod, "-") {
			continue
		}
		if name == "" {
			name = m[3]
		}
		if !strings.Contains("\n"+string(env), "\n"+name+"=") {
			t.Errorf("compose.cluster.yaml uses $%s without a default, and .env.example does not document it", name)
		}
	}
}
