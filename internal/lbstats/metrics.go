package lbstats

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the counters at scrape time, so that the metrics and
// the dashboard read the same numbers and the request path pays for one
// set of them.
var Collector prometheus.Collector = collector{}

var (
	requestsDesc = prometheus.NewDesc("caddylb_upstream_requests_total",
		"Requests (connections, for pass-through) this node sent to an upstream of a sticky policy, counted when they end.",
		[]string{"upstream"}, nil)
	errorsDesc = prometheus.NewDesc("caddylb_upstream_errors_total",
		"Of those, the ones that failed: no response (dial or read failure, timeout, client gone first), a 5xx, or a try that was retried.",
		[]string{"upstream"}, nil)
	boundDesc = prometheus.NewDesc("caddylb_upstream_sessions_bound_total",
		"Sessions this node bound to an upstream: new sessions and rebound ones.",
		[]string{"upstream"}, nil)
	policyDesc = prometheus.NewDesc("caddylb_sticky_policy_decisions_total",
		"Decisions of each sticky policy, named by its store and namespace, by outcome.",
		[]string{"policy", "outcome"}, nil)
)

type collector struct{}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- errorsDesc
	ch <- boundDesc
	ch <- policyDesc
}

func (collector) Collect(ch chan<- prometheus.Metric) {
	Settle()
	EachUpstream(func(addr string, c *Upstream) {
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(c.Requests.Load()), addr)
		ch <- prometheus.MustNewConstMetric(errorsDesc, prometheus.CounterValue, float64(c.Errors.Load()), addr)
		ch <- prometheus.MustNewConstMetric(boundDesc, prometheus.CounterValue, float64(c.Bound.Load()), addr)
	})
	EachPolicy(func(name string, o *Outcomes) {
		for outcome, n := range o.Snapshot() {
			ch <- prometheus.MustNewConstMetric(policyDesc, prometheus.CounterValue, float64(n), name, outcome)
		}
	})
}
