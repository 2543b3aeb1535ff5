// Package lbadmin serves caddy-lb's admin API under /lb/ on Caddy's admin
// endpoint (module admin.api.lb): the upstreams of every sticky policy, drain
// and undrain, look-up or removal of one session's binding, and the fleet of
// nodes sharing a store.
//
// See docs/admin-api.md.
package lbadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/internal/reloadwarn"
	"github.com/caddylb/caddylb/lbmodule/affinity"
	"github.com/caddylb/caddylb/sessionstore"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// Admin is the admin.api.lb module. Caddy instantiates every admin.api
// module at each config load, before apps are provisioned, and never cleans
// it up: it therefore holds no state and reads the running config per call.
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.lb",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Provision runs at every config load; the first one checks the one kernel
// setting a reload under load depends on (reloadwarn).
func (a *Admin) Provision(ctx caddy.Context) error {
	reloadwarn.Check(ctx.Logger(a))
	return nil
}

// Routes returns the admin routes under /lb/.
func (Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/lb/upstreams", Handler: caddy.AdminHandlerFunc(handleUpstreams)},
		{Pattern: "/lb/upstreams/drain", Handler: caddy.AdminHandlerFunc(handleDrain)},
		{Pattern: "/lb/sessions", Handler: caddy.AdminHandlerFunc(handleSessions)},
		{Pattern: "/lb/fleet", Handler: caddy.AdminHandlerFunc(handleFleet)},
	}
}

// callTimeout bounds every store call an admin request makes.
const callTimeout = 5 * time.Second

// UpstreamStatus is one upstream of one session store in GET /lb/upstreams.
type UpstreamStatus struct {
	// The upstream's dial address, as in the config ("10.0.0.1:80").
	Address string `json:"address"`
	// Whether Caddy's health checks (active or passive) consider it up.
	Healthy bool `json:"healthy"`
	// Whether it may take requests: healthy and under its max_requests.
	Available bool `json:"available"`
	// Whether the store marks it draining: it keeps its sessions and gets
	// no new ones, on every node sharing the store.
	Draining bool `json:"draining"`
	// The store could not be asked whether it drains: draining is false
	// for want of knowing.
	DrainingUnknown bool `json:"draining_unknown,omitempty"`
	// Requests this node has in flight to it.
	ActiveRequests int `json:"active_requests"`
	// Failures counted by passive health checks within fail_duration.
	Fails int `json:"fails"`
	// Bound sessions counted by the store: exact for memory and redis,
	// approximate for memcached. -1 when the store could not be asked.
	BoundSessions int64 `json:"bound_sessions"`
	// Of those, the sessions this node knows of: all of them for a memory
	// store; for Redis, those this node read or wrote lately (its
	// known_bindings, recounted every 5 s). Absent for memcached.
	LocalSessions *int64 `json:"local_sessions,omitempty"`
	// The session store of the sticky policies in front of it; "(default
	// memory)" for policies that name none.
	Store string `json:"store"`
	// What keys those policies' sessions: cookie, app_cookie, header,
	// client_ip.
	KeyModes []string `json:"key_modes"`
	// With ?fleet=1: requests in flight to the upstream summed over the
	// nodes registered in the store (each other node's count as of its
	// last heartbeat), and how many nodes that is.
	FleetActiveRequests *int `json:"fleet_active_requests,omitempty"`
	FleetNodes          *int `json:"fleet_nodes,omitempty"`
	// The health checks watching it: "active", "passive", both ("active,
	// passive") or none (""); and, when it is not healthy, which one took
	// it out ("active", "passive", or "circuit_breaker").
	HealthChecks string `json:"health_checks,omitempty"`
	DownBy       string `json:"down_by,omitempty"`
	// A pass-through (layer4) upstream: the TLS stream is not decrypted,
	// and caddy-l4 does not export its connection and failure counts.
	Passthrough bool `json:"passthrough,omitempty"`
}

func handleUpstreams(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, http.MethodGet)
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	fleet := r.URL.Query().Get("fleet")
	withFleet := fleet == "1" || fleet == "true"
	if fleet != "" && !withFleet && fleet != "0" && fleet != "false" {
		return apiError(http.StatusBadRequest, fmt.Errorf("fleet=%q: want 1 or 0", fleet))
	}
	ups, _ := Upstreams(ctx, withFleet) // failures show in the rows
	return writeJSON(w, http.StatusOK, ups)
}

