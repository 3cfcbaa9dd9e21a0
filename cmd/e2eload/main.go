// Command e2eload measures auditpipe end to end on one machine: it plays the
// apiserver, posting 400-event EventLists over loopback HTTP to a real
// ingest process, which produces them with acknowledgements to an
// in-process Kafka broker (kfake), or to the Apache Kafka broker named by
// -kafka-brokers (scripts/kafka.sh starts one); a real detect process
// consumes them,
// runs every detector and writes to a real ClickHouse server (Debian's
// clickhouse-server as a child process). It reports the sustained rate of
// rows landing in ClickHouse, the batch-to-row latency, loss, and the CPU
// time and peak RSS of each process.
//
//	go build -o bin/ ./cmd/...
//	e2eload -ingest bin/ingest -detect bin/detect -rate 20000 -duration 30s -json out.json
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/auditpipe/auditpipe/internal/chserver"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

// batchEvents is the apiserver webhook's largest batch, which a busy
// control plane sends every time.
const batchEvents = 400

// poolBatches is how many distinct bodies are generated up front (20,000
// events); replays rewrite their auditIDs so that every event sent is new.
// Generating on the fly would spend the load generator's CPU, which shares
// the machine with what it measures.
const poolBatches = 50

// database is the ClickHouse database detect writes to.
const database = "auditpipe_load"

type options struct {
	ingestBin, detectBin, clickhouseBin string
	rate                                float64
	duration, drain, pollEvery          time.Duration
	senders, partitions                 int
	jsonOut                             string
	keep                                bool
	kafkaBrokers                        string
	detectWorkers                       int
	detectCPUProfile                    string
}

func main() {
	var o options
	flag.StringVar(&o.ingestBin, "ingest", "bin/ingest", "ingest binary")
	flag.StringVar(&o.detectBin, "detect", "bin/detect", "detect binary")
	flag.StringVar(&o.clickhouseBin, "clickhouse-server", chserver.DefaultBinary, "clickhouse-server binary")
	flag.Float64Var(&o.rate, "rate", 20000, "events per second to offer (open loop, in 400-event batches)")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "how long to send")
	flag.DurationVar(&o.drain, "drain", 60*time.Second, "how long to wait after sending for the last rows")
	flag.DurationVar(&o.pollEvery, "poll", 100*time.Millisecond, "how often to count rows in ClickHouse")
	flag.IntVar(&o.senders, "senders", 8, "concurrent webhook connections")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions of the audit topic")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, ClickHouse data)")
	// Not defaulted from $KAFKA_BROKERS: make bench's kfake row must stay
	// kfake when a shell has it set for the tests.
	flag.StringVar(&o.kafkaBrokers, "kafka-brokers", "", "real Kafka brokers, comma-separated (scripts/kafka.sh start prints one); empty runs an in-process kfake broker")
	flag.IntVar(&o.detectWorkers, "detect-workers", 0, "detect's --workers (0: detect's default, GOMAXPROCS)")
	flag.StringVar(&o.detectCPUProfile, "detect-cpuprofile", "", "have detect write a CPU profile of its run to this file")
	flag.Parse()
	// The children run in the work directory; their binaries must not
	// resolve against it.
	for _, p := range []*string{&o.ingestBin, &o.detectBin} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "e2eload:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	res, err := run(ctx, o, log)
	if err != nil {
		log.Error("load run failed", "err", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
	if o.jsonOut != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(data, '\n'), 0o644); err != nil {
			log.Error("writing results", "err", err)
			os.Exit(1)
		}
	}
	if res.Lost != 0 || res.DrainTimedOut {
		os.Exit(1)
	}
}

func (o options) validate() error {
	var errs []error
	if o.rate <= 0 {
		errs = append(errs, errors.New("-rate must be positive"))
	}
	if o.duration <= 0 || o.drain <= 0 || o.pollEvery <= 0 {
		errs = append(errs, errors.New("-duration, -drain and -poll must be positive"))
	}
	if o.senders <= 0 || o.partitions <= 0 {
		errs = append(errs, errors.New("-senders and -partitions must be positive"))
	}
	if o.detectWorkers < 0 {
		errs = append(errs, errors.New("-detect-workers must not be negative"))
	}
	for _, b := range []string{o.ingestBin, o.detectBin} {
		if _, err := os.Stat(b); err != nil {
			errs = append(errs, fmt.Errorf("binary %s: %w (build with: go build -o bin/ ./cmd/...)", b, err))
		}
	}
	return errors.Join(errs...)
}

