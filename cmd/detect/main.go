// Command detect consumes audit events, runs auditpipe's detectors over
// them, and stores events and findings in ClickHouse (or prints the
// findings when no ClickHouse is configured).
//
//	detect --kafka-brokers kafka:9092 --clickhouse clickhouse://127.0.0.1:9000/auditpipe
//	detect --spool-dir ./auditpipe-spool            # embedded mode, prints findings
//	detect scan /var/log/kubernetes/audit.log*      # offline forensics
//
// Every flag can also be set as AUDITPIPE_<FLAG> (AUDITPIPE_CLICKHOUSE).
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if err := dispatch(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "detect:", err)
		os.Exit(1)
	}
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "scan":
			return scan(args[1:], stdout, stderr)
		case "run":
			return run(args[1:], stdout, stderr)
		case "rules":
			return rulesCmd(args[1:], stdout, stderr)
		case "help", "-h", "--help":
			fmt.Fprint(stderr, usage)
			return nil
		}
	}
	return run(args, stdout, stderr)
}

const usage = `Usage:
  detect [run] [flags]     consume from Kafka or the spool, detect, store
  detect scan [flags] FILE...
                           scan apiserver audit log files (JSON lines, plain
                           or gzip) and print findings
  detect rules check|test [FILE...]
                           lint user rule files, or run their examples
Run 'detect run -h' or 'detect scan -h' for the flags.
`
