package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/alert"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/clickhouse"
	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/lifecycle"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/processor"
	"github.com/auditpipe/auditpipe/internal/spool"
)

// readyTimeout bounds the metadata request behind /readyz, within the few
// seconds a probe waits by default.
const readyTimeout = 3 * time.Second

type runOptions struct {
	brokers       string
	topic         string
	group         string
	clickhouseDSN string
	chCluster     string
	spoolDir      string
	config        string
	metricsListen string
	output        string
	batchRecords  int
	batchBytes    int
	batchTimeout  time.Duration
	maxRecord     int
	exitWhenIdle  time.Duration
	logLevel      string
	dlqTopic      string
	retention     string
	shutdown      time.Duration
	session       time.Duration

	ruleFiles      string
	noDefaultRules bool
	rulesReload    time.Duration

	alertConfig     string
	alertmanagerURL string
	alertMinSev     string
	grafanaURL      string
	alertStateFile  string

	firstSeenMaxKeys int
	firstSeenSync    time.Duration

	workers    int
	cpuProfile string
}

// firstSeenLoadLimit bounds the rows of first-seen terms read at start and
// at each sync: a few per key at the default key bound.
const firstSeenLoadLimit = 1_000_000

// runConfig is what detect run runs with: the flags (or their AUDITPIPE_*
// variables) checked, each component's configuration with its defaults
// applied and validated, and the configuration files read. Building from
// it opens connections and files; parsing it opens nothing.
type runConfig struct {
	runOptions
	level slog.Level
	// brokers is --kafka-brokers split; empty means embedded mode, where
	// spool is used instead of consumer and deadLetters.
	brokers     []string
	consumer    kafka.ConsumerConfig
	deadLetters kafka.DeadLetterConfig
	spool       spool.ReaderConfig
	// clickhouse is used when its DSN is set; else findings are printed
	// in format.
	clickhouse clickhouse.Config
	format     console.Format
	detectors  detectors.Config
	rules      rules.WatcherConfig
	firstSeen  firstseen.Config
	processor  processor.Config
	// Alerts configures alerting; nil means none. Exported so that fmt
	// and encoding/json reach the Slack URL's redacting methods when the
	// whole config is printed.
	Alerts *alert.Config
}

// runMemoryLimit is the soft memory limit detect run sets (see run).
const runMemoryLimit = 384 << 20

// run runs detect until SIGINT or SIGTERM (or --exit-when-idle): it reads
// the flags, builds the components from them, and runs them.
func run(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseRunConfig(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.level}))
	// Two batches of --batch-records events are in hand at once (one
	// being stored, one being prepared), with their decoded events: a few
	// hundred MB live at 20,000 a batch, which the collector at GOGC 100
	// would let grow to twice that before collecting. The soft limit keeps
	// the process under detect's 512 MiB target: near it the collector
	// runs as often as it must. GOMEMLIMIT in the environment still
	// decides.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(runMemoryLimit)
	}
	if cfg.cpuProfile != "" {
		stopProfile, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	d, err := buildRun(ctx, cfg, stdout, log, cli.NewRegistry())
	if err != nil {
		return err
	}
	return d.run(ctx)
}

