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

// normalizeHost is a Host header's name: lower case, without port,
// brackets or a final dot.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
}

// hostAllowed reports why r's Host may not reach the dashboard, or nil.
func (d *Dashboard) hostAllowed(r *http.Request) error {
	if d.hostMatched(r) {
		return nil
	}
	host := normalizeHost(r.Host)
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
		if !ok {
			return
		}
		w := guardWalk{srv: srv, target: d, all: true}
		w.routes(srv.Routes, false, 0)
		if srv.Errors != nil {
			w.routes(srv.Errors.Routes, false, 0)
		}
		d.guard.guarded = w.found && w.all
	})
	return d.guard.guarded
}

// guardWalk finds every way to target through a server's routes (its
// subroutes, its error routes, the named routes invoke calls) and
// whether each passes a route with a host matcher. Named routes are
// followed a few calls deep only: deeper (or unknown) ways count as
// unguarded, which refuses names rather than allowing them.
type guardWalk struct {
	srv    *caddyhttp.Server
	target *Dashboard
	found  bool
	all    bool
}

const maxInvokeDepth = 4

func (w *guardWalk) routes(routes caddyhttp.RouteList, guarded bool, depth int) {
	for _, route := range routes {
		g := guarded || hostMatcherOn(route)
		for _, h := range route.Handlers {
			switch h := h.(type) {
			case *Dashboard:
				if h == w.target {
					w.found, w.all = true, w.all && g
				}
			case *caddyhttp.Subroute:
				w.routes(h.Routes, g, depth)
			case *caddyhttp.Invoke:
				if named := w.srv.NamedRoutes[h.Name]; named != nil {
					if depth >= maxInvokeDepth {
						w.all = false
						continue
					}
					w.routes(caddyhttp.RouteList{*named}, g, depth+1)
				}
			}
		}
	}
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
