package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/eventhubs"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/spool"
)

// eventHubs forwards AKS audit events from an Azure event hub, read through
// Event Hubs' Kafka endpoint, to auditpipe's topic through the webhook's
// per-batch path. AKS diagnostic settings (kube-audit, kube-audit-admin)
// feed the hub; the hub's offsets move only once our Kafka acknowledged.
//
//	ingest eventhubs --connection-string-file /etc/auditpipe/eventhubs.conn \
//	       --cluster prod-eu1 --kafka-brokers kafka:9092 --topic audit-events
func eventHubs(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingest eventhubs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsageHeader(fs, eventHubsUsage)
	var src eventhubs.SourceConfig
	fs.StringVar(&src.Bootstrap, "bootstrap", "", "Event Hubs Kafka endpoint, <namespace>.servicebus.windows.net:9093; default: from the connection string's Endpoint")
	fs.StringVar(&src.EventHub, "event-hub", "", "event hub (Kafka topic) the diagnostic setting writes to; default: the connection string's EntityPath")
	fs.StringVar(&src.ConsumerGroup, "consumer-group", eventhubs.DefaultConsumerGroup, "Kafka consumer group whose offsets are committed on the hub")
	connFile := fs.String("connection-string-file", "", "file holding the hub's connection string (a SAS policy with Listen); it is the SASL PLAIN password of user $ConnectionString and is never logged")
	fs.StringVar(&src.CAFile, "ca-file", "", "PEM CAs to trust for the endpoint's certificate instead of the system's")
	fs.StringVar(&src.ServerName, "tls-server-name", "", "name the endpoint's certificate must carry; default: the bootstrap host")
	fs.BoolVar(&src.Plaintext, "plaintext", false, "connect without TLS, to a local Kafka standing in for Event Hubs (Event Hubs itself refuses it)")
	var cfg eventhubs.Config
	fs.StringVar(&cfg.Cluster, "cluster", "", "cluster for records whose resource ID --cluster-map-file does not name")
	clusterMap := fs.String("cluster-map-file", "", "YAML mapping AKS resource IDs to clusters: clusters: [{resource_id, cluster}]")
	fs.IntVar(&cfg.MaxBatchMessages, "max-batch-messages", eventhubs.DefaultMaxBatchMessages, "hub messages per batch (one produce round and one commit)")
	fs.DurationVar(&cfg.BatchWait, "batch-wait", eventhubs.DefaultBatchWait, "how long a batch waits for more messages after its first")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", eventhubs.DefaultMaxMessageBytes, "larger hub messages are skipped as poison")
	brokers := fs.String("kafka-brokers", "", "comma-separated Kafka bootstrap brokers of auditpipe's topic; empty means embedded mode (spool directory)")
	topic := fs.String("topic", "audit-events", "Kafka topic for audit events")
	partitions := fs.Int("partitions", 8, "partitions when ingest has to create the topic")
	spoolDir := fs.String("spool-dir", "auditpipe-spool", "spool directory used when no Kafka brokers are configured")
	d := ingest.Config{}.WithDefaults()
	hcfg := ingest.Config{}
	fs.Int64Var(&hcfg.MaxEventBytes, "max-event-bytes", d.MaxEventBytes, "events larger than this lose their request/response bodies (audit.k8s.io/truncated)")
	fs.DurationVar(&hcfg.DedupWindow, "dedup-window", d.DedupWindow, "how long produced events are remembered so a redelivered one (or its kube-audit-admin copy) is not produced twice")
	jwksFile := fs.String("jwks-file", "", "copy of the cluster's /openid/v1/jwks: redacted tokens record whether their signature verifies")
	fpKeyFile := fs.String("fingerprint-key-file", "", "file holding a secret key for HMAC fingerprints of redacted secret values")
	metricsListen := fs.String("metrics-listen", "127.0.0.1:9090", "address for /metrics, /healthz and /readyz; empty disables")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	shutdownWait := fs.Duration("shutdown-timeout", 20*time.Second, "how long shutdown may take: the batch in flight, then the producer flush")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eventhubs: unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("parsing log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// Every input is checked before anything is opened.
	var errs []error
	switch {
	case *connFile != "":
		conn, err := eventhubs.ReadConnectionString(*connFile)
		errs = append(errs, err)
		src.ConnectionString = conn
	case !src.Plaintext:
		errs = append(errs, errors.New("--connection-string-file is required: Event Hubs authenticates every client (az eventhubs eventhub authorization-rule keys list … --query primaryConnectionString)"))
	}
	if *clusterMap != "" {
		m, err := eventhubs.LoadClusterMap(*clusterMap)
		errs = append(errs, err)
		cfg.Clusters = m
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := errors.Join(src.Validate(), cfg.Validate()); err != nil {
		return err
	}
	if *shutdownWait <= 0 {
		return errors.New("--shutdown-timeout must be positive")
	}
	reg := cli.NewRegistry()

	prod, ping, closeProd, ensureLater, err := openOutput(ctx, *brokers, *topic, *partitions, *spoolDir, log, reg)
	if err != nil {
		return err
	}
	rcfg := redact.Config{JWKSFile: *jwksFile}
	if *fpKeyFile != "" {
		key, err := os.ReadFile(*fpKeyFile)
		if err != nil {
			return errors.Join(fmt.Errorf("reading fingerprint key: %w", err), closeProd())
		}
		rcfg.FingerprintKey = strings.TrimSpace(string(key))
	}
	red, err := redact.New(rcfg)
	if err != nil {
		return errors.Join(err, closeProd())
	}
	// The handler's cluster is a fallback no record uses: each batch
	// names its cluster from the record's resource ID.
	hcfg.DefaultCluster = "default"
	if cfg.Cluster != "" {
		hcfg.DefaultCluster = cfg.Cluster
	}
	h, err := ingest.New(hcfg, prod, red, ping, log, reg)
	if err != nil {
		return errors.Join(err, closeProd())
	}
	source, err := eventhubs.NewSource(src, log, reg)
	if err != nil {
		return errors.Join(err, closeProd())
	}
	fwd, err := eventhubs.New(cfg, source, h, log, reg)
	if err != nil {
		return errors.Join(err, source.Close(), closeProd())
	}

	var metricsSrv *http.Server
	var ln net.Listener
	if *metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", cli.MetricsHandler(reg))
		mux.Handle("GET /healthz", h)
		mux.Handle("GET /readyz", h)
		metricsSrv = newServer(hcfg.WithDefaults(), mux, log)
		if ln, err = net.Listen("tcp", *metricsListen); err != nil {
			return errors.Join(fmt.Errorf("listening on %s (metrics): %w", *metricsListen, err), source.Close(), closeProd())
		}
	}

	sws := src.WithDefaults()
	log.Info("forwarding from event hubs", "bootstrap", sws.Bootstrap, "event_hub", sws.EventHub, "consumer_group", sws.ConsumerGroup, "tls", !sws.Plaintext, "sasl", sws.ConnectionString != "")
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	errc := make(chan error, 2)
	fwdDone := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { fwdDone <- fwd.Run(runCtx) })
	if ensureLater != nil {
		wg.Go(func() {
			if err := ensureLater(runCtx); err != nil {
				errc <- err
			}
		})
	}
	if metricsSrv != nil {
		wg.Go(func() {
			if err := metricsSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving metrics on %s: %w", *metricsListen, err)
			}
		})
	}

	var runErr error
	fwdEnded := false
	select {
	case runErr = <-fwdDone:
		fwdEnded = true
		if runErr != nil {
			log.Error("stopping on error", "err", runErr)
		}
	case runErr = <-errc:
		log.Error("stopping on error", "err", runErr)
	case <-ctx.Done():
		log.Info("shutting down", "timeout", *shutdownWait)
	}
	// Upstream first, within the budget: the forwarder stops (a batch
	// not yet acknowledged stays uncommitted and is read again after a
	// restart; an acknowledged one is committed), the source leaves the
	// group, the producer flushes, the metrics listener goes last.
	start := time.Now()
	stopRun()
	closed := make(chan error, 1)
	go func() {
		var e error
		if !fwdEnded {
			e = <-fwdDone
		}
		e = errors.Join(e, source.Close(), closeProd())
		if metricsSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			e = errors.Join(e, metricsSrv.Shutdown(sctx))
			cancel()
		}
		closed <- e
	}()
	select {
	case e := <-closed:
		runErr = errors.Join(runErr, e)
	case <-time.After(*shutdownWait):
		// The process exits anyway; only unacknowledged batches are
		// lost, and the hub still holds them.
		return errors.Join(runErr, fmt.Errorf("shutting down: not done within the %s shutdown timeout", *shutdownWait))
	}
	wg.Wait()
	log.Info("shutdown complete", "took", time.Since(start), "err", runErr)
	return runErr
}

