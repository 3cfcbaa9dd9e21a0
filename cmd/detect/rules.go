package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
)

const rulesUsage = `Usage:
  detect rules check [-no-default] [FILE...]
                           load the default rule pack and FILEs (in order,
                           later files override earlier ones) and print
                           every problem as file:line:col: message
  detect rules test [-no-default] [-v] [FILE...]
                           run every rule's examples: a match example must
                           fire its rule, a nomatch example must not
`

// errRulesFailed is returned after the problems were printed, so main adds
// no second message beyond the exit status.
var errRulesFailed = errors.New("rules: failed")

func rulesCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, rulesUsage)
		return errors.New("rules: name a subcommand: check or test")
	}
	switch args[0] {
	case "check":
		return rulesCheck(args[1:], stdout, stderr)
	case "test":
		return rulesTest(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stderr, rulesUsage)
		return nil
	}
	fmt.Fprint(stderr, rulesUsage)
	return fmt.Errorf("rules: unknown subcommand %q: want check or test", args[0])
}

// loadRules parses the shared flags and loads the set, printing each load
// problem on stdout like a linter.
func loadRules(name string, args []string, stdout, stderr io.Writer) (*rules.Set, *flag.FlagSet, bool, error) {
	fs := flag.NewFlagSet("detect rules "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	noDefault := fs.Bool("no-default", false, "leave out the shipped default rule pack")
	verbose := fs.Bool("v", false, "test: print passing examples too")
	if err := fs.Parse(args); err != nil {
		return nil, fs, false, err
	}
	var files []rules.File
	if !*noDefault {
		def, err := rules.DefaultFiles()
		if err != nil {
			return nil, fs, false, err
		}
		files = def
	}
	user, err := rules.ReadFiles(fs.Args()...)
	if err != nil {
		return nil, fs, false, err
	}
	files = append(files, user...)
	// Interruptible: a huge rule set can take a while to refuse.
	ctx, stop := cli.SignalContext()
	defer stop()
	set, err := rules.LoadContext(ctx, files...)
	if ctx.Err() != nil {
		return nil, fs, false, err
	}
	if err != nil {
		problems := rules.Errors(err)
		for _, p := range problems {
			fmt.Fprintln(stdout, p)
		}
		fmt.Fprintf(stderr, "%d problems in %d files\n", len(problems), len(files))
		return nil, fs, false, errRulesFailed
	}
	return set, fs, *verbose, nil
}

func rulesCheck(args []string, stdout, stderr io.Writer) error {
	set, fs, _, err := loadRules("check", args, stdout, stderr)
	if err != nil {
		return err
	}
	lists, macros := set.Counts()
	fmt.Fprintf(stderr, "ok: %d rules, %d macros, %d lists (%d user files)\n", set.Len(), macros, lists, fs.NArg())
	return nil
}

func rulesTest(args []string, stdout, stderr io.Writer) error {
	set, _, verbose, err := loadRules("test", args, stdout, stderr)
	if err != nil {
		return err
	}
	var pass, fail, skip int
	for _, r := range rules.RunExamples(set) {
		switch {
		case r.Skipped:
			skip++
		case r.Pass:
			pass++
		default:
			fail++
		}
		if !r.Pass || verbose {
			fmt.Fprintln(stdout, r)
		}
	}
	fmt.Fprintf(stderr, "%d passed, %d failed, %d skipped\n", pass, fail, skip)
	if fail > 0 {
		return errRulesFailed
	}
	return nil
}
