package sessionstore

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddylb/caddylb/internal/promreg"
)

// storeMetrics are package-level so that every config's registry (Caddy
// makes a new one per config load) exports the same series across reloads.
var storeMetrics = struct {
	latency   *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	evictions *prometheus.CounterVec
	stale     *prometheus.CounterVec
	rewritten *prometheus.CounterVec
}{
	latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddylb",
		Subsystem: "session_store",
		Name:      "request_duration_seconds",
		Help:      "Latency of calls to a network session store, by store and operation.",
		Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"store", "op"}),
	errors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb",
		Subsystem: "session_store",
		Name:      "errors_total",
		Help:      "Failed or refused (breaker open) calls to a session store, by store and operation.",
	}, []string{"store", "op"}),
	evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb",
		Subsystem: "session_store",
		Name:      "evictions_total",
		Help:      "Bindings a memory session store evicted, least recently used first, to stay within max_bindings.",
	}, []string{"store"}),
	stale: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb",
		Subsystem: "session_store",
		Name:      "stale_served_total",
		Help:      "Bindings served from this node's last known copy because the store could not be asked.",
	}, []string{"store"}),
	rewritten: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddylb",
		Subsystem: "session_store",
		Name:      "rewritten_total",
		Help:      "Bindings this node wrote to Redis again: reason retry (a write that had failed) or refill (the store lost its data).",
	}, []string{"reason"}),
}

// RegisterMetrics adds the store metrics to registry; registering twice is fine.
func RegisterMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, storeMetrics.latency, storeMetrics.errors, storeMetrics.evictions,
		storeMetrics.stale, storeMetrics.rewritten)
}

// CallStats are the totals of one store's calls since the process began,
// as its metrics count them: the dashboard turns them into rates.
type CallStats struct {
	Calls      int64   // calls that returned (request_duration_seconds count)
	Errors     int64   // failed or refused calls (errors_total)
	LatencySum float64 // seconds spent in the calls that returned
	Stale      int64   // bindings served from this node's copy (stale_served_total)
}

// AllCallStats reads the metrics of every store called so far, by name.
func AllCallStats() map[string]CallStats {
	out := map[string]CallStats{}
	for _, s := range promreg.Read(storeMetrics.latency) {
		st := out[s.Labels["store"]]
		st.Calls += int64(s.Value)
		st.LatencySum += s.Sum
		out[s.Labels["store"]] = st
	}
	for _, s := range promreg.Read(storeMetrics.errors) {
		st := out[s.Labels["store"]]
		st.Errors += int64(s.Value)
		out[s.Labels["store"]] = st
	}
	for _, s := range promreg.Read(storeMetrics.stale) {
		st := out[s.Labels["store"]]
		st.Stale += int64(s.Value)
		out[s.Labels["store"]] = st
	}
	return out
}
