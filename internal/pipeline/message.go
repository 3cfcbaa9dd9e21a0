package pipeline

import "context"

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

// MessageKey builds the partition key for an event of cluster.
func MessageKey(cluster string, ev *Event) []byte {
	sub := ev.Subject()
	key := make([]byte, 0, len(cluster)+1+len(sub))
	key = append(key, cluster...)
	key = append(key, '/')
	key = append(key, sub...)
	return key
}
