package kafka

import (
	"context"
	"errors"
	"fmt"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// EnsureTopic creates topic with the given number of partitions unless it
// exists. An existing topic is left as it is, whatever its partition count:
// adding partitions would move keys to other partitions and break per-key
// order, which is an operator's decision. The replication factor is the
// broker's default.
func EnsureTopic(ctx context.Context, brokers []string, topic string, partitions int) error {
	if err := errors.Join(validateBrokers(brokers), validateTopic(topic)); err != nil {
		return pipeline.Permanent(fmt.Errorf("ensuring topic: %w", err))
	}
	if partitions < 1 {
		return pipeline.Permanent(fmt.Errorf("ensuring topic %s: partitions must be at least 1, got %d", topic, partitions))
	}
	transport := &kafkago.Transport{DialTimeout: dialTimeout, ClientID: clientID, MetadataTopics: []string{topic}}
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: transport}

	err := ping(ctx, client.Addr, topic)
	if err == nil {
		return nil
	}
	if !errors.Is(err, kafkago.UnknownTopicOrPartition) {
		return fmt.Errorf("ensuring topic %s: %w", topic, err)
	}
	resp, err := client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic:             topic,
		NumPartitions:     partitions,
		ReplicationFactor: -1,
	}}})
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	// Another instance starting at the same time may have won the race.
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

// Retryable reports whether an EnsureTopic error may pass on its own: no
// broker answers, a request timed out, a controller is moving. The errors
// the brokers give for good (not authorized, a policy forbids the topic,
// an invalid partition count) and invalid arguments are not.
func Retryable(err error) bool {
	if err == nil || pipeline.IsPermanent(err) {
		return false
	}
	var kerr kafkago.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary()
	}
	return true
}
