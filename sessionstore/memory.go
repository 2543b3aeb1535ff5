package sessionstore

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(MemoryBackend{})
}

// MemoryBackend keeps bindings in this process. It is the default store of
// every sticky policy that names none: no set-up, nothing to run, exact
// counts, but each LB node has its own. Its contents survive config reloads
// (they live in a package-level pool keyed by the store's name), not restarts.
type MemoryBackend struct {
	// The most bindings the store holds, so that clients inventing
	// session keys cannot exhaust memory. Past it, the least recently
	// used binding is evicted for each new one, as HAProxy's stick tables
	// purge the oldest entries: clients that start a session and never
	// come back make room for those that do. Evictions are counted in
	// caddylb_session_store_evictions_total. About 150 bytes each.
	// Default: 1,000,000.
	MaxBindings int `json:"max_bindings,omitempty"`

	table *memoryTable
	key   string
}

const defaultMaxBindings = 1_000_000

// CaddyModule returns the Caddy module information.
func (MemoryBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "session_store.backends.memory",
		New: func() caddy.Module { return new(MemoryBackend) },
	}
}

// open attaches the backend to the table of the store called name, creating
// it on first use. The App calls it after provisioning, when the name is known.
func (m *MemoryBackend) open(name string) {
	m.key = "memory:" + name
	val, _, _ := memoryTables.LoadOrNew(m.key, func() (caddy.Destructor, error) {
		return newMemoryTable(storeMetrics.evictions.WithLabelValues(name)), nil
	})
	m.table = val.(*memoryTable)
	limit := m.MaxBindings
	if limit <= 0 {
		limit = defaultMaxBindings
	}
	m.table.limit.Store(int64(limit))
}

// Cleanup releases this config's reference to the table.
func (m *MemoryBackend) Cleanup() error {
	if m.table != nil {
		_, _ = memoryTables.Delete(m.key)
		m.table = nil
	}
	return nil
}

// Get implements Backend.
func (m *MemoryBackend) Get(_ context.Context, key string) (Binding, error) {
	return m.table.get(key, time.Now())
}

// Add implements Backend.
func (m *MemoryBackend) Add(_ context.Context, key string, b Binding) (Binding, bool, error) {
	return m.table.update(key, time.Now(), func(cur Binding, live bool) (Binding, bool) {
		return b, !live
	})
}

// Swap implements Backend.
func (m *MemoryBackend) Swap(_ context.Context, key, from string, b Binding) (Binding, bool, error) {
	return m.table.update(key, time.Now(), func(cur Binding, live bool) (Binding, bool) {
		return b, !live || cur.Upstream == from
	})
}

// Put implements Backend.
func (m *MemoryBackend) Put(_ context.Context, key string, b Binding) error {
	_, _, err := m.table.update(key, time.Now(), func(Binding, bool) (Binding, bool) { return b, true })
	return err
}

// Delete implements Backend.
func (m *MemoryBackend) Delete(_ context.Context, key string) error {
	m.table.delete(key)
	return nil
}

// SetDraining implements Backend.
func (m *MemoryBackend) SetDraining(_ context.Context, upstream string, draining bool) error {
	m.table.setDraining(upstream, draining)
	return nil
}

// Draining implements Backend.
func (m *MemoryBackend) Draining(context.Context) (map[string]bool, error) {
	return *m.table.draining.Load(), nil
}

// Counts implements Backend. They are exact.
func (m *MemoryBackend) Counts(context.Context) (map[string]int64, error) {
	return m.table.counts(time.Now()), nil
}

// Interface guards
var (
	_ Backend               = (*MemoryBackend)(nil)
	_ caddy.CleanerUpper    = (*MemoryBackend)(nil)
	_ caddyfile.Unmarshaler = (*MemoryBackend)(nil)
)
