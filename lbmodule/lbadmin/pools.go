package lbadmin

import (
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/lbmodule/affinity"
	"github.com/caddylb/caddylb/lbmodule/l4sticky"
)

// PolicyStatus is one sticky policy of the running config with its
// selection counts since the process began (they outlive reloads).
type PolicyStatus struct {
	// The policy's store and namespace, which identify it.
	Name string `json:"name"`
	// "http" for lb_policy sticky of reverse_proxy, "passthrough" for
	// the layer4 proxy's.
	Kind    string `json:"kind"`
	Store   string `json:"store"`
	KeyMode string `json:"key_mode"`
	// Selections by outcome: hit, new, rebound, strict_reject,
	// store_error and the others each kind counts.
	Outcomes map[string]int64 `json:"outcomes"`
}

// Policies lists the sticky policies of the running config, each once.
func Policies() []PolicyStatus {
	var out []PolicyStatus
	seen := map[string]bool{}
	add := func(p PolicyStatus) {
		if !seen[p.Kind+" "+p.Name] {
			seen[p.Kind+" "+p.Name] = true
			out = append(out, p)
		}
	}
	for _, p := range stickyProxies() {
		add(PolicyStatus{Name: p.policy.PolicyName(), Kind: "http", Store: storeName(p.policy.StoreHandle()),
			KeyMode: p.policy.KeyMode(), Outcomes: p.policy.Outcomes()})
	}
	for _, p := range l4sticky.Policies(caddy.ActiveContext()) {
		add(PolicyStatus{Name: p.Sticky.PolicyName(), Kind: "passthrough", Store: storeName(p.Sticky.StoreHandle()),
			KeyMode: p.Sticky.KeyMode(), Outcomes: p.Sticky.Outcomes()})
	}
	return out
}

// OtherUpstreams are the upstreams of the running config's reverse_proxy
// handlers whose policy is not sticky (round_robin, least_conn, ...),
// each address once and not already an upstream of a sticky policy:
// they have health and load but no sessions or drain.
func OtherUpstreams() []UpstreamStatus {
	seen := map[string]bool{} // listed, or an upstream of a sticky policy
	for _, p := range stickyProxies() {
		for _, up := range p.handler.Upstreams {
			seen[up.Dial] = true
		}
	}
	out := []UpstreamStatus{}
	for _, h := range proxies() {
		if _, ok := stickyPolicy(h); ok {
			continue
		}
		for _, up := range h.Upstreams {
			if seen[up.Dial] {
				continue
			}
			seen[up.Dial] = true
			st := UpstreamStatus{
				Address:        up.Dial,
				Healthy:        up.Healthy(),
				Available:      up.Available(),
				ActiveRequests: up.Host.NumRequests(),
				Fails:          up.Host.Fails(),
				BoundSessions:  -1,
			}
			st.HealthChecks, st.DownBy = healthOf(up, []*reverseproxy.Handler{h})
			out = append(out, st)
		}
	}
	return out
}

// healthOf names the health checks of the first of handlers that has
// up's address, and which of them holds it down. Caddy shares one Host
// per address, so the first handler naming the address decides.
func healthOf(up *reverseproxy.Upstream, handlers []*reverseproxy.Handler) (checks, downBy string) {
	for _, h := range handlers {
		if !slices.ContainsFunc(h.Upstreams, func(u *reverseproxy.Upstream) bool { return u.Dial == up.Dial }) {
			continue
		}
		hc := h.HealthChecks
		var names []string
		passiveDown := false
		if hc != nil && hc.Active != nil {
			names = append(names, "active")
		}
		if hc != nil && hc.Passive != nil && hc.Passive.FailDuration > 0 {
			names = append(names, "passive")
			passiveDown = hc.Passive.MaxFails > 0 && up.Host.Fails() >= hc.Passive.MaxFails
		}
		checks = strings.Join(names, ", ")
		if !up.Healthy() {
			switch {
			case passiveDown:
				downBy = "passive"
			case hc != nil && hc.Active != nil:
				downBy = "active"
			default:
				downBy = "circuit_breaker"
			}
		}
		return checks, downBy
	}
	return "", ""
}

func stickyPolicy(h *reverseproxy.Handler) (*affinity.Sticky, bool) {
	if h.LoadBalancing == nil {
		return nil, false
	}
	p, ok := h.LoadBalancing.SelectionPolicy.(*affinity.Sticky)
	return p, ok
}

// proxies walks the running http app's routes, subroutes included, for
// its reverse_proxy handlers.
func proxies() []*reverseproxy.Handler {
	appVal, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		return nil
	}
	var out []*reverseproxy.Handler
	var walk func(caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, route := range routes {
			for _, h := range route.Handlers {
				switch h := h.(type) {
				case *reverseproxy.Handler:
					out = append(out, h)
				case *caddyhttp.Subroute:
					walk(h.Routes)
				}
			}
		}
	}
	app := appVal.(*caddyhttp.App)
	names := make([]string, 0, len(app.Servers))
	for name := range app.Servers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		srv := app.Servers[name]
		walk(srv.Routes)
		if srv.Errors != nil {
			walk(srv.Errors.Routes)
		}
		for _, route := range srv.NamedRoutes {
			walk(caddyhttp.RouteList{*route})
		}
	}
	return out
}

// Addresses lists the upstream addresses of every sticky policy of the
// running config, HTTP and pass-through, each once: what the dashboard
// keeps a history of first.
func Addresses() []string {
	var out []string
	for _, g := range groupByStore(stickyProxies()) {
		for _, up := range g.upstreams {
			out = append(out, up.Dial)
		}
	}
	for _, g := range passGroups() {
		for _, up := range g.upstreams {
			out = append(out, up.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
