// Command ingest receives kube-apiserver audit webhooks and makes every
// event durable in Kafka, or in a local spool directory when no brokers are
// configured.
//
//	ingest --listen 0.0.0.0:8443 --tls-cert tls.crt --tls-key tls.key \
//	       --client-ca apiserver-ca.crt --token-file tokens.yaml \
//	       --kafka-brokers kafka:9092 --topic audit-events
//	ingest --insecure-listen 127.0.0.1:8080 --spool-dir ./auditpipe-spool   # local, plain HTTP
//
// Senders authenticate with a client certificate (--client-ca) or a bearer
// token (--token-file); the credential decides the cluster its events are
// stored under. Certificates, CAs and tokens are re-read when their files
// change. Every flag can also be set as AUDITPIPE_<FLAG>
// (AUDITPIPE_KAFKA_BROKERS).
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
	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/lifecycle"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/spool"
)

func main() {
	ctx, stop := cli.SignalContext()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "replay" {
		err = replay(os.Args[2:], os.Stdout, os.Stderr)
	} else if len(os.Args) > 1 && os.Args[1] == "eventhubs" {
		err = eventHubs(ctx, os.Args[2:], os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Stderr)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

type options struct {
	listen         string
	insecureListen string
	metricsListen  string
	tlsCert        string
	tlsKey         string
	clientCA       string
	tokenFile      string
	firehoseKeys   string
	clusterMapFile string
	reloadInterval time.Duration
	brokers        string
	topic          string
	partitions     int
	cluster        string
	spoolDir       string
	maxBody        int64
	logLevel       string
	shutdownWait   time.Duration
	jwksFile       string
	fpKeyFile      string
	// pubsubJWKS and pubsubBindings verify Pub/Sub push OIDC tokens.
	pubsubJWKS     string
	pubsubBindings string
	// limits is the webhook handler's configuration beyond the cluster
	// and body limit: in-flight bounds, event size, dedup, timeouts.
	limits ingest.Config
}

// validate checks the listener and credential flags together; each message
// says what to pass.
func (o options) validate() error {
	var errs []error
	if o.listen == "" && o.insecureListen == "" {
		errs = append(errs, errors.New("no listener: pass --listen ADDR with --tls-cert and --tls-key (and --client-ca and/or --token-file), or --insecure-listen ADDR for plain HTTP on a trusted network"))
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: pass both"))
	}
	if o.listen != "" {
		if o.tlsCert == "" || o.tlsKey == "" {
			errs = append(errs, errors.New("--listen serves TLS only: pass --tls-cert and --tls-key, or use --insecure-listen ADDR for plain HTTP"))
		}
		if o.clientCA == "" && o.tokenFile == "" && o.firehoseKeys == "" && o.pubsubJWKS == "" {
			errs = append(errs, errors.New("--listen needs a way to authenticate senders: pass --client-ca, --token-file, --firehose-access-key-file and/or --pubsub-jwks-file with --pubsub-bindings-file"))
		}
	} else {
		if o.tlsCert != "" {
			errs = append(errs, errors.New("--tls-cert is set but --listen is empty: pass --listen ADDR to serve TLS"))
		}
		if o.clientCA != "" {
			errs = append(errs, errors.New("--client-ca needs the TLS listener: pass --listen ADDR with --tls-cert and --tls-key"))
		}
	}
	if o.reloadInterval <= 0 {
		errs = append(errs, errors.New("--credential-reload-interval must be positive"))
	}
	if o.shutdownWait <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// ingestConfig is what ingest runs with: the flags (or their AUDITPIPE_*
// variables) checked, each component's configuration with its defaults
// applied and validated, and the secrets read from their files. Building
// from it opens files and connections; parsing it opens nothing.
type ingestConfig struct {
	options
	level slog.Level
	// brokers is --kafka-brokers split; empty means embedded mode.
	brokers []string
	handler ingest.Config
	// tls is used when tls.CertFile is set (--listen).
	tls      ingest.TLSConfig
	auth     ingest.AuthConfig
	pubsub   ingest.PubSubAuthConfig
	producer kafka.ProducerConfig
	spool    spool.WriterConfig
	// FingerprintKey is --fingerprint-key-file's content. Exported so
	// that fmt reaches its redacting methods when the whole config is
	// printed.
	FingerprintKey config.Secret
}

// run serves until ctx is done: it reads the flags, builds the components
// from them, and runs them.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	// Logs go to stderr as with cli.NewLogger, but to the writer given, so
	// that a test can read them.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.level}))
	a, err := build(ctx, cfg, log, cli.NewRegistry())
	if err != nil {
		return err
	}
	return a.run(ctx)
}

// parseConfig reads ingest's flags from args and the environment into a
// config, takes the component defaults from their WithDefaults, validates
// every part, and reads the secret files. It opens nothing; usage and
// parse errors go to stderr.
func parseConfig(args []string, stderr io.Writer) (ingestConfig, error) {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs)
	var o options
	fs.StringVar(&o.listen, "listen", "", "TLS address for the webhook (POST /audit, /audit/{cluster}); needs --tls-cert, --tls-key and --client-ca and/or --token-file")
	fs.StringVar(&o.insecureListen, "insecure-listen", "", "plain-HTTP address for the webhook, for local use only: callers without credentials are accepted")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9090", "address for /metrics, /healthz and /readyz; empty disables")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM serving certificate (with intermediates); re-read when it changes")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert; re-read when it changes")
	fs.StringVar(&o.clientCA, "client-ca", "", "PEM CAs that sign the apiservers' client certificates (mTLS); re-read when it changes")
	fs.StringVar(&o.tokenFile, "token-file", "", "bearer tokens: YAML (tokens: [{name, token, cluster}]) or lines of token,name[,cluster]; re-read when it changes")
	fs.StringVar(&o.firehoseKeys, "firehose-access-key-file", "", "access keys of Kinesis Data Firehose streams (EKS audit logs, POST /firehose/{cluster}), in --token-file's format, each bound to a cluster; re-read when it changes")
	fs.StringVar(&o.clusterMapFile, "cluster-map-file", "", "YAML binding credentials to clusters: clients: [{cn, cluster}], tokens: [{name, cluster}]")
	fs.DurationVar(&o.reloadInterval, "credential-reload-interval", ingest.DefaultReloadInterval, "how often at most the certificate, CA and token files are checked for changes")
	fs.StringVar(&o.brokers, "kafka-brokers", "", "comma-separated Kafka bootstrap brokers; empty means embedded mode (spool directory)")
	fs.StringVar(&o.topic, "topic", "audit-events", "Kafka topic for audit events")
	fs.IntVar(&o.partitions, "partitions", 8, "partitions when ingest has to create the topic")
	fs.StringVar(&o.cluster, "cluster", "default", "cluster name for events posted to /audit by a caller whose credential names no cluster")
	fs.StringVar(&o.spoolDir, "spool-dir", "auditpipe-spool", "spool directory used when no Kafka brokers are configured")
	fs.Int64Var(&o.maxBody, "max-body-bytes", 64<<20, "largest request body accepted, after gzip decoding")
	d := ingest.Config{}.WithDefaults()
	fs.Int64Var(&o.limits.MaxEventBytes, "max-event-bytes", d.MaxEventBytes, "events larger than this lose their request/response bodies (audit.k8s.io/truncated), as the apiserver's truncate backend does")
	fs.IntVar(&o.limits.MaxEventsPerRequest, "max-events-per-request", d.MaxEventsPerRequest, "most events in one request; beyond, 413 (the apiserver sends at most --audit-webhook-batch-max-size, 400 by default)")
	fs.IntVar(&o.limits.MaxInFlightRequests, "max-inflight-requests", d.MaxInFlightRequests, "webhook requests processed at once, once their body is in; beyond, 429 with Retry-After")
	fs.IntVar(&o.limits.MaxReadingRequests, "max-reading-requests", d.MaxReadingRequests, "webhook requests receiving their body at once; beyond, 429 with Retry-After")
	fs.Int64Var(&o.limits.MaxInFlightBytes, "max-inflight-bytes", d.MaxInFlightBytes, "bytes held at once: request bodies as they arrive and 1 KiB per event once split; beyond, 429 with Retry-After")
	fs.Int64Var(&o.limits.MinBodyRate, "min-body-rate", d.MinBodyRate, "bytes per second a request body must average after --body-rate-grace; slower ones are cut off with 408")
	fs.DurationVar(&o.limits.BodyRateGrace, "body-rate-grace", d.BodyRateGrace, "time a request body has before --min-body-rate applies")
	fs.DurationVar(&o.limits.RetryAfter, "retry-after", d.RetryAfter, "what 429 and 503 answers tell the sender to wait")
	fs.DurationVar(&o.limits.DedupWindow, "dedup-window", d.DedupWindow, "how long accepted events are remembered so a resent batch is not produced twice")
	fs.IntVar(&o.limits.DedupEntries, "dedup-entries", d.DedupEntries, "most events the dedup window remembers")
	fs.BoolVar(&o.limits.DisableDedup, "disable-dedup", false, "produce resent events again (downstream deduplication still collapses them)")
	fs.DurationVar(&o.limits.ReadHeaderTimeout, "read-header-timeout", d.ReadHeaderTimeout, "cut off clients that trickle their request headers")
	fs.DurationVar(&o.limits.ReadTimeout, "read-timeout", d.ReadTimeout, "longest a request body may take to arrive, however steadily it comes")
	fs.DurationVar(&o.limits.WriteTimeout, "write-timeout", d.WriteTimeout, "bound on writing a response")
	fs.DurationVar(&o.limits.IdleTimeout, "idle-timeout", d.IdleTimeout, "close idle keep-alive connections after this long")
	fs.IntVar(&o.limits.MaxHeaderBytes, "max-header-bytes", d.MaxHeaderBytes, "largest request header block")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.shutdownWait, "shutdown-timeout", 20*time.Second, "how long shutdown may take in all: in-flight requests finish, then the producer flushes")
	fs.StringVar(&o.jwksFile, "jwks-file", "", "copy of the cluster's /openid/v1/jwks: redacted tokens record whether their signature verifies")
	fs.StringVar(&o.pubsubJWKS, "pubsub-jwks-file", "", "Google's signing keys (https://www.googleapis.com/oauth2/v3/certs) for Pub/Sub push OIDC tokens at POST /pubsub/{cluster}; re-read when it changes")
	fs.StringVar(&o.pubsubBindings, "pubsub-bindings-file", "", "YAML binding push OIDC tokens to clusters: bindings: [{name, audience, email, cluster}]; re-read when it changes")
	fs.StringVar(&o.fpKeyFile, "fingerprint-key-file", "", "file holding a secret key for HMAC fingerprints of redacted secret values (without it they get none)")
	if err := cli.Parse(fs, args); err != nil {
		return ingestConfig{}, err
	}
	if err := o.validate(); err != nil {
		return ingestConfig{}, err
	}
	c := ingestConfig{options: o, brokers: cli.SplitList(o.brokers)}
	if err := c.level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return ingestConfig{}, fmt.Errorf("parsing log level: %w", err)
	}
	// Each part is checked as its constructor would, with the same
	// message, so that a mistake stops start-up before anything is opened.
	c.handler = o.limits
	c.handler.DefaultCluster, c.handler.MaxBodyBytes = o.cluster, o.maxBody
	c.handler = c.handler.WithDefaults()
	if err := c.handler.Validate(); err != nil {
		return ingestConfig{}, fmt.Errorf("validating ingest config: %w", err)
	}
	if o.tlsCert != "" {
		c.tls = ingest.TLSConfig{CertFile: o.tlsCert, KeyFile: o.tlsKey, ClientCAFile: o.clientCA, ReloadInterval: o.reloadInterval}
		if err := c.tls.Validate(); err != nil {
			return ingestConfig{}, fmt.Errorf("loading TLS files: %w", err)
		}
	}
	c.auth = ingest.AuthConfig{TokenFile: o.tokenFile, FirehoseAccessKeyFile: o.firehoseKeys, ClusterMapFile: o.clusterMapFile, ReloadInterval: o.reloadInterval}
	if err := c.auth.Validate(); err != nil {
		return ingestConfig{}, fmt.Errorf("loading credentials: %w", err)
	}
	// Pub/Sub push (GKE audit logs): OIDC tokens, or a --token-file token
	// in ?token=.
	c.pubsub = ingest.PubSubAuthConfig{JWKSFile: o.pubsubJWKS, BindingsFile: o.pubsubBindings, ReloadInterval: o.reloadInterval}
	if err := c.pubsub.Validate(); err != nil {
		return ingestConfig{}, fmt.Errorf("loading pubsub credentials: %w", err)
	}
	if len(c.brokers) > 0 {
		c.producer = kafka.ProducerConfig{Brokers: c.brokers, Topic: o.topic}.WithDefaults()
		if err := c.producer.Validate(); err != nil {
			return ingestConfig{}, fmt.Errorf("validating kafka producer config: %w", err)
		}
	} else {
		c.spool = spool.WriterConfig{Dir: o.spoolDir}.WithDefaults()
		if err := c.spool.Validate(); err != nil {
			return ingestConfig{}, fmt.Errorf("opening spool: %w", err)
		}
	}
	if o.fpKeyFile != "" {
		key, err := os.ReadFile(o.fpKeyFile)
		if err != nil {
			return ingestConfig{}, fmt.Errorf("reading fingerprint key: %w", err)
		}
		c.FingerprintKey = config.Secret(strings.TrimSpace(string(key)))
	}
	return c, nil
}

