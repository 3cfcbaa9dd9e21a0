package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/spool"
)

// base is the least a valid command line needs: a listener.
var base = []string{"--insecure-listen", "127.0.0.1:0"}

func parseOK(t *testing.T, args ...string) ingestConfig {
	t.Helper()
	var stderr bytes.Buffer
	c, err := parseConfig(append(append([]string(nil), base...), args...), &stderr)
	if err != nil {
		t.Fatalf("parseConfig(%q): %v\n%s", args, err, stderr.String())
	}
	return c
}

// TestParseConfigDefaults: with no flags but a listener, every component
// gets the defaults its own WithDefaults gives.
func TestParseConfigDefaults(t *testing.T) {
	c := parseOK(t)
	wantHandler := ingest.Config{DefaultCluster: "default", MaxBodyBytes: 64 << 20}.WithDefaults()
	if !reflect.DeepEqual(c.handler, wantHandler) {
		t.Errorf("handler config:\n got %+v\nwant %+v", c.handler, wantHandler)
	}
	if want := (spool.WriterConfig{Dir: "auditpipe-spool"}).WithDefaults(); c.spool != want {
		t.Errorf("spool config %+v, want %+v", c.spool, want)
	}
	if c.brokers != nil || c.producer.Topic != "" {
		t.Errorf("embedded mode has brokers %v, producer %+v", c.brokers, c.producer)
	}
	if c.level != slog.LevelInfo || c.metricsListen != "127.0.0.1:9090" || c.shutdownWait != 20*time.Second ||
		c.reloadInterval != ingest.DefaultReloadInterval || c.topic != "audit-events" || c.partitions != 8 {
		t.Errorf("defaults: %+v", c.options)
	}
	if c.tls.CertFile != "" || c.FingerprintKey != "" {
		t.Errorf("TLS %+v or a fingerprint key without their flags", c.tls)
	}
}

// TestParseConfigFlags sets each flag and checks it lands where its
// component reads it.
func TestParseConfigFlags(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "fp.key")
	os.WriteFile(keyFile, []byte("  s3cr3t-fingerprint-key\n"), 0o600)
	tlsArgs := []string{"--listen", ":8443", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--token-file", "t"}
	for _, tc := range []struct {
		args []string
		got  func(ingestConfig) any
		want any
	}{
		{[]string{"--metrics-listen", ""}, func(c ingestConfig) any { return c.metricsListen }, ""},
		{[]string{"--metrics-listen", ":1"}, func(c ingestConfig) any { return c.metricsListen }, ":1"},
		{tlsArgs, func(c ingestConfig) any { return c.tls }, ingest.TLSConfig{CertFile: "c.pem", KeyFile: "k.pem", ReloadInterval: ingest.DefaultReloadInterval}},
		{append(tlsArgs, "--client-ca", "ca.pem"), func(c ingestConfig) any { return c.tls.ClientCAFile }, "ca.pem"},
		{[]string{"--token-file", "t"}, func(c ingestConfig) any { return c.auth.TokenFile }, "t"},
		{[]string{"--firehose-access-key-file", "f"}, func(c ingestConfig) any { return c.auth.FirehoseAccessKeyFile }, "f"},
		{[]string{"--cluster-map-file", "m"}, func(c ingestConfig) any { return c.auth.ClusterMapFile }, "m"},
		{[]string{"--credential-reload-interval", "7s"}, func(c ingestConfig) any {
			return []time.Duration{c.auth.ReloadInterval, c.pubsub.ReloadInterval}
		}, []time.Duration{7 * time.Second, 7 * time.Second}},
		{[]string{"--kafka-brokers", "a:9092, b:9092"}, func(c ingestConfig) any { return c.producer.Brokers }, []string{"a:9092", "b:9092"}},
		{[]string{"--kafka-brokers", "a:9092", "--topic", "t2"}, func(c ingestConfig) any { return c.producer }, kafka.ProducerConfig{Brokers: []string{"a:9092"}, Topic: "t2"}.WithDefaults()},
		{[]string{"--partitions", "3"}, func(c ingestConfig) any { return c.partitions }, 3},
		{[]string{"--cluster", "prod-eu1"}, func(c ingestConfig) any { return c.handler.DefaultCluster }, "prod-eu1"},
		{[]string{"--spool-dir", "/s"}, func(c ingestConfig) any { return c.spool.Dir }, "/s"},
		{[]string{"--max-body-bytes", "1000000", "--max-event-bytes", "1000"}, func(c ingestConfig) any { return c.handler.MaxBodyBytes }, int64(1000000)},
		{[]string{"--max-event-bytes", "1000"}, func(c ingestConfig) any { return c.handler.MaxEventBytes }, int64(1000)},
		{[]string{"--max-events-per-request", "10"}, func(c ingestConfig) any { return c.handler.MaxEventsPerRequest }, 10},
		{[]string{"--max-inflight-requests", "11"}, func(c ingestConfig) any { return c.handler.MaxInFlightRequests }, 11},
		{[]string{"--max-reading-requests", "12"}, func(c ingestConfig) any { return c.handler.MaxReadingRequests }, 12},
		{[]string{"--max-inflight-bytes", "1000000000"}, func(c ingestConfig) any { return c.handler.MaxInFlightBytes }, int64(1000000000)},
		{[]string{"--min-body-rate", "13"}, func(c ingestConfig) any { return c.handler.MinBodyRate }, int64(13)},
		{[]string{"--body-rate-grace", "2s"}, func(c ingestConfig) any { return c.handler.BodyRateGrace }, 2 * time.Second},
		{[]string{"--retry-after", "3s"}, func(c ingestConfig) any { return c.handler.RetryAfter }, 3 * time.Second},
		{[]string{"--dedup-window", "4m"}, func(c ingestConfig) any { return c.handler.DedupWindow }, 4 * time.Minute},
		{[]string{"--dedup-entries", "14"}, func(c ingestConfig) any { return c.handler.DedupEntries }, 14},
		{[]string{"--disable-dedup"}, func(c ingestConfig) any { return c.handler.DisableDedup }, true},
		{[]string{"--read-header-timeout", "5s"}, func(c ingestConfig) any { return c.handler.ReadHeaderTimeout }, 5 * time.Second},
		{[]string{"--read-timeout", "6m"}, func(c ingestConfig) any { return c.handler.ReadTimeout }, 6 * time.Minute},
		{[]string{"--write-timeout", "7s"}, func(c ingestConfig) any { return c.handler.WriteTimeout }, 7 * time.Second},
		{[]string{"--idle-timeout", "8s"}, func(c ingestConfig) any { return c.handler.IdleTimeout }, 8 * time.Second},
		{[]string{"--max-header-bytes", "15"}, func(c ingestConfig) any { return c.handler.MaxHeaderBytes }, 15},
		{[]string{"--log-level", "debug"}, func(c ingestConfig) any { return c.level }, slog.LevelDebug},
		{[]string{"--shutdown-timeout", "9s"}, func(c ingestConfig) any { return c.shutdownWait }, 9 * time.Second},
		{[]string{"--jwks-file", "j"}, func(c ingestConfig) any { return c.jwksFile }, "j"},
		{[]string{"--pubsub-jwks-file", "p", "--pubsub-bindings-file", "b"}, func(c ingestConfig) any {
			return [2]string{c.pubsub.JWKSFile, c.pubsub.BindingsFile}
		}, [2]string{"p", "b"}},
		{[]string{"--fingerprint-key-file", keyFile}, func(c ingestConfig) any { return c.FingerprintKey }, config.Secret("s3cr3t-fingerprint-key")},
	} {
		c := parseOK(t, tc.args...)
		if got := tc.got(c); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %#v, want %#v", tc.args, got, tc.want)
		}
	}
}

