package rules

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// DefaultReloadInterval is how often a Watcher checks its files. Rule edits
// are rare and a few seconds' delay is harmless; reading a few small files
// every 5 s costs nothing.
const DefaultReloadInterval = 5 * time.Second

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Files are the user rule files, loaded in order after the default
	// pack (unless NoDefault).
	Files []string
	// NoDefault leaves the shipped default pack out.
	NoDefault bool
	// Interval between checks of the files' content. Default
	// DefaultReloadInterval.
	Interval time.Duration
}

// WithDefaults returns c with unset fields set to their defaults.
func (c WatcherConfig) WithDefaults() WatcherConfig {
	if c.Interval == 0 {
		c.Interval = DefaultReloadInterval
	}
	return c
}

// Validate reports configuration mistakes, naming the key of each.
func (c WatcherConfig) Validate() error {
	if c.Interval < 0 {
		return errors.New("rules.interval must not be negative")
	}
	return nil
}

// Watcher runs the current rule set and replaces it when the rule files
// change and the new content loads. A new set that does not load is logged
// and counted, and the old set keeps running. Watcher implements
// pipeline.EventDetector by handing each event to the set current when the
// event arrives, so a swap never loses or repeats an event.
type Watcher struct {
	cfg     WatcherConfig
	log     *slog.Logger
	metrics *Metrics
	current atomic.Pointer[Set]
	// seen is the hash of the content last loaded or rejected, so a bad
	// edit is reported once, not every interval.
	seen [sha256.Size]byte
	// pending is the hash read at the previous check. New content is
	// loaded only once two checks in a row read it: a file caught while
	// an editor or kubectl cp is still writing it may parse as a valid but
	// truncated file, which would silently drop rules.
	pending [sha256.Size]byte
	// readErr is the last error reading the files, logged when it changes.
	readErr string
	// load is LoadContext; tests replace it to see what a reload is given.
	load func(context.Context, ...File) (*Set, error)
}

var _ pipeline.EventDetector = (*Watcher)(nil)

// NewWatcher loads the rules once: a set that does not load at start-up is
// an error, as a typo must not leave the pipeline without rules. Cancelling
// ctx stops the load.
func NewWatcher(ctx context.Context, cfg WatcherConfig, log *slog.Logger, reg prometheus.Registerer) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	w := &Watcher{cfg: cfg, log: log, metrics: m, load: LoadContext}
	files, sum, err := w.read()
	if err != nil {
		return nil, err
	}
	set, err := w.load(ctx, files...)
	if err != nil {
		return nil, err
	}
	w.seen, w.pending = sum, sum
	w.current.Store(set.Instrument(log, m))
	return w, nil
}

// Current returns the set in use.
func (w *Watcher) Current() *Set { return w.current.Load() }

// Detect runs ev through the current set.
func (w *Watcher) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	return w.current.Load().Detect(ev, out)
}

// Run checks the files every interval until ctx is done. It returns nil on
// cancellation, promptly even in the middle of a load: pass the process's
// context, so that SIGTERM during a reload does not wait for it.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Reload(ctx)
		}
	}
}

// Reload checks the files once and swaps the set if their content changed,
// stayed the same since the previous check, and loads. It reports whether
// a new set went live. Run calls it; tests
// and a SIGHUP handler may too, but not concurrently with each other. A
// load cut short by ctx leaves everything as it was.
func (w *Watcher) Reload(ctx context.Context) bool {
	files, sum, err := w.read()
	if err != nil {
		// A file mid-rename or removed: keep the old set, try again later,
		// and say so once per distinct error rather than every interval.
		if err.Error() != w.readErr {
			w.readErr = err.Error()
			w.metrics.reload("invalid")
			w.log.Warn("reading rule files; keeping the current rules", "err", err)
		}
		return false
	}
	w.readErr = ""
	if sum == w.seen {
		w.pending = sum
		return false
	}
	if sum != w.pending {
		w.pending = sum // changed since the last check: wait for it to settle
		return false
	}
	set, err := w.load(ctx, files...)
	if ctx.Err() != nil {
		// Shutting down: not a verdict on the files, so neither counted
		// nor remembered as seen.
		w.log.Info("rule reload stopped by shutdown")
		return false
	}
	w.seen = sum
	if err != nil {
		w.metrics.reload("invalid")
		problems := Errors(err)
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.Error()
		}
		w.log.Error("loading changed rule files; keeping the current rules", "problems", len(problems), "errors", msgs)
		return false
	}
	w.current.Store(set.Instrument(w.log, w.metrics))
	w.metrics.reload("ok")
	w.log.Info("rules reloaded", "rules", set.Len())
	return true
}

// read returns the files to load and a hash of their names and content.
func (w *Watcher) read() ([]File, [sha256.Size]byte, error) {
	var files []File
	if !w.cfg.NoDefault {
		var err error
		if files, err = DefaultRuntimeFiles(); err != nil {
			return nil, [sha256.Size]byte{}, err
		}
	}
	h := sha256.New()
	for _, p := range w.cfg.Files {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, [sha256.Size]byte{}, err
		}
		// Length-prefix name and content so no two file lists hash alike.
		h.Write([]byte(strconv.Itoa(len(p)) + ":" + p + strconv.Itoa(len(data)) + ":"))
		h.Write(data)
		files = append(files, File{Name: p, Data: data})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return files, sum, nil
}
