package main

import (
	"strings"
	"testing"
)

// TestScanVsNaive: the detect rows' ratios come from the pairs they ran
// when the results have them, else from the medians of the rows.
func TestScanVsNaive(t *testing.T) {
	f := func(bench string, wantWall, wantCPU float64) {
		t.Helper()
		res, err := parseBench(strings.NewReader(bench))
		if err != nil {
			t.Fatal(err)
		}
		wall, cpu := scanVsNaive(res, "realistic", "detect")
		if wall != wantWall || cpu != wantCPU {
			t.Errorf("scanVsNaive = %.2f, %.2f; want %.2f, %.2f\n%s", wall, cpu, wantWall, wantCPU, bench)
		}
	}
	rows := `BenchmarkScanProcess/realistic/naive 1 4000000000 ns/op 40.00 MB/s 20000 cpu-ns/event 40000 events/s
BenchmarkScanProcess/realistic/detect 1 1000000000 ns/op 160.00 MB/s 10000 cpu-ns/event 160000 events/s
`
	// Rows measured apart: 4x the naive row's events/s, 2x its CPU.
	f(rows, 4, 2)
	// The pairs under one load say otherwise, and win.
	f(rows+`BenchmarkScanProcess/realistic/detect 1 1000000000 ns/op 160.00 MB/s 10000 cpu-ns/event 160000 events/s 3.00 x-naive-wall 1.50 x-naive-cpu
`, 3, 1.5)
	// No naive row, no pairs: nothing to compare.
	f(`BenchmarkScanProcess/realistic/detect 1 1000000000 ns/op 160.00 MB/s 10000 cpu-ns/event 160000 events/s
`, 0, 0)
}
