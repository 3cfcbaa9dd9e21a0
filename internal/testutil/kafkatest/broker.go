package kafkatest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireEnv makes a missing java or mvn fail the test instead of skipping
// it, as CI sets it for every service the tests start.
const requireEnv = "AUDITPIPE_REQUIRE_SERVICES"

// scriptTimeout bounds one run of scripts/kafka.sh: a first fetch from Maven
// Central plus a JVM start on a loaded two-core machine. The script's own
// readiness wait (120 s) ends sooner.
const scriptTimeout = 5 * time.Minute

// ownBroker is one test's private Apache Kafka broker, run by
// scripts/kafka.sh in a directory of the test's own.
type ownBroker struct {
	script    string
	dir       string
	bootstrap string
}

// startOwnBroker starts a broker for t and stops it, removing its data, in
// t.Cleanup.
func startOwnBroker(t testing.TB) *ownBroker {
	t.Helper()
	script, err := findScript()
	if err == nil {
		for _, tool := range []string{"java", "mvn"} {
			if _, lookErr := exec.LookPath(tool); lookErr != nil {
				err = errors.Join(err, lookErr)
			}
		}
	}
	if err != nil {
		if os.Getenv(requireEnv) != "" {
			t.Fatalf("kafkatest: a broker of the test's own needs scripts/kafka.sh, java and mvn: %v", err)
		}
		t.Skipf("kafkatest: a broker of the test's own needs scripts/kafka.sh, java and mvn: %v", err)
	}
	b := &ownBroker{script: script, dir: filepath.Join(t.TempDir(), "kafka")}
	// Registered after t.TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if out, err := b.run("stop"); err != nil {
			t.Errorf("kafkatest: stopping the test's broker: %v\n%s", err, out)
		}
	})
	b.start(t)
	return b
}

// start starts the broker, or restarts it on the same port with the same
// data after stop; it returns once the broker answers metadata requests.
func (b *ownBroker) start(t testing.TB) {
	t.Helper()
	began := time.Now()
	out, err := b.run("start")
	if err != nil {
		t.Fatalf("kafkatest: starting the test's broker: %v\n%s", err, out)
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) == 0 {
		t.Fatalf("kafkatest: scripts/kafka.sh start printed no address")
	}
	addr := lines[len(lines)-1]
	if b.bootstrap != "" && addr != b.bootstrap {
		t.Fatalf("kafkatest: broker came back on %s, was %s", addr, b.bootstrap)
	}
	b.bootstrap = addr
	t.Logf("kafkatest: broker of the test's own ready at %s in %s", addr, time.Since(began).Round(10*time.Millisecond))
}

// stop stops the broker and keeps its data for start.
func (b *ownBroker) stop(t testing.TB) {
	t.Helper()
	began := time.Now()
	if out, err := b.run("stop", "--keep"); err != nil {
		t.Fatalf("kafkatest: stopping the test's broker: %v\n%s", err, out)
	}
	t.Logf("kafkatest: broker of the test's own stopped in %s", time.Since(began).Round(10*time.Millisecond))
}

// run runs the script with the test's directory; stdout is the script's
// answer, stderr goes to the test's output only on failure.
func (b *ownBroker) run(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{b.script}, args...)...)
	cmd.Env = append(os.Environ(), "KAFKA_STATE_DIR="+b.dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// findScript finds scripts/kafka.sh at the module's root, above the test's
// working directory (its package's directory under go test).
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			script := filepath.Join(dir, "scripts", "kafka.sh")
			if _, err := os.Stat(script); err != nil {
				return "", err
			}
			return script, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
