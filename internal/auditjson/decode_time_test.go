package auditjson

import (
	"testing"
	"time"
)

// TestParseTimestampLastSecond: reusing the previous timestamp's date and
// second gives exactly (==, not just Equal) what parsing afresh gives, and
// what time.Date gives, for timestamps that share the prefix and differ in
// fraction or zone, and one whose prefix matches but whose rest is invalid.
func TestParseTimestampLastSecond(t *testing.T) {
	stamps := []string{
		"2026-11-27T09:00:00.010554Z",
		"2026-11-27T09:00:00.011591Z",
		"2026-11-27T09:00:00Z",
		"2026-11-27T09:00:00.5+02:00",
		"2026-11-27T09:00:00.999999999-07:30",
		"2026-11-27T09:00:00.1234567890Z", // ten digits: time.Parse decides
		"2026-11-27T09:00:00.x",           // invalid after a valid prefix
		"2026-11-27 09:00:00.000001Z",
		"2026-11-27 09:00:00.000002Z",
		"2026-11-27T09:00:01Z",
		"2024-02-29T23:59:59.000000001Z",
		"2023-02-29T23:59:59Z", // no such day
	}
	var last lastSecond
	for _, s := range stamps {
		fresh, errFresh := parseTimestamp([]byte(s), nil)
		reused, errReused := parseTimestamp([]byte(s), &last)
		if (errFresh == nil) != (errReused == nil) || fresh != reused {
			t.Errorf("%s: with last second %v, %v; afresh %v, %v", s, reused, errReused, fresh, errFresh)
		}
	}
	got, err := parseTimestamp([]byte("2026-11-27T09:00:00.011591Z"), &last)
	want := time.Date(2026, 11, 27, 9, 0, 0, 11591000, time.UTC)
	if err != nil || got != want {
		t.Errorf("got %#v, %v; want %#v", got, err, want)
	}
}
