package affinity

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// learnHandlers counts the sticky_learn handlers provisioned per config
// load, so that an app_cookie policy can refuse a config that has none.
// Caddy gives every config load its own metrics registry, which makes it
// a key for "this config".
var learnHandlers = struct {
	sync.Mutex
	n map[*prometheus.Registry]int
}{n: map[*prometheus.Registry]int{}}

func addLearnHandler(ctx caddy.Context) {
	learnHandlers.Lock()
	learnHandlers.n[ctx.GetMetricsRegistry()]++
	learnHandlers.Unlock()
}

func removeLearnHandler(reg *prometheus.Registry) {
	learnHandlers.Lock()
	if learnHandlers.n[reg]--; learnHandlers.n[reg] <= 0 {
		delete(learnHandlers.n, reg)
	}
	learnHandlers.Unlock()
}

func learnHandlerProvisioned(ctx caddy.Context) bool {
	learnHandlers.Lock()
	defer learnHandlers.Unlock()
	return learnHandlers.n[ctx.GetMetricsRegistry()] > 0
}

// namespaces counts, per config load, the sticky policies using each store
// and namespace, so that two policies that would read each other's
// sessions are reported.
var namespaces = struct {
	sync.Mutex
	n map[*prometheus.Registry]map[string]int
}{n: map[*prometheus.Registry]map[string]int{}}

// claimNamespace records one policy's store and namespace for this config
// load and returns how many policies used it before.
func claimNamespace(reg *prometheus.Registry, id string) int {
	namespaces.Lock()
	defer namespaces.Unlock()
	if namespaces.n[reg] == nil {
		namespaces.n[reg] = map[string]int{}
	}
	namespaces.n[reg][id]++
	return namespaces.n[reg][id] - 1
}

func releaseNamespace(reg *prometheus.Registry, id string) {
	namespaces.Lock()
	defer namespaces.Unlock()
	if namespaces.n[reg][id]--; namespaces.n[reg][id] <= 0 {
		delete(namespaces.n[reg], id)
	}
	if len(namespaces.n[reg]) == 0 {
		delete(namespaces.n, reg)
	}
}
