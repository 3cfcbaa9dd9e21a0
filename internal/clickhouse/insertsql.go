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
			row.fill(&b.Findings[i])
			if err := appendJSONRow(&sb, findingColumns, row.values()); err != nil {
				return nil, fmt.Errorf("encoding finding %s: %w", b.Findings[i].ID, err)
			}
		}
		stmts = append(stmts, sb.String())
	}
	return stmts, nil
}

// appendJSONRow writes one JSONEachRow line. DateTime values go as Unix
// seconds so that the server's time zone cannot shift them. The column
// types of the rows are written as json.Marshal writes them, without its
// reflection; any other type goes through json.Marshal.
func appendJSONRow(sb *strings.Builder, cols []string, vals []any) error {
	var scratch [64]byte
	b := scratch[:0]
	sb.WriteByte('{')
	for i, c := range cols {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Quote(c))
		sb.WriteByte(':')
		b = b[:0]
		switch v := vals[i].(type) {
		case time.Time:
			b = strconv.AppendInt(b, v.Unix(), 10)
		case string:
			b = pipeline.AppendJSONString(b, v, true)
		case []string:
			if v == nil {
				b = append(b, "null"...)
				break
			}
			b = append(b, '[')
			for j, s := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = pipeline.AppendJSONString(b, s, true)
			}
			b = append(b, ']')
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case uint8:
			b = strconv.AppendUint(b, uint64(v), 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		default:
			m, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("column %s: %w", c, err)
			}
			b = append(b, m...)
		}
		sb.Write(b)
	}
	sb.WriteString("}\n")
	return nil
}
