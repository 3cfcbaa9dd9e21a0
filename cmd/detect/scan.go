package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/auditlog"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/firstseen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func scan(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("detect scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := fs.String("cluster", "default", "cluster name to tag the scanned events with")
	config := fs.String("config", "", "detector configuration file (YAML); empty uses the defaults")
	output := fs.String("output", "auto", "auto (table on a terminal, else JSON lines), table or json")
	ruleFiles := fs.String("rules", "", "comma-separated user rule files (YAML), loaded after the shipped default pack")
	noDefault := fs.Bool("no-default-rules", false, "leave the shipped default rule pack out")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the scan to this file (go tool pprof)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "goroutines judging events, each the events of a share of the subjects (credentials); 1 judges all in the reading goroutine")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("scan: name at least one audit log file or directory")
	}
	if err := pipeline.ValidateCluster(*cluster); err != nil {
		return err
	}
	if *workers < 1 {
		return fmt.Errorf("--workers must be at least 1, got %d", *workers)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	// A scan is a batch job that allocates per event while its live heap
	// stays bounded (the stage gate, the detectors' windows, first-seen
	// state, the ids printed): tens of MB over 100,000 generated events,
	// a few hundred MB with 100,000 accounts of first-seen state. It has
	// a memory budget, scanMemoryLimit (under detect's 512 MiB target),
	// and the collector runs only when the heap reaches it: GOGC is off
	// and the limit is a soft one, so near it the collector runs as often
	// as it must. At Go's default GOGC of 100 the collector took a tenth
	// of the scan's CPU; at 400, its setting until now, it still took
	// about 0.1 s of CPU on 100,000 finding-heavy events, where without it
	// the whole scan ran 4-8 % faster (and no slower on 400,000, whose
	// heap reaches the limit either way). The collector is off from before
	// the rules load too: compiling the default pack leaves about 12 MB of
	// garbage, kept until the first collection (collecting it right after
	// the load saved about 2k page faults and no measurable time).
	//
	// GOGC and GOMEMLIMIT in the environment still decide. A GOMEMLIMIT
	// set without GOGC may be no limit at all, so GOGC is then
	// scanGCPercent once the rules are loaded.
	ownGC, ownLimit := os.Getenv("GOGC") == "", os.Getenv("GOMEMLIMIT") == ""
	if ownGC {
		debug.SetGCPercent(-1)
	}
	if ownLimit {
		debug.SetMemoryLimit(scanMemoryLimit)
	}
	// Checked before any file is read; each worker builds its own set
	// (the built-ins' Windows hold per-subject state), the rules are shared.
	if _, err := loadDetectors(*config); err != nil {
		return err
	}
	ruleSet, err := loadRuleSet(cli.SplitList(*ruleFiles), *noDefault, log)
	if ownGC && !ownLimit {
		debug.SetGCPercent(scanGCPercent)
	}
	if err != nil {
		return err
	}
	format, err := outputFormat(*output)
	if err != nil {
		return err
	}
	files, err := auditlog.ExpandPaths(fs.Args())
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	// JSON lines go to a pipe or a file: buffered, they cost a write per
	// 64 KiB instead of one per event with findings. The table, on a
	// terminal, is printed as it comes.
	out := stdout
	if format == console.FormatJSON {
		out = bufio.NewWriterSize(stdout, 64<<10)
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	s := newScanner(*cluster, console.NewPrinter(out, format), stderr)
	err = s.scan(ctx, files, *workers, func() (*detectors.Suite, error) { return loadDetectors(*config) }, ruleSet)
	if bw, ok := out.(*bufio.Writer); ok {
		if ferr := bw.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("printing findings: %w", ferr)
		}
	}
	if err != nil {
		return err
	}
	s.summary(stderr, len(files))
	if len(s.empty) > 0 {
		return fmt.Errorf("scan: no decodable audit event in %s", strings.Join(s.empty, ", "))
	}
	return nil
}

