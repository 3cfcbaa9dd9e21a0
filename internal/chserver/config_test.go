package chserver

import (
	"strings"
	"testing"
)

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
