package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

// TestUsageNamesSubcommands checks that `ingest -h` points to the replay and
// eventhubs subcommands, which the flag list alone does not show.
func TestUsageNamesSubcommands(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-h"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h: got %v, want flag.ErrHelp", err)
	}
	out := stderr.String()
	for _, want := range []string{"ingest replay", "ingest eventhubs", "-token-file"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage does not contain %q:\n%s", want, out)
		}
	}
}

// TestSubcommandUsageHeaders checks that `ingest replay -h` and `ingest
// eventhubs -h` say how each is called before listing their flags, as
// `ingest -h` does.
func TestSubcommandUsageHeaders(t *testing.T) {
	f := func(name string, call func(stderr *bytes.Buffer) error, want ...string) {
		t.Helper()
		var stderr bytes.Buffer
		if err := call(&stderr); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s -h: got %v, want flag.ErrHelp", name, err)
		}
		out := stderr.String()
		if !strings.HasPrefix(out, "Usage:\n  "+name+" ") {
			t.Errorf("%s -h does not start with its usage line:\n%s", name, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s -h does not contain %q:\n%s", name, w, out)
			}
		}
	}
	f("ingest replay", func(stderr *bytes.Buffer) error { return replay([]string{"-h"}, io.Discard, stderr) },
		"FILE|DIR...", "\nFlags:\n", "-batch")
	f("ingest eventhubs", func(stderr *bytes.Buffer) error { return eventHubs(context.Background(), []string{"-h"}, stderr) },
		"--connection-string-file FILE", "\nFlags:\n", "-max-batch-messages")
}
