package clickhouse

import (
	"errors"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// permanentCodes are server exception codes saying the data itself cannot
// be stored: sending the same rows again fails the same way. Everything
// else, including schema problems an operator can fix (UNKNOWN_TABLE,
// NO_SUCH_COLUMN_IN_TABLE) and overload (TOO_MANY_PARTS,
// MEMORY_LIMIT_EXCEEDED), stays retryable so no data is skipped while the
// cause may still go away.
var permanentCodes = map[int32]string{
	6:   "CANNOT_PARSE_TEXT",
	26:  "CANNOT_PARSE_QUOTED_STRING",
	27:  "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
	38:  "CANNOT_PARSE_DATE",
	41:  "CANNOT_PARSE_DATETIME",
	53:  "TYPE_MISMATCH",
	69:  "ARGUMENT_OUT_OF_BOUND",
	70:  "CANNOT_CONVERT_TYPE",
	72:  "CANNOT_PARSE_NUMBER",
	117: "INCORRECT_DATA",
	128: "TOO_LARGE_ARRAY_SIZE",
	131: "TOO_LARGE_STRING_SIZE",
	190: "SIZES_OF_ARRAYS_DOESNT_MATCH",
}

// classify marks err permanent when retrying cannot help and returns it
// unchanged (retryable) otherwise: refused connections, timeouts, a server
// going away and unknown errors are all worth another attempt.
func classify(err error) error {
	if err == nil || pipeline.IsPermanent(err) {
		return err
	}
	var ex *ch.Exception
	if errors.As(err, &ex) {
		if _, ok := permanentCodes[ex.Code]; ok {
			return pipeline.Permanent(err)
		}
		return err
	}
	// Client-side conversion failures: a value that cannot be encoded as
	// the column's type will not encode on the next attempt either.
	var convErr *column.ColumnConverterError
	var colErr *column.Error
	if errors.As(err, &convErr) || errors.As(err, &colErr) || errors.Is(err, ch.ErrBatchInvalid) {
		return pipeline.Permanent(err)
	}
	return err
}
