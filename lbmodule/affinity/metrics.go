package affinity

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddylb/caddylb/internal/promreg"
)

// decisions counts every selection by outcome. It is package-level so that
// each config's registry (Caddy makes one per load) exports one series.
var decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddylb",
	Subsystem: "sticky",
	Name:      "decisions_total",
	Help:      "Sticky load-balancing decisions by outcome: hit, new, none, rebound, strict_reject, store_error, learned, no_upstream.",
}, []string{"outcome"})

var decisionCounters = map[string]prometheus.Counter{}

func init() {
	for _, o := range []string{outcomeHit, outcomeNew, outcomeNone, outcomeRebound, outcomeStrictReject, outcomeStoreError, outcomeLearned, outcomeNoUpstream} {
		decisionCounters[o] = decisions.WithLabelValues(o)
	}
}

func countDecision(outcome string) {
	decisionCounters[outcome].Inc()
}

func registerMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, decisions)
}