// Upstreams is GET /lb/upstreams: the upstreams of every sticky policy of
// the running config, HTTP and pass-through, a row per store and address;
// withFleet adds the requests in flight over the fleet. It also answers
// how asking each store went (its rows say so too), so that a caller
// needs no second round trip to know whether a store answers.
func Upstreams(ctx context.Context, withFleet bool) ([]UpstreamStatus, []StoreRead) {
	out := []UpstreamStatus{}
	var reads []StoreRead
	proxies := stickyProxies()
	handlers := make([]*reverseproxy.Handler, len(proxies))
	for i, p := range proxies {
		handlers[i] = p.handler
	}
	for _, group := range groupByStore(proxies) {
		state := readStore(ctx, group.store)
		reads = append(reads, state.read)
		var fleetLoad map[string]int
		fleetNodes := 1
		if withFleet {
			fleetLoad, fleetNodes = fleetLoadOf(ctx, group.store)
		}
		for _, up := range group.upstreams {
			st := UpstreamStatus{
				Address:        up.Dial,
				Healthy:        up.Healthy(),
				Available:      up.Available(),
				ActiveRequests: up.Host.NumRequests(),
				Fails:          up.Host.Fails(),
				KeyModes:       group.modes[up.Dial],
			}
			state.fill(&st, up.Dial)
			st.HealthChecks, st.DownBy = healthOf(up, handlers)
			if withFleet {
				active, nodes := st.ActiveRequests, fleetNodes
				if fleetLoad != nil {
					active = fleetLoad[up.Dial]
				}
				st.FleetActiveRequests, st.FleetNodes = &active, &nodes
			}
			out = append(out, st)
		}
	}
	pass, passReads := passStatuses(ctx)
	return append(out, pass...), append(reads, passReads...)
}

// StoreRead is how asking one store for its upstreams' state went.
type StoreRead struct {
	Name   string
	Shared bool
	// How long counting its bindings took, and what failed.
	Took               time.Duration
	CountErr, DrainErr error
}

// Errors are the read's failures, each naming the store.
func (r StoreRead) Errors() []error {
	var errs []error
	if r.CountErr != nil {
		errs = append(errs, fmt.Errorf("session store %s: counting bindings: %v", r.Name, r.CountErr))
	}
	if r.DrainErr != nil {
		errs = append(errs, fmt.Errorf("session store %s: reading drain flags: %v", r.Name, r.DrainErr))
	}
	return errs
}

// storeState is one store's counts, drain flags and this node's counts,
// read once for all the rows of its upstreams.
type storeState struct {
	read      StoreRead
	counts    map[string]int64
	draining  map[string]bool
	local     map[string]int64
	haveLocal bool
}

func readStore(ctx context.Context, store *sessionstore.Store) storeState {
	st := storeState{read: StoreRead{Name: storeName(store), Shared: store.Shared()}}
	start := time.Now()
	st.counts, st.read.CountErr = store.Counts(ctx)
	st.read.Took = time.Since(start)
	st.draining, st.read.DrainErr = store.Draining(ctx)
	st.local, st.haveLocal = store.LocalCounts(ctx)
	return st
}

// fill sets the store's part of the row of the upstream at addr.
func (s storeState) fill(st *UpstreamStatus, addr string) {
	st.Store = s.read.Name
	st.Draining = s.read.DrainErr == nil && s.draining[addr]
	st.DrainingUnknown = s.read.DrainErr != nil
	st.BoundSessions = s.counts[addr]
	if s.read.CountErr != nil {
		st.BoundSessions = -1
	}
	if s.haveLocal {
		n := s.local[addr]
		st.LocalSessions = &n
	}
}

// fleetLoadOf sums the requests in flight per upstream of store over the
// fleet registered in it; nil (this node's own counts apply) for a store
// that keeps no registry.
func fleetLoadOf(ctx context.Context, store *sessionstore.Store) (map[string]int, int) {
	app := SessionStoreApp()
	if app == nil || store.Name() == "" {
		return nil, 1
	}
	load, nodes, err := app.FleetLoad(ctx, store.Name())
	if err != nil {
		return nil, 1
	}
	return load, nodes
}

// SessionStoreApp is the running config's session_store app, if any.
func SessionStoreApp() *sessionstore.App {
	appVal, err := caddy.ActiveContext().AppIfConfigured("session_store")
	if err != nil {
		return nil
	}
	return appVal.(*sessionstore.App)
}

