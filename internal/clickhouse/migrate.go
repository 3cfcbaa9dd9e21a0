package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// alreadyExistsCodes are exceptions that 18.16 can raise for CREATE … IF
// NOT EXISTS when another instance creates the same object at the same
// moment (the check and the creation are not atomic there). The object
// exists, which is what the statement asked for.
var alreadyExistsCodes = map[int32]bool{
	57: true, // TABLE_ALREADY_EXISTS
	82: true, // DATABASE_ALREADY_EXISTS
}

// migrate creates the database and the migrations table, then runs every
// migration not yet recorded, in order. Two instances may run the same
// migration concurrently; see migration for why that is safe.
func (s *Store) migrate(ctx context.Context) error {
	db := "`" + s.cfg.Database + "`"
	if err := s.execDDL(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return err
	}
	if err := s.execDDL(ctx, strings.ReplaceAll(createMigrationsTable, "{db}", db)); err != nil {
		return err
	}
	applied, err := s.appliedMigrations(ctx)
	if err != nil {
		return err
	}
	latest := migrations[len(migrations)-1].Version
	for v := range applied {
		if v > latest {
			// A newer binary migrated this database. Its migrations only add,
			// so an older writer keeps working; say so in case it does not.
			s.log.Warn("database schema is newer than this binary", "schema_version", v, "binary_version", latest)
			break
		}
	}
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		start := time.Now()
		for _, stmt := range m.Statements {
			if err := s.execDDL(ctx, strings.ReplaceAll(stmt, "{db}", db)); err != nil {
				return fmt.Errorf("running migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		for _, c := range m.AddColumns {
			if err := s.addColumn(ctx, c); err != nil {
				return fmt.Errorf("running migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		if err := s.recordMigration(ctx, m); err != nil {
			return err
		}
		s.log.Info("applied schema migration", "version", m.Version, "name", m.Name, "duration", time.Since(start))
	}
	return nil
}

// execDDL runs one idempotent DDL statement, accepting the "already exists"
// race described at alreadyExistsCodes.
func (s *Store) execDDL(ctx context.Context, stmt string) error {
	err := s.conn.Exec(ctx, stmt)
	var ex *ch.Exception
	if errors.As(err, &ex) && alreadyExistsCodes[ex.Code] {
		return nil
	}
	if err != nil {
		return classify(fmt.Errorf("running %q: %w", firstLine(stmt), err))
	}
	return nil
}

// columnExists reports the exception another instance's concurrent ADD
// COLUMN causes between our check and our ALTER: DUPLICATE_COLUMN (15), or
// on 18.16 ILLEGAL_COLUMN (44) "column with this name already exists".
func columnExists(err error) bool {
	var ex *ch.Exception
	if !errors.As(err, &ex) {
		return false
	}
	return ex.Code == 15 || (ex.Code == 44 && strings.Contains(ex.Message, "already exists"))
}

// addColumn adds c unless system.columns lists it already.
func (s *Store) addColumn(ctx context.Context, c addColumn) error {
	cols, err := s.columns(ctx, c.Table)
	if err != nil {
		return err
	}
	if _, ok := cols[c.Column]; ok {
		return nil
	}
	stmt := fmt.Sprintf("ALTER TABLE `%s`.`%s` ADD COLUMN `%s` %s", s.cfg.Database, c.Table, c.Column, c.Type)
	if c.After != "" {
		stmt += " AFTER `" + c.After + "`"
	}
	err = s.conn.Exec(ctx, stmt)
	if columnExists(err) {
		return nil
	}
	if err != nil {
		return classify(fmt.Errorf("running %q: %w", stmt, err))
	}
	return nil
}

// columnInfo is a column as system.columns describes it.
type columnInfo struct {
	Type  string
	Codec string
}

// columns reads table's columns from system.columns. The codec is read
// only where the server has the column (19.x and later).
func (s *Store) columns(ctx context.Context, table string) (map[string]columnInfo, error) {
	q := "SELECT name, type FROM system.columns WHERE database = ? AND table = ?"
	if s.features.Codecs {
		q = "SELECT name, type, compression_codec FROM system.columns WHERE database = ? AND table = ?"
	}
	rows, err := s.conn.Query(ctx, q, s.cfg.Database, table)
	if err != nil {
		return nil, classify(fmt.Errorf("reading columns of %s: %w", table, err))
	}
	defer rows.Close()
	cols := make(map[string]columnInfo)
	for rows.Next() {
		var name string
		var ci columnInfo
		dest := []any{&name, &ci.Type}
		if s.features.Codecs {
			dest = append(dest, &ci.Codec)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("reading columns of %s: %w", table, err)
		}
		cols[name] = ci
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("reading columns of %s: %w", table, err))
	}
	return cols, nil
}

// appliedMigrations returns the recorded migration versions. DISTINCT is
// enough, no FINAL needed: duplicate rows from a concurrent start name the
// same version.
func (s *Store) appliedMigrations(ctx context.Context) (map[uint32]bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM `"+s.cfg.Database+"`.`"+MigrationsTable+"`")
	if err != nil {
		return nil, classify(fmt.Errorf("reading applied migrations: %w", err))
	}
	defer rows.Close()
	applied := make(map[uint32]bool)
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("reading applied migrations: %w", err))
	}
	return applied, nil
}

// recordMigration notes that m ran. Two instances recording the same
// version leave two rows that ReplacingMergeTree collapses.
func (s *Store) recordMigration(ctx context.Context, m migration) error {
	batch, err := s.conn.PrepareBatch(ctx, insertQuery(s.cfg.Database, MigrationsTable, []string{"version", "name", "applied_at"}))
	if err != nil {
		return classify(fmt.Errorf("recording migration %d: %w", m.Version, err))
	}
	defer func() { _ = batch.Close() }()
	if err := batch.Append(m.Version, m.Name, time.Now()); err != nil {
		return fmt.Errorf("recording migration %d: %w", m.Version, err)
	}
	if err := batch.Send(); err != nil {
		return classify(fmt.Errorf("recording migration %d: %w", m.Version, err))
	}
	return nil
}

// firstLine shortens a statement for error messages.
func firstLine(stmt string) string {
	line, _, _ := strings.Cut(stmt, "\n")
	return strings.TrimSpace(line)
}
