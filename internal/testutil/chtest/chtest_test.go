package chtest

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDeriveConfig(t *testing.T) {
	src := []byte(`<?xml version="1.0"?>
<yandex>
    <logger><level>trace</level><log>/var/log/x.log</log></logger>
    <!-- <listen_host>0.0.0.0</listen_host> -->
    <listen_host>::1</listen_host>
    <listen_host>127.0.0.1</listen_host>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <https_port>8443</https_port>
    <path>/var/lib/clickhouse/</path>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <zookeeper incl="zookeeper-servers" optional="true" />
</yandex>`)
	got, err := deriveConfig(src, configParams{Dir: "/tmp/x", TCPPort: 1, HTTPPort: 2, InterPort: 3, UsersPath: "/tmp/x/users.xml"})
	if err != nil {
		t.Fatal(err)
	}
	out := string(got)
	for _, want := range []string{
		"<tcp_port>1</tcp_port>", "<http_port>2</http_port>", "<interserver_http_port>3</interserver_http_port>",
		"<path>/tmp/x/data/</path>", "<path>/clickhouse/task_queue/ddl</path>",
		"<listen_host>127.0.0.1</listen_host>", "<log>/tmp/x/log/clickhouse-server.log</log>",
		`<zookeeper incl="zookeeper-servers" optional="true">`, "<users_config>/tmp/x/users.xml</users_config>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("derived config lacks %s:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"::1", "8443", "8123", "/var/log", "trace", "0.0.0.0"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("derived config still contains %q:\n%s", unwanted, out)
		}
	}
	if n := strings.Count(out, "<listen_host>"); n != 1 {
		t.Errorf("derived config has %d listen_host elements, want 1", n)
	}
}

func TestDeriveUsers(t *testing.T) {
	src := []byte(`<?xml version="1.0"?>
<yandex>
    <profiles>
        <default><max_memory_usage>10000000000</max_memory_usage></default>
        <readonly><readonly>1</readonly></readonly>
    </profiles>
    <users><default><password></password><profile>default</profile></default></users>
</yandex>`)
	got, err := deriveUsers(src)
	if err != nil {
		t.Fatal(err)
	}
	want := "<default><poll_interval>1</poll_interval><max_memory_usage>"
	if !strings.Contains(string(got), want) || strings.Count(string(got), "poll_interval>") != 2 {
		t.Errorf("derived users.xml lacks %s exactly once in profiles/default:\n%s", want, got)
	}
	if _, err := deriveUsers([]byte(`<yandex><users/></yandex>`)); err == nil {
		t.Error("deriveUsers without profiles/default = nil error, want one")
	}
}

func TestServerRestart(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := s.NewDatabase(t)
	mustExec(ctx, t, s, "CREATE DATABASE "+db)
	mustExec(ctx, t, s, "CREATE TABLE "+db+".t (x UInt32) ENGINE = MergeTree() ORDER BY x")
	mustExec(ctx, t, s, "INSERT INTO "+db+".t VALUES (1), (2)")

	stopBegin := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %v", time.Since(stopBegin))
	if _, err := s.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("query on stopped server succeeded")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", s.StartupTime)
	// The same data dir means the rows survived the restart.
	if got := mustExec(ctx, t, s, "SELECT count() FROM "+db+".t"); strings.TrimSpace(got) != "2" {
		t.Fatalf("count after restart = %q, want 2", got)
	}
}

func TestNewDatabaseUnique(t *testing.T) {
	s := &Server{}
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %q twice", a)
	}
	if !strings.Contains(a, "testnewdatabaseunique") {
		t.Errorf("database name %q does not name the test", a)
	}
}

// fakeTB records Skip and Fatal instead of ending the real test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestMissingBinary(t *testing.T) {
	f := func(require string, wantSkip bool) {
		t.Helper()
		t.Setenv(RequireEnv, require)
		fake := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			startBinary(fake, filepath.Join(t.TempDir(), "no-clickhouse-server"))
		}()
		<-done
		got := fake.failed
		if wantSkip {
			got = fake.skipped
		}
		if !strings.Contains(got, "apt-get install -y clickhouse-server") {
			t.Errorf("%s=%q: skipped=%q failed=%q, want the install hint in the %s message",
				RequireEnv, require, fake.skipped, fake.failed, map[bool]string{true: "skip", false: "fatal"}[wantSkip])
		}
	}
	f("", true)
	f("0", true)
	f("1", false)
}

func mustExec(ctx context.Context, t *testing.T, s *Server, q string) string {
	t.Helper()
	out, err := s.Exec(ctx, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}
