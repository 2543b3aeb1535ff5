// Package perconfig keeps state per loaded Caddy config. Modules are
// provisioned with contexts Caddy derives from the config's context with
// WithValue, and those share the config's Done channel, which Caddy makes
// once per config load: the channel names the config, whichever module
// asks. State kept under it is dropped when the config is unloaded.
package perconfig

import (
	"context"
	"sync"
)

// Key names the config ctx belongs to: its Done channel, or ctx itself
// for a context that is never cancelled (tests).
func Key(ctx context.Context) any {
	if done := ctx.Done(); done != nil {
		return done
	}
	return ctx
}

// Map holds one value per loaded config, dropped when the config is
// unloaded. The zero Map is ready to use.
type Map[V any] struct {
	mu       sync.Mutex
	byConfig map[any]V
}

// With runs fn on the value of the config ctx belongs to, made by mk the
// first time, under the map's lock.
func (m *Map[V]) With(ctx context.Context, mk func() V, fn func(V)) {
	key := Key(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byConfig == nil {
		m.byConfig = map[any]V{}
	}
	v, ok := m.byConfig[key]
	if !ok {
		v = mk()
		m.byConfig[key] = v
		if done := ctx.Done(); done != nil {
			go func() {
				<-done
				m.mu.Lock()
				delete(m.byConfig, key)
				m.mu.Unlock()
			}()
		}
	}
	fn(v)
}

// Get runs fn on the value of the config ctx belongs to, if there is one
// (ok false otherwise), under the map's lock.
func (m *Map[V]) Get(ctx context.Context, fn func(v V, ok bool)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.byConfig[Key(ctx)]
	fn(v, ok)
}
