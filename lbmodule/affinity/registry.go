package affinity

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// perConfig counts things provisioned in one config load: sticky_learn
// handlers, so that an app_cookie policy can refuse a config without one,
// and sticky policies per store and namespace, so that two policies that
// would read each other's sessions are reported. Caddy gives every config
// load its own metrics registry, which makes it a key for "this config".
var perConfig = struct {
	sync.Mutex
	n map[configKey]int
}{n: map[configKey]int{}}

type configKey struct {
	config *prometheus.Registry
	what   string
}

// learnHandlerKey is what sticky_learn handlers are counted under.
const learnHandlerKey = "sticky_learn"

// claim counts one more of what in config and returns how many there were.
func claim(config *prometheus.Registry, what string) int {
	perConfig.Lock()
	defer perConfig.Unlock()
	k := configKey{config, what}
	perConfig.n[k]++
	return perConfig.n[k] - 1
}

// release undoes one claim.
func release(config *prometheus.Registry, what string) {
	perConfig.Lock()
	defer perConfig.Unlock()
	k := configKey{config, what}
	if perConfig.n[k]--; perConfig.n[k] <= 0 {
		delete(perConfig.n, k)
	}
}

// claimed reports how many of what config holds.
func claimed(config *prometheus.Registry, what string) int {
	perConfig.Lock()
	defer perConfig.Unlock()
	return perConfig.n[configKey{config, what}]
}
