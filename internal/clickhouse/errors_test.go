package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func TestClassify(t *testing.T) {
	f := func(name string, err error, wantPermanent bool) {
		t.Helper()
		got := classify(fmt.Errorf("inserting 10 rows into events: %w", err))
		if pipeline.IsPermanent(got) != wantPermanent {
			t.Errorf("%s: classify(%v) permanent = %v, want %v", name, err, !wantPermanent, wantPermanent)
		}
		if !errors.Is(got, err) {
			t.Errorf("%s: classify lost the cause %v", name, err)
		}
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: syscall.ECONNREFUSED.Error()}}
	f("connection refused", refused, false)
	f("dial timeout", ch.ErrAcquireConnTimeout, false)
	f("deadline", context.DeadlineExceeded, false)
	f("connection closed", ch.ErrConnectionClosed, false)
	f("memory limit", &ch.Exception{Code: 241, Name: "DB::Exception", Message: "Memory limit (for query) exceeded"}, false)
	f("too many parts", &ch.Exception{Code: 252, Message: "Too many parts (300). Merges are processing significantly slower than inserts."}, false)
	f("unknown table", &ch.Exception{Code: 60, Message: "Table auditpipe.events doesn't exist."}, false)
	f("type mismatch", &ch.Exception{Code: 53, Message: "Type mismatch in IN or VALUES section"}, true)
	f("nested sizes", &ch.Exception{Code: 190, Message: "Elements annotations.key and annotations.value of Nested data structure annotations (Array columns) have different array sizes."}, true)
	f("client conversion", &proto.BlockError{Op: "AppendRow", ColumnName: "event_hash", Err: &column.ColumnConverterError{Op: "Append", To: "String", From: "uint64"}}, true)
}
