package config

import "log/slog"

// redactedText replaces a secret wherever it could be printed.
const redactedText = "<secret>"

// Secret holds a credential read from a flag, a variable or a file (a Slack
// webhook URL, a fingerprint key). Every way of printing it (fmt, JSON,
// slog) shows "<secret>"; only Reveal returns it. Keep it in an exported
// field of a config struct: fmt prints unexported fields without calling
// their String method.
type Secret string

// String redacts the secret for fmt's %s and %v.
func (s Secret) String() string { return redactedText }

// GoString redacts the secret for fmt's %#v.
func (s Secret) GoString() string { return redactedText }

// MarshalJSON redacts the secret, so a config dump cannot leak it.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redactedText + `"`), nil }

// LogValue redacts the secret in structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redactedText) }

// Reveal returns the credential itself, for the one place that uses it.
func (s Secret) Reveal() string { return string(s) }
