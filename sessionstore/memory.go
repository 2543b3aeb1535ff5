package sessionstore

import (
	"context"
	"errors"
	"hash/maphash"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
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
	// The most bindings the store holds; past it, new sessions are served
	// without a binding (and counted as store errors) until old ones
	// expire, so that clients inventing session keys cannot exhaust
	// memory. About 150 bytes each. Default: 1,000,000.
	MaxBindings int `json:"max_bindings,omitempty"`

	table *memoryTable
	key   string
}

// ErrFull is returned by the memory backend when it holds MaxBindings.
var ErrFull = errors.New("memory session store is full (max_bindings)")

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
		return newMemoryTable(), nil
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

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	session_store <name> memory {
//		max_bindings <n>
//	}
func (m *MemoryBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // backend name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_bindings":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("max_bindings must be a positive integer, got %q", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			m.MaxBindings = n
		default:
			return d.Errf("unrecognized memory session store option %q (known: max_bindings)", d.Val())
		}
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

// memoryTables holds one table per memory store name across config reloads.
var memoryTables = caddy.NewUsagePool()

const memoryShards = 64

// memoryTable is a sharded map of bindings, so that requests on different
// sessions rarely wait on one lock, plus a copy-on-write drain set that the
// request path reads without locking.
type memoryTable struct {
	seed     maphash.Seed
	shards   [memoryShards]memoryShard
	drainMu  sync.Mutex
	draining atomic.Pointer[map[string]bool]
	stop     chan struct{}
	size     atomic.Int64 // entries in all shards, expired ones included until swept
	limit    atomic.Int64
}

type memoryShard struct {
	sync.RWMutex
	m map[string]Binding
}

func newMemoryTable() *memoryTable {
	t := &memoryTable{seed: maphash.MakeSeed(), stop: make(chan struct{})}
	for i := range t.shards {
		t.shards[i].m = make(map[string]Binding)
	}
	empty := map[string]bool{}
	t.draining.Store(&empty)
	go t.sweep(time.Minute)
	return t
}

// Destruct stops the sweeper when no config uses the table any more.
func (t *memoryTable) Destruct() error {
	close(t.stop)
	return nil
}

func (t *memoryTable) shard(key string) *memoryShard {
	return &t.shards[maphash.String(t.seed, key)%memoryShards]
}

func (t *memoryTable) get(key string, now time.Time) (Binding, error) {
	s := t.shard(key)
	s.RLock()
	b, ok := s.m[key]
	s.RUnlock()
	if !ok || !b.Live(now) {
		return Binding{}, ErrNotFound
	}
	return b, nil
}

// update runs decide under the shard lock with the current binding and
// whether it is live; if decide says so, its binding is stored. It returns
// the binding in force afterwards and whether decide's binding was stored,
// or ErrFull when a new key would pass the limit.
func (t *memoryTable) update(key string, now time.Time, decide func(cur Binding, live bool) (Binding, bool)) (Binding, bool, error) {
	s := t.shard(key)
	s.Lock()
	defer s.Unlock()
	cur, ok := s.m[key]
	next, store := decide(cur, ok && cur.Live(now))
	if !store {
		return cur, false, nil
	}
	if !ok {
		if t.size.Load() >= t.limit.Load() {
			return cur, false, ErrFull
		}
		t.size.Add(1)
	}
	s.m[key] = next
	return next, true, nil
}

func (t *memoryTable) delete(key string) {
	s := t.shard(key)
	s.Lock()
	if _, ok := s.m[key]; ok {
		delete(s.m, key)
		t.size.Add(-1)
	}
	s.Unlock()
}

func (t *memoryTable) setDraining(upstream string, draining bool) {
	t.drainMu.Lock()
	defer t.drainMu.Unlock()
	next := maps.Clone(*t.draining.Load())
	if draining {
		next[upstream] = true
	} else {
		delete(next, upstream)
	}
	t.draining.Store(&next)
}

func (t *memoryTable) counts(now time.Time) map[string]int64 {
	out := make(map[string]int64)
	for i := range t.shards {
		s := &t.shards[i]
		s.RLock()
		for _, b := range s.m {
			if b.Live(now) {
				out[b.Upstream]++
			}
		}
		s.RUnlock()
	}
	return out
}

// sweep drops expired bindings so that memory follows live sessions.
func (t *memoryTable) sweep(every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-ticker.C:
			for i := range t.shards {
				s := &t.shards[i]
				s.Lock()
				for k, b := range s.m {
					if !b.Live(now) {
						delete(s.m, k)
						t.size.Add(-1)
					}
				}
				s.Unlock()
			}
		}
	}
}

// Interface guards
var (
	_ Backend               = (*MemoryBackend)(nil)
	_ caddy.CleanerUpper    = (*MemoryBackend)(nil)
	_ caddyfile.Unmarshaler = (*MemoryBackend)(nil)
)
