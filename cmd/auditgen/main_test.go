package main

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
)

// sampleArgs is the command in testdata/README.md that writes the
// committed sample.
var sampleArgs = []string{"-n", "2000", "-seed", "1", "-cluster", "demo"}

// TestSampleIsCurrent fails when testdata/demo/sample.jsonl differs from
// what the generator writes today, so the sample never goes stale.
func TestSampleIsCurrent(t *testing.T) {
	want, err := os.ReadFile("../../testdata/demo/sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := run(sampleArgs, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("testdata/demo/sample.jsonl is stale from line %d; regenerate it with\n"+
					"  go run ./cmd/auditgen %s > testdata/demo/sample.jsonl\ngot:  %.200s\nwant: %.200s",
					i+1, strings.Join(sampleArgs, " "), gl[i], wl[i])
			}
		}
		t.Fatalf("testdata/demo/sample.jsonl has %d lines, the generator writes %d; regenerate it", len(wl), len(gl))
	}
}

// TestEventListFormat checks that -format eventlist writes one webhook body
// per line, batch events each, which the pipeline decodes.
func TestEventListFormat(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-n", "950", "-seed", "3", "-format", "eventlist", "-batch", "400"}, &out); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		evs, err := auditjson.DecodeEvents(sc.Bytes())
		if err != nil {
			t.Fatalf("body %d: %v", len(sizes), err)
		}
		sizes = append(sizes, len(evs))
	}
	if len(sizes) != 3 || sizes[0] != 400 || sizes[1] != 400 || sizes[2] != 150 {
		t.Errorf("batches %v; want [400 400 150]", sizes)
	}
}

// TestFlags checks that bad flags are refused with a message naming them.
func TestFlags(t *testing.T) {
	f := func(args []string, want string) {
		t.Helper()
		err := run(args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run(%q) = %v; want an error containing %q", args, err, want)
		}
	}
	f([]string{"-format", "csv"}, `-format "csv"`)
	f([]string{"-batch", "401"}, "-batch 401")
	f([]string{"-batch", "0"}, "-batch 0")
	f([]string{"-n", "-1"}, "-n must not be negative")
	f([]string{"-rate", "0"}, "-rate must be positive")
	f([]string{"-attack-ratio", "1.5"}, "-attack-ratio")
	f([]string{"-start", "yesterday"}, "-start")
	f([]string{"extra"}, "unexpected arguments")
}