// app is ingest built: its components in a lifecycle group, in start
// order, none of them serving yet.
type app struct {
	log      *slog.Logger
	group    *lifecycle.Group
	shutdown time.Duration
	// errc receives a listener's serve error.
	errc chan error
}

// build constructs ingest's components from cfg and binds its listeners,
// but serves nothing and starts no goroutine: a.run does. On an error, what
// was opened is closed.
func build(ctx context.Context, cfg ingestConfig, log *slog.Logger, reg *prometheus.Registry) (*app, error) {
	// Credentials first: a broken certificate or token file should stop
	// start-up before a topic is created or a spool opened.
	var tlsFiles *ingest.TLS
	var err error
	if cfg.tls.CertFile != "" {
		tlsFiles, err = ingest.NewTLS(cfg.tls, log, reg)
		if err != nil {
			return nil, fmt.Errorf("loading TLS files: %w", err)
		}
	}
	var cas ingest.CAPool
	if tlsFiles != nil {
		cas = tlsFiles
	}
	auth, err := ingest.NewAuthenticator(cfg.auth, cas, log, reg)
	if err != nil {
		return nil, fmt.Errorf("loading credentials: %w", err)
	}
	pubsubAuth, err := ingest.NewPubSubAuth(cfg.pubsub, log, reg)
	if err != nil {
		return nil, fmt.Errorf("loading pubsub credentials: %w", err)
	}
	auth.WithPubSub(pubsubAuth)

	var (
		prod  pipeline.Producer
		ping  ingest.Pinger
		close func() error
		// ensureLater retries creating the topic in the background when
		// the brokers were unreachable at start-up.
		ensureLater func(context.Context) error
	)
	if brokers := cfg.brokers; len(brokers) > 0 {
		tctx, cancel := context.WithTimeout(ctx, ensureTopicTimeout)
		err := kafka.EnsureTopic(tctx, brokers, cfg.topic, cfg.partitions)
		cancel()
		switch {
		case err == nil:
		case kafka.Retryable(err):
			// Serve anyway: until the topic is there, produce requests
			// are answered 503 and /readyz fails, so the apiserver keeps
			// its events buffered and retries.
			log.Warn("ensuring topic, will retry in the background", "topic", cfg.topic, "err", err)
			ensureLater = func(ctx context.Context) error {
				return ensureTopic(ctx, brokers, cfg.topic, cfg.partitions, log)
			}
		default:
			return nil, fmt.Errorf("ensuring topic %s: %w", cfg.topic, err)
		}
		p, err := kafka.NewProducer(cfg.producer, log, reg)
		if err != nil {
			return nil, err
		}
		prod, ping, close = p, p, p.Close
		log.Info("producing to kafka", "brokers", brokers, "topic", cfg.topic)
	} else {
		w, err := spool.NewWriter(cfg.spool, log)
		if err != nil {
			return nil, err
		}
		prod, close = w, w.Close
		log.Info("embedded mode: appending to spool", "dir", cfg.spool.Dir)
	}

	// Tokens and secret values never leave ingest: every event is redacted
	// before it is produced.
	red, err := redact.New(redact.Config{JWKSFile: cfg.jwksFile, FingerprintKey: cfg.FingerprintKey.Reveal()})
	if err != nil {
		return nil, errors.Join(err, close())
	}
	hcfg := cfg.handler
	h, err := ingest.New(hcfg, prod, red, ping, log, reg)
	if err != nil {
		return nil, errors.Join(err, close())
	}

	// The webhook listeners also answer probes and scrapes without
	// credentials (the Authenticator lets those paths through); the
	// metrics listener answers nothing else.
	webhook := http.NewServeMux()
	webhook.Handle("/metrics", cli.MetricsHandler(reg))
	webhook.Handle("/", h)
	var servers []*listener
	if cfg.listen != "" {
		srv := newServer(hcfg, auth.Require(webhook), log)
		srv.TLSConfig = tlsFiles.ServerConfig()
		servers = append(servers, &listener{name: "webhook-tls", addr: cfg.listen, srv: srv, tls: true})
	}
	if cfg.insecureListen != "" {
		servers = append(servers, &listener{name: "webhook-insecure", addr: cfg.insecureListen, srv: newServer(hcfg, auth.Optional(webhook), log)})
	}
	var metricsSrv *listener
	if cfg.metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", cli.MetricsHandler(reg))
		mux.Handle("GET /healthz", h)
		mux.Handle("GET /readyz", h)
		metricsSrv = &listener{name: "metrics", addr: cfg.metricsListen, srv: newServer(hcfg, mux, log)}
	}

	// Bind every address before serving any, so a taken port fails
	// start-up instead of leaving a half-running ingest.
	all := append([]*listener(nil), servers...)
	if metricsSrv != nil {
		all = append(all, metricsSrv)
	}
	for _, l := range all {
		if l.ln, err = net.Listen("tcp", l.addr); err != nil {
			for _, b := range all {
				if b.ln != nil {
					b.ln.Close()
				}
			}
			return nil, errors.Join(fmt.Errorf("listening on %s (%s): %w", l.addr, l.name, err), close())
		}
	}
	if cfg.insecureListen != "" {
		log.Warn("serving the webhook over plain HTTP: callers without credentials are accepted; use it only on a trusted network", "addr", cfg.insecureListen)
	}

	// Components in the order they start; they stop in reverse: the
	// webhook listeners first (in-flight requests finish), then the
	// producer flushes, then the metrics listener, which answers probes
	// and scrapes until the end.
	a := &app{log: log, group: lifecycle.New(log), shutdown: cfg.shutdownWait, errc: make(chan error, len(all))}
	g, errc := a.group, a.errc
	if metricsSrv != nil {
		g.Add(metricsSrv.name, serveFunc(metricsSrv, log, errc), func(context.Context) error {
			// The metrics listener has no long requests; a second of
			// its own keeps a spent budget from skipping a clean stop.
			mctx, mcancel := context.WithTimeout(context.Background(), time.Second)
			defer mcancel()
			return stopListener(mctx, metricsSrv, log)
		})
	}
	g.Add("producer", nil, func(ctx context.Context) error { return closeWithin(ctx, close, cfg.shutdownWait, log) })
	if ensureLater != nil {
		g.Go("topic", ensureLater)
	}
	g.Add("webhooks", func(ctx context.Context) error {
		for _, l := range servers {
			_ = serveFunc(l, log, errc)(ctx)
		}
		return nil
	}, func(ctx context.Context) error {
		// Concurrently: each listener's in-flight requests get the
		// whole budget, not what the one before left.
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
		)
		for _, l := range servers {
			wg.Go(func() {
				err := stopListener(ctx, l, log)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	return a, nil
}

// run starts a's components in order, serves until ctx is done or one of
// them fails, then stops them in reverse under the one --shutdown-timeout.
func (a *app) run(ctx context.Context) error {
	if err := a.group.Start(ctx, a.shutdown); err != nil {
		return err
	}
	var err error
	select {
	case err = <-a.errc:
		a.log.Error("stopping on error, shutting down", "err", err)
	case err = <-a.group.Failures():
		a.log.Error("stopping on error, shutting down", "err", err)
	case <-ctx.Done():
		a.log.Info("shutting down", "timeout", a.shutdown)
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.shutdown)
	defer cancel()
	return errors.Join(err, a.group.Shutdown(sctx))
}

// serveFunc starts serving l in its own goroutine; a serve error other
// than a requested stop goes to errc.
func serveFunc(l *listener, log *slog.Logger, errc chan<- error) lifecycle.StartFunc {
	return func(context.Context) error {
		log.Info("ingest listening", "listener", l.name, "addr", l.ln.Addr().String(), "tls", l.tls)
		l.done = make(chan struct{})
		go func() {
			defer close(l.done)
			var err error
			if l.tls {
				err = l.srv.ServeTLS(l.ln, "", "")
			} else {
				err = l.srv.Serve(l.ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving %s on %s: %w", l.name, l.addr, err)
			}
		}()
		return nil
	}
}

// stopListener lets l's in-flight requests finish within ctx, then cuts
// the remaining connections; their senders retry the batch.
func stopListener(ctx context.Context, l *listener, log *slog.Logger) error {
	t := time.Now()
	err := l.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shutting down %s: %w", l.name, err), l.srv.Close())
	}
	if l.done != nil {
		<-l.done
	}
	log.Info("listener stopped", "listener", l.name, "took", time.Since(t), "err", err)
	return err
}

// closeWithin closes the producer with what is left of the shutdown
// budget. If it does not finish the process exits anyway and the closing
// goroutine with it: every answered request was already acknowledged, so
// only unanswered batches are lost, and their senders retry them.
func closeWithin(ctx context.Context, closeProducer func() error, budget time.Duration, log *slog.Logger) error {
	t := time.Now()
	done := make(chan error, 1)
	go func() { done <- closeProducer() }()
	select {
	case err := <-done:
		log.Info("producer closed", "took", time.Since(t), "err", err)
		return err
	case <-ctx.Done():
		log.Error("closing producer: out of time", "took", time.Since(t))
		return fmt.Errorf("closing producer: not done within the %s shutdown timeout", budget)
	}
}

// ensureTopicTimeout bounds one attempt at creating the topic: a metadata
// request and a CreateTopics on a healthy cluster take milliseconds.
const ensureTopicTimeout = 30 * time.Second

// ensureTopic retries kafka.EnsureTopic with backoff (1 s doubling to 30 s)
// until it succeeds, fails for good, or ctx ends, logging once per minute
// while it fails. A broker outage at start-up thus delays ingest's
// readiness instead of ending the process.
func ensureTopic(ctx context.Context, brokers []string, topic string, partitions int, log *slog.Logger) error {
	const logWindow = time.Minute
	start, lastLog, backoff := time.Now(), time.Now(), time.Second
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		tctx, cancel := context.WithTimeout(ctx, ensureTopicTimeout)
		err := kafka.EnsureTopic(tctx, brokers, topic, partitions)
		cancel()
		switch {
		case err == nil:
			log.Info("topic ensured", "topic", topic, "attempts", attempt, "after", time.Since(start).Round(time.Second))
			return nil
		case ctx.Err() != nil:
			return nil
		case !kafka.Retryable(err):
			return fmt.Errorf("ensuring topic %s: %w", topic, err)
		case time.Since(lastLog) >= logWindow:
			lastLog = time.Now()
			log.Warn("ensuring topic, will retry", "topic", topic, "attempts", attempt, "down_for", time.Since(start).Round(time.Second), "err", err)
		}
	}
}

// listener is one of ingest's HTTP servers with its address.
type listener struct {
	name string
	addr string
	srv  *http.Server
	ln   net.Listener
	tls  bool
	// done closes when Serve has returned.
	done chan struct{}
}

// newServer applies the handler config's timeouts (slowloris protection:
// the apiserver's webhook client gives up after 30 s anyway).
func newServer(cfg ingest.Config, h http.Handler, log *slog.Logger) *http.Server {
	srv := ingest.NewServer(cfg, h)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return srv
}
