package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/auditpipe/auditpipe/internal/firstseen"
)

// FirstSeenTable holds what first-seen (new_terms) rules know: one row per
// rule, cluster, key and term, with when the key was first seen and the
// term last seen. A rule's baseline start in a cluster is the row with an
// empty key and term.
const FirstSeenTable = "first_seen_terms"

// createFirstSeenTable is migration 4. ReplacingMergeTree keyed by what
// the row describes, with last_seen as the version, so that re-saves of a
// busy term (one per History/14) and rows written twice (a batch retried,
// two detect instances) collapse to the latest. No partitions: a row stays
// for as long as its term is known, and rows of one term must merge with
// each other; the table is as large as the number of distinct terms, which
// first-seen rules keep small. Loading ignores rows older than the rule's
// history, so no retention is needed for correctness.
const createFirstSeenTable = `CREATE TABLE IF NOT EXISTS {db}.` + FirstSeenTable + ` (
	cluster String,
	rule String,
	key String,
	term String,
	key_first_seen DateTime,
	last_seen DateTime,
	saved_at DateTime
) ENGINE = ReplacingMergeTree(last_seen)
ORDER BY (cluster, rule, key, term)`

var firstSeenColumns = []string{"cluster", "rule", "key", "term", "key_first_seen", "last_seen", "saved_at"}

// SaveFirstSeen inserts the changes a firstseen.Tracker journaled, in one
// INSERT. Errors are classified like Write's.
func (s *Store) SaveFirstSeen(ctx context.Context, rows []firstseen.Update) error {
	if len(rows) == 0 {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	now := time.Now().UTC()
	return s.insert(ctx, FirstSeenTable, insertQuery(s.cfg.Database, FirstSeenTable, firstSeenColumns), len(rows), func(b driver.Batch, i int) error {
		u := &rows[i]
		if err := b.Append(u.Cluster, u.Rule, u.Key, u.Term, clampTime(u.KeyFirst), clampTime(u.Last), now); err != nil {
			return fmt.Errorf("appending first-seen row %d: %w", i, err)
		}
		return nil
	})
}

// clampTime keeps a time inside DateTime's range (1970 to 2105): a zero
// KeyFirst (the baseline rows) or an event's absurd timestamp must not
// fail the insert.
func clampTime(t time.Time) time.Time {
	switch {
	case t.Unix() < 0:
		return time.Unix(0, 0).UTC()
	case t.Unix() > 1<<32-1:
		return time.Unix(1<<32-1, 0).UTC()
	}
	return t.UTC()
}

// FirstSeenQuery is the bounded query LoadFirstSeen runs: the rows of
// terms seen since since (and every rule's baseline start, however old)
// saved at or after savedSince, at most limit: the baseline starts first
// (a lost one would put its rule back into learning), then the latest. GROUP BY
// collapses rows not merged yet, as FINAL would, on 18.16 too.
func FirstSeenQuery(db string, since, savedSince time.Time, limit int) string {
	return "SELECT cluster, rule, key, term, toString(toUnixTimestamp(min(key_first_seen))), toString(toUnixTimestamp(max(last_seen)))" +
		" FROM `" + db + "`.`" + FirstSeenTable + "`" +
		" WHERE (last_seen >= toDateTime(" + strconv.FormatInt(since.Unix(), 10) + ") OR (key = '' AND term = ''))" +
		" AND saved_at >= toDateTime(" + strconv.FormatInt(max(savedSince.Unix(), 0), 10) + ")" +
		" GROUP BY cluster, rule, key, term" +
		" ORDER BY (key = '' AND term = '') DESC, max(last_seen) DESC" +
		" LIMIT " + strconv.Itoa(limit)
}

// LoadFirstSeen reads what FirstSeenQuery selects, for
// firstseen.Tracker.Restore: at start with savedSince zero, then
// periodically with the time of the previous load to pick up what other
// detect instances learned.
func (s *Store) LoadFirstSeen(ctx context.Context, since, savedSince time.Time, limit int) ([]firstseen.Update, error) {
	rows, err := nativeRunner{s.conn}.Query(ctx, FirstSeenQuery(s.cfg.Database, since, savedSince, limit))
	if err != nil {
		return nil, classify(fmt.Errorf("loading first-seen terms: %w", err))
	}
	return ParseFirstSeenRows(rows)
}

// ParseFirstSeenRows turns FirstSeenQuery's rows into updates.
func ParseFirstSeenRows(rows [][]string) ([]firstseen.Update, error) {
	out := make([]firstseen.Update, 0, len(rows))
	for _, r := range rows {
		if len(r) != 6 {
			return nil, fmt.Errorf("loading first-seen terms: got %d columns, want 6", len(r))
		}
		first, err1 := strconv.ParseInt(r[4], 10, 64)
		last, err2 := strconv.ParseInt(r[5], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("loading first-seen terms: bad times %q, %q", r[4], r[5])
		}
		out = append(out, firstseen.Update{Cluster: r[0], Rule: r[1], Key: r[2], Term: r[3],
			KeyFirst: time.Unix(first, 0).UTC(), Last: time.Unix(last, 0).UTC()})
	}
	return out, nil
}
