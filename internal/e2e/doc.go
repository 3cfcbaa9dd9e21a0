// Package e2e holds end-to-end tests of the whole pipeline with real parts:
// kube-apiserver's own audit webhook client, ingest, a Kafka-protocol broker
// (in process, or KAFKA_BROKERS), detect and a real ClickHouse server.
package e2e
