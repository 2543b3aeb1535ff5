package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(MemcachedBackend{})
}

// MemcachedBackend keeps bindings in memcached servers shared by every LB
// node, using the gomemcache client. Keys are spread over the servers by
// hash, so each binding lives on one server.
//
// Memcached cannot tell a node that another one changed a key, so each
// node keeps what it read or wrote in a local cache (up to 65,536 bindings
// per client, dropping arbitrary entries beyond) for local_cache_ttl. That is the bound on staleness: a change made by another
// node is seen at most local_cache_ttl later (by Get and Draining); this
// node's own writes are seen at once. Rebinding stays safe meanwhile, since
// Add and Swap always decide on the server's value.
//
// Writes are atomic per key: Add uses memcached's add, Swap a
// compare-and-swap loop, the drain set (one key holding a JSON list) too.
// Counts are approximate; see sessionCounters for what they guarantee.
// Memcached may evict any key under memory pressure, including a binding
// (the session is rebound) or the drain set (draining stops until it is
// set again): give it room, or use Redis where that matters.
//
// One client is kept per distinct settings and shared by every config that
// uses them, with its local cache, so a config reload keeps both.
type MemcachedBackend struct {
	// The memcached servers, host:port or a unix socket path. Placeholders
	// like {env.MEMCACHED_ADDR} are resolved at load. Default:
	// 127.0.0.1:11211.
	Servers []string `json:"servers,omitempty"`

	// The prefix of every key this store writes, so several stores or
	// applications can share the servers. At most 128 bytes, no spaces or
	// control characters. Default: "caddylb:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// How long one store call may take before it counts as a failure and
	// the request goes on without the store; also the network timeout of
	// each memcached command. Default: 250ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long a binding or the drain set read from memcached may be served
	// from this node's memory: the longest another node's change can go
	// unseen here. Default: 1s.
	LocalCacheTTL caddy.Duration `json:"local_cache_ttl,omitempty"`

	// Turn the local cache off: every Get and Draining asks memcached.
	DisableLocalCache bool `json:"disable_local_cache,omitempty"`

	// The most idle connections kept open per server. Set it above the
	// number of store calls in flight at peak, or connections are opened
	// and closed per call. Default: 64.
	MaxIdleConns int `json:"max_idle_conns,omitempty"`

	servers []string // placeholders resolved
	conn    *memcachedConn
	poolKey string
	logger  *zap.Logger
}

const (
	// memcachedLocalCacheEntries caps the local cache of each client.
	memcachedLocalCacheEntries = 1 << 16
	// memcachedCASAttempts bounds every compare-and-swap loop.
	memcachedCASAttempts = 8
	// memcachedMaxPrefix keeps the longest key (prefix + "b:" + 64 bytes)
	// well under memcached's 250-byte limit.
	memcachedMaxPrefix = 128
)

// CaddyModule returns the Caddy module information.
func (MemcachedBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "session_store.backends.memcached",
		New: func() caddy.Module { return new(MemcachedBackend) },
	}
}

// Provision applies defaults, resolves placeholders and attaches the
// backend to the shared client for its settings. It does not connect:
// connections open on first use, so a server that is down does not fail
// the config.
func (m *MemcachedBackend) Provision(ctx caddy.Context) error {
	m.logger = ctx.Logger()
	if len(m.Servers) == 0 {
		m.Servers = []string{"127.0.0.1:11211"}
	}
	if m.KeyPrefix == "" {
		m.KeyPrefix = "caddylb:"
	}
	if m.Timeout == 0 {
		m.Timeout = caddy.Duration(250 * time.Millisecond)
	}
	if m.LocalCacheTTL == 0 {
		m.LocalCacheTTL = caddy.Duration(time.Second)
	}
	if m.MaxIdleConns == 0 {
		m.MaxIdleConns = 64
	}
	repl := caddy.NewReplacer()
	m.servers = make([]string, len(m.Servers))
	for i, s := range m.Servers {
		m.servers[i] = repl.ReplaceKnown(s, "")
	}
	// Check before building the client; Caddy calls Validate again.
	if err := m.Validate(); err != nil {
		return err
	}
	key := fmt.Sprintf("memcached:%q %q %d %d %t %d", m.servers, m.KeyPrefix,
		m.Timeout, m.LocalCacheTTL, m.DisableLocalCache, m.MaxIdleConns)
	val, _, err := memcachedConns.LoadOrNew(key, func() (caddy.Destructor, error) {
		return m.newConn()
	})
	if err != nil {
		return err
	}
	m.conn = val.(*memcachedConn)
	m.poolKey = key
	return nil
}

