package affinity

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddylb/caddylb/internal/lbstats"
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

// outcomeNames lists the outcomes; a policy's lbstats.Outcomes index them.
var outcomeNames = []string{outcomeHit, outcomeNew, outcomeNone, outcomeRebound, outcomeStrictReject, outcomeStoreError, outcomeLearned, outcomeNoUpstream}

// decisionCounter is one outcome's metric series and its index in a
// policy's own counts.
type decisionCounter struct {
	series prometheus.Counter
	index  int
}

var decisionCounters = map[string]decisionCounter{}

func init() {
	for i, o := range outcomeNames {
		decisionCounters[o] = decisionCounter{decisions.WithLabelValues(o), i}
	}
}

// countDecision counts outcome in the metrics and in the policy's own
// counts, which the dashboard reads per policy.
func (s *Sticky) countDecision(outcome string) {
	c := decisionCounters[outcome]
	c.series.Inc()
	s.outcomes.Add(c.index)
}

func registerMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, decisions, lbstats.Collector)
}
