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

	"github.com/auditpipe/auditpipe/internal/clickhouse"
	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/processor"
	"github.com/auditpipe/auditpipe/internal/spool"
)

func parseRunOK(t *testing.T, args ...string) runConfig {
	t.Helper()
	var stderr bytes.Buffer
	c, err := parseRunConfig(args, &stderr)
	if err != nil {
		t.Fatalf("parseRunConfig(%q): %v\n%s", args, err, stderr.String())
	}
	return c
}

// TestParseRunConfigDefaults: with no flags, every component gets the
// defaults its own WithDefaults gives, and embedded mode prints findings
// without alerting.
func TestParseRunConfigDefaults(t *testing.T) {
	c := parseRunOK(t)
	if want := (processor.Config{}).WithDefaults(); !reflect.DeepEqual(c.processor, want) {
		t.Errorf("processor config:\n got %+v\nwant %+v", c.processor, want)
	}
	if want := (spool.ReaderConfig{Dir: "auditpipe-spool", Group: kafka.DefaultGroupID, DeleteConsumed: true}).WithDefaults(); c.spool != want {
		t.Errorf("spool config %+v, want %+v", c.spool, want)
	}
	if want := (rules.WatcherConfig{}).WithDefaults(); !reflect.DeepEqual(c.rules, want) {
		t.Errorf("rules config %+v, want %+v", c.rules, want)
	}
	if want := (firstseen.Config{}).WithDefaults(); c.firstSeen != want {
		t.Errorf("first-seen config %+v, want %+v", c.firstSeen, want)
	}
	if want := detectors.DefaultConfig(); !reflect.DeepEqual(c.detectors, want) {
		t.Errorf("detector config differs from the defaults")
	}
	if c.brokers != nil || c.clickhouse.DSN != "" || c.Alerts != nil || c.level != slog.LevelInfo {
		t.Errorf("brokers %v, clickhouse %q, alerts %v, level %v", c.brokers, c.clickhouse.DSN, c.Alerts, c.level)
	}
	if c.metricsListen != "127.0.0.1:9091" || c.firstSeenSync != 30*time.Second || c.dlqTopic != kafka.DefaultDeadLetterTopic {
		t.Errorf("defaults: %+v", c.runOptions)
	}
}

// TestParseRunConfigFlags sets each flag and checks it lands where its
// component reads it.
func TestParseRunConfigFlags(t *testing.T) {
	kafkaArgs := []string{"--kafka-brokers", "a:9092, b:9092"}
	chArgs := []string{"--clickhouse", "clickhouse://127.0.0.1:9000/audit"}
	detCfg := filepath.Join(t.TempDir(), "detectors.yaml")
	os.WriteFile(detCfg, []byte("state:\n  max_entries: 7\n"), 0o600)
	for _, tc := range []struct {
		args []string
		got  func(runConfig) any
		want any
	}{
		{kafkaArgs, func(c runConfig) any { return c.consumer }, kafka.ConsumerConfig{Brokers: []string{"a:9092", "b:9092"}, Topic: "audit-events", GroupID: kafka.DefaultGroupID}.WithDefaults()},
		{append(kafkaArgs, "--topic", "t2"), func(c runConfig) any { return [2]string{c.consumer.Topic, c.deadLetters.SourceTopic} }, [2]string{"t2", "t2"}},
		{append(kafkaArgs, "--group", "g2"), func(c runConfig) any { return c.consumer.GroupID }, "g2"},
		{[]string{"--group", "g2"}, func(c runConfig) any { return c.spool.Group }, "g2"},
		{append(kafkaArgs, "--dlq-topic", "dl"), func(c runConfig) any { return c.deadLetters.Topic }, "dl"},
		{append(kafkaArgs, "--kafka-session-timeout", "6s"), func(c runConfig) any { return c.consumer.SessionTimeout }, 6 * time.Second},
		{chArgs, func(c runConfig) any { return c.clickhouse }, clickhouse.Config{DSN: "clickhouse://127.0.0.1:9000/audit", Retention: map[string]int{}}.WithDefaults()},
		{append(chArgs, "--clickhouse-cluster", "prod"), func(c runConfig) any { return c.clickhouse.Cluster }, "prod"},
		{append(chArgs, "--retention-days", "events=30"), func(c runConfig) any { return c.clickhouse.Retention }, map[string]int{"events": 30}},
		{chArgs, func(c runConfig) any { return c.firstSeen.Journal }, true},
		{[]string{"--spool-dir", "/s"}, func(c runConfig) any { return c.spool.Dir }, "/s"},
		{[]string{"--config", detCfg}, func(c runConfig) any { return c.detectors.State.MaxEntries }, 7},
		{[]string{"--metrics-listen", ""}, func(c runConfig) any { return c.metricsListen }, ""},
		{[]string{"--output", "json"}, func(c runConfig) any { return c.format }, console.FormatJSON},
		{[]string{"--output", "table"}, func(c runConfig) any { return c.format }, console.FormatTable},
		{[]string{"--batch-records", "11"}, func(c runConfig) any { return c.processor.BatchRecords }, 11},
		{[]string{"--batch-bytes", "12"}, func(c runConfig) any { return c.processor.BatchBytes }, 12},
		{[]string{"--batch-timeout", "3s"}, func(c runConfig) any { return c.processor.BatchTimeout }, 3 * time.Second},
		{[]string{"--max-record-bytes", "13"}, func(c runConfig) any { return c.processor.MaxRecordBytes }, 13},
		{[]string{"--shutdown-timeout", "4s"}, func(c runConfig) any { return [2]time.Duration{c.processor.ShutdownTimeout, c.shutdown} }, [2]time.Duration{4 * time.Second, 4 * time.Second}},
		{[]string{"--cpuprofile", "cpu.out"}, func(c runConfig) any { return c.cpuProfile }, "cpu.out"},
		{[]string{"--workers", "3"}, func(c runConfig) any { return c.processor.Workers }, 3},
		{[]string{"--exit-when-idle", "5s"}, func(c runConfig) any { return c.processor.ExitWhenIdle }, 5 * time.Second},
		{[]string{"--log-level", "warn"}, func(c runConfig) any { return c.level }, slog.LevelWarn},
		{[]string{"--rules", "a.yaml, b.yaml"}, func(c runConfig) any { return c.rules.Files }, []string{"a.yaml", "b.yaml"}},
		{[]string{"--no-default-rules"}, func(c runConfig) any { return c.rules.NoDefault }, true},
		{[]string{"--rules-reload-interval", "9s"}, func(c runConfig) any { return c.rules.Interval }, 9 * time.Second},
		{[]string{"--first-seen-max-keys", "14"}, func(c runConfig) any { return c.firstSeen.MaxKeys }, 14},
		{[]string{"--first-seen-sync-interval", "15s"}, func(c runConfig) any { return c.firstSeenSync }, 15 * time.Second},
		// With ClickHouse and no alert flags, findings go out as alerts
		// to stdout; the shortcut flags build the route instead.
		{chArgs, func(c runConfig) any { return c.Alerts != nil }, true},
		{[]string{"--alertmanager-url", "http://am:9093"}, func(c runConfig) any { return c.Alerts != nil }, true},
		{[]string{"--slack-webhook-url", "https://hooks.slack.com/services/T/B/x"}, func(c runConfig) any { return c.Alerts != nil }, true},
		{[]string{"--alertmanager-url", "http://am:9093", "--grafana-url", "http://g"}, func(c runConfig) any { return c.Alerts.GrafanaURL }, "http://g"},
		{[]string{"--alertmanager-url", "http://am:9093", "--alert-state-file", "st"}, func(c runConfig) any { return c.Alerts.StateFile }, "st"},
		{[]string{"--alertmanager-url", "http://am:9093", "--alert-min-severity", "low"}, func(c runConfig) any { return c.alertMinSev }, "low"},
	} {
		c := parseRunOK(t, tc.args...)
		if got := tc.got(c); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %#v, want %#v", tc.args, got, tc.want)
		}
	}
}

