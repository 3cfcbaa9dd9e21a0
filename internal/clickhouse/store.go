// Package clickhouse stores audit events and findings in ClickHouse.
//
// Store is the pipeline's Sink. It speaks the native protocol (the HTTP
// protocol of clickhouse-go does not work with ClickHouse 18.16, the oldest
// server we support), creates its database and tables through versioned,
// idempotent migrations, and writes each batch as one INSERT per table.
//
// Writes are at-least-once: detect commits Kafka offsets only after Write
// returned nil, so a crash in between writes the batch again. The tables are
// ReplacingMergeTree keyed on content, so those duplicates collapse on merge
// and are invisible to SELECT … FINAL.
package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

var _ pipeline.Sink = (*Store)(nil)

// ErrClosed is returned by Write after Close. It is retryable: the batch
// itself is fine and must not be skipped.
var ErrClosed = errors.New("clickhouse store is closed")

// Store writes batches to ClickHouse. It is safe for concurrent use.
type Store struct {
	cfg  Config
	conn driver.Conn
	// ddl runs the schema statements and retention: conn itself on one
	// server, on a cluster a connection with a longer read timeout (see
	// ClusterDDLReadTimeout).
	ddl     driver.Conn
	log     *slog.Logger
	metrics *metrics

	insertEvents   string
	insertFindings string

	// version and features are read from the server at start.
	version  serverVersion
	features features

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New connects to ClickHouse, creates the database and runs pending
// migrations. ctx bounds the connection and the migrations. A nil logger
// discards logs; a nil Registerer leaves the metrics unregistered.
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("validating ClickHouse config: %w", err))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	conn, addrs, err := open(cfg, cfg.ReadTimeout, cfg.MaxOpenConns)
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:            cfg,
		conn:           conn,
		ddl:            conn,
		log:            log.With("database", cfg.Database),
		metrics:        m,
		insertEvents:   insertQuery(cfg.Database, EventsTable, eventColumns),
		insertFindings: insertQuery(cfg.Database, FindingsTable, findingColumns),
	}
	fail := func(err error) (*Store, error) {
		_ = s.Close()
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		return fail(classify(fmt.Errorf("connecting to ClickHouse at %s: %w", addrs, err)))
	}
	sc := &schema{r: nativeRunner{conn}, db: cfg.Database, retention: cfg.Retention, log: s.log}
	if cfg.Cluster != "" {
		if sc.cluster, err = newClusterDDL(cfg.Database, cfg.Cluster, migrations); err != nil {
			return fail(pipeline.Permanent(err))
		}
		if s.ddl, _, err = open(cfg, max(cfg.ReadTimeout, ClusterDDLReadTimeout), 1); err != nil {
			s.ddl = conn
			return fail(err)
		}
		sc.r = nativeRunner{s.ddl}
		s.log = s.log.With("cluster", cfg.Cluster)
		sc.log = s.log
	}
	if err := sc.detectVersion(ctx); err != nil {
		return fail(err)
	}
	if err := sc.migrate(ctx); err != nil {
		return fail(err)
	}
	if _, err := sc.tune(ctx); err != nil {
		return fail(err)
	}
	s.version, s.features = sc.version, sc.features
	return s, nil
}

// ClusterDDLReadTimeout is the least read timeout of the connection that
// runs ON CLUSTER statements (migrations, retention). Such a statement
// answers only once every node has run it, and an ALTER of a replicated
// table on 18.16 also waits for the shard's replicas to apply it: tens of
// seconds on a loaded machine, past the 30 s that suits an INSERT. The
// server gives up on its own after distributed_ddl_task_timeout (180 s by
// default); this is a little longer.
const ClusterDDLReadTimeout = 200 * time.Second

// open connects to cfg.DSN's servers over the native protocol with the
// given read timeout and pool size, and returns the addresses for errors.
func open(cfg Config, readTimeout time.Duration, conns int) (driver.Conn, string, error) {
	opts, err := ch.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, "", pipeline.Permanent(fmt.Errorf("parsing clickhouse.dsn: %w", err))
	}
	// Connect without a default database: ours may not exist yet, and the
	// server refuses a handshake naming a missing one. Every statement
	// qualifies its tables instead.
	opts.Auth.Database = ""
	opts.Protocol = ch.Native
	opts.DialTimeout = cfg.DialTimeout
	opts.ReadTimeout = readTimeout
	opts.MaxOpenConns = conns
	opts.MaxIdleConns = conns
	opts.DialContext = dialWithWriteTimeout(cfg.DialTimeout, readTimeout, opts.TLS)
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, "", fmt.Errorf("opening ClickHouse connection: %w", err)
	}
	return conn, strings.Join(opts.Addr, ","), nil
}

