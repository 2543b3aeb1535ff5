package affinity

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
)

// perConfig counts sticky policies per store and namespace in one config
// load, so that two policies that would read each other's sessions are
// reported. Caddy gives every config load its own metrics registry, which
// makes it a key for "this config".
var perConfig = struct {
	sync.Mutex
	n map[configKey]int
}{n: map[configKey]int{}}

type configKey struct {
	config *prometheus.Registry
	what   string
}

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

// routeScope is one list of routes: those of a server (parent is then the
// http app), or those of a subroute handler such as a Caddyfile site
// block or a handle block (parent is that handler). A handler in a scope
// runs for the requests of every route after it in that scope and in the
// scopes nested there.
type routeScope struct {
	server any          // the *caddyhttp.Server being provisioned; nil outside one
	parent caddy.Module // the module whose route list holds the handler
}

// learnScopes are the route lists holding a provisioned sticky_learn
// handler. Caddy provisions the handlers of a route list in order, the
// same order in which they run, so a sticky policy finds here exactly the
// sticky_learn handlers that run before its reverse_proxy: the check
// depends on where each handler sits, not on which server of the config
// happens to be provisioned first.
var learnScopes = struct {
	sync.Mutex
	n map[routeScope]int
}{n: map[routeScope]int{}}

// scopeOf is the route list of the module ctx is provisioning.
func scopeOf(ctx caddy.Context) routeScope {
	chain := ctx.Modules() // the modules being provisioned, this one last
	s := routeScope{server: ctx.Value(caddyhttp.ServerCtxKey)}
	if len(chain) >= 2 {
		s.parent = chain[len(chain)-2]
	}
	return s
}

func addLearnScope(s routeScope) {
	learnScopes.Lock()
	defer learnScopes.Unlock()
	learnScopes.n[s]++
}

func removeLearnScope(s routeScope) {
	learnScopes.Lock()
	defer learnScopes.Unlock()
	if learnScopes.n[s]--; learnScopes.n[s] <= 0 {
		delete(learnScopes.n, s)
	}
}

// learnsAhead reports whether a sticky_learn handler sits ahead of the
// reverse_proxy whose selection policy ctx is provisioning: in the route
// list that holds the reverse_proxy or in one enclosing it.
func learnsAhead(ctx caddy.Context) bool {
	chain := ctx.Modules() // ..., the enclosing handlers, reverse_proxy, this policy
	server := ctx.Value(caddyhttp.ServerCtxKey)
	enclosing := []caddy.Module{nil} // modules provisioned directly, outside any (tests)
	if len(chain) > 2 {
		enclosing = chain[:len(chain)-2]
	}
	learnScopes.Lock()
	defer learnScopes.Unlock()
	for _, m := range enclosing {
		if learnScopes.n[routeScope{server, m}] > 0 {
			return true
		}
	}
	return false
}

// siteName names, for error messages, the site whose routes ctx is
// provisioning: the hosts of the server's route being provisioned (a
// Caddyfile site block), else the server's listen addresses.
func siteName(ctx caddy.Context) string {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok {
		return "this config"
	}
	for _, route := range srv.Routes {
		// Routes before the one being provisioned are done (their raw
		// handlers are released); the first one still holding them is it.
		if route.HandlersRaw == nil {
			continue
		}
		if hosts := routeHosts(route); len(hosts) > 0 {
			return "site " + strings.Join(hosts, ", ")
		}
		break
	}
	return fmt.Sprintf("the site on %s", strings.Join(srv.Listen, ", "))
}

func routeHosts(route caddyhttp.Route) []string {
	var hosts []string
	for _, set := range route.MatcherSets {
		for _, m := range set {
			switch h := m.(type) {
			case *caddyhttp.MatchHost:
				hosts = append(hosts, *h...)
			case caddyhttp.MatchHost:
				hosts = append(hosts, h...)
			}
		}
	}
	return slices.Compact(hosts)
}
