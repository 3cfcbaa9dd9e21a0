// Command auditgen writes a deterministic stream of realistic Kubernetes
// audit events to stdout, for demos, load tests and benchmarks.
//
//	auditgen -n 2000 -seed 1 [-format jsonl|eventlist] [-batch 400] [-cluster demo]
//
// jsonl writes one event per line, as the apiserver's log backend does;
// eventlist writes one webhook EventList body per line, batch events each,
// as the webhook backend POSTs them.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/auditpipe/auditpipe/internal/gen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "auditgen:", err)
		os.Exit(2)
	}
}

// maxBatch is the webhook backend's largest batch (--audit-webhook-batch-max-size
// defaults to 400); larger bodies are not something an apiserver sends.
const maxBatch = 400

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("auditgen", flag.ContinueOnError)
	n := fs.Int("n", 2000, "number of events to write")
	seed := fs.Int64("seed", 1, "random seed: the same flags always give the same output")
	format := fs.String("format", "jsonl", "output format: jsonl (log backend) or eventlist (webhook bodies, one per line)")
	batch := fs.Int("batch", maxBatch, "events per EventList with -format eventlist")
	cluster := fs.String("cluster", gen.DefaultCluster, "cluster name, used in node names")
	rate := fs.Float64("rate", gen.DefaultRate, "events per second of event time")
	attack := fs.Float64("attack-ratio", gen.DefaultAttackRatio, "fraction of requests that are attacks, 0 to 1")
	lifecycle := fs.Bool("lifecycle", false, "add the cluster's life over days: pod restarts and rolling deploys, CI pipelines, a nightly CronJob (a baseline for first-seen rules; use with a low -rate, e.g. 1.65 for a week in 1,000,000 events)")
	start := fs.String("start", gen.DefaultStart.Format(time.RFC3339), "event time of the first request (RFC 3339)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	if *n < 0 {
		errs = append(errs, errors.New("-n must not be negative"))
	}
	if *format != "jsonl" && *format != "eventlist" {
		errs = append(errs, fmt.Errorf("-format %q: want jsonl or eventlist", *format))
	}
	if *batch < 1 || *batch > maxBatch {
		errs = append(errs, fmt.Errorf("-batch %d: want 1 to %d", *batch, maxBatch))
	}
	if *rate <= 0 {
		errs = append(errs, errors.New("-rate must be positive"))
	}
	if *attack < 0 || *attack > 1 {
		errs = append(errs, errors.New("-attack-ratio must be between 0 and 1"))
	}
	t0, err := time.Parse(time.RFC3339Nano, *start)
	if err != nil {
		errs = append(errs, fmt.Errorf("-start: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	g := gen.New(gen.Config{Seed: *seed, Cluster: *cluster, Start: t0, Rate: *rate, AttackRatio: *attack, Lifecycle: *lifecycle})
	w := bufio.NewWriterSize(stdout, 1<<20)
	if *format == "jsonl" {
		for range *n {
			// bufio.Writer keeps its first error; Flush below returns it.
			_, _ = w.Write(g.Next().JSON)
			_ = w.WriteByte('\n')
		}
	} else {
		items := make([][]byte, 0, *batch)
		for i := range *n {
			items = append(items, g.Next().JSON)
			if len(items) == *batch || i == *n-1 {
				_, _ = w.Write(gen.EventList(items))
				_ = w.WriteByte('\n')
				items = items[:0]
			}
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing events: %w", err)
	}
	return nil
}