// handleFleet answers GET /lb/fleet: the LB nodes registered in the
// shared stores of the running config and the settings they disagree on.
func handleFleet(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, http.MethodGet)
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	return writeJSON(w, http.StatusOK, Fleet(ctx))
}

// Fleet is GET /lb/fleet: the nodes sharing the running config's stores
// and their drift; this node alone when no store is declared.
func Fleet(ctx context.Context) sessionstore.Fleet {
	app := SessionStoreApp()
	if app == nil {
		app = new(sessionstore.App)
	}
	return app.Fleet(ctx)
}

type drainRequest struct {
	Address string `json:"address"`
}

func handleDrain(w http.ResponseWriter, r *http.Request) error {
	var draining bool
	switch r.Method {
	case http.MethodPost:
		draining = true
	case http.MethodDelete:
	default:
		return methodNotAllowed(w, http.MethodPost, http.MethodDelete)
	}
	var req drainRequest
	body := http.MaxBytesReader(w, r.Body, 64<<10)
	if err := json.NewDecoder(body).Decode(&req); err != nil && err != io.EOF {
		return apiError(http.StatusBadRequest, fmt.Errorf("decoding drain request: %v (want {\"address\": \"host:port\"})", err))
	}
	if req.Address == "" {
		return apiError(http.StatusBadRequest, fmt.Errorf(`missing "address" (want {"address": "host:port"})`))
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	names, err := SetDraining(ctx, req.Address, draining)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"address": req.Address, "draining": draining, "stores": names})
}

// SetDraining marks (or, with draining false, unmarks) the upstream at
// address as draining in every store whose sticky policies, HTTP or
// pass-through, proxy to it, and returns the stores' names. Every node
// sharing a store honours the mark. Undraining an address no policy has
// (any more) clears it in every store, so that a mark left behind can
// go. Errors are caddy.APIError with the status to answer.
func SetDraining(ctx context.Context, address string, draining bool) ([]string, error) {
	var stores []*sessionstore.Store
	var known []string
	groups := groupByStore(stickyProxies())
	var all []*sessionstore.Store
	for _, group := range groups {
		all = append(all, group.store)
		for _, up := range group.upstreams {
			known = append(known, up.Dial)
			if up.Dial == address {
				stores = append(stores, group.store)
			}
		}
	}
	for _, group := range passGroups() {
		all = append(all, group.store)
		for _, up := range group.upstreams {
			known = append(known, up.String())
			if up.String() == address && !slices.Contains(stores, group.store) {
				stores = append(stores, group.store)
			}
		}
	}
	if len(stores) == 0 && !draining {
		for _, s := range all {
			if !slices.Contains(stores, s) {
				stores = append(stores, s)
			}
		}
	}
	if len(stores) == 0 {
		sort.Strings(known)
		return nil, apiError(http.StatusNotFound, fmt.Errorf("no upstream of a sticky policy has address %q (known: %v)", address, known))
	}
	names := []string{}
	for _, s := range stores {
		if err := s.SetDraining(ctx, address, draining); err != nil {
			return nil, apiError(http.StatusBadGateway, fmt.Errorf("setting drain of %s: %v", address, err))
		}
		names = append(names, storeName(s))
	}
	return names, nil
}

// SessionBinding is one binding in GET /lb/sessions.
type SessionBinding struct {
	// The store holding the binding.
	Store string `json:"store"`
	// The sticky policy's namespace within the store.
	Namespace string `json:"namespace"`
	// What the key is: cookie, app_cookie, header or client_ip.
	KeyMode string `json:"key_mode"`
	// The upstream the session is bound to.
	Upstream string `json:"upstream"`
	// When the binding expires unless the session is used again.
	Expires time.Time `json:"expires"`
}

func handleSessions(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		return methodNotAllowed(w, http.MethodGet, http.MethodDelete)
	}
	value := r.URL.Query().Get("key")
	if value == "" {
		return apiError(http.StatusBadRequest, fmt.Errorf("missing ?key= (an LB cookie value, application session id, header value or client IP)"))
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	del := r.Method == http.MethodDelete
	found, err := Sessions(ctx, value, del)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"deleted": del, "bindings": found})
}