// parseRunConfig reads detect run's flags from args and the environment
// into a runConfig, takes the component defaults from their WithDefaults,
// validates every part, and reads the detector and alert configuration
// files. It opens no connection; usage and parse errors go to stderr.
func parseRunConfig(args []string, stderr io.Writer) (runConfig, error) {
	fs := flag.NewFlagSet("detect run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o runOptions
	// The Slack URL is a credential: it lives in the config only as an
	// alert.Secret, which every printer redacts.
	var slackWebhookURL string
	// Defaults come from the components' configs, never copied here.
	pd := processor.Config{}.WithDefaults()
	fs.StringVar(&o.brokers, "kafka-brokers", "", "comma-separated Kafka bootstrap brokers; empty means embedded mode (tail the spool directory)")
	fs.StringVar(&o.topic, "topic", "audit-events", "Kafka topic to consume")
	fs.StringVar(&o.group, "group", kafka.DefaultGroupID, "consumer group (also names the spool offset file)")
	fs.StringVar(&o.clickhouseDSN, "clickhouse", "", "ClickHouse native DSN, e.g. clickhouse://127.0.0.1:9000/auditpipe; empty prints findings instead")
	fs.StringVar(&o.chCluster, "clickhouse-cluster", "", "ClickHouse cluster name (from the servers' <remote_servers>): create the schema ON CLUSTER as replicated local tables behind Distributed tables; empty means one server")
	fs.StringVar(&o.spoolDir, "spool-dir", "auditpipe-spool", "spool directory to tail when no Kafka brokers are configured")
	fs.StringVar(&o.config, "config", "", "detector configuration file (YAML); empty uses the defaults")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9091", "address for /metrics, /healthz and /readyz; empty disables")
	fs.StringVar(&o.output, "output", "auto", "how printed findings look: auto (table on a terminal, else JSON lines), table or json")
	fs.IntVar(&o.batchRecords, "batch-records", pd.BatchRecords, "flush a batch at this many events")
	fs.IntVar(&o.batchBytes, "batch-bytes", pd.BatchBytes, "flush a batch once its events reach this many bytes")
	fs.DurationVar(&o.batchTimeout, "batch-timeout", pd.BatchTimeout, "flush a non-empty batch after this long")
	fs.IntVar(&o.maxRecord, "max-record-bytes", pd.MaxRecordBytes, "dead-letter events larger than this many bytes without decoding them")
	fs.StringVar(&o.dlqTopic, "dlq-topic", kafka.DefaultDeadLetterTopic, "Kafka topic for records that can never be stored (embedded mode: <spool-dir>/"+spool.DeadLetterFileName+")")
	fs.StringVar(&o.retention, "retention-days", "", "days to keep per table, e.g. events=30,findings=365,rollups=90; old day partitions are dropped hourly (empty: keep everything)")
	fs.DurationVar(&o.session, "kafka-session-timeout", 0, "how long the group waits for a silent member before reassigning its partitions (0: 30s)")
	fs.DurationVar(&o.shutdown, "shutdown-timeout", pd.ShutdownTimeout, "on SIGTERM, how long to finish and commit the batch in hand")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof), e.g. under cmd/e2eload's load")
	fs.IntVar(&o.workers, "workers", pd.Workers, "goroutines decoding and judging each batch; one key's (subject's) events stay on one of them, in order")
	fs.DurationVar(&o.exitWhenIdle, "exit-when-idle", 0, "exit once no event arrived for this long and the consumer group has nothing left to commit (0: run until stopped)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.ruleFiles, "rules", "", "comma-separated user rule files (YAML), loaded after the shipped default pack and reloaded when they change")
	fs.BoolVar(&o.noDefaultRules, "no-default-rules", false, "leave the shipped default rule pack out")
	fs.DurationVar(&o.rulesReload, "rules-reload-interval", rules.DefaultReloadInterval, "how often rule files are checked for changes")
	fs.StringVar(&o.alertConfig, "alert-config", "", "alert routing configuration (YAML: route tree and receivers); overrides the shortcut flags below")
	fs.StringVar(&slackWebhookURL, "slack-webhook-url", "", "send findings at or above --alert-min-severity to this Slack incoming webhook (prefer the AUDITPIPE_SLACK_WEBHOOK_URL variable: flags show in ps)")
	fs.StringVar(&o.alertmanagerURL, "alertmanager-url", "", "send findings at or above --alert-min-severity to this Alertmanager (API v2)")
	fs.StringVar(&o.alertMinSev, "alert-min-severity", "high", "lowest severity the shortcut flags send: info, low, medium, high or critical")
	fs.StringVar(&o.grafanaURL, "grafana-url", "", "Grafana base URL for links from alerts to the audit explorer")
	fs.StringVar(&o.alertStateFile, "alert-state-file", "", "file remembering sent alerts, so a restart does not send them again")
	fs.IntVar(&o.firstSeenMaxKeys, "first-seen-max-keys", firstseen.DefaultMaxKeys, "most keys (principals) first-seen rules remember; the least recently seen are forgotten beyond it")
	fs.DurationVar(&o.firstSeenSync, "first-seen-sync-interval", 30*time.Second, "how often first-seen terms other detect instances saved to ClickHouse are loaded")
	if err := cli.Parse(fs, args); err != nil {
		return runConfig{}, err
	}
	if o.firstSeenSync <= 0 {
		return runConfig{}, errors.New("--first-seen-sync-interval must be positive")
	}
	c := runConfig{runOptions: o, brokers: cli.SplitList(o.brokers)}
	if err := c.level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return runConfig{}, fmt.Errorf("parsing log level: %w", err)
	}
	var err error
	if c.detectors, err = loadDetectorConfig(o.config); err != nil {
		return runConfig{}, err
	}
	if err := c.detectors.Validate(); err != nil {
		return runConfig{}, err
	}
	retention, err := clickhouse.ParseRetention(o.retention)
	if err != nil {
		return runConfig{}, fmt.Errorf("--retention-days: %w", err)
	}
	// Each part is checked as its constructor would, with the same
	// message, so that a mistake stops start-up before anything is opened.
	if len(c.brokers) > 0 {
		c.consumer = kafka.ConsumerConfig{Brokers: c.brokers, Topic: o.topic, GroupID: o.group, SessionTimeout: o.session}.WithDefaults()
		if err := c.consumer.Validate(); err != nil {
			return runConfig{}, fmt.Errorf("validating kafka consumer config: %w", err)
		}
		c.deadLetters = kafka.DeadLetterConfig{Brokers: c.brokers, Topic: o.dlqTopic, SourceTopic: o.topic}.WithDefaults()
		if err := c.deadLetters.Validate(); err != nil {
			return runConfig{}, fmt.Errorf("validating dead-letter config: %w", err)
		}
	} else {
		c.spool = spool.ReaderConfig{Dir: o.spoolDir, Group: o.group, DeleteConsumed: true}.WithDefaults()
		if err := c.spool.Validate(); err != nil {
			return runConfig{}, fmt.Errorf("opening spool: %w", err)
		}
	}
	if o.clickhouseDSN != "" {
		c.clickhouse = clickhouse.Config{DSN: o.clickhouseDSN, Retention: retention, Cluster: o.chCluster}.WithDefaults()
		if err := c.clickhouse.Validate(); err != nil {
			return runConfig{}, fmt.Errorf("validating ClickHouse config: %w", err)
		}
	} else if c.format, err = outputFormat(o.output); err != nil {
		return runConfig{}, err
	}
	c.rules = rules.WatcherConfig{Files: cli.SplitList(o.ruleFiles), NoDefault: o.noDefaultRules, Interval: o.rulesReload}
	if err := c.rules.Validate(); err != nil {
		return runConfig{}, err
	}
	c.rules = c.rules.WithDefaults()
	c.firstSeen = firstseen.Config{MaxKeys: o.firstSeenMaxKeys, Journal: o.clickhouseDSN != ""}.WithDefaults()
	if err := c.firstSeen.Validate(); err != nil {
		return runConfig{}, fmt.Errorf("--first-seen-max-keys: %w", err)
	}
	c.processor = processor.Config{
		BatchRecords:    o.batchRecords,
		BatchBytes:      o.batchBytes,
		BatchTimeout:    o.batchTimeout,
		MaxRecordBytes:  o.maxRecord,
		ShutdownTimeout: o.shutdown,
		ExitWhenIdle:    o.exitWhenIdle,
		Workers:         o.workers,
	}.WithDefaults()
	if err := c.processor.Validate(); err != nil {
		return runConfig{}, fmt.Errorf("validating processor config: %w", err)
	}
	if c.Alerts, err = alertConfig(o, alert.Secret(slackWebhookURL), o.clickhouseDSN == ""); err != nil {
		return runConfig{}, err
	}
	return c, nil
}

