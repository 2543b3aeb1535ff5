package sessionstore

import (
	"hash/maphash"
	"sync"
	"time"
)

// bindingCache is a node-local copy of recently read or written bindings,
// for backends whose server cannot push invalidations (memcached). Each
// entry is served until its cache deadline or its binding's expiry,
// whichever comes first. It holds at most its capacity: a shard that is full
// drops one arbitrary entry (Go's map iteration starts at a random place)
// for each new one, which costs O(1) and needs no LRU bookkeeping on the hit
// path. Safe for concurrent use. A nil *bindingCache is a cache that is
// turned off: it holds nothing.
type bindingCache struct {
	ttl      time.Duration
	perShard int
	seed     maphash.Seed
	shards   [bindingCacheShards]bindingCacheShard
}

const bindingCacheShards = 32

type bindingCacheShard struct {
	sync.RWMutex
	m map[string]cachedBinding
}

type cachedBinding struct {
	b     Binding
	until time.Time // cache deadline
}

// newBindingCache returns a cache of about capacity entries whose entries
// live at most ttl.
func newBindingCache(capacity int, ttl time.Duration) *bindingCache {
	c := &bindingCache{
		ttl:      ttl,
		perShard: max(1, capacity/bindingCacheShards),
		seed:     maphash.MakeSeed(),
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cachedBinding)
	}
	return c
}

func (c *bindingCache) shard(key string) *bindingCacheShard {
	return &c.shards[maphash.String(c.seed, key)%bindingCacheShards]
}

// get returns the cached binding of key if it may still be served at now.
func (c *bindingCache) get(key string, now time.Time) (Binding, bool) {
	if c == nil {
		return Binding{}, false
	}
	s := c.shard(key)
	s.RLock()
	e, ok := s.m[key]
	s.RUnlock()
	if !ok || !now.Before(e.until) || !e.b.Live(now) {
		return Binding{}, false
	}
	return e.b, true
}

// put records b as the binding of key, read or written at now.
func (c *bindingCache) put(key string, b Binding, now time.Time) {
	if c == nil {
		return
	}
	s := c.shard(key)
	s.Lock()
	defer s.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= c.perShard {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[key] = cachedBinding{b: b, until: now.Add(c.ttl)}
}

// remove forgets key.
func (c *bindingCache) remove(key string) {
	if c == nil {
		return
	}
	s := c.shard(key)
	s.Lock()
	delete(s.m, key)
	s.Unlock()
}

// len is the number of entries held, for tests.
func (c *bindingCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.RLock()
		n += len(s.m)
		s.RUnlock()
	}
	return n
}
