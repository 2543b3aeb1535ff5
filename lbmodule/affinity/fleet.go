package affinity

import (
	"fmt"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/internal/fleetinfo"
)

// publishFleet tells the fleet registry what every node sharing this
// policy's store must agree on, and where to read its upstreams' load. A
// policy on this process's memory is nobody else's business.
func (s *Sticky) publishFleet(ctx caddy.Context) {
	if !s.store.Shared() {
		return
	}
	scope := fmt.Sprintf("store %s, namespace %s", s.Store, s.namespace)
	key := s.mode.String()
	switch s.mode {
	case keyLBCookie:
		key += " " + s.Cookie
	case keyAppCookie:
		key += " " + s.AppCookie
	case keyHeader:
		key += " " + s.Header
	}
	fleetinfo.Publish(ctx, "sticky.key", scope, key)
	fleetinfo.Publish(ctx, "sticky.ttl", scope, s.ttl.String())
	fleetinfo.Publish(ctx, "sticky.on_unavailable", scope, s.OnUnavailable)
	if s.mode == keyLBCookie || s.mode == keyClientIP {
		// The keys that sign LB cookies or key client IPs: a node with
		// others refuses every cookie the rest issue.
		fleetinfo.Publish(ctx, "sticky.secrets", scope, s.secretDigest)
	}
	if s.mode == keyLBCookie {
		fleetinfo.Publish(ctx, "sticky.token_max_age", scope, s.tokenMaxAge.String())
	}
	handler := enclosingProxy(ctx)
	if handler == nil {
		return
	}
	dials := make([]string, 0, len(handler.Upstreams))
	for _, up := range handler.Upstreams {
		dials = append(dials, up.Dial)
	}
	sort.Strings(dials)
	if handler.DynamicUpstreams == nil {
		fleetinfo.Publish(ctx, "sticky.upstreams", scope, strings.Join(dials, " "))
	}
	fleetinfo.PublishLoad(ctx, s.Store, func() map[string]int {
		out := make(map[string]int, len(handler.Upstreams))
		for _, up := range handler.Upstreams {
			if up.Host != nil {
				out[up.Dial] = up.Host.NumRequests()
			}
		}
		return out
	})
}

// enclosingProxy is the reverse_proxy handler whose selection policy ctx
// is provisioning.
func enclosingProxy(ctx caddy.Context) *reverseproxy.Handler {
	chain := ctx.Modules()
	for i := len(chain) - 1; i >= 0; i-- {
		if h, ok := chain[i].(*reverseproxy.Handler); ok {
			return h
		}
	}
	return nil
}
