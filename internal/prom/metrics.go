// Package prom holds what every package that exports Prometheus metrics
// needs: registering a collector so that two instances of a component on
// one registry (two producers, TLS and the authenticator) share the series
// instead of failing.
package prom

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns the collector to use: c, or the
// equal collector already registered. A nil reg registers nothing, so
// components work without metrics.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("registering metric: %w", err)
}
