package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

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
	s := scanner{set: set, cluster: *cluster, printer: console.NewPrinter(stdout, format), stderr: stderr}
	for _, f := range files {
		if err := s.file(f); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "scanned %d files: %d events, %d findings, %d lines not decodable\n", len(files), s.events, s.printer.Count(), s.bad)
	return nil
}

type scanner struct {
	set     pipeline.EventDetector
	cluster string
	printer *console.Printer
	stderr  io.Writer

	events, bad int
	findings    []pipeline.Finding
}

func (s *scanner) file(path string) error {
	err := auditlog.Lines(path, func(line int, data []byte) error {
		var ev pipeline.Event
		if err := ev.Decode(s.cluster, data); err != nil {
			s.bad++
			if s.bad <= 10 {
				fmt.Fprintf(s.stderr, "%s:%d: %v\n", path, line, err)
			}
			return nil
		}
		s.events++
		s.findings = s.set.Detect(&ev, s.findings[:0])
		return s.printer.Print(s.findings)
	})
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
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
