package kafka_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when any goroutine outlives them,
// including those of tests that do not call verifyNoLeaks.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
