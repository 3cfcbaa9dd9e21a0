package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRunClickHouseClusterFlag: --clickhouse-cluster reaches the ClickHouse
// config, whose Validate refuses a name that could not be spliced into ON
// CLUSTER, before anything is dialled.
func TestRunClickHouseClusterFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{
		"--spool-dir", t.TempDir(),
		"--metrics-listen", "",
		"--clickhouse", "clickhouse://127.0.0.1:1/auditpipe",
		"--clickhouse-cluster", "prod` ON CLUSTER x",
	}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "clickhouse.cluster") {
		t.Fatalf("run with a bad --clickhouse-cluster = %v, want the config error naming clickhouse.cluster", err)
	}
}