// dialWithWriteTimeout dials as clickhouse-go does by default (TCP, or TLS
// with tlsConfig), and bounds every write on the connection by
// writeTimeout.
//
// Write sends an INSERT's blocks with batch.Flush, which clickhouse-go runs
// with neither a write deadline nor a watch on ctx (only Send closes the
// connection when ctx ends). Against a server that stops reading (hung,
// SIGSTOPped, a dead peer whose socket buffers are full) such a write would
// block forever, and with it detect's store stage, past WriteTimeout and
// the shutdown bound. With the deadline the write fails after writeTimeout
// and Write returns a retryable error.
func dialWithWriteTimeout(dialTimeout, writeTimeout time.Duration, tlsConfig *tls.Config) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: dialTimeout}
		var c net.Conn
		var err error
		if tlsConfig != nil {
			c, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(ctx, "tcp", addr)
		} else {
			c, err = d.DialContext(ctx, "tcp", addr)
		}
		if err != nil {
			return nil, err
		}
		return &writeDeadlineConn{Conn: c, timeout: writeTimeout}, nil
	}
}

// writeDeadlineConn sets a write deadline of timeout from now before each
// Write. clickhouse-go's own deadlines (for a query's ctx) are set and
// cleared around its calls; this one is renewed on every write, so it
// bounds a stalled write without limiting a long transfer that progresses.
type writeDeadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *writeDeadlineConn) Write(b []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// clusterInsertSettings are the settings of every INSERT on a cluster.
//
// insert_distributed_sync=1: an INSERT into a Distributed table returns
// only once every shard has stored its rows (in one replica, which with
// internal_replication=true replicates them to the others). Without it the
// INSERT returns once the rows are queued on the node detect talks to:
// detect would commit the Kafka offsets of rows that a lost disk on that
// node would take with it, and a shard's refusal would show only in the
// server's log. A shard with no replica reachable fails the INSERT
// (retryably); detect retries the batch, and the rows that did land
// collapse with the retry under FINAL.
//
// insert_deduplicate=0: Replicated tables drop an inserted block identical
// to a recent one. Deduplication is ReplacingMergeTree's job here, as on
// one server, and the block check does harm on 18.16: there a block split
// over several day partitions skips the materialized views when its last
// part is a duplicate, so a redelivery with new records in it lost their
// rollups (TestReplicatedDistributedTwoShards caught it).
var clusterInsertSettings = ch.Settings{"insert_distributed_sync": 1, "insert_deduplicate": 0}

// insertQuery builds an INSERT naming every column: clickhouse-go cannot
// learn the column list from an 18.16 server. Backquotes because Nested
// columns have dots in their names.
func insertQuery(db, table string, cols []string) string {
	var b strings.Builder
	b.WriteString("INSERT INTO `" + db + "`.`" + table + "` (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("`" + c + "`")
	}
	b.WriteString(")")
	return b.String()
}

// insertBlockRows is how many rows Write appends before it sends them to
// the server as one block of the INSERT, reusing the block's buffers for
// the next rows. A whole 10,000-event batch in one block meant column
// buffers grown by doubling to its full size (the raw column alone about
// 16 MiB, copied again at each doubling) and a connection buffer as large,
// all garbage once sent, and the server waited idle until the last row was
// appended. The server squashes the blocks of one INSERT back into one
// before writing (min_insert_block_size_rows, 1,048,576 rows by default),
// so the table gets the same parts, and the INSERT still succeeds or fails
// as a whole. Each batch's block starts empty (clickhouse-go makes a new
// one per INSERT), so the first block's growth is paid per batch: a few
// hundred rows keep it small (2,048 cost 5.2 µs of client CPU per row,
// 512 3.8 µs, with the same server CPU), while the per-block overhead
// (the column names and types, one write) stays negligible.
const insertBlockRows = 512

// Write inserts the batch's events, then its findings, one INSERT per
// table. If the second insert fails the caller retries the whole batch;
// the events written by the first collapse as duplicates. An error is
// retryable unless pipeline.IsPermanent says otherwise.
func (s *Store) Write(ctx context.Context, b pipeline.Batch) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	if len(b.Events) > 0 {
		var row eventRow
		err := s.insert(ctx, EventsTable, s.insertEvents, len(b.Events), func(batch driver.Batch, i int) error {
			ev := b.Events[i]
			row.fill(ev)
			if err := batch.Append(row.nativeCells()...); err != nil {
				return fmt.Errorf("appending event %d (audit_id %s): %w", i, ev.AuditID, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(b.Findings) > 0 {
		var row findingRow
		err := s.insert(ctx, FindingsTable, s.insertFindings, len(b.Findings), func(batch driver.Batch, i int) error {
			f := &b.Findings[i]
			row.fill(f)
			if err := batch.Append(row.nativeCells()...); err != nil {
				return fmt.Errorf("appending finding %d (%s): %w", i, f.ID, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// prepare is PrepareBatch, tried again on another connection when the
// one the pool handed out turns out closed by the server: a pooled
// connection idle across a server restart passes the driver's health
// check until the server's FIN arrives, and the INSERT's first read then
// meets EOF (TestStoreOutage saw it fail the first Write after a restart).
// No row has been sent at that point, so trying again cannot duplicate
// any. Each failed connection is closed by the driver, so at most the
// pool's size of attempts can meet a stale one.
func (s *Store) prepare(ctx context.Context, query string) (driver.Batch, error) {
	var err error
	for range s.cfg.MaxOpenConns + 1 {
		var batch driver.Batch
		batch, err = s.conn.PrepareBatch(ctx, query)
		if err == nil || !closedByServer(err) || ctx.Err() != nil {
			return batch, err
		}
	}
	return nil, err
}

// closedByServer reports an error of a connection the server had closed
// before the request reached it.
func closedByServer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// insert runs one INSERT of rows rows into table, sending them in blocks
// of insertBlockRows, and records its metrics. appendRow appends row i;
// its errors are about the data and so are permanent.
func (s *Store) insert(ctx context.Context, table, query string, rows int, appendRow func(driver.Batch, int) error) (err error) {
	start := time.Now()
	defer func() {
		s.metrics.duration.WithLabelValues(table).Observe(time.Since(start).Seconds())
		if err == nil {
			s.metrics.rows.WithLabelValues(table).Add(float64(rows))
			return
		}
		kind := "retryable"
		if pipeline.IsPermanent(err) {
			kind = "permanent"
		}
		s.metrics.errors.WithLabelValues(table, kind).Inc()
	}()

	if s.cfg.Cluster != "" {
		ctx = ch.Context(ctx, ch.WithSettings(clusterInsertSettings))
	}
	batch, err := s.prepare(ctx, query)
	if err != nil {
		return classify(fmt.Errorf("preparing insert into %s: %w", table, err))
	}
	// Close after Send, Abort or a failed Append is a no-op (a failed
	// Append releases the connection with its error, which closes it).
	// Every failure thus drops the connection, and the server discards
	// the blocks already sent: an INSERT stores all its rows or none.
	defer func() { _ = batch.Close() }()
	for i := range rows {
		if err := appendRow(batch, i); err != nil {
			return pipeline.Permanent(fmt.Errorf("inserting into %s: %w", table, err))
		}
		if (i+1)%insertBlockRows == 0 && i+1 < rows {
			// Flush does not watch ctx (see dialWithWriteTimeout): check
			// it between blocks, so a slow server cannot stretch one
			// Write far past WriteTimeout. Abort, not Close, on failure:
			// Close would end the INSERT and so commit the blocks sent.
			if err := ctx.Err(); err != nil {
				_ = batch.Abort()
				return classify(fmt.Errorf("sending rows to %s: %w", table, err))
			}
			if err := batch.Flush(); err != nil {
				_ = batch.Abort()
				return classify(fmt.Errorf("sending rows %d-%d of %d to %s: %w", i+2-insertBlockRows, i+1, rows, table, err))
			}
		}
	}
	if err := batch.Send(); err != nil {
		return classify(fmt.Errorf("inserting %d rows into %s: %w", rows, table, err))
	}
	return nil
}

// Close closes the connection pool. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if err := s.conn.Close(); err != nil {
			s.closeErr = fmt.Errorf("closing ClickHouse connection: %w", err)
		}
		if s.ddl != s.conn {
			if err := s.ddl.Close(); err != nil {
				s.closeErr = errors.Join(s.closeErr, fmt.Errorf("closing ClickHouse DDL connection: %w", err))
			}
		}
	})
	return s.closeErr
}

// Ping checks that the server answers, for detect's /readyz. Inserts
// retry on their own while it does not; readiness says why no rows land.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("pinging ClickHouse: %w", err)
	}
	return nil
}

// Database returns the database holding the tables.
func (s *Store) Database() string { return s.cfg.Database }
