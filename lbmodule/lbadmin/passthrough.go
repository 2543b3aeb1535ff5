package lbadmin

import (
	"context"
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/mholt/caddy-l4/modules/l4proxy"

	"github.com/caddylb/caddylb/lbmodule/l4sticky"
	"github.com/caddylb/caddylb/sessionstore"
)

// passGroup is the pass-through (layer4) upstreams of one store, with
// the policies that bind them.
type passGroup struct {
	*group[*l4proxy.Upstream]
	policies []*l4sticky.Sticky
}

// passGroups lists each store's layer4 sticky upstreams once.
func passGroups() []*passGroup {
	var g grouper[*l4proxy.Upstream]
	var out []*passGroup
	byGroup := map[*group[*l4proxy.Upstream]]*passGroup{}
	for _, p := range l4sticky.Policies(caddy.ActiveContext()) {
		gr := g.add(p.Sticky.StoreHandle(), "layer4 "+p.Sticky.KeyMode(), p.Proxy.Upstreams, (*l4proxy.Upstream).String)
		pg := byGroup[gr]
		if pg == nil {
			pg = &passGroup{group: gr}
			byGroup[gr] = pg
			out = append(out, pg)
		}
		pg.policies = append(pg.policies, p.Sticky)
	}
	return out
}

// passStatuses is GET /lb/upstreams for the pass-through pools. caddy-l4
// keeps its connection and failure counts to itself: they read 0.
func passStatuses(ctx context.Context) ([]UpstreamStatus, []StoreRead) {
	var out []UpstreamStatus
	var reads []StoreRead
	for _, g := range passGroups() {
		state := readStore(ctx, g.store)
		reads = append(reads, state.read)
		for _, up := range g.upstreams {
			addr := up.String()
			ok := l4sticky.Available(up) // caddy-l4 tells health and capacity together
			st := UpstreamStatus{
				Address:     addr,
				Healthy:     ok,
				Available:   ok,
				KeyModes:    g.modes[addr],
				Passthrough: true,
			}
			state.fill(&st, addr)
			out = append(out, st)
		}
	}
	return out, reads
}

// passBindings looks value (a client IP, or "<sni> <ip>") up in every
// pass-through policy, deleting the bindings found when del.
func passBindings(ctx context.Context, value string, del bool) ([]SessionBinding, error) {
	var found []SessionBinding
	for _, g := range passGroups() {
		for _, p := range g.policies {
			key, err := p.SessionStoreKey(value)
			if err != nil {
				continue
			}
			b, err := g.store.Get(ctx, key)
			if errors.Is(err, sessionstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if del {
				if err := g.store.Delete(ctx, key); err != nil {
					return nil, err
				}
			}
			found = append(found, SessionBinding{
				Store: storeName(g.store), Namespace: p.Namespace,
				KeyMode: "layer4 " + p.KeyMode(), Upstream: b.Upstream, Expires: b.Expires.UTC(),
			})
		}
	}
	return found, nil
}