// Validate checks the settings after placeholders are resolved.
func (m *MemcachedBackend) Validate() error {
	for _, s := range m.servers {
		if strings.Contains(s, "/") {
			continue // unix socket
		}
		if host, port, err := net.SplitHostPort(s); err != nil || host == "" || port == "" {
			return fmt.Errorf("memcached server %q: want host:port or a socket path", s)
		}
	}
	if len(m.KeyPrefix) > memcachedMaxPrefix {
		return fmt.Errorf("memcached key_prefix: longer than %d bytes", memcachedMaxPrefix)
	}
	if i := strings.IndexFunc(m.KeyPrefix, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return fmt.Errorf("memcached key_prefix %q: memcached keys cannot hold spaces or control characters", m.KeyPrefix)
	}
	if m.Timeout < 0 || m.LocalCacheTTL < 0 || m.MaxIdleConns < 0 {
		return errors.New("memcached timeout, local_cache_ttl and max_idle_conns must not be negative")
	}
	return nil
}

// Cleanup releases this config's reference to the shared client; the last
// one closes it. It is safe after a failed or partial Provision.
func (m *MemcachedBackend) Cleanup() error {
	if m.conn == nil {
		return nil
	}
	m.conn = nil
	_, err := memcachedConns.Delete(m.poolKey)
	return err
}

// CallTimeout implements CallTimeouter: the Store applies it to every call.
func (m *MemcachedBackend) CallTimeout() time.Duration { return time.Duration(m.Timeout) }

// memcachedConns holds one client per distinct settings across config
// reloads.
var memcachedConns = caddy.NewUsagePool()

// memcachedConn is a pooled client with its node-local state.
type memcachedConn struct {
	client   *memcache.Client
	prefix   string
	cache    *bindingCache // nil when the local cache is off
	cacheTTL time.Duration
	counters *sessionCounters

	drainMu sync.Mutex // one refresh of the drain set at a time
	drain   atomic.Pointer[memcachedDrainSet]
}

func (m *MemcachedBackend) newConn() (*memcachedConn, error) {
	servers := new(memcache.ServerList)
	if err := servers.SetServers(m.servers...); err != nil {
		return nil, fmt.Errorf("memcached servers %v: %v", m.servers, err)
	}
	client := memcache.NewFromSelector(servers)
	client.Timeout = time.Duration(m.Timeout)
	client.MaxIdleConns = m.MaxIdleConns
	c := &memcachedConn{client: client, prefix: m.KeyPrefix, counters: newSessionCounters(client, m.KeyPrefix)}
	if !m.DisableLocalCache {
		c.cache = newBindingCache(memcachedLocalCacheEntries, time.Duration(m.LocalCacheTTL))
		c.cacheTTL = time.Duration(m.LocalCacheTTL)
	}
	return c, nil
}

// Destruct implements caddy.Destructor.
func (c *memcachedConn) Destruct() error { return c.client.Close() }

func (c *memcachedConn) bindingKey(key string) string { return c.prefix + "b:" + key }
func (c *memcachedConn) drainKey() string             { return c.prefix + "drain" }

func (c *memcachedConn) item(key string, b Binding, now time.Time) *memcache.Item {
	return &memcache.Item{
		Key:        c.bindingKey(key),
		Value:      []byte(EncodeBinding(b)),
		Expiration: memcachedExpiration(b.TTL(now), now),
	}
}

