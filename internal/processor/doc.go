// Package processor is detect's engine: it fetches records from a
// pipeline.Source, decodes them into events, hands each to the detectors,
// writes the batch of events and findings to a pipeline.Sink, and only
// then commits the records' offsets. Around that loop it keeps the
// highest contiguous offset per partition (offsets.go), retries what the
// sink refuses for now, dead-letters what can never be stored, and
// exports the auditpipe_detect_* metrics the dashboards read.
package processor
