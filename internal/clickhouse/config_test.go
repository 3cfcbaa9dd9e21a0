package clickhouse

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	f := func(dsn, database, wantDB string) {
		t.Helper()
		c := Config{DSN: dsn, Database: database}.WithDefaults()
		if c.Database != wantDB {
			t.Errorf("WithDefaults(dsn=%q, database=%q).Database = %q, want %q", dsn, database, c.Database, wantDB)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(dsn=%q) = %v, want nil", dsn, err)
		}
		if c.DialTimeout != DefaultDialTimeout || c.WriteTimeout != DefaultWriteTimeout || c.ReadTimeout != DefaultReadTimeout || c.MaxOpenConns != DefaultMaxOpenConns {
			t.Errorf("WithDefaults left zero fields: %+v", c)
		}
	}
	f("clickhouse://127.0.0.1:9000/", "", DefaultDatabase)
	f("clickhouse://127.0.0.1:9000", "", DefaultDatabase)
	f("clickhouse://127.0.0.1:9000/audit_prod", "", "audit_prod")
	f("clickhouse://127.0.0.1:9000/audit_prod", "override", "override")
	f("tcp://user:secret@ch-0:9000,ch-1:9000/audit?dial_timeout=2s", "", "audit")
}

func TestConfigValidate(t *testing.T) {
	f := func(c Config, wantErrs ...string) {
		t.Helper()
		err := c.Validate()
		if err == nil {
			t.Fatalf("Validate(%+v) = nil, want errors containing %q", c, wantErrs)
		}
		for _, w := range wantErrs {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %q, want it to contain %q", c, err, w)
			}
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Validate leaks the DSN password: %q", err)
		}
	}
	ok := Config{DSN: "clickhouse://127.0.0.1:9000/"}.WithDefaults()

	c := ok
	c.DSN = ""
	f(c, "clickhouse.dsn is required")

	c = ok
	c.DSN = "http://default:s3cret@127.0.0.1:8123/"
	f(c, "clickhouse.dsn", "native protocol")

	c = ok
	c.DSN = "127.0.0.1:9000"
	f(c, "clickhouse.dsn must be a URL")

	c = ok
	c.Database = "audit-prod; DROP TABLE x"
	f(c, "clickhouse.database")

	c = ok
	c.Cluster = "prod` ON CLUSTER x"
	f(c, "clickhouse.cluster")

	c = ok
	c.Cluster = "-prod"
	f(c, "clickhouse.cluster")

	for _, name := range []string{"auditpipe", "prod-eu-1", "ch_cluster"} {
		c = ok
		c.Cluster = name
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(cluster %q) = %v, want nil", name, err)
		}
	}

	// All problems at once, each naming its key.
	f(Config{DSN: "clickhouse://127.0.0.1:9000/", Database: "1db", DialTimeout: -time.Second},
		"clickhouse.database", "clickhouse.dial_timeout", "clickhouse.read_timeout", "clickhouse.write_timeout", "clickhouse.max_open_conns")
}
