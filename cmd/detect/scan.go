package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/auditpipe/auditpipe/internal/auditlog"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/console"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/ingest"
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
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("scan: name at least one audit log file or directory")
	}
	if err := ingest.ValidateCluster(*cluster); err != nil {
		return err
	}
	set, err := loadAll(*config, cli.SplitList(*ruleFiles), *noDefault, slog.New(slog.NewTextHandler(stderr, nil)))
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
	s := newScanner(set, *cluster, console.NewPrinter(stdout, format), stderr)
	for _, f := range files {
		if err := s.file(f); err != nil {
			return err
		}
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
	set     pipeline.EventDetector
	gate    *pipeline.StageGate
	cluster string
	printer *console.Printer
	stderr  io.Writer

	events   int
	verdicts map[pipeline.StageVerdict]int
	noStage  int
	bad      map[string]int // undecodable events by pipeline.DecodeReason
	badTotal int
	empty    []string // files that yielded no decodable event
	findings []pipeline.Finding
}

func newScanner(set pipeline.EventDetector, cluster string, printer *console.Printer, stderr io.Writer) *scanner {
	return &scanner{
		set: set, gate: pipeline.NewStageGate(pipeline.StageGateConfig{}), cluster: cluster,
		printer: printer, stderr: stderr,
		verdicts: map[pipeline.StageVerdict]int{}, bad: map[string]int{},
	}
}

// errNoAuditFields reports JSON that decodes as an Event but carries
// nothing an apiserver always writes: some other JSON log.
var errNoAuditFields = errors.New("no auditID, verb, requestURI or stage: not an audit event")

func (s *scanner) file(path string) error {
	before := s.events
	err := auditlog.Events(path, func(line, item int, data []byte) error {
		var ev pipeline.Event
		err := ev.Decode(s.cluster, data)
		reason := ""
		switch {
		case err != nil:
			reason = pipeline.DecodeReason(err)
		case ev.AuditID == "" && ev.Verb == "" && ev.RequestURI == "" && ev.Stage == "":
			err, reason = errNoAuditFields, pipeline.DecodeReasonNotAuditEvent
		}
		if err != nil {
			s.bad[reason]++
			if s.badTotal++; s.badTotal <= 10 {
				at := fmt.Sprintf("%s:%d", path, line)
				if item > 0 {
					at += fmt.Sprintf(" item %d", item)
				}
				fmt.Fprintf(s.stderr, "%s: %s: %v\n", at, reason, err)
			}
			return nil
		}
		s.events++
		if ev.Stage == "" {
			s.noStage++
		}
		v := s.gate.Admit(&ev)
		s.verdicts[v]++
		if v != pipeline.StageJudged {
			return nil
		}
		s.findings = s.set.Detect(&ev, s.findings[:0])
		return s.printer.Print(s.findings)
	})
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if s.events == before {
		s.empty = append(s.empty, path)
	}
	return nil
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
	var set *rules.Set
	if noDefault {
		files, rerr := rules.ReadFiles(ruleFiles...)
		if rerr != nil {
			return nil, rerr
		}
		set, err = rules.Load(files...)
	} else {
		// scan installs no signal handler: SIGTERM ends it, load or not.
		set, err = rules.LoadWithDefault(context.Background(), ruleFiles...)
	}
	if err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	return detectorChain{builtins, set.Instrument(log, nil)}, nil
}
