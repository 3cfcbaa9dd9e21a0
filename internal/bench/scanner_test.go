package bench

import (
	"bytes"
	"encoding/json"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/valyala/fastjson"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// BenchmarkScanner is the case for keeping a hand-written JSON scanner
// (internal/jsonscan, under auditjson.DecodeEvent, the redactor and ingest's
// split) rather than building on a well-kept library. Every row reads the
// realistic event stream, one event per op, in the same run, so that the
// ratios between rows are what to read:
//
//   - Valid: the cost of only checking that an event is JSON, a floor for
//     any decoder built on that scanner;
//   - Decode: the whole event into auditv1.Event, encoding/json being the
//     baseline;
//   - TokenWalk: jsontext's ReadToken over every token, the least a decoder
//     built on jsontext would cost before it fills a single field; and the
//     same walk taking every string's value (Token.String), as such a
//     decoder must for the strings that make up most of an audit event
//     (ReadToken validates a string but unquotes it only when asked).
//
// Every library runs with its defaults: jsontext also checks for duplicate
// names and valid UTF-8, as encoding/json and jsonscan do; fastjson checks
// neither.
func BenchmarkScanner(b *testing.B) {
	events, size := realisticStream(b)
	for _, c := range []struct {
		name string
		f    func(*testing.B, [][]byte, int64)
	}{
		{"Valid/EncodingJSON", benchValidEncodingJSON},
		{"Valid/JSONText", benchValidJSONText},
		{"Valid/FastJSONValidate", benchValidFastJSON},
		{"Valid/FastJSONParse", benchParseFastJSON},
		{"Valid/JSONScan", benchValidJSONScan},
		{"Decode/EncodingJSON", benchEncodingJSON},
		{"Decode/JSONv2", benchDecodeJSONv2},
		{"Decode/DecodeEvent", benchDecodeEvent},
		{"TokenWalk/JSONText", benchTokenWalkJSONText},
		{"TokenWalk/JSONTextStrings", benchTokenWalkStringsJSONText},
	} {
		b.Run(c.name, func(b *testing.B) { c.f(b, events, size) })
	}
}

func benchValidEncodingJSON(b *testing.B, events [][]byte, size int64) {
	report(b, events, size)
	for i := 0; b.Loop(); i++ {
		if !json.Valid(events[i%len(events)]) {
			b.Fatal("invalid event")
		}
	}
}

// jsontextDecoder is one decoder reused for every event, as a decoder
// built on jsontext would hold one. Reading from a bytes.Buffer it parses
// the buffer in place; the copy into the buffer is counted (a memmove, a
// few percent of a parse).
type jsontextDecoder struct {
	buf bytes.Buffer
	dec *jsontext.Decoder
}

func newJSONTextDecoder() *jsontextDecoder {
	d := &jsontextDecoder{}
	d.dec = jsontext.NewDecoder(&d.buf)
	return d
}

func (d *jsontextDecoder) reset(event []byte) *jsontext.Decoder {
	d.buf.Reset()
	d.buf.Write(event)
	d.dec.Reset(&d.buf)
	return d.dec
}

func benchValidJSONText(b *testing.B, events [][]byte, size int64) {
	d := newJSONTextDecoder()
	report(b, events, size)
	for i := 0; b.Loop(); i++ {
		if _, err := d.reset(events[i%len(events)]).ReadValue(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchValidFastJSON(b *testing.B, events [][]byte, size int64) {
	report(b, events, size)
	for i := 0; b.Loop(); i++ {
		if err := fastjson.ValidateBytes(events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
	}
}

// benchParseFastJSON is fastjson's parser, which validates while it builds
// its tree of values; the Parser is reused, as fastjson intends.
func benchParseFastJSON(b *testing.B, events [][]byte, size int64) {
	var p fastjson.Parser
	report(b, events, size)
	for i := 0; b.Loop(); i++ {
		if _, err := p.ParseBytes(events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
	}
}

func benchValidJSONScan(b *testing.B, events [][]byte, size int64) {
	report(b, events, size)
	for i := 0; b.Loop(); i++ {
		if !jsonscan.Valid(events[i%len(events)]) {
			b.Fatal("invalid event")
		}
	}
}

func benchDecodeJSONv2(b *testing.B, events [][]byte, size int64) {
	report(b, events, size)
	for i := 0; b.Loop(); i++ {
		var ev auditv1.Event
		if err := jsonv2.Unmarshal(events[i%len(events)], &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTokenWalkJSONText(b *testing.B, events [][]byte, size int64) {
	d := newJSONTextDecoder()
	report(b, events, size)
	for i := 0; b.Loop(); i++ {
		dec := d.reset(events[i%len(events)])
		for {
			if _, err := dec.ReadToken(); err != nil {
				b.Fatal(err)
			}
			if dec.StackDepth() == 0 {
				break
			}
		}
	}
}

// sink keeps the strings' lengths, so that taking them is not optimised
// away.
var sink int

func benchTokenWalkStringsJSONText(b *testing.B, events [][]byte, size int64) {
	d := newJSONTextDecoder()
	report(b, events, size)
	n := 0
	for i := 0; b.Loop(); i++ {
		dec := d.reset(events[i%len(events)])
		for {
			tok, err := dec.ReadToken()
			if err != nil {
				b.Fatal(err)
			}
			if tok.Kind() == '"' {
				n += len(tok.String())
			}
			if dec.StackDepth() == 0 {
				break
			}
		}
	}
	sink = n
}

// TestScannerLibrariesAgree keeps the comparison fair: every library
// accepts every event of the stream, and jsonv2 decodes each to what
// encoding/json does, so that no row is fast because it stopped early.
func TestScannerLibrariesAgree(t *testing.T) {
	events, _ := realisticStream(t)
	d := newJSONTextDecoder()
	var p fastjson.Parser
	for i, ev := range events[:2000] {
		if !json.Valid(ev) || !jsonscan.Valid(ev) || fastjson.ValidateBytes(ev) != nil {
			t.Fatalf("event %d: a validator refuses it: %s", i, ev)
		}
		if _, err := p.ParseBytes(ev); err != nil {
			t.Fatalf("event %d: fastjson: %v", i, err)
		}
		v, err := d.reset(ev).ReadValue()
		if err != nil || len(v) != len(bytes.TrimSpace(ev)) {
			t.Fatalf("event %d: jsontext read %d of %d bytes: %v", i, len(v), len(ev), err)
		}
		var want, got auditv1.Event
		if err := json.Unmarshal(ev, &want); err != nil {
			t.Fatal(err)
		}
		if err := jsonv2.Unmarshal(ev, &got); err != nil {
			t.Fatalf("event %d: jsonv2: %v", i, err)
		}
		wantJSON, _ := json.Marshal(&want)
		gotJSON, _ := json.Marshal(&got)
		if !bytes.Equal(wantJSON, gotJSON) {
			t.Fatalf("event %d: jsonv2 decodes\n%s\nencoding/json\n%s", i, gotJSON, wantJSON)
		}
	}
}
