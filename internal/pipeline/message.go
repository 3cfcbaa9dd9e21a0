package pipeline

import (
	"context"
	"fmt"
	"regexp"
)

// Message is one audit event on its way from ingest to detect: the unit
// produced to Kafka or appended to the spool.
type Message struct {
	// Key is "<cluster>/<subject>"; see Event.Subject.
	Key []byte
	// Value is the event's JSON, one line.
	Value []byte
	// Cluster names the cluster the event came from.
	Cluster string
}

// Record is a Message as a Source delivered it, with the position needed to
// commit it.
type Record struct {
	Message
	Partition int
	Offset    int64
}

// Producer makes messages durable. Produce returns only once every message
// is acknowledged (nil) or at least one may not be (an error, retryable
// unless marked Permanent).
type Producer interface {
	Produce(ctx context.Context, msgs []Message) error
}

// Source delivers records in order per partition and commits them once they
// are processed. Fetch blocks until a record is available or ctx is done.
// Commit marks the given records (and everything before them in their
// partitions) as processed.
type Source interface {
	Fetch(ctx context.Context) (Record, error)
	Commit(ctx context.Context, recs []Record) error
}

// Batch is what detect writes per flush: the events and the findings about
// them.
type Batch struct {
	Events   []*Event
	Findings []Finding
}

// Sink stores a batch durably; detect commits offsets only after Write
// returned nil.
type Sink interface {
	Write(ctx context.Context, b Batch) error
}

// clusterName keeps cluster names to what fits a Kafka header, a ClickHouse
// filter and a Grafana variable without quoting surprises; no '/', so the
// partition key's first '/' ends the cluster.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidateCluster reports whether name can be used as a cluster name.
func ValidateCluster(name string) error {
	if !clusterName.MatchString(name) {
		return fmt.Errorf("invalid cluster name %q: use 1-63 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// MessageKey builds the partition key for an event of cluster:
// "<cluster>/<subject>", so that one credential's events stay in order on
// one partition. KeyCluster reads the cluster back.
func MessageKey(cluster string, ev *Event) []byte {
	sub := ev.Subject()
	key := make([]byte, 0, len(cluster)+1+len(sub))
	key = append(key, cluster...)
	key = append(key, '/')
	key = append(key, sub...)
	return key
}

// KeyCluster returns the cluster part of a key MessageKey built, for
// records that carry no cluster header; ok is false for any other key.
func KeyCluster(key []byte) (cluster string, ok bool) {
	for i, c := range key {
		if c == '/' {
			if i > 0 {
				return string(key[:i]), true
			}
			break
		}
	}
	return "", false
}