// Results is what one run measured.
type Results struct {
	OfferedRate    float64 `json:"offered_events_per_s"`
	SentEvents     int     `json:"sent_events"`
	SendSeconds    float64 `json:"send_seconds"`
	SentRate       float64 `json:"sent_events_per_s"`
	Rows           int     `json:"rows"`
	RowsFinal      int     `json:"rows_final"`
	Lost           int     `json:"lost"`    // sent but absent once the pipeline drained
	Missing        int     `json:"missing"` // sent but absent when the drain deadline passed
	Retries        int     `json:"retried_posts"`
	LandSeconds    float64 `json:"land_seconds"`
	SustainedRate  float64 `json:"sustained_rows_per_s"`
	LatencyP50     float64 `json:"latency_p50_s"`
	LatencyP99     float64 `json:"latency_p99_s"`
	LatencyMax     float64 `json:"latency_max_s"`
	Processes      []Usage `json:"processes"`
	DrainTimedOut  bool    `json:"drain_timed_out"`
	LatencyMethod  string  `json:"latency_method"`
	PollIntervalMS int64   `json:"poll_interval_ms"`
}

// Usage is one process's resource use over the run.
type Usage struct {
	Name       string  `json:"name"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUCores   float64 `json:"cpu_cores"` // CPU seconds per second of the run
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

func (r *Results) print(w io.Writer) {
	fmt.Fprintf(w, "e2eload: %d events offered at %.0f/s, sent at %.0f/s (%d retried posts)\n", r.SentEvents, r.OfferedRate, r.SentRate, r.Retries)
	fmt.Fprintf(w, "  rows in ClickHouse: %d (%d under FINAL), lost %d\n", r.Rows, r.RowsFinal, r.Lost)
	if r.DrainTimedOut {
		fmt.Fprintf(w, "  drain deadline passed with %d rows still missing: loss undetermined\n", r.Missing)
	}
	fmt.Fprintf(w, "  sustained into ClickHouse: %.0f rows/s over %.1fs\n", r.SustainedRate, r.LandSeconds)
	fmt.Fprintf(w, "  batch-to-row latency: p50 %.2fs p99 %.2fs max %.2fs\n", r.LatencyP50, r.LatencyP99, r.LatencyMax)
	for _, p := range r.Processes {
		fmt.Fprintf(w, "  %-24s cpu %6.1fs (%.2f cores)  peak RSS %6.0f MiB\n", p.Name, p.CPUSeconds, p.CPUCores, p.PeakRSSMiB)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) (*Results, error) {
	dir, err := os.MkdirTemp("", "e2eload-")
	if err != nil {
		return nil, fmt.Errorf("creating work directory: %w", err)
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	} else {
		log.Info("keeping work directory", "dir", dir)
	}

	ch, err := chserver.Launch(filepath.Join(dir, "clickhouse"), o.clickhouseBin)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := ch.Stop(); err != nil {
			log.Warn("stopping ClickHouse", "err", err)
		}
	}()
	log.Info("ClickHouse started", "addr", ch.TCPAddr, "took", ch.StartupTime.Round(time.Millisecond))

	topic, brokers, senderName := "audit-events", o.kafkaBrokers, "e2eload (sender + kfake)"
	if brokers == "" {
		broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(o.partitions), topic))
		if err != nil {
			return nil, fmt.Errorf("starting in-process kafka: %w", err)
		}
		defer broker.Close()
		brokers = strings.Join(broker.ListenAddrs(), ",")
	} else {
		// A topic of the run's own, so earlier runs' records are not
		// counted; it is left on the broker, which a test broker's
		// stop removes with the rest.
		topic = fmt.Sprintf("audit-events-load-%d", time.Now().UnixNano())
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := kafka.EnsureTopic(tctx, strings.Split(brokers, ","), topic, o.partitions)
		cancel()
		if err != nil {
			return nil, err
		}
		senderName = "e2eload (sender)"
		log.Info("using real Kafka", "brokers", brokers, "topic", topic)
	}

	webhookAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	ingestMetrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	detectMetrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	detectArgs := []string{"run",
		"--kafka-brokers", brokers, "--topic", topic,
		"--clickhouse", ch.DSN + database, "--metrics-listen", detectMetrics, "--log-level", "warn"}
	if o.detectWorkers > 0 {
		detectArgs = append(detectArgs, "--workers", strconv.Itoa(o.detectWorkers))
	}
	if o.detectCPUProfile != "" {
		prof, err := filepath.Abs(o.detectCPUProfile)
		if err != nil {
			return nil, err
		}
		detectArgs = append(detectArgs, "--cpuprofile", prof)
	}
	detect, err := startChild(ctx, dir, "detect", o.detectBin, detectArgs...)
	if err != nil {
		return nil, err
	}
	defer detect.stop(log)
	ingest, err := startChild(ctx, dir, "ingest", o.ingestBin,
		"--insecure-listen", webhookAddr, "--kafka-brokers", brokers, "--topic", topic,
		"--partitions", strconv.Itoa(o.partitions), "--cluster", "load",
		"--metrics-listen", ingestMetrics, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	defer ingest.stop(log)
	for _, url := range []string{"http://" + ingestMetrics + "/readyz", "http://" + detectMetrics + "/readyz"} {
		if err := waitReady(ctx, url, 60*time.Second); err != nil {
			return nil, err
		}
	}
	// detect creates its tables on start; rows are counted once they exist.
	if err := waitTable(ctx, ch, 60*time.Second); err != nil {
		return nil, err
	}

	pool := newPool(poolBatches)
	// Warm up: one batch end to end, so that the consumer group has
	// joined and every connection is open before the clock starts.
	warm := pool.bodyRound(0, warmupRound, nil)
	if _, err := post(ctx, http.DefaultClient, "http://"+webhookAddr+"/audit/load", warm); err != nil {
		return nil, fmt.Errorf("warming up: %w", err)
	}
	if _, timedOut, err := waitRows(ctx, ch, 0, batchEvents, o.pollEvery, o.drain); err != nil || timedOut {
		return nil, fmt.Errorf("warming up: the first batch did not reach ClickHouse within %v (err %v)", o.drain, err)
	}
	base := batchEvents
	log.Info("pipeline ready; sending", "rate", o.rate, "duration", o.duration, "senders", o.senders)

	procs := []*proc{{name: "ingest", pid: ingest.cmd.Process.Pid}, {name: "detect", pid: detect.cmd.Process.Pid},
		{name: "clickhouse-server", pid: ch.Pid()}, {name: senderName, pid: os.Getpid()}}
	for _, p := range procs {
		p.begin = cpuSeconds(p.pid)
	}
	begin := time.Now()
	// Rows are counted while the batches go out, so that each batch's
	// latency is measured from the moment it was sent, not from the end of
	// sending.
	total := make(chan int, 1)
	type polled struct {
		samples  []sample
		timedOut bool
		err      error
	}
	pollDone := make(chan polled, 1)
	go func() {
		samples, timedOut, err := pollRows(ctx, ch, base, total, o.pollEvery, o.drain)
		pollDone <- polled{samples, timedOut, err}
	}()
	sends, retries, err := send(ctx, o, "http://"+webhookAddr+"/audit/load", pool)
	if err != nil {
		total <- 0 // let the poller return
		<-pollDone
		return nil, err
	}
	sendEnd := time.Now()
	total <- len(sends) * batchEvents
	p := <-pollDone
	if p.err != nil {
		return nil, p.err
	}
	samples, timedOut := p.samples, p.timedOut
	end := time.Now()
	for _, p := range procs {
		p.end = cpuSeconds(p.pid)
		p.hwm = peakRSS(p.pid)
	}
	// Keep each component's own metrics (stage durations, batch sizes)
	// beside its log, for -keep runs that need to explain a figure.
	for name, addr := range map[string]string{"ingest": ingestMetrics, "detect": detectMetrics} {
		if err := saveMetrics(ctx, "http://"+addr+"/metrics", filepath.Join(dir, name+".metrics")); err != nil {
			log.Warn("saving metrics", "component", name, "err", err)
		}
	}

	sentEvents := len(sends) * batchEvents
	res := &Results{
		OfferedRate: o.rate, SentEvents: sentEvents, SendSeconds: sendEnd.Sub(begin).Seconds(),
		Retries: retries, DrainTimedOut: timedOut,
		LatencyMethod:  "per batch: time from its POST until the events row count covers every event sent up to and including it (FIFO-matched)",
		PollIntervalMS: o.pollEvery.Milliseconds(),
	}
	res.SentRate = float64(sentEvents) / res.SendSeconds
	last := samples[len(samples)-1]
	res.Rows = last.rows
	res.LandSeconds = last.at.Sub(begin).Seconds()
	if timedOut {
		res.LandSeconds = end.Sub(begin).Seconds()
	}
	res.SustainedRate = float64(res.Rows) / res.LandSeconds
	final, err := countRows(ctx, ch, "FINAL")
	if err != nil {
		return nil, err
	}
	final -= base
	res.RowsFinal = final
	// Rows still missing when the drain deadline passed may be late, not
	// lost: only a drained pipeline tells.
	if timedOut {
		res.Missing = sentEvents - final
	} else {
		res.Lost = sentEvents - final
	}
	res.LatencyP50, res.LatencyP99, res.LatencyMax = latencies(sends, samples)
	wall := end.Sub(begin).Seconds()
	for _, p := range procs {
		cpu := p.end - p.begin
		res.Processes = append(res.Processes, Usage{Name: p.name, CPUSeconds: cpu, CPUCores: cpu / wall, PeakRSSMiB: float64(p.hwm) / 1024})
	}
	return res, nil
}

// pool holds the generated bodies and where each auditID sits in them.
type pool struct {
	bodies [][]byte
	ids    [][]int // offsets of each body's auditID values
}

func newPool(n int) *pool {
	const typeMeta = `"kind":"Event","apiVersion":"audit.k8s.io/v1",`
	g := gen.New(gen.Config{Seed: 7, AttackRatio: 0.02})
	p := &pool{}
	for range n {
		var buf bytes.Buffer
		buf.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
		for i := range batchEvents {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(bytes.Replace(g.Next().JSON, []byte(typeMeta), nil, 1))
		}
		buf.WriteString("]}")
		body := buf.Bytes()
		var ids []int
		for off := 0; ; {
			k := bytes.Index(body[off:], []byte(`"auditID":"`))
			if k < 0 {
				break
			}
			off += k + len(`"auditID":"`)
			ids = append(ids, off)
		}
		p.bodies = append(p.bodies, body)
		p.ids = append(p.ids, ids)
	}
	return p
}

