package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditlog"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/spool"
)

// replayAttempts is how often a batch is tried against an unavailable
// producer before replay gives up; the waits double from replayBackoff.
const (
	replayAttempts = 6
	replayBackoff  = 500 * time.Millisecond
)

// replay backfills apiserver log-backend files (JSON lines, plain or gzip,
// rotated sets, directories; audit.k8s.io/v1 or v1beta1, one event or one
// EventList a line) through the webhook's own per-batch path:
// the same validation, truncation, redaction, keying, deduplication and
// producer.
//
//	ingest replay --kafka-brokers kafka:9092 --cluster prod-eu1 /var/log/kube-apiserver/
func replay(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingest replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsageHeader(fs, replayUsage)
	brokers := fs.String("kafka-brokers", "", "comma-separated Kafka bootstrap brokers; empty means embedded mode (spool directory)")
	topic := fs.String("topic", "audit-events", "Kafka topic for audit events")
	partitions := fs.Int("partitions", 8, "partitions when replay has to create the topic")
	spoolDir := fs.String("spool-dir", "auditpipe-spool", "spool directory used when no Kafka brokers are configured")
	cluster := fs.String("cluster", "default", "cluster the replayed events came from")
	batch := fs.Int("batch", 400, "events per produce call, like the apiserver's webhook batches")
	maxEvent := fs.Int64("max-event-bytes", ingest.DefaultMaxEventBytes, "events larger than this lose their request and response bodies")
	jwksFile := fs.String("jwks-file", "", "copy of the cluster's /openid/v1/jwks: redacted tokens record whether their signature verifies")
	fpKeyFile := fs.String("fingerprint-key-file", "", "file holding a secret key for HMAC fingerprints of redacted secret values")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("replay: name at least one audit log file or directory")
	}
	if *batch < 1 {
		return fmt.Errorf("replay: batch must be positive, got %d", *batch)
	}
	files, err := auditlog.ExpandPaths(fs.Args())
	if err != nil {
		return err
	}
	log, err := cli.NewLogger(*logLevel)
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	prod, closeProd, err := openProducer(ctx, *brokers, *topic, *partitions, *spoolDir, log)
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
	h, err := ingest.New(ingest.Config{DefaultCluster: *cluster, MaxEventBytes: *maxEvent}, prod, red, nil, log, nil)
	if err != nil {
		return errors.Join(err, closeProd())
	}
	r := &replayer{h: h, cluster: *cluster, batch: *batch, stderr: stderr, tty: isTerminal(stderr), start: time.Now(), reasons: map[string]int{}}
	for _, f := range files {
		if err = r.file(ctx, f); err != nil {
			break
		}
	}
	if err == nil {
		err = r.flush(ctx)
	}
	r.progress(true)
	// The producer flushes on Close; only then are the counts final.
	err = errors.Join(err, closeProd())
	r.summary(stdout, len(files))
	return err
}

// openProducer returns the Kafka producer or the spool writer, as ingest
// serves with.
func openProducer(ctx context.Context, brokers, topic string, partitions int, spoolDir string, log *slog.Logger) (pipeline.Producer, func() error, error) {
	if list := cli.SplitList(brokers); len(list) > 0 {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := kafka.EnsureTopic(tctx, list, topic, partitions)
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("ensuring topic %s: %w", topic, err)
		}
		p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: list, Topic: topic}, log, nil)
		if err != nil {
			return nil, nil, err
		}
		return p, p.Close, nil
	}
	w, err := spool.NewWriter(spool.WriterConfig{Dir: spoolDir}, log)
	if err != nil {
		return nil, nil, err
	}
	return w, w.Close, nil
}

// isTerminal reports whether w is a terminal, where a progress line that
// rewrites itself is welcome.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type replayer struct {
	h       *ingest.Handler
	cluster string
	batch   int
	stderr  io.Writer
	tty     bool
	start   time.Time
	shown   time.Time

	pending  [][]byte
	origins  []string // file:line of each pending event, for rejections
	lines    int
	bytes    int64
	accepted int
	produced int
	deduped  int
	trunc    int
	rejected int
	reasons  map[string]int
}

func (r *replayer) file(ctx context.Context, path string) error {
	// A line holding a whole EventList (v1 or v1beta1) is replayed item
	// by item, like the webhook body it was captured from.
	err := auditlog.Events(path, func(line, item int, data []byte) error {
		r.lines++
		r.bytes += int64(len(data))
		// The reader reuses its buffer; the producer keeps the bytes.
		r.pending = append(r.pending, bytes.Clone(data))
		origin := fmt.Sprintf("%s:%d", path, line)
		if item > 0 {
			origin += fmt.Sprintf(" item %d", item)
		}
		r.origins = append(r.origins, origin)
		if len(r.pending) >= r.batch {
			return r.flush(ctx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	return nil
}

// flush ingests the pending batch, retrying while the producer is
// unavailable, as the apiserver would resend a webhook batch.
func (r *replayer) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	var res ingest.Result
	var err error
	wait := replayBackoff
	for attempt := 1; ; attempt++ {
		res, err = r.h.IngestAnnotated(ctx, r.cluster, r.pending)
		if err == nil || pipeline.IsPermanent(err) || attempt == replayAttempts {
			break
		}
		fmt.Fprintf(r.stderr, "replay: producing, retrying in %s: %v\n", wait, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("replay: interrupted: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
	if err != nil {
		return fmt.Errorf("replay: producing events of %s..%s: %w", r.origins[0], r.origins[len(r.origins)-1], err)
	}
	// res.Rejected lists only the first rejections of the batch; the
	// counts cover them all.
	for _, rej := range res.Rejected {
		if r.rejected++; r.rejected <= 10 {
			fmt.Fprintf(r.stderr, "%s: %s\n", r.origins[rej.Index], rej.Error)
		}
	}
	r.rejected += res.RejectedCount - len(res.Rejected)
	for reason, n := range res.RejectedReasons {
		r.reasons[reason] += n
	}
	r.accepted += res.Accepted
	r.produced += res.Produced
	r.deduped += res.Deduplicated
	r.trunc += res.Truncated
	clear(r.pending)
	r.pending, r.origins = r.pending[:0], r.origins[:0]
	r.progress(false)
	return nil
}

// progress rewrites one status line on a terminal, at most twice a second.
func (r *replayer) progress(final bool) {
	if !r.tty || (!final && time.Since(r.shown) < 500*time.Millisecond) {
		return
	}
	r.shown = time.Now()
	el := time.Since(r.start).Seconds()
	fmt.Fprintf(r.stderr, "\r\033[Kreplay: %d events, %.1f MB, %d rejected, %.0f events/s", r.lines, float64(r.bytes)/1e6, r.rejected, float64(r.lines)/max(el, 1e-3))
	if final {
		fmt.Fprintln(r.stderr)
	}
}

func (r *replayer) summary(w io.Writer, files int) {
	fmt.Fprintf(w, "replayed %d files in %s: %d events (%.1f MB), %d accepted (%d produced, %d duplicates skipped, %d truncated), %d rejected",
		files, time.Since(r.start).Round(time.Millisecond), r.lines, float64(r.bytes)/1e6, r.accepted, r.produced, r.deduped, r.trunc, r.rejected)
	if len(r.reasons) > 0 {
		keys := make([]string, 0, len(r.reasons))
		for k := range r.reasons {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, r.reasons[k]))
		}
		fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
}
