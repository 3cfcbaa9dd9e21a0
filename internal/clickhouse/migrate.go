package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// alreadyExistsCodes are exceptions that 18.16 can raise for CREATE … IF
// NOT EXISTS when another instance creates the same object at the same
// moment (the check and the creation are not atomic there). The object
// exists, which is what the statement asked for.
var alreadyExistsCodes = map[int32]bool{
	57: true, // TABLE_ALREADY_EXISTS
	82: true, // DATABASE_ALREADY_EXISTS
}

// schema creates and tunes auditpipe's tables through a Runner: Store
// runs it over its connection at start, tests over chDB (see Migrate).
type schema struct {
	r         Runner
	db        string
	retention map[string]int
	log       *slog.Logger
	// cluster, when set, rewrites every statement for a cluster (see
	// cluster.go); nil runs them as written, on one server.
	cluster *clusterDDL

	// version and features are read from the server by detectVersion.
	version  serverVersion
	features features
}

// Migrate creates database and its tables through r, then tunes them for
// the server's version, as New does over its connection, and returns the
// tuning statements it ran: none once the tables are tuned. retention is
// days per table, as Config.Retention. A nil logger discards logs.
func Migrate(ctx context.Context, r Runner, database string, retention map[string]int, log *slog.Logger) ([]string, error) {
	if !identifier.MatchString(database) {
		return nil, fmt.Errorf("database %q is not a plain identifier", database)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sc := &schema{r: r, db: database, retention: retention, log: log}
	if err := sc.detectVersion(ctx); err != nil {
		return nil, err
	}
	if err := sc.migrate(ctx); err != nil {
		return nil, err
	}
	return sc.tune(ctx)
}

// detectVersion reads version() so that tune knows what the server accepts.
func (s *schema) detectVersion(ctx context.Context) error {
	row, err := queryRow(ctx, s.r, "SELECT version()", 1)
	if err != nil {
		return classify(fmt.Errorf("reading ClickHouse version: %w", err))
	}
	v, err := parseServerVersion(row[0])
	if err != nil {
		return err
	}
	s.version, s.features = v, featuresOf(v)
	s.log.Info("connected to ClickHouse", "version", row[0])
	return nil
}

// migrate creates the database and the migrations table, then runs every
// migration not yet recorded, in order. Two instances may run the same
// migration concurrently; see migration for why that is safe.
func (s *schema) migrate(ctx context.Context) error {
	if err := s.createBookkeeping(ctx); err != nil {
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
		stmts, err := s.statements(m)
		if err != nil {
			return pipeline.Permanent(fmt.Errorf("running migration %d (%s): %w", m.Version, m.Name, err))
		}
		for _, stmt := range stmts {
			if err := s.execDDL(ctx, stmt); err != nil {
				return fmt.Errorf("running migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		for _, c := range m.AddColumns {
			add := s.addColumn
			if s.cluster != nil {
				add = s.addClusterColumn
			}
			if err := add(ctx, c); err != nil {
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

// createBookkeeping creates the database and the migrations table. On a
// cluster it does so only when this node lacks the migrations table: ON
// CLUSTER DDL waits for every node, so running it on each start would stop
// detect from starting while any node is down, even with nothing to
// migrate.
func (s *schema) createBookkeeping(ctx context.Context) error {
	db := "`" + s.db + "`"
	if s.cluster == nil {
		if err := s.execDDL(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
			return err
		}
		return s.execDDL(ctx, strings.ReplaceAll(createMigrationsTable, "{db}", db))
	}
	row, err := queryRow(ctx, s.r, "SELECT toString(count()) FROM system.tables WHERE database = "+quote(s.db)+" AND name = "+quote(MigrationsTable), 1)
	if err != nil {
		return classify(fmt.Errorf("looking for the migrations table: %w", err))
	}
	if row[0] != "0" {
		return nil
	}
	if err := s.execDDL(ctx, "CREATE DATABASE IF NOT EXISTS "+db+s.cluster.onCluster()); err != nil {
		return err
	}
	stmt, err := s.cluster.migrationsTable()
	if err != nil {
		return pipeline.Permanent(err)
	}
	return s.execDDL(ctx, strings.ReplaceAll(stmt, "{db}", db))
}

// statements returns m's statements ready to run: {db} replaced and, on a
// cluster, rewritten by clusterDDL.
func (s *schema) statements(m migration) ([]string, error) {
	db := "`" + s.db + "`"
	var out []string
	for _, stmt := range m.Statements {
		forms := []string{stmt}
		if s.cluster != nil {
			var err error
			if forms, err = s.cluster.statements(stmt); err != nil {
				return nil, err
			}
		}
		for _, f := range forms {
			out = append(out, strings.ReplaceAll(f, "{db}", db))
		}
	}
	return out, nil
}

// addClusterColumn adds c to the local table on every node, unless this
// node's local table has it, then rebuilds the Distributed table in front
// when it lacks the column (see clusterDDL.recreateDistributed).
func (s *schema) addClusterColumn(ctx context.Context, c addColumn) error {
	local := c
	local.Table += LocalSuffix
	cols, err := s.columns(ctx, local.Table)
	if err != nil {
		return err
	}
	if _, ok := cols[c.Column]; !ok {
		stmt := fmt.Sprintf("ALTER TABLE `%s`.`%s`%s ADD COLUMN `%s` %s", s.db, local.Table, s.cluster.onCluster(), c.Column, c.Type)
		if c.After != "" {
			stmt += " AFTER `" + c.After + "`"
		}
		if err := s.r.Exec(ctx, stmt); err != nil && !columnExists(err) {
			return classify(fmt.Errorf("running %q: %w", stmt, err))
		}
	}
	dist, err := s.columns(ctx, c.Table)
	if err != nil {
		return err
	}
	if _, ok := dist[c.Column]; ok {
		return nil
	}
	rows, err := s.r.Query(ctx, "SELECT name, type FROM system.columns WHERE database = "+quote(s.db)+" AND table = "+quote(local.Table))
	if err != nil {
		return classify(fmt.Errorf("reading columns of %s: %w", local.Table, err))
	}
	ordered := make([][2]string, 0, len(rows))
	for _, r := range rows {
		if len(r) != 2 {
			return fmt.Errorf("reading columns of %s: got %d columns, want 2", local.Table, len(r))
		}
		ordered = append(ordered, [2]string{r[0], r[1]})
	}
	for _, stmt := range s.cluster.recreateDistributed(c.Table, ordered) {
		if err := s.execDDL(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// execDDL runs one idempotent DDL statement, accepting the "already exists"
// race described at alreadyExistsCodes.
func (s *schema) execDDL(ctx context.Context, stmt string) error {
	err := s.r.Exec(ctx, stmt)
	if code, _, ok := exceptionCode(err); ok && alreadyExistsCodes[code] {
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
	code, msg, ok := exceptionCode(err)
	if !ok {
		return false
	}
	return code == 15 || (code == 44 && strings.Contains(msg, "already exists"))
}

// addColumn adds c unless system.columns lists it already.
func (s *schema) addColumn(ctx context.Context, c addColumn) error {
	cols, err := s.columns(ctx, c.Table)
	if err != nil {
		return err
	}
	if _, ok := cols[c.Column]; ok {
		return nil
	}
	stmt := fmt.Sprintf("ALTER TABLE `%s`.`%s` ADD COLUMN `%s` %s", s.db, c.Table, c.Column, c.Type)
	if c.After != "" {
		stmt += " AFTER `" + c.After + "`"
	}
	err = s.r.Exec(ctx, stmt)
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
func (s *schema) columns(ctx context.Context, table string) (map[string]columnInfo, error) {
	codec := "''"
	if s.features.Codecs {
		codec = "compression_codec"
	}
	rows, err := s.r.Query(ctx, "SELECT name, type, "+codec+" FROM system.columns WHERE database = "+quote(s.db)+" AND table = "+quote(table))
	if err != nil {
		return nil, classify(fmt.Errorf("reading columns of %s: %w", table, err))
	}
	cols := make(map[string]columnInfo, len(rows))
	for _, row := range rows {
		if len(row) != 3 {
			return nil, fmt.Errorf("reading columns of %s: got %d columns, want 3", table, len(row))
		}
		cols[row[0]] = columnInfo{Type: row[1], Codec: row[2]}
	}
	return cols, nil
}

// appliedMigrations returns the recorded migration versions. DISTINCT is
// enough, no FINAL needed: duplicate rows from a concurrent start name the
// same version.
func (s *schema) appliedMigrations(ctx context.Context) (map[uint32]bool, error) {
	rows, err := s.r.Query(ctx, "SELECT DISTINCT toString(version) FROM `"+s.db+"`.`"+MigrationsTable+"`")
	if err != nil {
		return nil, classify(fmt.Errorf("reading applied migrations: %w", err))
	}
	applied := make(map[uint32]bool, len(rows))
	for _, row := range rows {
		v, err := strconv.ParseUint(row[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
		applied[uint32(v)] = true
	}
	return applied, nil
}

// recordMigration notes that m ran. Two instances recording the same
// version leave two rows that ReplacingMergeTree collapses. The row comes
// from INSERT … SELECT, which runs wholly on the server: over the native
// protocol an INSERT … VALUES sent as a plain statement waits for data
// blocks that never come (18.16).
func (s *schema) recordMigration(ctx context.Context, m migration) error {
	stmt := fmt.Sprintf("INSERT INTO `%s`.`%s` (version, name, applied_at) SELECT %d, %s, now()", s.db, MigrationsTable, m.Version, quote(m.Name))
	if err := s.r.Exec(ctx, stmt); err != nil {
		return classify(fmt.Errorf("recording migration %d: %w", m.Version, err))
	}
	return nil
}

// tune applies planTuning's statements for this server: TTL, codecs and
// LowCardinality where supported, nothing on 18.16. It returns the
// statements it ran. Safe to run from several instances at once: each
// statement sets an absolute state.
func (s *schema) tune(ctx context.Context) ([]string, error) {
	f := s.features
	if !f.TTL && !f.Codecs && !f.LowCardinality {
		return nil, nil
	}
	state := map[string]tableState{}
	cluster, suffix := "", ""
	if s.cluster != nil {
		// Only the local tables store data: TTL, codecs and types are
		// tuned there; the Distributed tables keep the plain types, which
		// the server converts to and from.
		cluster, suffix = s.cluster.cluster, LocalSuffix
	}
	for _, table := range append([]string{EventsTable, FindingsTable}, RollupTables...) {
		cols, err := s.columns(ctx, table+suffix)
		if err != nil {
			return nil, err
		}
		row, err := queryRow(ctx, s.r, "SELECT create_table_query FROM system.tables WHERE database = "+quote(s.db)+" AND name = "+quote(table+suffix), 1)
		if err != nil {
			return nil, classify(fmt.Errorf("reading definition of %s: %w", table, err))
		}
		state[table] = tableState{Columns: cols, CreateQuery: row[0]}
	}
	stmts := planTuningOn(s.db, cluster, f, s.retention, state)
	for _, stmt := range stmts {
		if err := s.r.Exec(ctx, stmt); err != nil {
			return nil, classify(fmt.Errorf("running %q: %w", stmt, err))
		}
		s.log.Info("tuned table for this server version", "statement", stmt)
	}
	return stmts, nil
}

// firstLine shortens a statement for error messages.
func firstLine(stmt string) string {
	line, _, _ := strings.Cut(stmt, "\n")
	return strings.TrimSpace(line)
}
