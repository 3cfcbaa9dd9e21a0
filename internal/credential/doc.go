// Package credential reads Kubernetes credentials as auditpipe judges them:
// JSON Web Tokens (shape, header, claims, signature verified against a
// JWKS) and the records ingest's redactor writes in place of a credential
// (JWTRecord, SecretRecord), with the parse side detectors read them back
// by (ParseJWTRecord).
//
// It is its own package so that the redactor (internal/redact), which
// writes the records, and the detectors, which read them, share one format
// and one JWT search (FindJWTs) without detectors depending on the
// redactor.
package credential