// TestParseConfigEnv: AUDITPIPE_<FLAG> sets a flag not on the command line;
// the command line wins.
func TestParseConfigEnv(t *testing.T) {
	t.Setenv("AUDITPIPE_TOPIC", "from-env")
	t.Setenv("AUDITPIPE_CLUSTER", "env-cluster")
	c := parseOK(t, "--cluster", "flag-cluster")
	if c.topic != "from-env" || c.handler.DefaultCluster != "flag-cluster" {
		t.Errorf("topic %q, cluster %q", c.topic, c.handler.DefaultCluster)
	}
}

// TestParseConfigRejects: each mistake is refused before anything is
// opened, with a message naming the flag.
func TestParseConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"--partitions", "many"}, `invalid value "many" for flag -partitions`},
		{[]string{"--log-level", "loud"}, "parsing log level"},
		{[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout must be positive"},
		{[]string{"--credential-reload-interval", "0s"}, "--credential-reload-interval must be positive"},
		{[]string{"--cluster", "Bad Cluster!"}, "validating ingest config: cluster:"},
		{[]string{"--max-inflight-requests", "-1"}, "max-inflight-requests must be positive"},
		{[]string{"--max-event-bytes", "100", "--max-body-bytes", "10"}, "max-event-bytes (100) must not exceed max-body-bytes (10)"},
		{[]string{"--retry-after", "10ms"}, "retry-after must be at least 1s"},
		{[]string{"--pubsub-jwks-file", "p"}, "--pubsub-jwks-file and --pubsub-bindings-file go together"},
		{[]string{"--kafka-brokers", "a:9092", "--topic", ""}, "validating kafka producer config"},
		{[]string{"--spool-dir", ""}, "spool.dir: directory not set"},
		{[]string{"--fingerprint-key-file", filepath.Join(t.TempDir(), "missing")}, "reading fingerprint key"},
	} {
		var stderr bytes.Buffer
		_, err := parseConfig(append(append([]string(nil), base...), tc.args...), &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestConfigRedactsSecret: the fingerprint key does not show when the
// config is printed or logged.
func TestConfigRedactsSecret(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "fp.key")
	const key = "s3cr3t-fingerprint-key"
	os.WriteFile(keyFile, []byte(key), 0o600)
	c := parseOK(t, "--fingerprint-key-file", keyFile)
	if c.FingerprintKey != key {
		t.Fatalf("key not read: %q", string(c.FingerprintKey))
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c, "key", c.FingerprintKey)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c, "key", c.FingerprintKey)
	js, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", c, c, c, c.FingerprintKey), logs.String(), string(js)} {
		if strings.Contains(out, key) {
			t.Errorf("the key shows: %s", out)
		}
	}
}
