// Command ingest receives kube-apiserver audit webhooks and makes every
// event durable in Kafka, or in a local spool directory when no brokers are
// configured.
//
//	ingest --listen 127.0.0.1:8080 --kafka-brokers kafka:9092 --topic audit-events
//	ingest --spool-dir ./auditpipe-spool            # embedded mode, no Kafka
//
// Every flag can also be set as AUDITPIPE_<FLAG> (AUDITPIPE_KAFKA_BROKERS).
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
	"time"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/spool"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

type options struct {
	listen       string
	brokers      string
	topic        string
	partitions   int
	cluster      string
	spoolDir     string
	maxBody      int64
	logLevel     string
	shutdownWait time.Duration
	jwksFile     string
	fpKeyFile    string
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address for the webhook (POST /audit, /audit/{cluster}), /metrics, /healthz and /readyz")
	fs.StringVar(&o.brokers, "kafka-brokers", "", "comma-separated Kafka bootstrap brokers; empty means embedded mode (spool directory)")
	fs.StringVar(&o.topic, "topic", "audit-events", "Kafka topic for audit events")
	fs.IntVar(&o.partitions, "partitions", 8, "partitions when ingest has to create the topic")
	fs.StringVar(&o.cluster, "cluster", "default", "cluster name for events posted to /audit without one in the path")
	fs.StringVar(&o.spoolDir, "spool-dir", "auditpipe-spool", "spool directory used when no Kafka brokers are configured")
	fs.Int64Var(&o.maxBody, "max-body-bytes", 64<<20, "largest request body accepted, after gzip decoding")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.shutdownWait, "shutdown-timeout", 20*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	fs.StringVar(&o.jwksFile, "jwks-file", "", "copy of the cluster's /openid/v1/jwks: redacted tokens record whether their signature verifies")
	fs.StringVar(&o.fpKeyFile, "fingerprint-key-file", "", "file holding a secret key for HMAC fingerprints of redacted secret values (without it they get none)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, err := cli.NewLogger(o.logLevel)
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	reg := cli.NewRegistry()

	var (
		prod  pipeline.Producer
		ping  ingest.Pinger
		close func() error
	)
	if brokers := cli.SplitList(o.brokers); len(brokers) > 0 {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := kafka.EnsureTopic(tctx, brokers, o.topic, o.partitions)
		cancel()
		if err != nil {
			return fmt.Errorf("ensuring topic %s: %w", o.topic, err)
		}
		p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: o.topic}, log, reg)
		if err != nil {
			return err
		}
		prod, ping, close = p, p, p.Close
		log.Info("producing to kafka", "brokers", brokers, "topic", o.topic)
	} else {
		w, err := spool.NewWriter(spool.WriterConfig{Dir: o.spoolDir}, log)
		if err != nil {
			return err
		}
		prod, close = w, w.Close
		log.Info("embedded mode: appending to spool", "dir", o.spoolDir)
	}

	// Tokens and secret values never leave ingest: every event is redacted
	// before it is produced.
	rcfg := redact.Config{JWKSFile: o.jwksFile}
	if o.fpKeyFile != "" {
		key, err := os.ReadFile(o.fpKeyFile)
		if err != nil {
			return errors.Join(fmt.Errorf("reading fingerprint key: %w", err), close())
		}
		rcfg.FingerprintKey = strings.TrimSpace(string(key))
	}
	red, err := redact.New(rcfg)
	if err != nil {
		return errors.Join(err, close())
	}
	h, err := ingest.New(ingest.Config{DefaultCluster: o.cluster, MaxBodyBytes: o.maxBody}, prod, red, ping, log, reg)
	if err != nil {
		return errors.Join(err, close())
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", cli.MetricsHandler(reg))
	mux.Handle("/", h)
	srv := &http.Server{
		Addr:    o.listen,
		Handler: mux,
		// The apiserver's webhook client times out after 30 s; a client
		// that trickles its headers or body is cut off long before that.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return errors.Join(fmt.Errorf("listening: %w", err), close())
	}
	log.Info("ingest listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err = <-errc:
		err = fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
		// Upstream first: stop accepting and let in-flight requests finish
		// (each waits for its acks), then close the producer.
		start := time.Now()
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownWait)
		err = srv.Shutdown(sctx)
		cancel()
		log.Info("webhook server stopped", "took", time.Since(start))
	}
	return errors.Join(err, close())
}
