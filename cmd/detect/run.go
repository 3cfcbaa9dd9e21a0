package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/clickhouse"
	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/spool"
)

type runOptions struct {
	brokers       string
	topic         string
	group         string
	clickhouseDSN string
	spoolDir      string
	config        string
	metricsListen string
	output        string
	batchRecords  int
	batchTimeout  time.Duration
	exitWhenIdle  time.Duration
	logLevel      string
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("detect run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o runOptions
	fs.StringVar(&o.brokers, "kafka-brokers", "", "comma-separated Kafka bootstrap brokers; empty means embedded mode (tail the spool directory)")
	fs.StringVar(&o.topic, "topic", "audit-events", "Kafka topic to consume")
	fs.StringVar(&o.group, "group", "auditpipe-detect", "consumer group (also names the spool offset file)")
	fs.StringVar(&o.clickhouseDSN, "clickhouse", "", "ClickHouse native DSN, e.g. clickhouse://127.0.0.1:9000/auditpipe; empty prints findings instead")
	fs.StringVar(&o.spoolDir, "spool-dir", "auditpipe-spool", "spool directory to tail when no Kafka brokers are configured")
	fs.StringVar(&o.config, "config", "", "detector configuration file (YAML); empty uses the defaults")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9091", "address for /metrics, /healthz and /readyz; empty disables")
	fs.StringVar(&o.output, "output", "auto", "how printed findings look: auto (table on a terminal, else JSON lines), table or json")
	fs.IntVar(&o.batchRecords, "batch-records", 10000, "flush a batch at this many events")
	fs.DurationVar(&o.batchTimeout, "batch-timeout", time.Second, "flush a non-empty batch after this long")
	fs.DurationVar(&o.exitWhenIdle, "exit-when-idle", 0, "exit once no event arrived for this long (0: run until stopped)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, err := cli.NewLogger(o.logLevel)
	if err != nil {
		return err
	}
	set, err := loadDetectors(o.config)
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	reg := cli.NewRegistry()

	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}

	var src pipeline.Source
	if brokers := cli.SplitList(o.brokers); len(brokers) > 0 {
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, Topic: o.topic, GroupID: o.group}, log, reg)
		if err != nil {
			return err
		}
		src = c
		closers = append(closers, c.Close)
		log.Info("consuming from kafka", "brokers", brokers, "topic", o.topic, "group", o.group)
	} else {
		r, err := spool.NewReader(spool.ReaderConfig{Dir: o.spoolDir, Group: o.group, DeleteConsumed: true}, log)
		if err != nil {
			return err
		}
		src = r
		closers = append(closers, r.Close)
		log.Info("embedded mode: tailing spool", "dir", o.spoolDir)
	}

	var sink pipeline.Sink
	if o.clickhouseDSN != "" {
		store, err := clickhouse.New(ctx, clickhouse.Config{DSN: o.clickhouseDSN}, log, reg)
		if err != nil {
			return errors.Join(err, closeAll())
		}
		sink = store
		closers = append(closers, store.Close)
		log.Info("storing in clickhouse", "database", store.Database())
	} else {
		format, err := outputFormat(o.output)
		if err != nil {
			return errors.Join(err, closeAll())
		}
		sink = console.NewPrinter(stdout, format)
	}

	if o.metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", cli.MetricsHandler(reg))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		srv := &http.Server{Addr: o.metricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		mctx, mstop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cli.Serve(mctx, srv, log, 5*time.Second) }()
		closers = append(closers, func() error { mstop(); return <-done })
	}

	proc := pipeline.NewProcessor(pipeline.ProcessorConfig{
		BatchRecords: o.batchRecords,
		BatchTimeout: o.batchTimeout,
		ExitWhenIdle: o.exitWhenIdle,
	}, src, set, sink, log, reg)
	log.Info("detect running", "detectors", set.IDs())
	err = proc.Run(ctx)
	return errors.Join(err, closeAll())
}

func loadDetectors(path string) (*detectors.Set, error) {
	cfg := detectors.DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = detectors.LoadConfig(path); err != nil {
			return nil, err
		}
	}
	return detectors.New(cfg)
}

func outputFormat(s string) (console.Format, error) {
	switch s {
	case "auto":
		return console.DetectFormat(os.Stdout), nil
	case "table":
		return console.FormatTable, nil
	case "json":
		return console.FormatJSON, nil
	}
	return 0, fmt.Errorf("--output: unknown format %q: want auto, table or json", s)
}
