//go:build chdb

package main

import (
	"context"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/clickhouse"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/testutil/chdbtest"
)

// TestChDBPanelQueries is TestPanelQueries on ClickHouse 26.7 (chDB): the
// schema as detect creates it there (migrations plus the version gate's
// codecs and LowCardinality), the same seeded attack traffic inserted as
// SQL, and every panel and variable query under every variable form.
func TestChDBPanelQueries(t *testing.T) {
	s := chdbtest.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := s.NewDatabase(t)
	tuned, err := clickhouse.Migrate(ctx, s, db, nil, nil)
	if err != nil {
		t.Fatalf("creating schema: %v", err)
	}
	if len(tuned) == 0 {
		t.Fatal("the version gate tuned nothing on 26.7: the panels would run on the 18.16 schema")
	}
	from, to := seed(t, func(b pipeline.Batch) error {
		stmts, err := clickhouse.InsertStatements(db, b)
		if err != nil {
			return err
		}
		for _, stmt := range stmts {
			if err := s.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	// The provisioned datasource sets defaultDatabase; queries name tables
	// without a database.
	if err := s.Exec(ctx, "USE `"+db+"`"); err != nil {
		t.Fatal(err)
	}
	checkPanelQueries(t, ctx, func(ctx context.Context, sql string) (result, error) {
		cols, rows, err := s.QueryNamed(ctx, sql)
		return result{columns: cols, rows: rows}, err
	}, from, to)
}
