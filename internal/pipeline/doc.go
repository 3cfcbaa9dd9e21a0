// Package pipeline holds the types every stage of auditpipe shares: the
// decoded audit event, the transport message, the finding, and the error
// classification that decides whether a failure is retried or skipped.
//
// It deliberately has no dependency on Kafka, ClickHouse or HTTP: the stages
// that wrap those systems depend on pipeline, never the other way round.
package pipeline
