package objectstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/caddylb/caddylb/internal/perconfig"
	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(App{})
}

// App provisions the named object stores declared with the `asset_store`
// global option. Handlers, template functions and log writers look their
// store up here by name.
type App struct {
	// The stores by name. Each is a backend module, "s3" or "file",
	// named by its "backend" key.
	StoresRaw map[string]json.RawMessage `json:"stores,omitempty" caddy:"namespace=asset_store.backends inline_key=backend"`

	stores map[string]Store
	cfg    any // the config's key (perconfig.Key), which WhenStarted keys on
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "asset_store",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads every store.
func (a *App) Provision(ctx caddy.Context) error {
	a.cfg = perconfig.Key(ctx.Context)
	mods, err := ctx.LoadModule(a, "StoresRaw")
	if err != nil {
		return fmt.Errorf("loading asset stores: %v", err)
	}
	a.stores = make(map[string]Store)
	for name, mod := range mods.(map[string]any) {
		store, ok := mod.(Store)
		if !ok {
			return fmt.Errorf("asset store %q: module %T is not an object store", name, mod)
		}
		if n, ok := store.(interface{ SetName(string) }); ok {
			n.SetName(name) // so its errors and logs name the store
		}
		a.stores[name] = store
	}
	return nil
}

// Start implements caddy.App; stores connect lazily. It runs the
// functions given to WhenStarted for this config; the first error fails
// the config's start.
func (a *App) Start() error {
	startHooks.mu.Lock()
	hooks := startHooks.byConfig[a.cfg]
	delete(startHooks.byConfig, a.cfg)
	startHooks.mu.Unlock()
	var errs []error
	for _, h := range hooks {
		if err := h.fn(a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startHooks are the functions waiting for the asset_store app of a
// config to start, by the config's key (perconfig.Key).
var startHooks = struct {
	mu       sync.Mutex
	byConfig map[any][]*startHook
}{byConfig: make(map[any][]*startHook)}

type startHook struct{ fn func(*App) error }

// WhenStarted calls fn with the asset_store app of the config that ctx
// belongs to, once that config starts; never, if it does not start
// or declares no asset_store. Modules provisioned before the config's
// apps exist (log writers are) use it to find their store; an error
// from fn fails the config. The returned function forgets fn; call it
// in Cleanup.
func WhenStarted(ctx context.Context, fn func(*App) error) (cancel func()) {
	h := &startHook{fn: fn}
	cfg := perconfig.Key(ctx)
	startHooks.mu.Lock()
	startHooks.byConfig[cfg] = append(startHooks.byConfig[cfg], h)
	startHooks.mu.Unlock()
	return func() {
		startHooks.mu.Lock()
		defer startHooks.mu.Unlock()
		hooks := startHooks.byConfig[cfg]
		for i, other := range hooks {
			if other == h {
				hooks = append(hooks[:i], hooks[i+1:]...)
				break
			}
		}
		if len(hooks) == 0 {
			delete(startHooks.byConfig, cfg)
		} else {
			startHooks.byConfig[cfg] = hooks
		}
	}
}

// Stop implements caddy.App; backends release their clients in Cleanup.
func (a *App) Stop() error { return nil }

// Store returns the store called name. An empty name means the only
// declared store.
func (a *App) Store(name string) (Store, error) {
	if name == "" {
		if len(a.stores) == 1 {
			for _, s := range a.stores {
				return s, nil
			}
		}
		return nil, fmt.Errorf("no asset store named and %d declared (%v): name one with `store <name>`", len(a.stores), a.Names())
	}
	s, ok := a.stores[name]
	if !ok {
		return nil, fmt.Errorf("asset store %q is not declared (declared: %v); add `asset_store %s <s3|file> ...` to the global options", name, a.Names(), name)
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

// Lookup returns the store called name from the config being
// provisioned; an empty name means the only declared store.
func Lookup(ctx caddy.Context, name string) (Store, error) {
	appVal, err := ctx.AppIfConfigured("asset_store")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, fmt.Errorf("asset store %q is not declared; add `asset_store %s <s3|file> ...` to the global options", name, name)
	}
	if err != nil {
		return nil, fmt.Errorf("loading asset_store app: %v", err)
	}
	return appVal.(*App).Store(name)
}

// escapeKey escapes each segment of a validated key for use in a URL path.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