// detectRun is detect run built: its components in a lifecycle group in
// data-path order, and the processor that runs in the foreground.
type detectRun struct {
	log      *slog.Logger
	group    *lifecycle.Group
	proc     *processor.Processor
	shutdown time.Duration
	// detectorIDs and rules say what runs, in the start-up log line.
	detectorIDs []string
	rules       func() int
}

// buildRun constructs detect's components from cfg: it connects to Kafka
// (or opens the spool) and ClickHouse and loads the rules and first-seen
// terms, but starts no goroutine and serves nothing; d.run does. Each
// component joins the group as it is built, so that on an error what was
// opened is closed.
func buildRun(ctx context.Context, cfg runConfig, stdout io.Writer, log *slog.Logger, reg *prometheus.Registry) (*detectRun, error) {
	builtins, err := detectors.New(cfg.detectors)
	if err != nil {
		return nil, err
	}

	// Components in data-path order: each stops after what feeds it
	// (reverse order), so a stop flushes into something still open.
	g := lifecycle.New(log)
	closeAll := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdown)
		defer cancel()
		return g.Shutdown(sctx)
	}
	// ready backs /readyz: every check must pass (Kafka's brokers and
	// topic, ClickHouse). Embedded mode has none: the spool is always there.
	var ready []readyCheck

	// Source and dead-letter queue: Kafka topics, or files in the spool
	// directory in embedded mode.
	var src pipeline.Source
	var dlq pipeline.DeadLetterSink
	if brokers := cfg.brokers; len(brokers) > 0 {
		c, err := kafka.NewConsumer(cfg.consumer, log, reg)
		if err != nil {
			return nil, err
		}
		src = c
		ready = append(ready, readyCheck{"kafka", c.Ping})
		g.AddCloser("kafka consumer", c.Close)
		// The dead-letter topic is created if missing, one partition: it
		// is small, and order there does not matter. A broker that forbids
		// creation leaves it to the operator; writes retry until it exists.
		if err := kafka.EnsureTopic(ctx, brokers, cfg.dlqTopic, 1); err != nil {
			log.Warn("ensuring dead-letter topic", "topic", cfg.dlqTopic, "err", err)
		}
		d, err := kafka.NewDeadLetters(cfg.deadLetters, log, reg)
		if err != nil {
			return nil, errors.Join(err, closeAll())
		}
		dlq = d
		g.AddCloser("kafka dead letters", d.Close)
		log.Info("consuming from kafka", "brokers", brokers, "topic", cfg.topic, "group", cfg.group, "dlq_topic", cfg.dlqTopic)
	} else {
		r, err := spool.NewReader(cfg.spool, log)
		if err != nil {
			return nil, err
		}
		src = r
		g.AddCloser("spool reader", r.Close)
		d, err := spool.OpenFileDeadLetters(filepath.Join(cfg.spoolDir, spool.DeadLetterFileName))
		if err != nil {
			return nil, errors.Join(err, closeAll())
		}
		dlq = d
		g.AddCloser("spool dead letters", d.Close)
		log.Info("embedded mode: tailing spool", "dir", cfg.spoolDir)
	}

	var sink pipeline.Sink
	var store *clickhouse.Store
	if cfg.clickhouse.DSN != "" {
		store, err = clickhouse.New(ctx, cfg.clickhouse, log, reg)
		if err != nil {
			return nil, errors.Join(err, closeAll())
		}
		sink = store
		ready = append(ready, readyCheck{"clickhouse", store.Ping})
		g.AddCloser("clickhouse", store.Close)
		// Retention runs beside the processor and stops before the store
		// closes.
		g.Go("clickhouse retention", func(ctx context.Context) error {
			store.RunRetention(ctx, clickhouse.DefaultRetentionInterval)
			return nil
		})
		log.Info("storing in clickhouse", "database", store.Database(), "cluster", cfg.chCluster, "retention_days", cfg.clickhouse.Retention)
	} else {
		sink = console.NewPrinter(stdout, cfg.format)
	}

	if cfg.metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", cli.MetricsHandler(reg))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		mux.Handle("/readyz", readyHandler(ready))
		srv := &http.Server{Addr: cfg.metricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		// Not a Go component: the server keeps answering scrapes and
		// probes while the processor flushes after SIGTERM, until the
		// group's Shutdown.
		served := make(chan error, 1)
		g.Add("metrics server", func(context.Context) error {
			go func() { served <- srv.ListenAndServe() }()
			return nil
		}, func(ctx context.Context) error {
			err := srv.Shutdown(ctx)
			if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, fmt.Errorf("serving %s: %w", srv.Addr, serr))
			}
			return err
		})
	}

	// User rules beside the built-in detectors; the watcher swaps in a
	// changed rule set atomically and keeps the old one when the new one
	// does not load. Its context is the signal context, so SIGTERM stops a
	// reload in progress instead of waiting for it.
	watcher, err := rules.NewWatcher(ctx, cfg.rules, log, reg)
	if err != nil {
		return nil, errors.Join(err, closeAll())
	}
	g.Go("rules watcher", func(ctx context.Context) error {
		_ = watcher.Run(ctx)
		return nil
	})
	// The built-in detectors' background work: reloading the bad-network
	// list when it changes. Stopped with the watcher, after the processor.
	g.Go("detectors", func(ctx context.Context) error {
		if err := builtins.Run(ctx, log, reg); err != nil {
			log.Error("running detectors' background work", "err", err)
		}
		return nil
	})
	// First-seen rules judge after the others, in fetch order; their state
	// is keyed by rule name, so it survives rule reloads, and with
	// ClickHouse it is restored at start, saved after each stored batch and
	// synced from other instances (see the README's "First-seen rules").
	tracker, err := firstseen.New(cfg.firstSeen)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("--first-seen-max-keys: %w", err), closeAll())
	}
	if err := firstseen.Register(reg, tracker); err != nil {
		return nil, errors.Join(err, closeAll())
	}
	if store != nil {
		policy := func(rule string) (firstseen.Policy, bool) { return watcher.Current().TermPolicy(rule) }
		history := func() time.Duration { return watcher.Current().MaxTermHistory() }
		load := func(ctx context.Context, since, savedSince time.Time) ([]firstseen.Update, error) {
			return store.LoadFirstSeen(ctx, since, savedSince, firstSeenLoadLimit)
		}
		now := time.Now()
		rows, err := load(ctx, now.Add(-history()), time.Time{})
		if err != nil {
			return nil, errors.Join(err, closeAll())
		}
		tracker.Restore(rows, now, policy)
		log.Info("restored first-seen terms", "rows", len(rows), "keys", tracker.Stats().Keys)
		sink = firstseen.NewSink(sink, tracker, store)
		g.Go("first-seen sync", func(ctx context.Context) error {
			firstseen.Sync(ctx, tracker, load, policy, history, cfg.firstSeenSync, log)
			return nil
		})
	}
	// Each prepare worker gets its own chain: the built-in detectors'
	// windows, the rule set and the first-seen tracker are locked and
	// shared (a subject's state must not depend on which worker judged
	// it), while a TermsDetector holds unlocked scratch state.
	newSet := func() pipeline.EventDetector {
		return detectorChain{builtins, watcher, rules.NewTermsDetector(watcher.Current, tracker)}
	}

	// Alerts go out after each batch is stored, off the commit path.
	var notifier *alert.Notifier
	if cfg.Alerts != nil {
		if notifier, err = alert.New(*cfg.Alerts, log, reg); err != nil {
			return nil, errors.Join(err, closeAll())
		}
	}

	proc, err := processor.New(cfg.processor, src, newSet(), sink, log, reg)
	if err != nil {
		return nil, errors.Join(err, closeAll())
	}
	proc.SetDetectorFactory(newSet)
	proc.SetDeadLetters(dlq)
	if notifier != nil {
		// Last added, first stopped: the processor has stopped by then,
		// so every finding it will ever hand over is queued; Stop flushes
		// within the notifier's own bound.
		g.Add("alerts", func(context.Context) error { notifier.Start(); return nil },
			func(context.Context) error { return notifier.Stop(context.Background()) })
		proc.SetAlerter(notifier)
	}
	return &detectRun{log: log, group: g, proc: proc, shutdown: cfg.shutdown,
		detectorIDs: builtins.IDs(), rules: func() int { return watcher.Current().Len() }}, nil
}