// body returns batch i's body: pool body i%n with the first eight hex
// digits of every auditID replaced by the replay round, so that each event
// sent is a new (auditID, stage) while stages of one request stay paired.
func (p *pool) body(i int, buf []byte) []byte {
	return p.bodyRound(i%len(p.bodies), i/len(p.bodies), buf)
}

// warmupRound marks the warm-up batch's auditIDs; no measured round
// reaches it.
const warmupRound = 0xffffffff

func (p *pool) bodyRound(n, r int, buf []byte) []byte {
	buf = append(buf[:0], p.bodies[n]...)
	round := fmt.Appendf(nil, "%08x", r)
	for _, off := range p.ids[n] {
		copy(buf[off:off+8], round)
	}
	return buf
}

type sent struct {
	at    time.Time
	index int
}

// send offers batches at o.rate for o.duration from o.senders connections
// and returns when each batch's POST began, in batch order.
func send(ctx context.Context, o options, url string, p *pool) ([]sent, int, error) {
	interval := time.Duration(float64(time.Second) * batchEvents / o.rate)
	batches := int(o.duration / interval)
	next := make(chan int, o.senders)
	out := make([]sent, batches)
	var (
		mu       sync.Mutex
		retries  int
		firstErr error
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.senders}}
	defer client.CloseIdleConnections()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range o.senders {
		wg.Go(func() {
			var buf []byte
			for i := range next {
				buf = p.body(i, buf)
				out[i] = sent{at: time.Now(), index: i}
				n, err := post(sctx, client, url, buf)
				mu.Lock()
				retries += n
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	// Open loop: batch i is due at start + i*interval whatever happened to
	// the ones before it, as an apiserver's audit traffic would be.
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	sentN := 0
loop:
	for i := range batches {
		timer.Reset(time.Until(start.Add(time.Duration(i) * interval)))
		select {
		case <-sctx.Done():
			break loop
		case <-timer.C:
		}
		select {
		case next <- i:
			sentN++
		case <-sctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, retries, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, retries, err
	}
	return out[:sentN], retries, nil
}

// post sends one body, retrying 429 and 503 as the apiserver's webhook does
// (its backoff is seconds; a load test cannot wait that long, so 100 ms).
func post(ctx context.Context, client *http.Client, url string, body []byte) (retries int, err error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return retries, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return retries, fmt.Errorf("posting batch: %w", err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return retries, nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			retries++
			select {
			case <-ctx.Done():
				return retries, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		default:
			return retries, fmt.Errorf("posting batch: %s: %s", resp.Status, bytes.TrimSpace(msg))
		}
	}
}

type sample struct {
	at   time.Time
	rows int
}

// waitRows counts rows beyond base every poll until there are want, or
// drain passes.
func waitRows(ctx context.Context, ch *chserver.Server, base, want int, poll, drain time.Duration) ([]sample, bool, error) {
	total := make(chan int, 1)
	total <- want
	return pollRows(ctx, ch, base, total, poll, drain)
}

// pollRows counts rows beyond base every poll. Once the expected total
// arrives on total, it returns when the count reaches it or drain later.
func pollRows(ctx context.Context, ch *chserver.Server, base int, total <-chan int, poll, drain time.Duration) ([]sample, bool, error) {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	want := -1
	var deadline time.Time
	var samples []sample
	for {
		if want < 0 {
			select {
			case want = <-total:
				deadline = time.Now().Add(drain)
			default:
			}
		}
		n, err := countRows(ctx, ch, "")
		if err != nil {
			return nil, false, err
		}
		n -= base
		samples = append(samples, sample{at: time.Now(), rows: n})
		if want >= 0 && n >= want {
			return samples, false, nil
		}
		if want >= 0 && time.Now().After(deadline) {
			return samples, true, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-tick.C:
		}
	}
}

func countRows(ctx context.Context, ch *chserver.Server, final string) (int, error) {
	out, err := ch.Exec(ctx, "SELECT count() FROM "+database+".events "+final)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// latencies matches each batch to the first row count covering it. Rows
// of a later batch can land before an earlier one's, so this is the
// latency a FIFO pipeline with the same row counts would have had.
func latencies(sends []sent, samples []sample) (p50, p99, maxLat float64) {
	var lat []float64
	j := 0
	for i, s := range sends {
		want := (i + 1) * batchEvents
		for j < len(samples) && samples[j].rows < want {
			j++
		}
		if j == len(samples) {
			break // never landed; counted as lost
		}
		lat = append(lat, samples[j].at.Sub(s.at).Seconds())
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return q(0.50), q(0.99), lat[len(lat)-1]
}

func waitTable(ctx context.Context, ch *chserver.Server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := countRows(ctx, ch, "")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for detect to create %s.events: %w", database, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", url, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func saveMetrics(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// child is a pipeline process started from its binary.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func startChild(ctx context.Context, dir, name, bin string, args ...string) (*child, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with e2eload, so no orphan holds ports after a crash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() {
		c.done <- cmd.Wait()
		_ = logf.Close()
	}()
	return c, nil
}

// stop asks the process to shut down and waits for it (SIGKILL after 20 s).
func (c *child) stop(log *slog.Logger) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			log.Warn("child exited", "name", c.name, "err", err)
		}
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		err := <-c.done
		log.Warn("child ignored SIGTERM; killed it", "name", c.name, "err", err)
	}
}

// proc tracks one process's CPU time across the run.
type proc struct {
	name       string
	pid        int
	begin, end float64
	hwm        int64 // KiB
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds reads utime+stime of pid (including reaped children's time
// is deliberately left out: every process measured is a leaf).
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / clockTicks
}

// peakRSS returns VmHWM of pid in KiB.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
