package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
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