// openOutput opens auditpipe's side as ingest does: the Kafka producer, its
// readiness probe, and, when the brokers were unreachable at start-up, a
// background retry creating the topic (batches are retried meanwhile and
// the hub's offsets wait); or the spool in embedded mode.
func openOutput(ctx context.Context, brokers, topic string, partitions int, spoolDir string, log *slog.Logger, reg prometheus.Registerer) (pipeline.Producer, ingest.Pinger, func() error, func(context.Context) error, error) {
	list := cli.SplitList(brokers)
	if len(list) == 0 {
		w, err := spool.NewWriter(spool.WriterConfig{Dir: spoolDir}, log)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		log.Info("embedded mode: appending to spool", "dir", spoolDir)
		return w, nil, w.Close, nil, nil
	}
	var ensureLater func(context.Context) error
	tctx, cancel := context.WithTimeout(ctx, ensureTopicTimeout)
	err := kafka.EnsureTopic(tctx, list, topic, partitions)
	cancel()
	switch {
	case err == nil:
	case kafka.Retryable(err):
		log.Warn("ensuring topic, will retry in the background", "topic", topic, "err", err)
		ensureLater = func(ctx context.Context) error { return ensureTopic(ctx, list, topic, partitions, log) }
	default:
		return nil, nil, nil, nil, fmt.Errorf("ensuring topic %s: %w", topic, err)
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: list, Topic: topic}, log, reg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	log.Info("producing to kafka", "brokers", list, "topic", topic)
	return p, p, p.Close, ensureLater, nil
}
