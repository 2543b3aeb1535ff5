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
