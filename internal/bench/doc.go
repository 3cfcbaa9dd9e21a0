// Package bench holds the benchmarks of auditpipe's hot paths, each run
// beside its baseline in the same invocation so that ratios, not absolute
// figures from a noisy shared machine, are what gets compared:
//
//	go test -run '^$' -bench . -benchmem ./internal/bench/
//
// BenchmarkScanProcess builds cmd/detect and naivedecode with go build and
// runs them as processes over generated log files (a few hundred MB in a
// temporary directory); run it alone with -bench ScanProcess.
package bench
