package prom

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterSharesAndRejects(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "auditpipe_test_total", Help: "test"}
	first, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil || second != first {
		t.Fatalf("second registration: %v, shared=%v", err, second == first)
	}
	// Same name, different help: a real conflict, not a share.
	if _, err := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "auditpipe_test_total", Help: "other"})); err == nil {
		t.Fatal("a conflicting collector was accepted")
	}
	if c, err := Register(nil, prometheus.NewCounter(opts)); err != nil || c == nil {
		t.Fatalf("nil registerer: %v", err)
	}
}
