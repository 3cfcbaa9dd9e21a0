package kafka

import (
	"context"
	"errors"
	"io"
	"net"

	kafkago "github.com/segmentio/kafka-go"
)

// Error reasons, the label values of the error counters. Kept few and fixed so
// the series stay bounded.
const (
	reasonTimeout  = "timeout"
	reasonCanceled = "canceled"
	reasonTooLarge = "too_large"
	reasonBroker   = "broker"
	reasonNetwork  = "network"
	reasonClosed   = "closed"
	reasonOther    = "other"
)

// isPermanentKafkaError reports broker answers about the message itself,
// which no retry changes. Everything else, including authorization and
// configuration errors, is retryable: an operator can fix those, and the
// apiserver keeps the events buffered meanwhile, whereas a permanent error
// makes ingest refuse the events for good.
func isPermanentKafkaError(err error) bool {
	var kerr kafkago.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr {
	case kafkago.MessageSizeTooLarge, kafkago.RecordListTooLarge, kafkago.InvalidRecord:
		return true
	}
	return false
}

// reason classifies err for the error counters.
func reason(err error) string {
	var kerr kafkago.Error
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return reasonTimeout
	case errors.Is(err, context.Canceled):
		return reasonCanceled
	case errors.As(err, new(kafkago.MessageTooLargeError)), errors.Is(err, kafkago.MessageSizeTooLarge), errors.Is(err, kafkago.RecordListTooLarge):
		return reasonTooLarge
	case errors.Is(err, io.ErrClosedPipe), errors.Is(err, net.ErrClosed):
		return reasonClosed
	case errors.As(err, &kerr):
		return reasonBroker
	case errors.As(err, &nerr), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		if nerr != nil && nerr.Timeout() {
			return reasonTimeout
		}
		return reasonNetwork
	}
	return reasonOther
}