// Get implements Backend. A binding read or written here within
// local_cache_ttl is answered from memory.
func (m *MemcachedBackend) Get(ctx context.Context, key string) (Binding, error) {
	c := m.conn
	now := time.Now()
	if b, ok := c.cache.get(key, now); ok {
		return b, nil
	}
	if err := ctx.Err(); err != nil {
		return Binding{}, err
	}
	item, err := c.client.Get(c.bindingKey(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return Binding{}, ErrNotFound
	}
	if err != nil {
		return Binding{}, fmt.Errorf("memcached get: %w", err)
	}
	b, err := DecodeBinding(string(item.Value))
	if err != nil {
		return Binding{}, fmt.Errorf("memcached get %s: %w", key, err)
	}
	if !b.Live(now) {
		return Binding{}, ErrNotFound
	}
	c.cache.put(key, b, now)
	return b, nil
}

// Add implements Backend.
func (m *MemcachedBackend) Add(ctx context.Context, key string, b Binding) (Binding, bool, error) {
	if err := checkWrite(ctx, "add", key, b); err != nil {
		return Binding{}, false, err
	}
	c := m.conn
	now := time.Now()
	err := c.client.Add(c.item(key, b, now))
	if err == nil {
		c.cache.put(key, b, now)
		m.count(Binding{}, b, now)
		return b, true, nil
	}
	if !errors.Is(err, memcache.ErrNotStored) {
		return Binding{}, false, fmt.Errorf("memcached add: %w", err)
	}
	// The key exists. Follow a live binding; replace one that has expired
	// but not yet left memcached (whose clock counts whole seconds).
	return m.compareAndSwap(ctx, key, b, func(_ Binding, live bool) bool { return !live })
}

// Swap implements Backend.
func (m *MemcachedBackend) Swap(ctx context.Context, key, from string, b Binding) (Binding, bool, error) {
	if err := checkWrite(ctx, "swap", key, b); err != nil {
		return Binding{}, false, err
	}
	return m.compareAndSwap(ctx, key, b, func(cur Binding, live bool) bool { return !live || cur.Upstream == from })
}

// compareAndSwap stores b under key if replace approves of the binding in
// memcached (the zero Binding, not live, when there is none), retrying when
// another node writes the key in between.
func (m *MemcachedBackend) compareAndSwap(ctx context.Context, key string, b Binding, replace func(cur Binding, live bool) bool) (Binding, bool, error) {
	c := m.conn
	for range memcachedCASAttempts {
		if err := ctx.Err(); err != nil {
			return Binding{}, false, err
		}
		now := time.Now()
		item, err := c.client.Get(c.bindingKey(key))
		if errors.Is(err, memcache.ErrCacheMiss) {
			if !replace(Binding{}, false) {
				return Binding{}, false, ErrNotFound
			}
			err = c.client.Add(c.item(key, b, now))
			if errors.Is(err, memcache.ErrNotStored) {
				continue // another node added it meanwhile
			}
			if err != nil {
				return Binding{}, false, fmt.Errorf("memcached add: %w", err)
			}
			c.cache.put(key, b, now)
			m.count(Binding{}, b, now)
			return b, true, nil
		}
		if err != nil {
			return Binding{}, false, fmt.Errorf("memcached gets: %w", err)
		}
		cur, decodeErr := DecodeBinding(string(item.Value))
		live := decodeErr == nil && cur.Live(now)
		if !replace(cur, live) {
			c.cache.put(key, cur, now)
			return cur, false, nil
		}
		next := c.item(key, b, now)
		item.Value, item.Expiration = next.Value, next.Expiration
		err = c.client.CompareAndSwap(item)
		if errors.Is(err, memcache.ErrCASConflict) || errors.Is(err, memcache.ErrNotStored) {
			continue // changed or gone since we read it: decide again
		}
		if err != nil {
			return Binding{}, false, fmt.Errorf("memcached cas: %w", err)
		}
		c.cache.put(key, b, now)
		if decodeErr != nil {
			cur = Binding{}
		}
		m.count(cur, b, now)
		return b, true, nil
	}
	return Binding{}, false, fmt.Errorf("memcached cas %s: %d conflicting writes in a row", key, memcachedCASAttempts)
}

// Put implements Backend. The binding it replaces is read first, only to
// keep the counts.
func (m *MemcachedBackend) Put(ctx context.Context, key string, b Binding) error {
	if err := checkWrite(ctx, "put", key, b); err != nil {
		return err
	}
	c := m.conn
	now := time.Now()
	old, err := m.read(key)
	if err != nil {
		return err
	}
	if err := c.client.Set(c.item(key, b, now)); err != nil {
		return fmt.Errorf("memcached set: %w", err)
	}
	c.cache.put(key, b, now)
	m.count(old, b, now)
	return nil
}

// Delete implements Backend.
func (m *MemcachedBackend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := m.conn
	c.cache.remove(key)
	old, err := m.read(key)
	if err != nil {
		return err
	}
	if err := c.client.Delete(c.bindingKey(key)); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return fmt.Errorf("memcached delete: %w", err)
	}
	m.count(old, Binding{}, time.Now())
	return nil
}

// read returns the binding stored under key, expired or not, or the zero
// Binding when there is none (or it does not decode).
func (m *MemcachedBackend) read(key string) (Binding, error) {
	item, err := m.conn.client.Get(m.conn.bindingKey(key))
	if errors.Is(err, memcache.ErrCacheMiss) {
		return Binding{}, nil
	}
	if err != nil {
		return Binding{}, fmt.Errorf("memcached get: %w", err)
	}
	b, _ := DecodeBinding(string(item.Value))
	return b, nil
}

// count updates the session counters after a write that succeeded. A
// failure here only skews the approximate counts, so it is logged, not
// returned: the binding itself was stored.
func (m *MemcachedBackend) count(old, next Binding, now time.Time) {
	if err := m.conn.counters.record(old, next, now); err != nil {
		m.logger.Debug("memcached session counters not updated", zap.Error(err))
	}
}

// checkWrite rejects a write that cannot succeed before it reaches the
// network.
func checkWrite(ctx context.Context, op, key string, b Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.Upstream == "" {
		return fmt.Errorf("memcached %s %s: binding has no upstream", op, key)
	}
	return nil
}

// Counts implements Backend. They are approximate: see sessionCounters.
func (m *MemcachedBackend) Counts(ctx context.Context) (map[string]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	counts, err := m.conn.counters.counts(time.Now())
	if err != nil {
		return nil, fmt.Errorf("memcached counts: %w", err)
	}
	return counts, nil
}

// Interface guards
var (
	_ Backend               = (*MemcachedBackend)(nil)
	_ CallTimeouter         = (*MemcachedBackend)(nil)
	_ caddy.Provisioner     = (*MemcachedBackend)(nil)
	_ caddy.Validator       = (*MemcachedBackend)(nil)
	_ caddy.CleanerUpper    = (*MemcachedBackend)(nil)
	_ caddyfile.Unmarshaler = (*MemcachedBackend)(nil)
)
