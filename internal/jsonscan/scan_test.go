package jsonscan

import (
	"math/rand/v2"
	"testing"
)

// refScan is what scanPlain and scanOpaque compute, a byte at a time.
func refScan(table *[256]bool, data []byte, j int) int {
	for j < len(data) && table[data[j]] {
		j++
	}
	return j
}

// TestScanRuns holds the eight-bytes-at-a-time scans to the byte loop: at
// every offset of buffers where each byte is a stop byte or not, with the
// stop byte at every lane and after every kind of byte below it (a borrow
// from a lower lane must not hide or invent the first stop).
func TestScanRuns(t *testing.T) {
	check := func(data []byte) {
		t.Helper()
		for j := 0; j <= len(data); j++ {
			if got, want := scanPlain(data, j), refScan(&plain, data, j); got != want {
				t.Fatalf("scanPlain(%q, %d) = %d, want %d", data, j, got, want)
			}
			if got, want := scanOpaque(data, j), refScan(&opaque, data, j); got != want {
				t.Fatalf("scanOpaque(%q, %d) = %d, want %d", data, j, got, want)
			}
		}
	}
	// Every byte value at every lane of a 16-byte run of 'a', with every
	// byte value before it.
	buf := make([]byte, 16)
	for lane := range 16 {
		for c := range 256 {
			for _, prev := range []byte{'a', 0x00, 0x01, 0x1f, 0x20, '"', '\\', 0x7f, 0x80, 0x81, 0xa0, 0xff} {
				for i := range buf {
					buf[i] = 'a'
				}
				if lane > 0 {
					buf[lane-1] = prev
				}
				buf[lane] = byte(c)
				check(buf)
			}
		}
	}
	// Random buffers, mostly plain.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		data := make([]byte, r.IntN(40))
		for i := range data {
			if r.IntN(8) == 0 {
				data[i] = byte(r.IntN(256))
			} else {
				data[i] = byte(0x20 + r.IntN(0x60))
			}
		}
		check(data)
	}
}

// TestUnquote: escapes, runs of plain bytes around them, and invalid
// UTF-8, decoded as encoding/json decodes them.
func TestUnquote(t *testing.T) {
	for raw, want := range map[string]string{
		``:                       ``,
		`plain text, no escapes`: `plain text, no escapes`,
		`a\u0026b`:               `a&b`,
		`/api/v1/pods?x=1\u0026limit=500\u0026resourceVersion=0`: `/api/v1/pods?x=1&limit=500&resourceVersion=0`,
		`RBAC: allowed by \"x\" of \"y\"`:                        `RBAC: allowed by "x" of "y"`,
		`\\\/\b\f\n\r\t`:                                         "\\/\b\f\n\r\t",
		`\ud83d\ude00 and \ud800 x`:                              "\U0001F600 and \uFFFD x",
		"caf\xc3\xa9 \xff end":                                   "café \uFFFD end",
	} {
		if got := string(Unquote(nil, []byte(raw))); got != want {
			t.Errorf("Unquote(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestMemberIn: exact `"name":` spellings match from the given index on,
// whatever the input's length; prefixes, other cases, escapes and spaces
// do not, and consume nothing.
func TestMemberIn(t *testing.T) {
	m := NewMembers("uid", "name", "namespace", "apiVersion", "requestReceivedTimestamp", "resourceVersion", "authenticationMetadata")
	for _, c := range []struct {
		in   string
		from int
		want int
	}{
		{`"uid":"x"}`, 0, 0},
		{`"uid":`, 0, 0}, // shorter than eight bytes
		{`"uid":`, 1, -1},
		{`"name":"a"}`, 0, 1},
		{`"namespace":"a"}`, 0, 2},
		{`"namespace":"a"}`, 3, -1},
		{`"apiVersion":"v1"}`, 0, 3},
		{`"apiVersion" :"v1"}`, 0, -1},
		{`"apiversion":"v1"}`, 0, -1},
		{`"api\u0056ersion":"v1"}`, 0, -1},
		{`"requestReceivedTimestamp":"2026"}`, 0, 4},
		{`"requestReceivedTimestamp"`, 0, -1},
		{`"requestReceivedTimestamX":"2026"}`, 0, -1},
		{`"nam":1}`, 0, -1},
		{`"`, 0, -1},
		// Names compared in two or three words: a difference in each.
		{`"apiVersioN":"v1"}`, 0, -1},
		{`"resourceVersion":"1"}`, 0, 5},
		{`"resourceVersioN":"1"}`, 0, -1},
		{`"resourceVersion" :"1"}`, 0, -1},
		{`"resourceVersion"`, 0, -1},
		{`"authenticationMetadata":{}}`, 0, 6},
		{`"authenticationMetadatA":{}}`, 0, -1},
		{`"authenticationMetadata" :{}}`, 0, -1},
		{`"authenticationMetadata"`, 0, -1},
	} {
		// As given (most are shorter than the words MemberIn loads at
		// once), and followed by more members, which must not change
		// what matches.
		for _, in := range []string{c.in, c.in + `,"padding":"0123456789abcdefghijklmnopqrstuvwxyz"}`} {
			d := Scanner{Data: []byte(in)}
			got := d.MemberIn(m, c.from)
			wantPos := 0
			if c.want >= 0 {
				wantPos = len(m.Names()[c.want]) + 3
			}
			if got != c.want || d.Pos != wantPos {
				t.Errorf("MemberIn(%q, %d) = %d at %d, want %d at %d", in, c.from, got, d.Pos, c.want, wantPos)
			}
		}
	}
}
