package main

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// This file expands a dashboard query the way Grafana and
// grafana-clickhouse-datasource do before the SQL reaches ClickHouse:
//
//  1. in the browser, the plugin's applyConditionalAll replaces
//     $__conditionalAll(phrase, $var) with 1=1 when $var is "All" (or
//     empty) and with phrase otherwise;
//  2. Grafana's templateSrv replaces $var, ${var} and ${var:format}; the
//     plugin's own formatter (used when no format is named) quotes lists
//     as 'a','b' and leaves a single string as it is;
//  3. on the backend, sqlds expands the plugin's macros: $__timeFilter(c)
//     is "c >= toDateTime(from) AND c <= toDateTime(to)", $__fromTime and
//     $__toTime are toDateTime(unix), $__interval_s is the interval in
//     whole seconds, at least 1.

// allValue is Grafana's value for the "All" option.
const allValue = "$__all"

// varValue is a variable's current value: a string (a text box or a URL
// parameter) or a list (a multi-select).
type varValue any

func isAll(v varValue) bool {
	switch v := v.(type) {
	case string:
		return v == allValue || v == ""
	case []string:
		return len(v) == 0 || len(v) == 1 && v[0] == allValue
	}
	return false
}

// macroArgs mirrors the plugin's getMacroArgs: split at top-level commas of
// the parenthesised list that starts at s[0].
func macroArgs(s string) ([]string, bool) {
	var args []string
	depth, last := 0, 1
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 1 {
				args = append(args, s[last:i])
				last = i + 1
			}
		}
		if (r == '(' || r == ')') && depth == 0 {
			args = append(args, s[last:i])
			return args, true
		}
	}
	return nil, false
}

var conditionalVar = regexp.MustCompile(`\$\{?(\w+)`)

// applyConditionalAll mirrors the plugin's applyConditionalAll.
func applyConditionalAll(sql string, vars map[string]varValue) (string, error) {
	const macro = "$__conditionalAll("
	for {
		i := strings.LastIndex(sql, macro)
		if i < 0 {
			return sql, nil
		}
		args, ok := macroArgs(sql[i+len(macro)-1:])
		if !ok || len(args) != 2 {
			return "", fmt.Errorf("malformed $__conditionalAll at %d", i)
		}
		phrase := args[0]
		m := conditionalVar.FindStringSubmatch(strings.TrimSpace(args[1]))
		if m == nil {
			return "", fmt.Errorf("$__conditionalAll without a variable: %q", args[1])
		}
		v, ok := vars[m[1]]
		if !ok {
			return "", fmt.Errorf("$__conditionalAll on unknown variable %s", m[1])
		}
		if isAll(v) {
			phrase = "1=1"
		}
		sql = strings.Replace(sql, macro+args[0]+","+args[1]+")", phrase, 1)
	}
}

// templateVar matches Grafana's variable syntaxes used here.
var templateVar = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\$(\w+)`)

func formatValue(v varValue, format string) (string, error) {
	vals, list := v.([]string)
	if !list {
		vals = []string{v.(string)}
	}
	quoted := make([]string, len(vals))
	switch format {
	case "singlequote":
		for i, s := range vals {
			quoted[i] = "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
		}
	case "sqlstring":
		for i, s := range vals {
			quoted[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
		}
	case "":
		// The plugin's format(): lists quoted, a string raw.
		if !list {
			return vals[0], nil
		}
		for i, s := range vals {
			quoted[i] = "'" + s + "'"
		}
	default:
		return "", fmt.Errorf("format %q not modelled", format)
	}
	return strings.Join(quoted, ","), nil
}

func replaceVariables(sql string, vars map[string]varValue) (string, error) {
	var err error
	out := templateVar.ReplaceAllStringFunc(sql, func(m string) string {
		sm := templateVar.FindStringSubmatch(m)
		name, format := sm[1], sm[2]
		if name == "" {
			name = sm[3]
		}
		v, ok := vars[name]
		if !ok {
			if strings.HasPrefix(name, "__") {
				return m // a macro, for the backend
			}
			err = fmt.Errorf("unknown variable $%s", name)
			return m
		}
		if isAll(v) && name != "audit_id" {
			// No allValue is set, so Grafana would inline every option:
			// queries must guard each filter with $__conditionalAll.
			err = fmt.Errorf("$%s is All outside $__conditionalAll", name)
			return m
		}
		s, ferr := formatValue(v, format)
		if ferr != nil {
			err = ferr
		}
		return s
	})
	return out, err
}

var timeFilter = regexp.MustCompile(`\$__timeFilter\(([^)]*)\)`)

func applyBackendMacros(sql string, from, to time.Time, interval time.Duration) (string, error) {
	dt := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	sql = timeFilter.ReplaceAllStringFunc(sql, func(m string) string {
		col := strings.TrimSpace(timeFilter.FindStringSubmatch(m)[1])
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, dt(from), col, dt(to))
	})
	sql = strings.ReplaceAll(sql, "$__fromTime", dt(from))
	sql = strings.ReplaceAll(sql, "$__toTime", dt(to))
	sql = strings.ReplaceAll(sql, "$__interval_s", fmt.Sprint(int(math.Max(interval.Seconds(), 1))))
	if i := strings.Index(sql, "$"); i >= 0 {
		return "", fmt.Errorf("unexpanded %q", sql[i:min(len(sql), i+30)])
	}
	return sql, nil
}

// expand turns a dashboard query into the SQL ClickHouse receives.
func expand(sql string, vars map[string]varValue, from, to time.Time, interval time.Duration) (string, error) {
	sql, err := applyConditionalAll(sql, vars)
	if err != nil {
		return "", err
	}
	if sql, err = replaceVariables(sql, vars); err != nil {
		return "", err
	}
	return applyBackendMacros(sql, from, to, interval)
}
