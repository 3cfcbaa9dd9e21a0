// Package chserver runs a real ClickHouse server as a child process, for
// tests (through chtest) and load programs (cmd/e2eload).
//
// It uses the distribution's clickhouse-server binary (Debian ships 18.16)
// with a config derived from the packaged one: data, logs and ports live in
// a directory of the caller's, listening on loopback only.
package chserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// DefaultBinary is where Debian's clickhouse-server package installs the
	// server.
	DefaultBinary = "/usr/sbin/clickhouse-server"
	// DefaultConfigDir holds the packaged config.xml and users.xml that each
	// instance derives its own from.
	DefaultConfigDir = "/etc/clickhouse-server"

	// startTimeout bounds how long Start waits for /ping. 18.16 answers in
	// about a second on an idle machine; the bound is generous because this
	// machine is shared with compilers and other test servers.
	startTimeout = 60 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	// ClickHouse waits for running queries on shutdown; tests have none
	// worth waiting for once they are done.
	stopTimeout = 15 * time.Second
	// portAttempts is how often a first start retries with fresh ports when
	// another process took a port between probing and binding.
	portAttempts = 3
	// logTailBytes is how much of the server's logs a startup error quotes.
	logTailBytes = 4 << 10
)

// Server is a running (or stopped) clickhouse-server child process.
type Server struct {
	// DSN is the native-protocol address without a database, e.g.
	// "clickhouse://127.0.0.1:40123/". Append a database name to select one.
	DSN string
	// TCPAddr is the host:port of the native protocol.
	TCPAddr string
	// HTTPURL is the base URL of the HTTP interface, e.g.
	// "http://127.0.0.1:40124". Use it for plain queries (see Exec); the
	// clickhouse-go HTTP protocol does not work with 18.16.
	HTTPURL string

	binary     string
	dir        string
	configPath string

	// StartupTime is how long the last successful start took, from exec to
	// the first successful /ping.
	StartupTime time.Duration

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *os.File      // the server's stdout and stderr
}

// Launch starts a server whose data, logs and config live in dir, on fresh
// loopback ports, and returns once it answers /ping. It retries with new
// ports when another process took one between probing and binding. The
// caller stops it with Stop.
func Launch(dir, binary string) (*Server, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("ClickHouse server not available (%w); install it with: apt-get install -y clickhouse-server", err)
	}
	var lastErr error
	for attempt := range portAttempts {
		sub := filepath.Join(dir, fmt.Sprintf("ch%d", attempt))
		s, err := start(sub, binary)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, fmt.Errorf("starting ClickHouse: %w", lastErr)
}

// Pid returns the server's process id, or 0 when it is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// errAddrInUse marks a start that failed because a probed port was taken by
// the time the server bound it.
var errAddrInUse = errors.New("address already in use")

// start lays out dir, derives the config with fresh ports and starts the
// server.
func start(dir, binary string) (*Server, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", sub, err)
		}
	}
	cfg, err := writeConfig(DefaultConfigDir, configParams{
		Dir: dir, TCPPort: ports[0], HTTPPort: ports[1], InterPort: ports[2],
	})
	if err != nil {
		return nil, err
	}
	tcp := fmt.Sprintf("127.0.0.1:%d", ports[0])
	s := &Server{
		DSN:        "clickhouse://" + tcp + "/",
		TCPAddr:    tcp,
		HTTPURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		binary:     binary,
		dir:        dir,
		configPath: cfg,
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// freePorts asks the kernel for n distinct free loopback ports. They are
// released before the server binds them, so a start can still race with
// another process; Start retries with fresh ports when it does.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start (re)starts the server on the same ports and data directory. It
// returns once /ping answers, or an error quoting the server's log tail.
// Calling it on a running server is a no-op.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening server output file: %w", err)
	}
	cmd := exec.Command(s.binary, "--config-file="+s.configPath)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Kill the server if the test binary dies without running cleanups
	// (a panic in another goroutine, a timeout), so no orphan keeps ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("executing %s: %w", s.binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(done)
	}()
	s.cmd, s.done, s.out = cmd, done, out
	if err := s.waitReady(done); err != nil {
		_ = s.stopLocked() // the start error is the one to report
		tail := s.logTail()
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		return fmt.Errorf("%w\n--- server log tail (%s) ---\n%s", err, filepath.Join(s.dir, "log"), tail)
	}
	s.StartupTime = time.Since(begin)
	return nil
}

// noKeepAlive is the transport for every request to the server. An idle
// keep-alive connection makes clickhouse-server's shutdown wait for its
// keep_alive_timeout (3 s in the packaged config) before exiting, and it
// would also leak the transport's goroutines past the test.
var noKeepAlive = &http.Transport{DisableKeepAlives: true}

// waitReady polls /ping until it answers "Ok.", the process exits or
// startTimeout passes.
func (s *Server) waitReady(exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second, Transport: noKeepAlive}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(s.HTTPURL + "/ping")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.HasPrefix(string(body), "Ok.") {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("clickhouse-server exited before answering %s/ping", s.HTTPURL)
		case <-deadline.C:
			return fmt.Errorf("clickhouse-server did not answer %s/ping within %v (last error: %v)", s.HTTPURL, startTimeout, err)
		case <-tick.C:
		}
	}
}

// Stop stops the server with SIGTERM, then SIGKILL after stopTimeout, and
// waits for it to exit. It is safe to call on a stopped server.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done, s.out = nil, nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	// A paused server handles SIGTERM only once continued.
	_ = cmd.Process.Signal(syscall.SIGCONT)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("clickhouse-server (pid %d) ignored SIGTERM for %v; killed it", cmd.Process.Pid, stopTimeout)
}

// Pause freezes the server with SIGSTOP: connections are still accepted by
// the kernel but nothing answers, the way a server stuck in GC or swap
// looks to a client. Resume undoes it; Stop works on a paused server.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a server frozen by Pause.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("clickhouse-server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling clickhouse-server: %w", err)
	}
	return nil
}

// logTail returns the last bytes of the server's error log, main log and
// output, most useful first.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"clickhouse-server.err.log", "clickhouse-server.log", "stdout.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, "log", name))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > logTailBytes {
			data = data[len(data)-logTailBytes:]
		}
		fmt.Fprintf(&b, "== %s ==\n%s\n", name, data)
	}
	if b.Len() == 0 {
		return "(no log output)"
	}
	return b.String()
}

// Exec runs one statement over the HTTP interface and returns the response
// body (TabSeparated for SELECTs). It exists for setup and cleanup; tests
// should check rows through clickhouse-go's native protocol.
func (s *Server) Exec(ctx context.Context, query string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.HTTPURL+"/", strings.NewReader(query))
	if err != nil {
		return "", fmt.Errorf("building query request: %w", err)
	}
	resp, err := (&http.Client{Transport: noKeepAlive}).Do(req)
	if err != nil {
		return "", fmt.Errorf("querying ClickHouse: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading query response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("querying ClickHouse: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return string(body), nil
}

// ConfigDir is the directory holding the server's config.xml. Files put in
// its config.d subdirectory are merged into the config at the next Start.
func (s *Server) ConfigDir() string { return filepath.Dir(s.configPath) }

// Running reports whether the server process is up (started and not
// stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