// Sessions looks value (an LB cookie value, application session id,
// header value, client IP, or "<sni> <ip>") up in every sticky policy of
// the running config, deleting the bindings it finds when del. No binding
// is a 404 caddy.APIError, a store failure a 502.
func Sessions(ctx context.Context, value string, del bool) ([]SessionBinding, error) {
	found := []SessionBinding{}
	seen := map[string]bool{}
	for _, p := range stickyProxies() {
		policy := p.policy
		id := storeName(policy.StoreHandle()) + "\x00" + policy.NamespaceName()
		if seen[id] {
			continue
		}
		seen[id] = true
		key, err := policy.SessionStoreKey(value)
		if err != nil {
			continue // not this policy's kind of key
		}
		b, err := policy.StoreHandle().Get(ctx, key)
		if errors.Is(err, sessionstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, apiError(http.StatusBadGateway, fmt.Errorf("looking up session: %v", err))
		}
		if del {
			if err := policy.StoreHandle().Delete(ctx, key); err != nil {
				return nil, apiError(http.StatusBadGateway, fmt.Errorf("deleting session: %v", err))
			}
		}
		found = append(found, SessionBinding{
			Store: storeName(policy.StoreHandle()), Namespace: policy.NamespaceName(),
			KeyMode: policy.KeyMode(), Upstream: b.Upstream, Expires: b.Expires.UTC(),
		})
	}
	passed, err := passBindings(ctx, value, del)
	if err != nil {
		return nil, apiError(http.StatusBadGateway, fmt.Errorf("looking up session: %v", err))
	}
	found = append(found, passed...)
	if len(found) == 0 {
		return nil, apiError(http.StatusNotFound, fmt.Errorf("no binding for that key"))
	}
	return found, nil
}

// stickyProxy is a reverse_proxy handler of the running config that uses
// lb_policy sticky.
type stickyProxy struct {
	handler *reverseproxy.Handler
	policy  *affinity.Sticky
}

// stickyProxies are the running config's reverse_proxy handlers with
// lb_policy sticky.
func stickyProxies() []stickyProxy {
	var out []stickyProxy
	for _, h := range proxies() {
		if p, ok := stickyPolicy(h); ok {
			out = append(out, stickyProxy{handler: h, policy: p})
		}
	}
	return out
}

// group is the upstreams of one store, each listed once (first seen
// first), with the key modes of the policies in front of each address.
// U is reverse_proxy's or caddy-l4's upstream type.
type group[U any] struct {
	store     *sessionstore.Store
	upstreams []U
	modes     map[string][]string
}

// grouper builds the groups of several policies, a store at a time.
type grouper[U any] struct {
	groups  []*group[U]
	byStore map[*sessionstore.Store]*group[U]
}

// add records the upstreams of one policy on store with key mode mode;
// addr names an upstream. It returns the store's group.
func (g *grouper[U]) add(store *sessionstore.Store, mode string, ups []U, addr func(U) string) *group[U] {
	if g.byStore == nil {
		g.byStore = map[*sessionstore.Store]*group[U]{}
	}
	gr := g.byStore[store]
	if gr == nil {
		gr = &group[U]{store: store, modes: map[string][]string{}}
		g.byStore[store] = gr
		g.groups = append(g.groups, gr)
	}
	for _, up := range ups {
		a := addr(up)
		if _, seen := gr.modes[a]; !seen {
			gr.upstreams = append(gr.upstreams, up)
		}
		if !slices.Contains(gr.modes[a], mode) {
			gr.modes[a] = append(gr.modes[a], mode)
		}
	}
	return gr
}

// groupByStore lists each store's upstreams once.
func groupByStore(proxies []stickyProxy) []*group[*reverseproxy.Upstream] {
	var g grouper[*reverseproxy.Upstream]
	for _, p := range proxies {
		g.add(p.policy.StoreHandle(), p.policy.KeyMode(), p.handler.Upstreams, func(up *reverseproxy.Upstream) string { return up.Dial })
	}
	return g.groups
}

func storeName(s *sessionstore.Store) string {
	if s.Name() == "" {
		return "(default memory)"
	}
	return s.Name()
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func apiError(status int, err error) error {
	return caddy.APIError{HTTPStatus: status, Err: err}
}

func methodNotAllowed(w http.ResponseWriter, allowed ...string) error {
	for _, m := range allowed {
		w.Header().Add("Allow", m)
	}
	return apiError(http.StatusMethodNotAllowed, fmt.Errorf("method not allowed"))
}

// Interface guards
var (
	_ caddy.AdminRouter = (*Admin)(nil)
	_ caddy.Provisioner = (*Admin)(nil)
)
