package clickhouse

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// InsertStatements returns b as SQL text, one INSERT … FORMAT JSONEachRow
// per table, with the same rows Write sends in native blocks. It is for
// engines reached only through SQL text (chDB in tests and measurements);
// Store itself never uses it.
func InsertStatements(db string, b pipeline.Batch) ([]string, error) {
	var stmts []string
	if len(b.Events) > 0 {
		var sb strings.Builder
		sb.WriteString(insertQuery(db, EventsTable, eventColumns) + " FORMAT JSONEachRow\n")
		var row eventRow
		for _, ev := range b.Events {
			row.fill(ev)
			if err := appendJSONRow(&sb, eventColumns, row.values()); err != nil {
				return nil, fmt.Errorf("encoding event %s: %w", ev.AuditID, err)
			}
		}
		stmts = append(stmts, sb.String())
	}
	if len(b.Findings) > 0 {
		var sb strings.Builder
		sb.WriteString(insertQuery(db, FindingsTable, findingColumns) + " FORMAT JSONEachRow\n")
		var row findingRow
		for i := range b.Findings {
			if err := row.fill(&b.Findings[i]); err != nil {
				return nil, err
			}
			if err := appendJSONRow(&sb, findingColumns, row.values()); err != nil {
				return nil, fmt.Errorf("encoding finding %s: %w", b.Findings[i].ID, err)
			}
		}
		stmts = append(stmts, sb.String())
	}
	return stmts, nil
}

// appendJSONRow writes one JSONEachRow line. DateTime values go as Unix
// seconds so that the server's time zone cannot shift them.
func appendJSONRow(sb *strings.Builder, cols []string, vals []any) error {
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