// scanner judges the events of log files as detect run judges those of the
// transport: each request once (pipeline.StageGate), from whichever
// authoritative stage comes first, so a duplicated line or a second stage
// of a long-running request yields no second finding.
type scanner struct {
	cluster string
	printer *console.Printer
	stderr  io.Writer

	events   int
	verdicts verdictCounts
	noStage  int
	bad      map[string]int // undecodable events by auditjson.DecodeReason
	badTotal int
	empty    []string // files that yielded no decodable event
	// printed holds the id of every finding printed, so that each is
	// printed once, as storage keeps it once: a stateful detector whose
	// state is keyed by something other than the shard key (stale-token,
	// by service account) can raise the same finding in two workers, and a
	// request the stage gate has forgotten can be judged twice. One entry
	// per distinct finding, far fewer than events.
	// Keyed by the 16 bytes an id's hex encodes (findingKey): compared
	// in the map's slots, without reading a string elsewhere in memory.
	// printedOther holds any id that is not FindingID's hex.
	printed      map[[16]byte]struct{}
	printedOther map[string]struct{}
	toPrint      []pipeline.Finding
	// With a JSON printer, lines holds findings' JSON lines not written
	// yet (linesN of them): see scan_print.go.
	json   bool
	lines  []byte
	linesN int

	// fullDecode turns off the stage peek (see skipLine): every line is
	// decoded. Tests set it to show the peek changes nothing.
	fullDecode bool

	// What file does with each line: target gives the event to decode it
	// into and the bytes to decode (which the event may alias), drop
	// takes the event back when the line does not decode, emit hands a
	// decoded event on to be judged.
	target func(data []byte) (*pipeline.Event, []byte)
	drop   func()
	emit   func(ev *pipeline.Event) error
}

func newScanner(cluster string, printer *console.Printer, stderr io.Writer) *scanner {
	return &scanner{
		cluster: cluster, printer: printer, stderr: stderr,
		bad:     map[string]int{},
		printed: map[[16]byte]struct{}{}, printedOther: map[string]struct{}{},
		json: printer.Format() == console.FormatJSON,
	}
}