// TestParseRunConfigEnv: AUDITPIPE_<FLAG> sets a flag not on the command
// line; the command line wins.
func TestParseRunConfigEnv(t *testing.T) {
	t.Setenv("AUDITPIPE_BATCH_RECORDS", "77")
	t.Setenv("AUDITPIPE_WORKERS", "5")
	c := parseRunOK(t, "--workers", "2")
	if c.processor.BatchRecords != 77 || c.processor.Workers != 2 {
		t.Errorf("batch records %d, workers %d", c.processor.BatchRecords, c.processor.Workers)
	}
}

// TestParseRunConfigRejects: each mistake is refused before anything is
// opened, with a message naming the flag or key.
func TestParseRunConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"--batch-records", "lots"}, `invalid value "lots" for flag -batch-records`},
		{[]string{"--log-level", "loud"}, "parsing log level"},
		{[]string{"--first-seen-sync-interval", "0s"}, "--first-seen-sync-interval must be positive"},
		{[]string{"--first-seen-max-keys", "-1"}, "--first-seen-max-keys: first_seen.max_keys must be positive"},
		{[]string{"--workers", "100000"}, "validating processor config: workers must be at most"},
		{[]string{"--retention-days", "events=x"}, "--retention-days:"},
		{[]string{"--output", "xml"}, `--output: unknown format "xml"`},
		{[]string{"--clickhouse", "clickhouse://127.0.0.1:1/a", "--clickhouse-cluster", "prod` ON CLUSTER x"}, "validating ClickHouse config: clickhouse.cluster"},
		{[]string{"--kafka-brokers", "a:9092", "--topic", ""}, "validating kafka consumer config"},
		{[]string{"--spool-dir", ""}, "opening spool: spool.dir: directory not set"},
		{[]string{"--rules-reload-interval", "-1s"}, "rules.interval must not be negative"},
		{[]string{"--alertmanager-url", "http://am:9093", "--alert-min-severity", "dire"}, "--alert-min-severity:"},
		{[]string{"--alert-config", filepath.Join(t.TempDir(), "missing.yaml")}, "reading alert config"},
		{[]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, "reading detector config"},
	} {
		var stderr bytes.Buffer
		_, err := parseRunConfig(tc.args, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestRunConfigRedactsSlackURL: the Slack webhook URL, a credential, does
// not show when the config is printed or logged.
func TestRunConfigRedactsSlackURL(t *testing.T) {
	const url = "https://hooks.slack.com/services/T000/B000/s3cr3tpath"
	c := parseRunOK(t, "--slack-webhook-url", url)
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c)
	js, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v", c, c, c), logs.String(), string(js)} {
		if strings.Contains(out, "s3cr3tpath") {
			t.Errorf("the Slack URL shows: %s", out)
		}
	}
}
