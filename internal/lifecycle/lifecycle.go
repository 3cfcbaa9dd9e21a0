// Package lifecycle starts a binary's components in order and stops them in
// reverse, in the manner of Alertmanager's run groups and the OpenTelemetry
// Collector's Start/Shutdown: components are added with a name, started in
// the order added, and stopped in reverse order under one deadline, each
// stop logged with its duration and every error joined. Both cmd/ingest and
// cmd/detect use it, so that their start-up and shutdown read alike.
//
// Reverse order is what makes shutdown drain: a component is added after
// what it feeds (the sink before the processor, the producer before the
// HTTP server), so it stops before it, and what it hands over on its way
// out still has somewhere to go.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// StartFunc starts a component. It returns once the component runs (it
// does not block for the component's life); ctx bounds start-up only.
type StartFunc func(ctx context.Context) error

// StopFunc stops a component, flushing what it holds, within ctx's
// deadline.
type StopFunc func(ctx context.Context) error

type component struct {
	name    string
	start   StartFunc
	stop    StopFunc
	running bool
}

// Group is an ordered list of components. Add them, then Start once and
// Shutdown once (a second Shutdown is a no-op). It is safe for concurrent
// use.
type Group struct {
	log *slog.Logger

	mu       sync.Mutex
	comps    []component
	stopped  bool
	failures chan error
}

// New returns an empty Group that logs to log (nil: discard).
func New(log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The first failure is what shutdown is about; later ones are
	// still returned by the stops that end those components.
	return &Group{log: log, failures: make(chan error, 1)}
}

// Add appends a component. start may be nil for a component its
// constructor already started (an opened store, a producer): it counts as
// running from now on, so a Shutdown after a later construction error
// closes it. stop may be nil for one that holds nothing.
func (g *Group) Add(name string, start StartFunc, stop StopFunc) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.comps = append(g.comps, component{name: name, start: start, stop: stop, running: start == nil})
}

// AddCloser appends a component that is already running and stops with
// close, which takes no deadline (a Kafka reader, a spool file).
func (g *Group) AddCloser(name string, closeFn func() error) {
	g.Add(name, nil, func(context.Context) error { return closeFn() })
}

// Go appends a component that runs fn in its own goroutine from Start
// until Start's context is done or Shutdown, which cancels fn's context
// and waits for it to return (within the shutdown deadline). An error fn returns before it was asked
// to stop is sent to Failures, so the binary can shut down on it.
func (g *Group) Go(name string, fn func(ctx context.Context) error) {
	var (
		cancel context.CancelFunc
		done   chan struct{}
		err    error
	)
	g.Add(name, func(runCtx context.Context) error {
		var ctx context.Context
		ctx, cancel = context.WithCancel(runCtx)
		done = make(chan struct{})
		go func() {
			defer close(done)
			err = fn(ctx)
			if err != nil && ctx.Err() == nil {
				select {
				case g.failures <- fmt.Errorf("running %s: %w", name, err):
				default:
				}
			}
		}()
		return nil
	}, func(ctx context.Context) error {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", name, ctx.Err())
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
}

// Failures delivers errors of Go components that stopped on their own.
func (g *Group) Failures() <-chan error { return g.failures }

// Start starts every component not yet running, in the order added. ctx
// is the run context: Go components run until it is done. If a start
// fails, the running components are stopped (in reverse, within
// stopTimeout) and the joined errors returned.
func (g *Group) Start(ctx context.Context, stopTimeout time.Duration) error {
	g.mu.Lock()
	n := len(g.comps)
	g.mu.Unlock()
	for i := range n {
		g.mu.Lock()
		c := g.comps[i]
		g.mu.Unlock()
		if c.running {
			continue
		}
		if err := c.start(ctx); err != nil {
			err = fmt.Errorf("starting %s: %w", c.name, err)
			g.log.Error("component failed to start", "component", c.name, "err", err)
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			return errors.Join(err, g.Shutdown(sctx))
		}
		g.mu.Lock()
		g.comps[i].running = true
		g.mu.Unlock()
	}
	return nil
}

// Shutdown stops the running components in reverse order under ctx's one
// deadline, logging each stop with its duration, and returns their errors
// joined. A stop that overruns the deadline gets a context already done,
// so the rest still run and say so. Calling it again does nothing.
func (g *Group) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return nil
	}
	g.stopped = true
	var comps []component
	for _, c := range g.comps {
		if c.running {
			comps = append(comps, c)
		}
	}
	g.mu.Unlock()

	begin := time.Now()
	var errs []error
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		if c.stop == nil {
			continue
		}
		t := time.Now()
		err := c.stop(ctx)
		if err != nil {
			err = fmt.Errorf("stopping %s: %w", c.name, err)
			g.log.Warn("component stopped", "component", c.name, "took", time.Since(t), "err", err)
		} else {
			g.log.Info("component stopped", "component", c.name, "took", time.Since(t))
		}
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	g.log.Info("shutdown complete", "took", time.Since(begin), "err", err)
	return err
}
