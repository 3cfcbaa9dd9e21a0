package main

import (
	"fmt"
	"io"
	"strings"
)

// scannerRows are BenchmarkScanner's rows with what each measures.
var scannerRows = []struct{ name, what string }{
	{"Scanner/Valid/EncodingJSON", "validate: encoding/json `json.Valid`"},
	{"Scanner/Valid/JSONText", "validate: jsontext `Decoder.ReadValue` (go-json-experiment/json)"},
	{"Scanner/Valid/FastJSONValidate", "validate: `fastjson.ValidateBytes`"},
	{"Scanner/Valid/FastJSONParse", "validate: `fastjson.Parser.ParseBytes` (builds its value tree)"},
	{"Scanner/Valid/JSONScan", "validate: `jsonscan.Valid` (hand-written)"},
	{"Scanner/Decode/EncodingJSON", "decode into auditv1.Event: encoding/json (baseline)"},
	{"Scanner/Decode/JSONv2", "decode into auditv1.Event: go-json-experiment/json `Unmarshal`"},
	{"Scanner/Decode/DecodeEvent", "decode into auditv1.Event: `auditjson.DecodeEvent` (on jsonscan)"},
	{"Scanner/TokenWalk/JSONText", "jsontext `ReadToken` over every token, no struct filled"},
	{"Scanner/TokenWalk/JSONTextStrings", "the same walk taking every string's value (`Token.String`)"},
}

// scanner writes the scanner-choice section: every JSON library beside the
// hand-written scanner on the realistic stream.
func scanner(w io.Writer, res results) {
	const base, valid = "Scanner/Decode/EncodingJSON", "Scanner/Valid/EncodingJSON"
	ran := false
	for _, r := range scannerRows {
		ran = ran || res[r.name] != nil
	}
	if !ran {
		return
	}
	fmt.Fprintf(w, "\n## JSON scanner: hand-written against libraries\n\n")
	fmt.Fprintf(w, "Why auditpipe keeps its own JSON scanner (internal/jsonscan, under auditjson.DecodeEvent, the redactor and ingest's split) rather than a well-kept library (BenchmarkScanner). ")
	fmt.Fprintf(w, "Every row reads the realistic stream of the first table (generated, redacted by ingest), one event per op, in the same run. ")
	fmt.Fprintf(w, "Validating is the floor of any decoder built on a scanner; decoding into auditv1.Event is what detect does; the jsontext token walk is the least a decoder built on jsontext would cost before it fills a single field, bare (ReadToken validates strings but unquotes them only when asked) and taking every string's value, as a decoder must. ")
	fmt.Fprintf(w, "Libraries run with their defaults (jsontext, like encoding/json and jsonscan, also checks UTF-8 and duplicate names; fastjson checks neither); jsontext reads through one reused Decoder over a bytes.Buffer, the copy into the buffer counted; fastjson's Parser is reused. ")
	fmt.Fprintf(w, "The hand-written scanner earns its keep while jsonscan validates at least as fast as the libraries and DecodeEvent outruns the jsontext token walk that takes the strings' values.\n\n")
	fmt.Fprintf(w, "| benchmark | measures | MB/s | ns/event | allocs/event | × encoding/json decode | × json.Valid |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range scannerRows {
		if res[r.name] == nil {
			fmt.Fprintf(w, "| %s | %s | (not run) | | | | |\n", r.name, r.what)
			continue
		}
		mbs := res.median(r.name, "MB/s")
		ratio := func(to string) string {
			switch {
			case r.name == to:
				return "baseline"
			case res[to] == nil:
				return "–"
			}
			return fmt.Sprintf("%.2f×", mbs/res.median(to, "MB/s"))
		}
		vsValid := ""
		if strings.HasPrefix(r.name, "Scanner/Valid/") {
			vsValid = ratio(valid)
		}
		fmt.Fprintf(w, "| %s | %s | %.1f | %.0f | %.1f | %s | %s |\n", r.name, r.what, mbs, res.median(r.name, "ns/op"), res.median(r.name, "allocs/op"), ratio(base), vsValid)
	}
}
