// Package auditjson decodes audit.k8s.io events and EventLists (v1 and
// v1beta1) with the project's one JSON scanner, internal/jsonscan, into the
// model's pipeline.Event: single pass, no reflection, linear in the input,
// nesting bounded, every byte assumed hostile. It also splits an EventList
// into its items without decoding them (what ingest forwards), decodes
// request and response bodies on first use, and names why an event did
// not decode (DecodeReason).
//
// It lives here, beside the scanner, rather than in internal/pipeline so
// that the model imports nothing internal and a decoder change rebuilds
// only what decodes. FuzzDecodeEquivalence, FuzzSplitEquivalence and
// FuzzDecodeBody hold it equal to encoding/json.
package auditjson
