package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder notes the order of starts and stops.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, s)
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, " ")
}

func (r *recorder) add(g *Group, name string, startErr, stopErr error) {
	g.Add(name, func(context.Context) error {
		r.note("start:" + name)
		return startErr
	}, func(context.Context) error {
		r.note("stop:" + name)
		return stopErr
	})
}

func TestStartInOrderStopInReverse(t *testing.T) {
	var logs bytes.Buffer
	g := New(slog.New(slog.NewTextHandler(&logs, nil)))
	var r recorder
	r.add(g, "source", nil, nil)
	r.add(g, "sink", nil, errors.New("flush refused"))
	g.AddCloser("spool", func() error { r.note("stop:spool"); return nil })
	r.add(g, "server", nil, nil)
	if err := g.Start(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	err := g.Shutdown(context.Background())
	if want := "start:source start:sink start:server stop:server stop:spool stop:sink stop:source"; r.String() != want {
		t.Fatalf("order:\n got %s\nwant %s", r.String(), want)
	}
	if err == nil || !strings.Contains(err.Error(), "stopping sink: flush refused") {
		t.Fatalf("Shutdown error %v does not name the sink's", err)
	}
	// Every stop is logged with its duration.
	for _, name := range []string{"source", "sink", "spool", "server"} {
		if !strings.Contains(logs.String(), "component="+name+" took=") {
			t.Errorf("no stop log line with a duration for %s:\n%s", name, logs.String())
		}
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if n := strings.Count(r.String(), "stop:"); n != 4 {
		t.Fatalf("a second Shutdown stopped again: %s", r.String())
	}
}

func TestFailedStartStopsWhatStarted(t *testing.T) {
	g := New(nil)
	var r recorder
	r.add(g, "a", nil, nil)
	r.add(g, "b", errors.New("port taken"), nil)
	r.add(g, "c", nil, nil)
	err := g.Start(context.Background(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "starting b: port taken") {
		t.Fatalf("Start error %v", err)
	}
	if want := "start:a start:b stop:a"; r.String() != want {
		t.Fatalf("order:\n got %s\nwant %s", r.String(), want)
	}
}

// TestOneDeadline checks that a stop overrunning the shared deadline does
// not keep the others from running, and that each says what happened.
func TestOneDeadline(t *testing.T) {
	g := New(nil)
	var r recorder
	r.add(g, "first", nil, nil)
	g.Add("slow", nil, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err := g.Start(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the deadline has passed
	err := g.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopping slow") {
		t.Fatalf("Shutdown error %v", err)
	}
	if r.String() != "start:first stop:first" {
		t.Fatalf("first was not stopped after slow overran: %s", r.String())
	}
}

func TestGo(t *testing.T) {
	g := New(nil)
	ran := make(chan struct{})
	g.Go("retention", func(ctx context.Context) error {
		close(ran)
		<-ctx.Done()
		return ctx.Err() // a stop asked for is not an error
	})
	g.Go("watcher", func(context.Context) error { return errors.New("rules vanished") })
	if err := g.Start(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	<-ran
	select {
	case err := <-g.Failures():
		if !strings.Contains(err.Error(), "running watcher: rules vanished") {
			t.Fatalf("failure %v", err)
		}
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("the watcher's failure was not delivered")
	}
	err := g.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "rules vanished") || strings.Contains(err.Error(), "retention") {
		t.Fatalf("Shutdown error %v: want the watcher's error only", err)
	}
}

// TestShutdownBeforeStart closes what constructors opened when a later
// construction step fails, before Start.
func TestShutdownBeforeStart(t *testing.T) {
	g := New(nil)
	var r recorder
	g.AddCloser("consumer", func() error { r.note("stop:consumer"); return nil })
	r.add(g, "server", nil, nil)
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.String() != "stop:consumer" {
		t.Fatalf("got %q, want only the opened consumer closed", r.String())
	}
}
