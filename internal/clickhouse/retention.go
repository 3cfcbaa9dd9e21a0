package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RetentionKeys are the keys ParseRetention accepts: the two base tables
// and "rollups" for every rollup table.
var RetentionKeys = []string{EventsTable, FindingsTable, "rollups"}

// DefaultRetentionInterval is how often RunRetention looks for expired
// partitions. Partitions are days, so an hour keeps at most an hour of
// extra data at negligible cost.
const DefaultRetentionInterval = time.Hour

// ParseRetention reads "events=30,findings=365,rollups=90" into days per
// table (rollups expanded to each rollup table). Days must be positive;
// a table not named keeps its data forever. An empty string is no
// retention.
func ParseRetention(s string) (map[string]int, error) {
	out := map[string]int{}
	var errs []error
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, val, ok := strings.Cut(item, "=")
		key = strings.TrimSpace(key)
		if !ok {
			errs = append(errs, fmt.Errorf("retention %q: want table=days", item))
			continue
		}
		if !slices.Contains(RetentionKeys, key) {
			errs = append(errs, fmt.Errorf("retention key %q: want one of %s", key, strings.Join(RetentionKeys, ", ")))
			continue
		}
		days, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || days <= 0 {
			errs = append(errs, fmt.Errorf("retention %s=%q: days must be a positive integer", key, val))
			continue
		}
		if key == "rollups" {
			for _, t := range RollupTables {
				out[t] = days
			}
			continue
		}
		out[key] = days
	}
	return out, errors.Join(errs...)
}

// EnforceRetention drops every day partition older than its table's
// retention as of now. The partition key is toYYYYMMDD of the row time, so
// a partition whose day ends before the cutoff holds only expired rows. It
// works on every server version; TTL (where supported) is a second line.
func (s *Store) EnforceRetention(ctx context.Context, now time.Time) error {
	var errs []error
	for _, table := range append([]string{EventsTable, FindingsTable}, RollupTables...) {
		days := s.cfg.Retention[table]
		if days <= 0 {
			continue
		}
		// A day partition is expired when all of it is before the cutoff:
		// keep the cutoff's own day.
		cutoff, _ := strconv.Atoi(now.UTC().AddDate(0, 0, -days).Format("20060102"))
		parts, err := s.partitions(ctx, table)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range parts {
			if p >= cutoff {
				continue
			}
			stmt := fmt.Sprintf("ALTER TABLE `%s`.`%s` DROP PARTITION %d", s.cfg.Database, table, p)
			if s.cfg.Cluster != "" {
				// The rows are in the local tables; ON CLUSTER reaches every
				// shard, and each shard's replicas drop it through
				// replication.
				stmt = fmt.Sprintf("ALTER TABLE `%s`.`%s` ON CLUSTER `%s` DROP PARTITION %d", s.cfg.Database, table+LocalSuffix, s.cfg.Cluster, p)
			}
			if err := s.ddl.Exec(ctx, stmt); err != nil {
				errs = append(errs, classify(fmt.Errorf("dropping partition %d of %s: %w", p, table, err)))
				continue
			}
			s.metrics.dropped.WithLabelValues(table).Inc()
			s.log.Info("dropped expired partition", "table", table, "partition", p, "retention_days", days)
		}
	}
	return errors.Join(errs...)
}

// partitions lists table's active day partitions. On a cluster it asks
// one replica of every shard (the cluster table function) about the local
// table, since this node holds only its own shard's partitions.
func (s *Store) partitions(ctx context.Context, table string) ([]int, error) {
	from := "system.parts"
	if s.cfg.Cluster != "" {
		from = "cluster(" + quote(s.cfg.Cluster) + ", system, parts)"
		table += LocalSuffix
	}
	rows, err := s.ddl.Query(ctx, "SELECT DISTINCT partition FROM "+from+" WHERE database = ? AND table = ? AND active", s.cfg.Database, table)
	if err != nil {
		return nil, classify(fmt.Errorf("listing partitions of %s: %w", table, err))
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("listing partitions of %s: %w", table, err)
		}
		// Partitions of toYYYYMMDD are plain numbers; anything else is not
		// ours to drop.
		if n, err := strconv.Atoi(p); err == nil {
			out = append(out, n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, classify(fmt.Errorf("listing partitions of %s: %w", table, err))
	}
	return out, nil
}

// RunRetention enforces retention now and then every interval until ctx is
// done. Errors are logged, not returned: the next round retries, and a
// retention failure must not stop ingestion. It returns at once when no
// table has a retention.
func (s *Store) RunRetention(ctx context.Context, interval time.Duration) {
	if len(s.cfg.Retention) == 0 {
		return
	}
	if interval <= 0 {
		interval = DefaultRetentionInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.EnforceRetention(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("enforcing retention, will retry", "interval", interval, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
