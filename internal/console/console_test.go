package console

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestPrintJSONMatchesEncoder: the JSON lines are what a json.Encoder
// without HTML escaping writes, byte for byte, up to a finding the encoder
// refuses (a year past 9999), which is an error after the ones before it.
func TestPrintJSONMatchesEncoder(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 0, 0, 123456789, time.UTC)
	fs := []pipeline.Finding{
		{ID: "a", Time: at, Detector: "rule:x", Severity: pipeline.SeverityHigh, Summary: "<b>&\"\\\n\x01\u2028\xff",
			Evidence: []pipeline.Evidence{{Field: "f", Value: "日本", Source: pipeline.FromRequest}}, Groups: []string{"g"}, Code: 403},
		{ID: "b", Time: at.In(time.FixedZone("x", -5*3600)), Evidence: []pipeline.Evidence{}, Groups: []string{}},
		{ID: "c"},
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	for i := range fs {
		if err := enc.Encode(&fs[i]); err != nil {
			t.Fatal(err)
		}
	}
	var got bytes.Buffer
	p := NewPrinter(&got, FormatJSON)
	if err := p.Print(fs[:1]); err != nil {
		t.Fatal(err)
	}
	if err := p.Print(fs[1:]); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("got\n%s\nwant\n%s", got.String(), want.String())
	}
	bad := append(fs[:1:1], pipeline.Finding{ID: "d", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	got.Reset()
	if err := p.Print(bad); err == nil {
		t.Fatal("printed a finding of year 10000 without error")
	}
	if first := want.Bytes()[:bytes.IndexByte(want.Bytes(), '\n')+1]; !bytes.Equal(got.Bytes(), first) {
		t.Fatalf("before the error, printed %q", got.String())
	}
}

// TestWriteJSONLines: lines made by AppendJSONLine and printed with
// WriteJSONLines are what Print prints for the same findings, and count
// the same; a table printer refuses them.
func TestWriteJSONLines(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 0, 0, 5, time.FixedZone("x", 3600))
	fs := []pipeline.Finding{
		{ID: "a", Time: at, Summary: "<&>\u2028\xff\"", Evidence: []pipeline.Evidence{{Field: "f", Value: "v"}}, Groups: []string{"g", "h"}},
		{ID: "b"},
	}
	var want, got bytes.Buffer
	if err := NewPrinter(&want, FormatJSON).Print(fs); err != nil {
		t.Fatal(err)
	}
	var lines []byte
	for i := range fs {
		var err error
		if lines, err = AppendJSONLine(lines, &fs[i]); err != nil {
			t.Fatal(err)
		}
	}
	p := NewPrinter(&got, FormatJSON)
	if err := p.WriteJSONLines(lines, len(fs)); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() || p.Count() != len(fs) {
		t.Fatalf("got %d findings\n%s\nwant\n%s", p.Count(), got.String(), want.String())
	}
	if _, err := AppendJSONLine(lines, &pipeline.Finding{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("formatted a finding of year 10000 without error")
	}
	if err := NewPrinter(&got, FormatTable).WriteJSONLines(lines, len(fs)); err == nil {
		t.Error("a table printer printed JSON lines")
	}
}
