// Package boundedcache is a node-local map of bounded size whose entries
// expire, for the request path's caches (the memcached store's copy of
// bindings, the sticky policy's replayed cookies). It is sharded, so that
// requests on different keys rarely wait on one lock, and holds at most
// about its capacity: a shard that is full drops one arbitrary entry (Go's
// map iteration starts at a random place) for each new one, which costs
// O(1) and needs no LRU bookkeeping on the hit path. Losing an entry costs
// its owner one more look-up elsewhere, never a wrong answer. Safe for
// concurrent use.
package boundedcache

import (
	"hash/maphash"
	"sync"
	"time"
)

const shards = 32

// Cache maps string keys to values of type V until each entry's deadline.
type Cache[V any] struct {
	perShard int
	seed     maphash.Seed
	shards   [shards]shard[V]
}

type shard[V any] struct {
	sync.RWMutex
	m map[string]entry[V]
}

type entry[V any] struct {
	v     V
	until time.Time
}

// New returns a cache of about capacity entries.
func New[V any](capacity int) *Cache[V] {
	c := &Cache[V]{perShard: max(1, capacity/shards), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]entry[V])
	}
	return c
}

func (c *Cache[V]) shard(key string) *shard[V] {
	return &c.shards[maphash.String(c.seed, key)%shards]
}

// Get returns the value of key if its deadline is after now.
func (c *Cache[V]) Get(key string, now time.Time) (V, bool) {
	s := c.shard(key)
	s.RLock()
	e, ok := s.m[key]
	s.RUnlock()
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put stores v under key until until.
func (c *Cache[V]) Put(key string, v V, until time.Time) {
	s := c.shard(key)
	s.Lock()
	defer s.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= c.perShard {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[key] = entry[V]{v: v, until: until}
}

// Remove forgets key.
func (c *Cache[V]) Remove(key string) {
	s := c.shard(key)
	s.Lock()
	delete(s.m, key)
	s.Unlock()
}

// Len is the number of entries held, expired ones included until they
// are replaced.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.RLock()
		n += len(s.m)
		s.RUnlock()
	}
	return n
}

// Range calls fn for every entry still valid at now, a shard at a time,
// until fn answers false. fn must not call the cache.
func (c *Cache[V]) Range(now time.Time, fn func(key string, v V) bool) {
	for i := range c.shards {
		s := &c.shards[i]
		s.RLock()
		for k, e := range s.m {
			if now.Before(e.until) && !fn(k, e.v) {
				s.RUnlock()
				return
			}
		}
		s.RUnlock()
	}
}
