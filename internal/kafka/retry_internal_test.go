package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// errRefused is what kafka-go returns while no broker listens.
var errRefused = fmt.Errorf("failed to dial: failed to open connection to 127.0.0.1:9092: %w",
	&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})

func TestFatalFetchError(t *testing.T) {
	f := func(err error, want bool) {
		t.Helper()
		if got := fatalFetchError(err); got != want {
			t.Errorf("fatalFetchError(%v) = %v, want %v", err, got, want)
		}
	}
	// A broker outage, a rolling restart, a rebalance: wait and retry.
	f(errRefused, false)
	f(io.ErrUnexpectedEOF, false)
	f(fmt.Errorf("joining group: %w", kafkago.RebalanceInProgress), false)
	f(kafkago.NotCoordinatorForGroup, false)
	f(kafkago.LeaderNotAvailable, false)
	f(kafkago.UnknownTopicOrPartition, false)
	// Who we are or what we ask for is refused: no retry helps.
	f(fmt.Errorf("authenticating: %w", kafkago.SASLAuthenticationFailed), true)
	f(kafkago.TopicAuthorizationFailed, true)
	f(kafkago.GroupAuthorizationFailed, true)
	f(kafkago.UnsupportedVersion, true)
}

func TestRetryable(t *testing.T) {
	f := func(err error, want bool) {
		t.Helper()
		if got := Retryable(err); got != want {
			t.Errorf("Retryable(%v) = %v, want %v", err, got, want)
		}
	}
	f(nil, false)
	f(errRefused, true)
	f(context.DeadlineExceeded, true)
	f(fmt.Errorf("creating topic: %w", kafkago.RequestTimedOut), true)
	f(fmt.Errorf("creating topic: %w", kafkago.NotController), true)
	f(fmt.Errorf("creating topic: %w", kafkago.TopicAuthorizationFailed), false)
	f(fmt.Errorf("creating topic: %w", kafkago.ClusterAuthorizationFailed), false)
	f(fmt.Errorf("creating topic: %w", kafkago.PolicyViolation), false)
	f(fmt.Errorf("creating topic: %w", kafkago.InvalidPartitionNumber), false)
	f(pipeline.Permanent(errors.New("partitions must be at least 1")), false)
}

// TestEnsureTopicInvalidIsPermanent: arguments no retry fixes end start-up.
func TestEnsureTopicInvalidIsPermanent(t *testing.T) {
	if err := EnsureTopic(context.Background(), []string{"127.0.0.1:1"}, "audit-events", 0); Retryable(err) {
		t.Errorf("EnsureTopic with 0 partitions: %v is retryable", err)
	}
}
