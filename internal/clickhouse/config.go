package clickhouse

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// Defaults for Config. Zero fields take these values.
const (
	// DefaultDatabase is used when neither Config.Database nor the DSN path
	// names one.
	DefaultDatabase = "auditpipe"
	// DefaultDialTimeout bounds connecting (and waiting for a pooled
	// connection). Short, because a refused or silent server should turn
	// into a retryable error quickly so detect can back off and retry.
	DefaultDialTimeout = 5 * time.Second
	// DefaultReadTimeout bounds each wait for the server during a query.
	// clickhouse-go's default is five minutes, far longer than an insert
	// of a few thousand rows takes on a healthy server.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds a whole Write (both inserts), so a hung
	// server costs detect one bounded wait per attempt rather than a stall.
	DefaultWriteTimeout = 60 * time.Second
	// DefaultMaxOpenConns is enough for one writer plus a migration or a
	// health check; detect writes one batch at a time.
	DefaultMaxOpenConns = 4
)

// Config configures the ClickHouse sink.
type Config struct {
	// DSN is a native-protocol address, e.g.
	// "clickhouse://user:pass@host:9000/auditpipe?dial_timeout=5s". The HTTP
	// protocol is rejected: clickhouse-go's HTTP client does not work with
	// ClickHouse 18.16.
	DSN string `json:"dsn"`
	// Database holds the tables. Empty means the DSN's path, else
	// DefaultDatabase. It is created if missing.
	Database string `json:"database"`
	// DialTimeout bounds connecting; see DefaultDialTimeout.
	DialTimeout time.Duration `json:"dial_timeout"`
	// ReadTimeout bounds each wait for a server response; see
	// DefaultReadTimeout.
	ReadTimeout time.Duration `json:"read_timeout"`
	// WriteTimeout bounds one Write; see DefaultWriteTimeout.
	WriteTimeout time.Duration `json:"write_timeout"`
	// MaxOpenConns caps the connection pool; see DefaultMaxOpenConns.
	MaxOpenConns int `json:"max_open_conns"`
	// Retention is days to keep per table (see ParseRetention); tables
	// not listed keep their data. Enforced by RunRetention on every
	// server, and as a table TTL where the server supports one.
	Retention map[string]int `json:"retention"`
	// Cluster, when set, names a cluster in the servers' <remote_servers>:
	// the schema is created ON CLUSTER as Replicated*MergeTree local tables
	// with Distributed tables of the usual names in front (see cluster.go),
	// inserts wait until every shard has its rows, and retention drops
	// partitions on every shard. The servers need ZooKeeper (or Keeper)
	// and the macros {shard} and {replica}. Empty means one server.
	Cluster string `json:"cluster"`
}

// WithDefaults returns c with zero fields set to their defaults. The
// database default comes from the DSN path when the DSN parses.
func (c Config) WithDefaults() Config {
	if c.Database == "" {
		if opts, err := ch.ParseDSN(c.DSN); err == nil && opts.Auth.Database != "" {
			c.Database = opts.Auth.Database
		} else {
			c.Database = DefaultDatabase
		}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	return c
}

// identifier is what Validate accepts as a database name. Stricter than
// ClickHouse, so the name can be spliced into DDL without escaping rules.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// clusterName is what Validate accepts as a cluster name: an identifier,
// also allowing the hyphens common in <remote_servers> names. It is
// spliced backquoted into ON CLUSTER and quoted into Distributed(…).
var clusterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,127}$`)

// Validate reports every problem in c, each naming its key. Call it on the
// result of WithDefaults; zero durations are then already defaulted, and a
// zero left here is a mistake.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("clickhouse.dsn is required, e.g. clickhouse://127.0.0.1:9000/auditpipe"))
	} else if err := validateDSN(c.DSN); err != nil {
		errs = append(errs, err)
	}
	if !identifier.MatchString(c.Database) {
		errs = append(errs, fmt.Errorf("clickhouse.database %q must be letters, digits and underscores, not starting with a digit", c.Database))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"clickhouse.dial_timeout", c.DialTimeout},
		{"clickhouse.read_timeout", c.ReadTimeout},
		{"clickhouse.write_timeout", c.WriteTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", d.key, d.v))
		}
	}
	if c.Cluster != "" && !clusterName.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("clickhouse.cluster %q must be letters, digits, underscores and hyphens, not starting with a digit or hyphen", c.Cluster))
	}
	if c.MaxOpenConns <= 0 {
		errs = append(errs, fmt.Errorf("clickhouse.max_open_conns must be positive, got %d", c.MaxOpenConns))
	}
	for table, days := range c.Retention {
		if table != EventsTable && table != FindingsTable && !slices.Contains(RollupTables, table) {
			errs = append(errs, fmt.Errorf("clickhouse.retention names unknown table %q", table))
		}
		if days < 0 {
			errs = append(errs, fmt.Errorf("clickhouse.retention.%s must not be negative, got %d", table, days))
		}
	}
	return errors.Join(errs...)
}

// validateDSN checks that dsn parses and uses the native protocol. Errors
// never quote the DSN itself: it may carry a password.
func validateDSN(dsn string) error {
	scheme, _, ok := strings.Cut(dsn, "://")
	if !ok {
		return errors.New("clickhouse.dsn must be a URL such as clickhouse://host:9000/db")
	}
	switch strings.ToLower(scheme) {
	case "clickhouse", "tcp":
	case "http", "https":
		return fmt.Errorf("clickhouse.dsn uses %s://: only the native protocol (clickhouse://host:9000) works with ClickHouse 18.16", scheme)
	default:
		return fmt.Errorf("clickhouse.dsn has unsupported scheme %q: want clickhouse://", scheme)
	}
	// clickhouse-go redacts the password from its parse errors.
	if _, err := ch.ParseDSN(dsn); err != nil {
		return fmt.Errorf("clickhouse.dsn does not parse: %w", err)
	}
	return nil
}
