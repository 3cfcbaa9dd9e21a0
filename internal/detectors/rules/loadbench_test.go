package rules

import (
	"context"
	"testing"
)

// BenchmarkLoadRuntimeDefault is what detect scan and detect run spend
// loading the shipped pack before the first event.
func BenchmarkLoadRuntimeDefault(b *testing.B) {
	for b.Loop() {
		if _, err := LoadRuntimeWithDefault(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
