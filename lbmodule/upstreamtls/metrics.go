package upstreamtls

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddylb/caddylb/internal/promreg"
)

// handshakeFailures counts refused or failed TLS handshakes per upstream
// (its dial address) and reason. It is package-level so that each
// config's registry (Caddy makes one per load) exports one series.
var handshakeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddylb",
	Subsystem: "upstream_tls",
	Name:      "handshake_failures_total",
	Help:      "TLS handshakes to upstreams that failed, by upstream and reason: unknown_authority, name_mismatch, expired, invalid_certificate, pin_mismatch, no_certificate, timeout, handshake.",
}, []string{"upstream", "reason"})

func registerMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, handshakeFailures)
}
