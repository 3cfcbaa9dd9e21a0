package clickhouse

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/detectors"
	"github.com/auditpipe/auditpipe/internal/detectors/rules"
	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// appendJSONRowStd is appendJSONRow as it was, every value through
// json.Marshal: the reference the reflection-free one must match.
func appendJSONRowStd(sb *strings.Builder, cols []string, vals []any) error {
	sb.WriteByte('{')
	for i, c := range cols {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Quote(c))
		sb.WriteByte(':')
		if t, ok := vals[i].(time.Time); ok {
			sb.WriteString(strconv.FormatInt(t.Unix(), 10))
			continue
		}
		b, err := json.Marshal(vals[i])
		if err != nil {
			return fmt.Errorf("column %s: %w", c, err)
		}
		sb.Write(b)
	}
	sb.WriteString("}\n")
	return nil
}

// TestRowsJSONMatchEncodingJSON builds the rows of a generated stream
// (attacks included) and of the findings the built-ins and the default
// pack make on it, some with hostile strings, and checks the evidence
// column and every JSONEachRow line are what encoding/json writes.
func TestRowsJSONMatchEncodingJSON(t *testing.T) {
	builtins, err := detectors.New(detectors.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load(mustDefault(t)...)
	if err != nil {
		t.Fatal(err)
	}
	nasty := []string{"<b>&amp;</b>", "\x00\x1f\x7f\"\\", "\xff\xfe", "\u2028\u2029 日本 🙂", "\b\f\n\r\t"}
	g := gen.New(gen.Config{Seed: 9, AttackRatio: 0.3})
	var findings []pipeline.Finding
	var frow findingRow
	var erow eventRow
	lines := 0
	for i := range 12000 {
		var ev pipeline.Event
		if err := auditjson.Decode(&ev, "prod", g.Next().JSON); err != nil {
			t.Fatal(err)
		}
		erow.fill(&ev)
		var got, want strings.Builder
		if err := appendJSONRow(&got, eventColumns, erow.values()); err != nil {
			t.Fatal(err)
		}
		if err := appendJSONRowStd(&want, eventColumns, erow.values()); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got.String(), want.String())
		}
		findings = builtins.Detect(&ev, findings[:0])
		findings = set.Detect(&ev, findings)
		for j := range findings {
			f := &findings[j]
			if j%3 == 1 {
				s := nasty[(i+j)%len(nasty)]
				f.Summary += s
				f.Evidence = append(f.Evidence, pipeline.Evidence{Field: s, Value: s, Source: s})
			}
			if j%5 == 2 {
				f.Evidence = nil
			}
			frow.fill(f)
			ev := f.Evidence
			if ev == nil {
				ev = []pipeline.Evidence{}
			}
			wantEv, _ := json.Marshal(ev)
			if frow.evidence != string(wantEv) {
				t.Fatalf("finding %s evidence:\n got %s\nwant %s", f.ID, frow.evidence, wantEv)
			}
			var got, want strings.Builder
			if err := appendJSONRow(&got, findingColumns, frow.values()); err != nil {
				t.Fatal(err)
			}
			if err := appendJSONRowStd(&want, findingColumns, frow.values()); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Fatalf("finding %s:\n got %s\nwant %s", f.ID, got.String(), want.String())
			}
			lines++
		}
	}
	if lines < 1000 {
		t.Fatalf("only %d findings: the comparison proves little", lines)
	}
}

func mustDefault(t *testing.T) []rules.File {
	t.Helper()
	files, err := rules.DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	return files
}
