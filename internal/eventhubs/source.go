package eventhubs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// KafkaPort is the port of Event Hubs' Kafka endpoint.
const KafkaPort = "9093"

// ConnectionStringUser is the SASL PLAIN user name Event Hubs expects with a
// connection string as the password.
const ConnectionStringUser = "$ConnectionString"

// DefaultConsumerGroup is the Kafka group id ingest reads the hub as. Event
// Hubs creates a Kafka consumer group on first use; it is not one of the
// hub's AMQP consumer groups ($Default), so other readers are not disturbed.
const DefaultConsumerGroup = "auditpipe-ingest"

// sourceQueueCapacity is how many fetched messages the reader holds ahead:
// with bodies of up to 1 MB (Standard tier), 16 keep at most 16 MB
// buffered, and a batch of DefaultMaxBatchMessages still fills quickly.
const sourceQueueCapacity = 16

// sourceMaxFetchBytes bounds a fetch per partition: above Event Hubs'
// largest event (20 MB on Dedicated), so no message can stall the reader.
const sourceMaxFetchBytes = 24 << 20

// ConnectionString is an Event Hubs connection string
// (Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=<hub>]).
// It formats as a redacted placeholder, so a stray %v cannot log the key.
type ConnectionString string

// String hides the secret.
func (ConnectionString) String() string { return "<redacted connection string>" }

// GoString hides the secret from %#v.
func (ConnectionString) GoString() string { return `"<redacted connection string>"` }

// Parse returns the namespace's host (from Endpoint) and the event hub
// (EntityPath, "" when the string is a namespace's). Errors name the part
// that is wrong, never the string.
func (c ConnectionString) Parse() (host, entityPath string, err error) {
	var endpoint string
	var haveKey bool
	for _, part := range strings.Split(string(c), ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "endpoint":
			endpoint = v
		case "entitypath":
			entityPath = v
		case "sharedaccesskey", "sharedaccesssignature":
			haveKey = v != ""
		}
	}
	if endpoint == "" {
		return "", "", errors.New("connection string has no Endpoint=sb://<namespace>.servicebus.windows.net/")
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return "", "", errors.New("connection string's Endpoint is not a URL like sb://<namespace>.servicebus.windows.net/")
	}
	if !haveKey {
		return "", "", errors.New("connection string has no SharedAccessKey (copy primaryConnectionString of a policy with Listen)")
	}
	return u.Hostname(), entityPath, nil
}

// ReadConnectionString reads a connection string from a file (surrounding
// whitespace, such as az's trailing newline, dropped).
func ReadConnectionString(path string) (ConnectionString, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading connection string file: %w", err)
	}
	s := ConnectionString(strings.TrimSpace(string(b)))
	if _, _, err := s.Parse(); err != nil {
		return "", fmt.Errorf("connection string file %s: %w", path, err)
	}
	return s, nil
}

// SourceConfig says how to reach the event hub's Kafka endpoint.
type SourceConfig struct {
	// Bootstrap is host:port; empty takes <Endpoint host>:9093 from the
	// connection string.
	Bootstrap string
	// EventHub is the event hub (the Kafka topic); empty takes the
	// connection string's EntityPath.
	EventHub string
	// ConsumerGroup is the Kafka group id whose offsets are committed.
	ConsumerGroup string
	// ConnectionString authenticates (SASL PLAIN, user $ConnectionString).
	// Empty connects without SASL, for a plain Kafka in tests.
	ConnectionString ConnectionString
	// CAFile holds PEM CAs to trust instead of the system's.
	CAFile string
	// ServerName overrides the name the broker's certificate must carry.
	ServerName string
	// Plaintext connects without TLS: only for a local Kafka standing in
	// for Event Hubs, which refuses plaintext.
	Plaintext bool
}

// WithDefaults fills Bootstrap, EventHub and ConsumerGroup from the
// connection string and the defaults.
func (c SourceConfig) WithDefaults() SourceConfig {
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = DefaultConsumerGroup
	}
	if c.ConnectionString != "" {
		if host, hub, err := c.ConnectionString.Parse(); err == nil {
			if c.Bootstrap == "" {
				c.Bootstrap = net.JoinHostPort(host, KafkaPort)
			}
			if c.EventHub == "" {
				c.EventHub = hub
			}
		}
	}
	return c
}

// Validate reports every problem in c (after defaults), each naming its flag.
func (c SourceConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.ConnectionString != "" {
		if _, _, err := c.ConnectionString.Parse(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Bootstrap == "" {
		errs = append(errs, errors.New("no bootstrap address: pass --bootstrap <namespace>.servicebus.windows.net:9093 or a connection string file"))
	} else if _, _, err := net.SplitHostPort(c.Bootstrap); err != nil {
		errs = append(errs, fmt.Errorf("bootstrap %q: want host:port: %w", c.Bootstrap, err))
	}
	if c.EventHub == "" {
		errs = append(errs, errors.New("no event hub: pass --event-hub NAME (or use a connection string with EntityPath)"))
	}
	if c.Plaintext && (c.CAFile != "" || c.ServerName != "") {
		errs = append(errs, errors.New("--ca-file and --tls-server-name need TLS: drop --plaintext"))
	}
	return errors.Join(errs...)
}

// NewSource returns the project's Kafka consumer reading the event hub
// through its Kafka endpoint: TLS, SASL PLAIN with the connection string,
// a small read-ahead queue. It does not contact the endpoint; the first
// Fetch does, and fails for good (pipeline.Permanent) on a refused password
// or an untrusted certificate.
func NewSource(cfg SourceConfig, log *slog.Logger, reg prometheus.Registerer) (*kafka.Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	kcfg := kafka.ConsumerConfig{
		Brokers:       []string{cfg.Bootstrap},
		Topic:         cfg.EventHub,
		GroupID:       cfg.ConsumerGroup,
		MaxBytes:      sourceMaxFetchBytes,
		QueueCapacity: sourceQueueCapacity,
	}
	if !cfg.Plaintext {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		kcfg.TLS = tc
	}
	if cfg.ConnectionString != "" {
		kcfg.SASL = plain.Mechanism{Username: ConnectionStringUser, Password: string(cfg.ConnectionString)}
	}
	return kafka.NewConsumer(kcfg, log, reg)
}

func tlsConfig(cfg SourceConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(cfg.Bootstrap)
		tc.ServerName = host
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
