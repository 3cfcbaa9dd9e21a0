// Command auditload sends kube-apiserver-style audit webhook batches
// (400-event EventLists from the generator) to ingest, at a target rate or
// flat out, from concurrent senders, and reports the sustained event rate
// and the latency of each request.
//
//	auditload --url http://127.0.0.1:8080/audit/load --rate 4000 --duration 30s
//	auditload --in-process --concurrency 8 --duration 20s   # ingest + in-process Kafka
//
// With --in-process it starts everything it measures itself: the ingest
// handler on loopback (with redaction, deduplication and the real Kafka
// producer, acks from all replicas) in front of an in-process Kafka broker
// (franz-go's kfake), so one command gives a self-contained figure.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/redact"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "auditload:", err)
		os.Exit(1)
	}
}

type options struct {
	url         string
	inProcess   bool
	rate        float64
	concurrency int
	duration    time.Duration
	count       int64
	batch       int
	pool        int
	seed        int64
	partitions  int
	brokers     int
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("auditload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "", "ingest webhook URL, e.g. http://127.0.0.1:8080/audit/load")
	fs.BoolVar(&o.inProcess, "in-process", false, "start ingest and an in-process Kafka broker and measure those")
	fs.Float64Var(&o.rate, "rate", 0, "target events per second; 0 sends flat out")
	fs.IntVar(&o.concurrency, "concurrency", 4, "concurrent senders (an apiserver sends batches concurrently too)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send")
	fs.Int64Var(&o.count, "count", 0, "stop after this many events (0: only the duration bounds the run)")
	fs.IntVar(&o.batch, "batch", 400, "events per request; the apiserver sends at most 400")
	fs.IntVar(&o.pool, "pool", 64, "distinct batches generated up front and resent with fresh auditIDs")
	fs.Int64Var(&o.seed, "seed", 1, "generator seed")
	fs.IntVar(&o.partitions, "partitions", 8, "topic partitions (in-process)")
	fs.IntVar(&o.brokers, "brokers", 1, "in-process brokers")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if (o.url == "") == !o.inProcess {
		return errors.New("give exactly one of --url or --in-process")
	}
	if o.concurrency < 1 || o.batch < 1 || o.pool < 1 {
		return errors.New("concurrency, batch and pool must be positive")
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	url := o.url
	if o.inProcess {
		u, shutdown, err := startInProcess(o, stderr)
		if err != nil {
			return err
		}
		defer shutdown()
		url = u
	}
	fmt.Fprintf(stderr, "generating %d batches of %d events\n", o.pool, o.batch)
	bodies, idAt := makeBodies(o)
	res := load(ctx, o, url, bodies, idAt)
	res.print(stdout, o)
	if res.ok == 0 {
		return errors.New("no request succeeded")
	}
	return nil
}

// startInProcess serves ingest on loopback in front of an in-process broker
// and returns its webhook URL.
func startInProcess(o options, stderr io.Writer) (string, func(), error) {
	const topic = "audit-events"
	dir, err := os.MkdirTemp("", "auditload-kfake-")
	if err != nil {
		return "", nil, err
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(o.brokers), kfake.SeedTopics(int32(o.partitions), topic), kfake.DataDir(dir))
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("starting in-process kafka: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: kc.ListenAddrs(), Topic: topic}, log, nil)
	if err != nil {
		kc.Close()
		os.RemoveAll(dir)
		return "", nil, err
	}
	red, err := redact.New(redact.Config{})
	if err != nil {
		return "", nil, err
	}
	cfg := ingest.Config{DefaultCluster: "load"}
	h, err := ingest.New(cfg, prod, red, prod, log, nil)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := ingest.NewServer(cfg, h)
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	fmt.Fprintf(stderr, "in-process: ingest on %s, kafka %v (%d partitions, acks=all)\n", ln.Addr(), kc.ListenAddrs(), o.partitions)
	shutdown := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		wg.Wait()
		_ = prod.Close()
		kc.Close()
		os.RemoveAll(dir)
	}
	return "http://" + ln.Addr().String() + "/audit/load", shutdown, nil
}

// makeBodies renders the pool of EventLists and finds, in each, where every
// auditID starts, so senders can give each resend fresh IDs (ingest would
// otherwise deduplicate the resends and produce nothing).
func makeBodies(o options) ([][]byte, [][]int) {
	g := gen.New(gen.Config{Seed: o.seed, Cluster: "load", AttackRatio: 0.02})
	bodies := make([][]byte, o.pool)
	idAt := make([][]int, o.pool)
	marker := []byte(`"auditID":"`)
	for i := range bodies {
		evs := make([][]byte, o.batch)
		for j := range evs {
			evs[j] = g.Next().JSON
		}
		bodies[i] = gen.EventList(evs)
		for off := 0; ; {
			k := bytes.Index(bodies[i][off:], marker)
			if k < 0 {
				break
			}
			off += k + len(marker)
			idAt[i] = append(idAt[i], off)
		}
	}
	return bodies, idAt
}

type result struct {
	elapsed   time.Duration
	events    int64
	ok        int64
	failed    map[string]int64
	latencies []time.Duration
}

func load(ctx context.Context, o options, url string, bodies [][]byte, idAt [][]int) *result {
	client := &http.Client{
		Timeout:   30 * time.Second, // the apiserver's webhook timeout
		Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency, DisableCompression: true},
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()

	// With a target rate, a ticker hands out one token per request; a
	// sender that falls behind skips ticks rather than bursting.
	var tokens chan struct{}
	var wg sync.WaitGroup
	if o.rate > 0 {
		tokens = make(chan struct{}, o.concurrency)
		every := time.Duration(float64(time.Second) * float64(o.batch) / o.rate)
		wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					select {
					case tokens <- struct{}{}:
					default:
					}
				}
			}
		})
	}

	var next, sentEvents atomic.Int64
	var mu sync.Mutex
	res := &result{failed: map[string]int64{}}
	start := time.Now()
	for range o.concurrency {
		wg.Go(func() {
			var lat []time.Duration
			var ok int64
			failed := map[string]int64{}
			buf := make([]byte, 0, len(bodies[0])*2)
			var hex [8]byte
			for ctx.Err() == nil {
				if tokens != nil {
					select {
					case <-ctx.Done():
					case <-tokens:
					}
					if ctx.Err() != nil {
						break
					}
				}
				n := next.Add(1) - 1
				if o.count > 0 && n*int64(o.batch) >= o.count {
					break
				}
				i, round := int(n%int64(len(bodies))), n/int64(len(bodies))
				buf = append(buf[:0], bodies[i]...)
				copy(hex[:], fmt.Sprintf("%08x", uint32(round)))
				for _, at := range idAt[i] {
					copy(buf[at:at+8], hex[:])
				}
				t0 := time.Now()
				code, err := post(ctx, client, url, buf)
				d := time.Since(t0)
				switch {
				case err != nil && ctx.Err() != nil:
					// The run ended mid-request: neither success nor failure.
				case err != nil:
					failed["error"]++
				case code == http.StatusOK:
					ok++
					lat = append(lat, d)
					sentEvents.Add(int64(o.batch))
				default:
					failed[strconv.Itoa(code)]++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.ok += ok
			res.latencies = append(res.latencies, lat...)
			for k, v := range failed {
				res.failed[k] += v
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.events = sentEvents.Load()
	return res
}

func post(ctx context.Context, c *http.Client, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (r *result) print(w io.Writer, o options) {
	mode := "flat out"
	if o.rate > 0 {
		mode = fmt.Sprintf("target %.0f events/s", o.rate)
	}
	fmt.Fprintf(w, "%s, %d senders, %d-event requests: %d events accepted in %s = %.0f events/s\n",
		mode, o.concurrency, o.batch, r.events, r.elapsed.Round(time.Millisecond), float64(r.events)/r.elapsed.Seconds())
	fmt.Fprintf(w, "requests: %d ok", r.ok)
	for k, v := range r.failed {
		fmt.Fprintf(w, ", %d %s", v, k)
	}
	fmt.Fprintln(w)
	if len(r.latencies) == 0 {
		return
	}
	slices.Sort(r.latencies)
	q := func(p float64) time.Duration {
		return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
	}
	fmt.Fprintf(w, "latency per request: p50 %s, p99 %s, max %s\n",
		q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), r.latencies[len(r.latencies)-1].Round(10*time.Microsecond))
}
