package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/kafkatest"
	"go.uber.org/goleak"
)

// detectBin is cmd/detect built once for the package's child-process tests.
var detectBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "auditpipe-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating temp dir:", err)
		os.Exit(1)
	}
	detectBin = filepath.Join(dir, "detect")
	build := exec.Command("go", "build", "-o", detectBin, "github.com/auditpipe/auditpipe/cmd/detect")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cmd/detect:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// As goleak.VerifyTestMain, after the binary's directory is gone: no
	// goroutine may outlive the package's tests.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: goroutines outlived the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// scaleStream is a generated stream already keyed as ingest keys it.
type scaleStream struct {
	msgs []pipeline.Message
	// keys are the distinct (cluster, auditID, stage): the rows events
	// FINAL must hold.
	keys map[string]bool
}

func genStream(t testing.TB, n int, seed int64) scaleStream {
	t.Helper()
	g := gen.New(gen.Config{Seed: seed, Cluster: cluster, AttackRatio: 0.02})
	s := scaleStream{msgs: make([]pipeline.Message, 0, n), keys: make(map[string]bool, n)}
	var ev pipeline.Event
	for range n {
		ge := g.Next()
		ev.Reset()
		if err := auditjson.Decode(&ev, cluster, ge.JSON); err != nil {
			t.Fatalf("decoding generated event: %v", err)
		}
		s.msgs = append(s.msgs, pipeline.Message{Key: pipeline.MessageKey(cluster, &ev), Value: ge.JSON, Cluster: cluster})
		s.keys[cluster+"/"+ge.AuditID+"/"+string(ge.Stage)] = true
	}
	return s
}

// produce writes msgs to the cluster's topic with the ingest Producer.
func produce(t testing.TB, kc *kafkatest.Cluster, msgs []pipeline.Message) {
	t.Helper()
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: kc.Brokers, Topic: kc.Topic}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const chunk = 5000
	for i := 0; i < len(msgs); i += chunk {
		if err := prod.Produce(ctx, msgs[i:min(i+chunk, len(msgs))]); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
}

// detectProc is a detect child process.
type detectProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	metrics string // base URL of /metrics
	log     string
	started time.Time
}

// startDetect runs `detect run` with the given extra flags against the
// Kafka cluster and ClickHouse DSN.
func startDetect(t testing.TB, kc *kafkatest.Cluster, dsn string, extra ...string) *detectProc {
	t.Helper()
	addr := freeAddr(t)
	logf, err := os.CreateTemp(t.TempDir(), "detect-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run",
		"--kafka-brokers", strings.Join(kc.Brokers, ","), "--topic", kc.Topic,
		"--clickhouse", dsn, "--metrics-listen", addr,
		"--batch-timeout", "200ms", "--log-level", "warn",
	}, extra...)
	cmd := exec.Command(detectBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &detectProc{t: t, cmd: cmd, done: make(chan struct{}), metrics: "http://" + addr + "/metrics", log: logf.Name(), started: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting detect: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("detect log tail:\n%s", tail(string(b), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *detectProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// wait waits for the process to exit on its own (exit-when-idle, SIGTERM).
func (p *detectProc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("detect did not exit within %v", timeout)
	}
}

// peakRSS reads the child's VmHWM in KiB; call it before it exits.
func (p *detectProc) peakRSS() int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// metric sums the samples of name (any labels) on the child's /metrics;
// -1 when it cannot be read.
func (p *detectProc) metric(name string) float64 {
	resp, err := http.Get(p.metrics)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	var sum float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitLong polls cond until it holds. The bound only stops a broken run: a
// 200,000-event drain on a loaded 2-core machine can take minutes.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
