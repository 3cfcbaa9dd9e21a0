// Package config holds what every configuration of auditpipe shares: the
// Duration type, written as "30s" in YAML and JSON, and the Secret type,
// a credential that prints redacted. Each component's config struct lives
// with the component and has WithDefaults and Validate.
package config

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("30s",
// "10m") in YAML and JSON, rather than as nanoseconds.
type Duration time.Duration

// UnmarshalJSON reads a Go duration string. YAML goes through it too: the
// config loaders convert YAML to JSON before decoding strictly.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("duration must be a string such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
