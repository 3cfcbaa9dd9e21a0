package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Runner runs SQL text on a ClickHouse server. The schema code (migrations
// and the version gate's tuning) speaks only this, so that the same
// statements run over the native protocol in production and through an
// embedded engine without a network listener (chDB, in tests).
type Runner interface {
	// Exec runs a statement that returns no rows.
	Exec(ctx context.Context, stmt string) error
	// Query runs a query whose columns are all String and returns its rows.
	Query(ctx context.Context, query string) ([][]string, error)
}

var _ Runner = nativeRunner{}

// nativeRunner is a Runner over a clickhouse-go connection.
type nativeRunner struct{ conn driver.Conn }

func (r nativeRunner) Exec(ctx context.Context, stmt string) error {
	return r.conn.Exec(ctx, stmt)
}

func (r nativeRunner) Query(ctx context.Context, query string) ([][]string, error) {
	rows, err := r.conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	n := len(rows.Columns())
	var out [][]string
	for rows.Next() {
		row := make([]string, n)
		dest := make([]any, n)
		for i := range row {
			dest[i] = &row[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// quote renders s as a ClickHouse string literal. The schema code builds
// its few queries as text because a Runner takes no bound parameters.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// exceptionText matches a server exception as text: chDB reports errors as
// strings, "Code: 57. DB::Exception: Table d.t already exists. …".
var exceptionText = regexp.MustCompile(`Code: (\d+)\. DB::Exception: (.*)`)

// exceptionCode returns the server exception code and message in err,
// whether it came through clickhouse-go or as text.
func exceptionCode(err error) (int32, string, bool) {
	if err == nil {
		return 0, "", false
	}
	var ex *ch.Exception
	if errors.As(err, &ex) {
		return ex.Code, ex.Message, true
	}
	m := exceptionText.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, "", false
	}
	code, convErr := strconv.ParseInt(m[1], 10, 32)
	if convErr != nil {
		return 0, "", false
	}
	return int32(code), m[2], true
}

// queryRow runs a query expected to return exactly one row of n columns.
func queryRow(ctx context.Context, r Runner, query string, n int) ([]string, error) {
	rows, err := r.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 || len(rows[0]) != n {
		return nil, fmt.Errorf("want one row of %d columns, got %d rows", n, len(rows))
	}
	return rows[0], nil
}
