package dashboard

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A dashboard in a site that matches any host name (`:8080`, `http://`)
// could be read, and its actions taken, by a page of any domain whose
// name its owner points at this server's address (DNS rebinding): to the
// browser that page is then same-origin. Guarded by a remote_ip matcher
// or an internal port, the browser of someone inside is what does it.
// So unless a host matcher on the way to the handler already limits the
// Host header, the dashboard answers only requests whose Host is an IP
// address, localhost, or a name listed in `hosts`.

// hostGuard is whether host matchers guard the way to the handler,
// worked out at its first request.
type hostGuard struct {
	once    sync.Once
	guarded bool
}

// hostAllowed reports why r's Host may not reach the dashboard, or nil.
func (d *Dashboard) hostAllowed(r *http.Request) error {
	if d.hostMatched(r) {
		return nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || slices.Contains(d.hosts, host) {
		return nil
	}
	return fmt.Errorf("host %q is not allowed for this dashboard: its site answers any host name, so a page of another domain pointed at this address (DNS rebinding) could use it; open it by IP address or localhost, give the site its host name, or list the name: lb_dashboard { hosts %s }", host, host)
}

// hostMatched reports whether every route leading to this handler in the
// server serving r has a host matcher (Caddy then checks the Host before
// the handler runs). It is worked out once.
func (d *Dashboard) hostMatched(r *http.Request) bool {
	d.guard.once.Do(func() {
		srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
		if ok {
			d.guard.guarded = guardedIn(srv.Routes, d, false)
		}
	})
	return d.guard.guarded
}

// guardedIn reports whether target, found in routes, is reached only
// through routes with a host matcher; false when it is not found.
func guardedIn(routes caddyhttp.RouteList, target caddyhttp.MiddlewareHandler, guarded bool) bool {
	found, all := false, true
	for _, route := range routes {
		g := guarded || hostMatcherOn(route)
		for _, h := range route.Handlers {
			switch h := h.(type) {
			case *Dashboard:
				if h == target {
					found, all = true, all && g
				}
			case *caddyhttp.Subroute:
				if contains(h.Routes, target) {
					found, all = true, all && guardedIn(h.Routes, target, g)
				}
			}
		}
	}
	return found && all
}

func contains(routes caddyhttp.RouteList, target caddyhttp.MiddlewareHandler) bool {
	for _, route := range routes {
		for _, h := range route.Handlers {
			if h == target {
				return true
			}
			if sub, ok := h.(*caddyhttp.Subroute); ok && contains(sub.Routes, target) {
				return true
			}
		}
	}
	return false
}

// hostMatcherOn reports whether every matcher set of route matches on
// the host (a route without matchers matches any host).
func hostMatcherOn(route caddyhttp.Route) bool {
	if len(route.MatcherSets) == 0 {
		return false
	}
	for _, set := range route.MatcherSets {
		if !slices.ContainsFunc(set, func(m any) bool {
			_, ok := m.(*caddyhttp.MatchHost)
			return ok
		}) {
			return false
		}
	}
	return true
}
