// Package promreg registers package-level Prometheus collectors in the
// registry Caddy makes for each config load. The collectors outlive
// reloads, so every config exports the same series; registering one that
// the registry already holds is not an error.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register adds collectors to registry, ignoring those already there.
func Register(registry prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := registry.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
