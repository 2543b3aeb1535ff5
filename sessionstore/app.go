package sessionstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/reloadwarn"
)

func init() {
	caddy.RegisterModule(App{})
}

// App provisions the named session stores declared with the
// `session_store` global option. Sticky policies look their store up here
// by name.
type App struct {
	// The stores by name. Each is a backend module: "memory", "redis"
	// or "memcached", named by its "backend" key.
	StoresRaw map[string]json.RawMessage `json:"stores,omitempty" caddy:"namespace=session_store.backends inline_key=backend"`

	stores map[string]*Store
	ctx    caddy.Context
	logger *zap.Logger

	mu    *sync.Mutex
	fleet []*fleetMember // started with the app
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "session_store",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads every store.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	reloadwarn.Check(a.logger)
	a.mu = new(sync.Mutex)
	if err := RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering session store metrics: %v", err)
	}
	if err := registerFleetMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering fleet metrics: %v", err)
	}
	mods, err := ctx.LoadModule(a, "StoresRaw")
	if err != nil {
		return fmt.Errorf("loading session stores: %v", err)
	}
	logger := ctx.Logger()
	a.stores = make(map[string]*Store)
	for name, mod := range mods.(map[string]any) {
		backend, ok := mod.(Backend)
		if !ok {
			return fmt.Errorf("session store %q: module %T is not a session store backend", name, mod)
		}
		if m, ok := backend.(*MemoryBackend); ok {
			m.open(name)
		}
		a.stores[name] = NewStore(name, backend, logger)
	}
	return nil
}

// Start implements caddy.App: it registers this node in every shared store
// that holds a node registry, then again every heartbeat. Stores connect
// when provisioned.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, name := range a.Names() {
		store := a.stores[name]
		fb, ok := store.Backend().(FleetBackend)
		if !ok || fb.FleetHeartbeat() <= 0 {
			continue
		}
		m := &fleetMember{
			store: store, backend: fb, ctx: a.ctx, logger: a.logger,
			interval: fb.FleetHeartbeat(), stop: make(chan struct{}),
		}
		m.done.Add(1)
		go m.run()
		a.fleet = append(a.fleet, m)
	}
	return nil
}

// Stop implements caddy.App: the heartbeats stop (the records expire by
// themselves; a reload's new config writes them again at once). Backends
// close in their Cleanup.
func (a *App) Stop() error {
	a.mu.Lock()
	fleet := a.fleet
	a.fleet = nil
	a.mu.Unlock()
	for _, m := range fleet {
		close(m.stop)
		m.done.Wait()
		m.leave()
	}
	return nil
}

// members are the running fleet registrations.
func (a *App) members() []*fleetMember {
	if a.mu == nil {
		return nil // not provisioned: no store declared
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*fleetMember(nil), a.fleet...)
}

// Store returns the store called name.
func (a *App) Store(name string) (*Store, error) {
	s, ok := a.stores[name]
	if !ok {
		return nil, fmt.Errorf("session store %q is not declared (declared: %v); add `session_store %s <memory|redis|memcached>` to the global options", name, a.Names(), name)
	}
	return s, nil
}

// Names lists the declared stores, sorted.
func (a *App) Names() []string {
	names := make([]string, 0, len(a.stores))
	for n := range a.stores {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the store called name from the config being provisioned,
// or, when name is empty, the default in-process memory store shared by
// every policy that names none. The returned cleanup must be called from
// the caller's Cleanup.
func Lookup(ctx caddy.Context, name string) (store *Store, cleanup func(), err error) {
	if name == "" {
		if err := RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
			return nil, nil, fmt.Errorf("registering session store metrics: %v", err)
		}
		m := new(MemoryBackend)
		m.open("")
		return NewStore("", m, ctx.Logger()), func() { _ = m.Cleanup() }, nil
	}
	appVal, err := ctx.AppIfConfigured("session_store")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, nil, fmt.Errorf("session store %q is not declared; add `session_store %s <memory|redis|memcached>` to the global options", name, name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("loading session_store app: %v", err)
	}
	store, err = appVal.(*App).Store(name)
	if err != nil {
		return nil, nil, err
	}
	return store, func() {}, nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
