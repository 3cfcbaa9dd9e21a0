package jsonscan

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// skipCases are values Skip must treat exactly as skip does: compact
// JSON skipCompact vouches for, and look-alikes it must hand to skip
// (whitespace, escapes, control characters, bad numbers and literals,
// mismatched brackets, truncation, deep nesting).
var skipCases = []string{
	`{}`, `[]`, `{"a":1}`, `[1,2,3]`, `{"a":{"b":[true,false,null,"x",-1.5e+3]}}`,
	`{"metadata":{"name":"p","labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx:1.27","ports":[{"containerPort":80}]}]}}`,
	`[[],{},[{}],{"a":[]}]`, `{"é":"ü"}`, "{\"a\":\"\xff\"}", `[0,-0,1e9,0.5]`,
	`{"a":1,"b":2}x`, `[1]]`,
	// Handed to skip: valid.
	`{ "a":1}`, `{"a" :1}`, `[1, 2]`, "[1,\n2]", `{"a\"b":1}`, `["\u00e9"]`, `{"a":"\\"}`,
	// Handed to skip: invalid.
	`{"a":1,}`, `[1,]`, `{"a"}`, `{"a":}`, `{a:1}`, `[01]`, `[1.]`, `[1e]`, `[-]`, `[tru]`, `[nul]`, `[fals]`,
	`[truex]`, `{"a":1]`, `[1}`, `{"a":1`, `[1`, `[`, `{`, `{"a`, "[\"a\x01\"]", `["a`, `[1x]`, `[--1]`,
	`{"a":1 }`, `[1 ]`, `{"a":{"b":1}`, `[[[[1]]]`,
	`"plain"`, `"plain"x`, `"esc\"aped"`, `"\u00E9\uD800"`, `"\u00g9"`, `"\q"`, `"a\`, `"\u00`, `{"k:{\"a\"}":{"\"":"\\"}}`, `["\/",1]`, `"ctl` + "\x01" + `"`, `"open`, `"`, ` "lead"`, `true`, `1`,
	strings.Repeat("[", 64) + strings.Repeat("]", 64),
	strings.Repeat("[", 65) + strings.Repeat("]", 65),
	strings.Repeat("[", 70) + "1 " + strings.Repeat("]", 70),
	strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
}

// checkSkip compares Skip on data with skip, the recursive walk, at depth.
func checkSkip(t *testing.T, data string, depth int) {
	t.Helper()
	fast, slow := Scanner{Data: []byte(data)}, Scanner{Data: []byte(data)}
	ferr, serr := fast.Skip(depth), slow.skip(depth)
	if !reflect.DeepEqual(ferr, serr) || (ferr == nil && fast.Pos != slow.Pos) {
		t.Fatalf("Skip(%q, %d) = %v at %d, skip %v at %d", data, depth, ferr, fast.Pos, serr, slow.Pos)
	}
}

// TestSkipCompact holds Skip to skip on every case, and shows which cases
// skipCompact takes itself: a test that only compared results would pass
// with a skipCompact that never accepts anything.
func TestSkipCompact(t *testing.T) {
	for _, c := range skipCases {
		checkSkip(t, c, 0)
		checkSkip(t, c, MaxDepth-2)
		checkSkip(t, "[1,"+c+"]", 0)
	}
	f := func(in string, want bool) {
		t.Helper()
		d := Scanner{Data: []byte(in)}
		if got := d.skipCompact(0); got != want {
			t.Fatalf("skipCompact(%q) = %v, want %v", in, got, want)
		}
		if !want && d.Pos != 0 {
			t.Fatalf("skipCompact(%q) refused but moved to %d", in, d.Pos)
		}
		if want && d.Pos != len(in) && in[d.Pos-1] != '}' && in[d.Pos-1] != ']' {
			t.Fatalf("skipCompact(%q) stopped at %d", in, d.Pos)
		}
	}
	f(`{"a":{"b":[true,false,null,"x",-1.5e+3]}}`, true)
	f(`{"a":1,"b":2}x`, true) // what follows is the caller's
	f(strings.Repeat("[", 64)+strings.Repeat("]", 64), true)
	f(strings.Repeat("[", 65)+strings.Repeat("]", 65), false)
	f(`{"a": 1}`, false)
	f(`{"a\"":1}`, true)
	f(`{"k:{\"name\":\"c\"}":{"\u00e9\/\b\f\n\r\t\\":["\"\\"]}}`, true)
	f(`{"a\x":1}`, false)
	f(`["\u12g4"]`, false)
	f(`["\u12`, false)
	f(`["a\`, false)
	f("[\"a\\\x01\"]", false)
	f(`[01]`, false)
	f(`{"a":1,}`, false)
	f(`[1}`, false)
}

// FuzzSkip holds Skip to skip, and both to encoding/json's verdict on
// whether the input starts with a valid value.
func FuzzSkip(f *testing.F) {
	for _, c := range skipCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSkip(t, string(data), 0)
		d := Scanner{Data: data}
		if err := d.Skip(0); err == nil && !json.Valid(data[:d.Pos]) {
			t.Fatalf("Skip accepted %q, which encoding/json refuses", data[:d.Pos])
		}
	})
}