// run starts d's components in order, runs the processor in the
// foreground until ctx is done (or --exit-when-idle), then stops the
// components in reverse under the one --shutdown-timeout.
func (d *detectRun) run(ctx context.Context) error {
	if err := d.group.Start(ctx, d.shutdown); err != nil {
		return err
	}
	d.log.Info("detect running", "detectors", d.detectorIDs, "rules", d.rules())
	// The processor runs in the foreground and, on SIGTERM, flushes and
	// commits its batch within --shutdown-timeout before returning; the
	// group then stops the rest, downstream last.
	err := d.proc.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), d.shutdown)
	defer cancel()
	return errors.Join(err, d.group.Shutdown(sctx))
}

// The processor hands stored findings to alerting.
var _ processor.Alerter = (*alert.Notifier)(nil)

// readyCheck is one dependency /readyz asks about.
type readyCheck struct {
	name string
	ping func(context.Context) error
}

// readyHandler answers 200 while every check passes, else 503 naming the
// first that failed. The consumer and the store retry on their own; not
// ready tells the orchestrator and dashboards why no rows arrive.
func readyHandler(checks []readyCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		for _, c := range checks {
			if err := c.ping(ctx); err != nil {
				http.Error(w, c.name+" unreachable: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

// detectorChain runs the built-in detectors, then the user rules; each
// judges only the authoritative stage of a request.
type detectorChain []pipeline.EventDetector

func (c detectorChain) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	for _, d := range c {
		out = d.Detect(ev, out)
	}
	return out
}

// alertConfig builds alerting's configuration from --alert-config or the
// shortcut flags. With neither, findings are printed as alerts to stdout,
// except when detect already prints every finding there (no ClickHouse):
// then nil, no alerting.
func alertConfig(o runOptions, slackWebhookURL alert.Secret, printing bool) (*alert.Config, error) {
	var cfg alert.Config
	var err error
	switch {
	case o.alertConfig != "":
		cfg, err = alert.LoadConfig(o.alertConfig)
	case slackWebhookURL != "" || o.alertmanagerURL != "" || !printing:
		sev, perr := pipeline.ParseSeverity(o.alertMinSev)
		if perr != nil {
			return nil, fmt.Errorf("--alert-min-severity: %w", perr)
		}
		cfg, err = alert.Simple(alert.SimpleOptions{
			SlackWebhookURL: slackWebhookURL,
			AlertmanagerURL: o.alertmanagerURL,
			MinSeverity:     sev,
			GrafanaURL:      o.grafanaURL,
			StateFile:       o.alertStateFile,
		})
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("configuring alerts: %w", err)
	}
	return &cfg, nil
}

// loadDetectorConfig reads the detector configuration file, or returns the
// defaults when path is empty.
func loadDetectorConfig(path string) (detectors.Config, error) {
	if path == "" {
		return detectors.DefaultConfig(), nil
	}
	return detectors.LoadConfig(path)
}

// loadDetectors builds the built-in detectors from the configuration file
// at path, or from the defaults when path is empty.
func loadDetectors(path string) (*detectors.Suite, error) {
	cfg, err := loadDetectorConfig(path)
	if err != nil {
		return nil, err
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
