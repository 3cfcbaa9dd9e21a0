package auditjson

import (
	"fmt"
	"time"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// parseTimestamp reads an audit timestamp: RFC 3339 with any number of
// fractional digits, or none (metav1.MicroTime insists on exactly six,
// which older apiservers and log shippers do not always write), and with a
// space instead of the 'T' between date and time, as log shippers
// (Fluentd, Logstash, SQL exports) rewrite it. RFC 3339 allows that space
// (section 5.6, NOTE); encoding/json's time.Time does not, so this is a
// deliberate difference from decoding with encoding/json. Empty means no
// timestamp. The result is in UTC.
//
// last, when not nil, carries the date and second of the previous
// timestamp from call to call (see lastSecond).
func parseTimestamp(s []byte, last *lastSecond) (time.Time, error) {
	if len(s) == 0 {
		return time.Time{}, nil
	}
	if t, ok := parseRFC3339(s, last); ok {
		return t, nil
	}
	// Anything the fast path does not recognise goes to the standard
	// parser, which decides; the two agree wherever both accept.
	str := string(s)
	if len(str) > 10 && str[10] == ' ' {
		str = str[:10] + "T" + str[11:]
	}
	pt, err := time.Parse(time.RFC3339Nano, str)
	if err != nil {
		return time.Time{}, &TimestampError{Value: string(s)}
	}
	return pt.UTC(), nil
}

// TimestampError reports a timestamp string that is not RFC 3339.
type TimestampError struct {
	Value string
}

func (e *TimestampError) Error() string {
	return fmt.Sprintf("parsing timestamp %q: want RFC 3339", e.Value)
}

// lastSecond remembers the first 19 bytes ("2006-01-02T15:04:05") of the
// last timestamp parseRFC3339 accepted and the instant they denote. An
// event's two timestamps nearly always fall in the same second, so the
// second one's date and time need neither validating nor converting
// again: only the fraction and the zone are read.
type lastSecond struct {
	prefix [19]byte
	base   time.Time
	ok     bool
}

// parseRFC3339 is the common shape, "2006-01-02T15:04:05[.1-9 digits]" (or
// a space for the T) then "Z" or "±hh:mm", parsed without allocating. It
// reports false for anything else, including out-of-range fields, leaving
// those to time.Parse. last may be nil.
func parseRFC3339(s []byte, last *lastSecond) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
	var base time.Time
	if last != nil && last.ok && string(s[:19]) == string(last.prefix[:]) {
		base = last.base
	} else {
		var ok bool
		if base, ok = parseSecond(s); !ok {
			return time.Time{}, false
		}
		if last != nil {
			copy(last.prefix[:], s[:19])
			last.base, last.ok = base, true
		}
	}
	rest := s[19:]
	nsec := 0
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && jsonscan.IsDigit(rest[n]) {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, false
		}
		frac, _ := digits(rest[1:n])
		for k := n; k < 10; k++ {
			frac *= 10
		}
		nsec, rest = frac, rest[n:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		hh, ok1 := digits(rest[1:3])
		mm, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || hh > 23 || mm > 59 {
			return time.Time{}, false
		}
		offset = (hh*60 + mm) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	// base has no fraction and no monotonic reading, so adding nsec gives
	// the very value time.Date would with nsec.
	t := base.Add(time.Duration(nsec))
	if offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	return t, true
}

// parseSecond validates and converts the date and time of day at the
// start of s (at least 20 bytes): "2006-01-02T15:04:05", or a space for
// the T.
func parseSecond(s []byte) (time.Time, bool) {
	if s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), true
}

// digits parses a short run of ASCII digits.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !jsonscan.IsDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
