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
func parseTimestamp(s []byte) (time.Time, error) {
	if len(s) == 0 {
		return time.Time{}, nil
	}
	if t, ok := parseRFC3339(s); ok {
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

// parseRFC3339 is the common shape, "2006-01-02T15:04:05[.1-9 digits]" (or
// a space for the T) then "Z" or "±hh:mm", parsed without allocating. It reports false for anything
// else, including out-of-range fields, leaving those to time.Parse.
func parseRFC3339(s []byte) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
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
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	return t, true
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
