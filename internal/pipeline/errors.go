package pipeline

import "errors"

// permanentError marks a failure that retrying cannot fix: malformed input, an
// oversized record, a rejected configuration. Everything not marked permanent
// is treated as retryable, because losing data to a misclassified transient
// error is worse than retrying a hopeless one a few times.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying. It returns nil for a nil error.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
