package affinity

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// policies are the provisioned sticky policies, for the admin API.
var policies policySet

type policySet struct {
	mu  sync.Mutex
	set map[*Sticky]struct{}
}

func (p *policySet) add(s *Sticky) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		p.set = make(map[*Sticky]struct{})
	}
	p.set[s] = struct{}{}
}

func (p *policySet) remove(s *Sticky) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.set, s)
}

// Policies returns the sticky policies of the running configs. During a
// reload it may briefly hold the old config's policies too.
func Policies() []*Sticky {
	policies.mu.Lock()
	defer policies.mu.Unlock()
	out := make([]*Sticky, 0, len(policies.set))
	for s := range policies.set {
		out = append(out, s)
	}
	return out
}

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
