package clickhouse

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

// benchBatchEvents is detect's default --batch-records: one Write per
// batch of this many events, the size ClickHouse is meant to receive.
const benchBatchEvents = 10000

// benchBatches builds n batches of realistic events (the three testdata
// events in turn, each with its own auditID) with a finding for one event
// in a hundred, as a busy cluster's audit stream has.
func benchBatches(b *testing.B, n int) []pipeline.Batch {
	b.Helper()
	templates := []struct{ file, auditID string }{
		{"exec_pod_sa.json", "6f0e3f0a-3b0c-4a8e-9f5e-2d7c1c9b4a11"},
		{"get_secret_user.json", "b1c2d3e4-5f60-4718-9a0b-c1d2e3f40506"},
		{"anonymous_401.json", "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"},
	}
	raws := make([]string, len(templates))
	for i, tpl := range templates {
		raws[i] = string(loadEvent(b, tpl.file).Raw)
	}
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	out := make([]pipeline.Batch, n)
	seq := 0
	for bi := range out {
		for range benchBatchEvents {
			tpl := seq % len(templates)
			ev := decodeEvent(b, strings.Replace(raws[tpl], templates[tpl].auditID, fmt.Sprintf("%s%012x", templates[tpl].auditID[:24], seq), 1))
			// Spread over the day, so rows fall in many minutes of the
			// rollups, as real traffic does.
			ev.StageTimestamp.Time = start.Add(time.Duration(seq) * 10 * time.Millisecond)
			out[bi].Events = append(out[bi].Events, ev)
			if seq%100 == 0 {
				f := pipeline.NewFinding("exec_into_pod", ev, "")
				f.Severity = pipeline.SeverityHigh
				f.Summary = "bench finding"
				out[bi].Findings = append(out[bi].Findings, f)
			}
			seq++
		}
	}
	return out
}

// cpuTime is the user plus system CPU time pid has used, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Skipf("reading server CPU time: %v", err)
	}
	// The command name (field 2) is parenthesised and may hold spaces.
	_, rest, _ := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		b.Fatalf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parsing /proc/%d/stat: %q %q", pid, fields[11], fields[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// processCPU is the CPU time (user plus system) this process has used.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Skipf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStoreWrite inserts batches of realistic events (with their
// rollups, through the materialized views) through the Store into one
// ClickHouse 18.16 server, as detect does. Besides ns/op (one batch) it
// reports ns/row (wall time per event), server-ns/row (the server's CPU
// time per event), client-ns/row (this process's CPU time per event:
// building and sending the blocks, with its GC), events/s/core (events per second of server CPU) and
// server-cores (server CPU time over wall time: how many cores it kept
// busy). Run it with a -benchtime of several iterations, e.g.
//
//	go test -run '^$' -bench BenchmarkStoreWrite -benchtime 20x ./internal/clickhouse
func BenchmarkStoreWrite(b *testing.B) {
	srv := chtest.Start(b)
	st, err := New(b.Context(), Config{DSN: srv.DSN, Database: srv.NewDatabase(b)}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	batches := benchBatches(b, 3)
	var bytes int64
	for _, ev := range batches[0].Events {
		bytes += int64(len(ev.Raw))
	}
	b.SetBytes(bytes)
	b.ReportAllocs()
	pid := srv.Pid()

	cpuBefore := cpuTime(b, pid)
	clientBefore := processCPU(b)
	wallBefore := time.Now()
	n := 0
	for b.Loop() {
		if err := st.Write(b.Context(), batches[n%len(batches)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	wall := time.Since(wallBefore)
	client := processCPU(b) - clientBefore
	cpu := cpuTime(b, pid) - cpuBefore
	rows := float64(n * benchBatchEvents)
	b.ReportMetric(float64(wall.Nanoseconds())/rows, "ns/row")
	b.ReportMetric(float64(client.Nanoseconds())/rows, "client-ns/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/rows, "server-ns/row")
	if cpu > 0 {
		b.ReportMetric(rows/cpu.Seconds(), "events/s/core")
	}
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "server-cores")
}
