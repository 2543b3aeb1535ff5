package affinity

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/caddylb/caddylb/internal/perconfig"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// claims counts sticky policies per store and namespace in one config
// load, so that two policies that would read each other's sessions are
// reported; they go with the config.
var claims perconfig.Map[map[string]int]

// claim counts one more of what in the config ctx belongs to and returns
// how many there were.
func claim(ctx context.Context, what string) int {
	var n int
	claims.With(ctx, func() map[string]int { return map[string]int{} }, func(m map[string]int) {
		n = m[what]
		m[what]++
	})
	return n
}

// routeScope is one list of routes: those of a server (parent is then the
// http app, and list says which of the server's lists: its routes, its
// error routes or a named route), or those of a subroute handler such as
// a Caddyfile site block or a handle block (parent is that handler). A
// handler in a scope runs for the requests of every route after it in
// that scope and in the scopes nested there.
type routeScope struct {
	server any          // the *caddyhttp.Server being provisioned; nil outside one
	parent caddy.Module // the module whose route list holds the handler
	list   string       // with the http app as parent: "routes", "errors" or "named"
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
	var parent caddy.Module
	if len(chain) >= 2 {
		parent = chain[len(chain)-2]
	}
	return scopeIn(ctx, parent)
}

// scopeIn is the route list that parent, a module enclosing the one ctx
// is provisioning, holds it in.
func scopeIn(ctx caddy.Context, parent caddy.Module) routeScope {
	s := routeScope{server: ctx.Value(caddyhttp.ServerCtxKey), parent: parent}
	if srv, ok := s.server.(*caddyhttp.Server); ok {
		if _, isApp := parent.(*caddyhttp.App); isApp {
			s.list = provisioningList(srv)
		}
	}
	return s
}

// provisioningList tells which of the server's route lists Caddy is
// provisioning: a route not provisioned yet still holds its raw handlers.
func provisioningList(srv *caddyhttp.Server) string {
	switch {
	case provisioning(srv.Routes):
		return "routes"
	case srv.Errors != nil && provisioning(srv.Errors.Routes):
		return "errors"
	}
	return "named"
}

func provisioning(routes caddyhttp.RouteList) bool {
	for _, r := range routes {
		if r.HandlersRaw != nil {
			return true
		}
	}
	return false
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
// list that holds the reverse_proxy or in one enclosing it. A named route
// runs wherever `invoke` calls it, after whatever ran before there, which
// provisioning cannot see (named routes are provisioned last, in map
// order): a policy in one is not refused, and warns at run time if a
// request reaches it without sticky_learn.
func learnsAhead(ctx caddy.Context) bool {
	chain := ctx.Modules()           // ..., the enclosing handlers, reverse_proxy, this policy
	enclosing := []caddy.Module{nil} // modules provisioned directly, outside any (tests)
	if len(chain) > 2 {
		enclosing = chain[:len(chain)-2]
	}
	scopes := make([]routeScope, 0, len(enclosing))
	for _, m := range enclosing {
		s := scopeIn(ctx, m)
		if s.list == "named" {
			return true
		}
		scopes = append(scopes, s)
	}
	learnScopes.Lock()
	defer learnScopes.Unlock()
	for _, s := range scopes {
		if learnScopes.n[s] > 0 {
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
	listen := strings.Join(srv.Listen, ", ")
	switch provisioningList(srv) {
	case "errors":
		return "the error routes (handle_errors) of the site on " + listen
	}
	return "the site on " + listen
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