// scan judges the events of files with workers goroutines (see
// scanParallel), or, with one, in the calling goroutine: each request
// once (pipeline.StageGate), by the built-in detectors newBuiltins makes
// and the rules, printing findings in input order.
func (s *scanner) scan(ctx context.Context, files []string, workers int, newBuiltins func() (*detectors.Suite, error), rules pipeline.EventDetector) error {
	terms, err := newScanTerms(rules)
	if err != nil {
		return err
	}
	if workers > 1 {
		return s.scanParallel(ctx, files, workers, newBuiltins, rules, terms)
	}
	builtins, err := newBuiltins()
	if err != nil {
		return err
	}
	set := detectorChain{builtins, rules}
	if terms != nil {
		set = append(set, terms)
	}
	gate := pipeline.NewStageGate(pipeline.StageGateConfig{})
	var ev pipeline.Event
	var findings []pipeline.Finding
	s.target = func(data []byte) (*pipeline.Event, []byte) {
		ev = pipeline.Event{}
		return &ev, data
	}
	s.drop = func() {}
	s.emit = func(ev *pipeline.Event) error {
		v := gate.Admit(ev)
		s.verdicts[v]++
		if v != pipeline.StageJudged {
			return nil
		}
		findings = set.Detect(ev, findings[:0])
		return s.print(findings)
	}
	for _, f := range files {
		if err := s.file(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// newScanTerms returns the judge of set's first-seen rules, or nil when set
// is not a rule set or has none. Its baseline is what the scan reads, in
// the order it reads it: files in the order given, lines in file order.
func newScanTerms(set pipeline.EventDetector) (*rules.TermsDetector, error) {
	rs, ok := set.(*rules.Set)
	if !ok || !rs.HasTerms() {
		return nil, nil
	}
	tr, err := firstseen.New(firstseen.Config{})
	if err != nil {
		return nil, err
	}
	return rules.NewTermsDetector(func() *rules.Set { return rs }, tr), nil
}

// scanMemoryLimit is the soft memory limit detect scan sets, the only
// trigger of its collections, and scanGCPercent its GOGC under a
// GOMEMLIMIT from the environment (see scan).
const (
	scanMemoryLimit = 384 << 20
	scanGCPercent   = 400
)

// startCPUProfile profiles the process into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// errNoAuditFields reports JSON that decodes as an Event but carries
// nothing an apiserver always writes: some other JSON log.
var errNoAuditFields = errors.New("no auditID, verb, requestURI or stage: not an audit event")

// file decodes the events of the log file at path, in order, counting and
// reporting what does not decode, and hands the others to s.emit.
func (s *scanner) file(ctx context.Context, path string) error {
	before := s.events
	err := auditlog.Events(path, func(line, item int, data []byte) error {
		// Reading is not interruptible; check now and then.
		if (s.events+s.badTotal)%4096 == 0 && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if skipLine(s.fullDecode, data) {
			s.skipped()
			return nil
		}
		ev, data := s.target(data)
		if reason, err := decodeLine(ev, s.cluster, data); err != nil {
			s.drop()
			s.undecodable(path, line, item, reason, err)
			return nil
		}
		s.decoded(ev.Stage == "")
		return s.emit(ev)
	})
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if s.events == before {
		s.empty = append(s.empty, path)
	}
	return nil
}

// decodeLine decodes one line (or EventList item) into ev, returning why
// it is not an audit event when it is not.
func decodeLine(ev *pipeline.Event, cluster string, data []byte) (reason string, err error) {
	err = auditjson.Decode(ev, cluster, data)
	switch {
	case err != nil:
		return auditjson.DecodeReason(err), err
	case ev.AuditID == "" && ev.Verb == "" && ev.RequestURI == "" && ev.Stage == "":
		return auditjson.DecodeReasonNotAuditEvent, errNoAuditFields
	}
	return "", nil
}

// skipLine reports a line that need not be decoded: a RequestReceived
// event, which pipeline.StageGate.Admit returns StageNotJudged for at
// once, whatever else it holds (see pipeline.Event.IsAuthoritative). About
// half the lines of an audit log are one; auditjson.IsRequestReceived
// validates such a line at about twice the speed Decode decodes it, and
// gives up on the others within their first few members. The one
// difference from decoding: a RequestReceived line that is valid JSON but
// has a member of the wrong type (a number for a verb, a timestamp that
// does not parse) counts as skipped rather than not decodable. Invalid
// JSON, any other kind or apiVersion, and a stage it cannot be sure of
// (escaped, of the wrong type) are decoded, and so counted, as before.
// With fullDecode it skips nothing.
func skipLine(fullDecode bool, data []byte) bool {
	return !fullDecode && auditjson.IsRequestReceived(data)
}

// skipped counts a line skipLine skipped as the decoded event would have
// been counted: an event with a stage, which the stage gate did not judge.
func (s *scanner) skipped() {
	s.decoded(false)
	s.verdicts[pipeline.StageNotJudged]++
}

// decoded counts an event that decoded; noStage reports one without a
// stage (read as ResponseComplete).
func (s *scanner) decoded(noStage bool) {
	s.events++
	if noStage {
		s.noStage++
	}
}

// undecodable counts a line (or EventList item, item > 0) of path that
// did not decode, naming the first ten on stderr.
func (s *scanner) undecodable(path string, line, item int, reason string, err error) {
	s.bad[reason]++
	if s.badTotal++; s.badTotal <= 10 {
		at := fmt.Sprintf("%s:%d", path, line)
		if item > 0 {
			at += fmt.Sprintf(" item %d", item)
		}
		fmt.Fprintf(s.stderr, "%s: %s: %v\n", at, reason, err)
	}
}

// summary writes what was scanned: events, findings, how many events
// were judged or skipped and why, and undecodable lines by reason.
func (s *scanner) summary(w io.Writer, files int) {
	fmt.Fprintf(w, "scanned %d files: %d events, %d findings, %d lines not decodable", files, s.events, s.printer.Count(), s.badTotal)
	if len(s.bad) > 0 {
		reasons := make([]string, 0, len(s.bad))
		for r := range s.bad {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for i, r := range reasons {
			reasons[i] = fmt.Sprintf("%s: %d", r, s.bad[r])
		}
		fmt.Fprintf(w, " (%s)", strings.Join(reasons, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "judged %d requests; skipped %d events of stages not judged (RequestReceived, ResponseStarted of short requests) and %d repeating a request already judged (its other stage, or a duplicate)",
		s.verdicts[pipeline.StageJudged], s.verdicts[pipeline.StageNotJudged], s.verdicts[pipeline.StageDuplicate])
	if s.noStage > 0 {
		fmt.Fprintf(w, "; %d events had no stage and were read as ResponseComplete", s.noStage)
	}
	fmt.Fprintln(w)
}

// loadAll builds what scan runs: the built-in detectors and the rules
// (default pack unless noDefault, then ruleFiles), loaded once. Rule
// evaluation errors are logged to log (throttled), which may be nil.
func loadAll(config string, ruleFiles []string, noDefault bool, log *slog.Logger) (pipeline.EventDetector, error) {
	builtins, err := loadDetectors(config)
	if err != nil {
		return nil, err
	}
	set, err := loadRuleSet(ruleFiles, noDefault, log)
	if err != nil {
		return nil, err
	}
	return detectorChain{builtins, set}, nil
}

// loadRuleSet loads the rules: the default pack unless noDefault, then
// ruleFiles. The set is safe for concurrent use.
func loadRuleSet(ruleFiles []string, noDefault bool, log *slog.Logger) (*rules.Set, error) {
	var set *rules.Set
	var err error
	if noDefault {
		files, rerr := rules.ReadFiles(ruleFiles...)
		if rerr != nil {
			return nil, rerr
		}
		set, err = rules.Load(files...)
	} else {
		// scan installs no signal handler: SIGTERM ends it, load or not.
		set, err = rules.LoadRuntimeWithDefault(context.Background(), ruleFiles...)
	}
	if err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	return set.Instrument(log, nil), nil
}
