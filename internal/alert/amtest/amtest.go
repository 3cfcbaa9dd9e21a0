// Package amtest runs a real Alertmanager as a child process for tests:
// Debian's prometheus-alertmanager (0.25) on loopback, its storage in the
// test's temporary directory, gossip disabled.
package amtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const (
	// DefaultBinary is where Debian's prometheus-alertmanager package puts
	// the server.
	DefaultBinary = "/usr/bin/prometheus-alertmanager"
	// RequireEnv names the variable that, when "1", turns a missing binary
	// into a failure instead of a skip, so CI cannot pass by skipping.
	RequireEnv = "AUDITPIPE_REQUIRE_SERVICES"
	// startTimeout bounds the wait for /-/ready. Alertmanager is ready in
	// well under a second when idle; the bound is for a loaded machine.
	startTimeout = 60 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// portAttempts retries with a fresh port when another process took the
	// probed one before Alertmanager bound it.
	portAttempts = 3
)

// Server is a running Alertmanager.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:40123.
	URL string

	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Start runs Alertmanager with config (alertmanager.yml text) and stops it
// when the test ends. It skips when the binary is missing, unless
// AUDITPIPE_REQUIRE_SERVICES=1.
func Start(t testing.TB, config string) *Server {
	t.Helper()
	bin := DefaultBinary
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("amtest: %s not found and %s=1: apt-get install -y prometheus-alertmanager", bin, RequireEnv)
		}
		t.Skipf("amtest: %s not found; apt-get install -y prometheus-alertmanager to run this test", bin)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range portAttempts {
		s, err := start(bin, dir, cfgPath)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("amtest: starting alertmanager: %v", lastErr)
	return nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func start(bin, dir, cfgPath string) (*Server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("finding a free port: %w", err)
	}
	logPath := filepath.Join(dir, "alertmanager.log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=debug",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", bin, err)
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(s.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			tail, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("alertmanager exited during start-up: %s", lastBytes(tail, 2048))
		case <-ctx.Done():
			s.stop()
			return nil, errors.New("alertmanager not ready within " + startTimeout.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Log returns Alertmanager's output so far, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return lastBytes(b, 8192)
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
