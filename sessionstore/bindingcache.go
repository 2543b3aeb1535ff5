package sessionstore

import (
	"time"

	"github.com/caddylb/caddylb/internal/boundedcache"
)

// bindingCache is a node-local copy of recently read or written bindings,
// for backends whose server cannot push invalidations (memcached). Each
// entry is served until its cache deadline or its binding's expiry,
// whichever comes first; it holds at most about its capacity (see
// boundedcache). A nil *bindingCache is a cache that is turned off: it
// holds nothing.
type bindingCache struct {
	ttl     time.Duration
	entries *boundedcache.Cache[Binding]
}

// newBindingCache returns a cache of about capacity entries whose entries
// live at most ttl.
func newBindingCache(capacity int, ttl time.Duration) *bindingCache {
	return &bindingCache{ttl: ttl, entries: boundedcache.New[Binding](capacity)}
}

// get returns the cached binding of key if it may still be served at now.
func (c *bindingCache) get(key string, now time.Time) (Binding, bool) {
	if c == nil {
		return Binding{}, false
	}
	b, ok := c.entries.Get(key, now)
	if !ok || !b.Live(now) {
		return Binding{}, false
	}
	return b, true
}

// put records b as the binding of key, read or written at now.
func (c *bindingCache) put(key string, b Binding, now time.Time) {
	if c == nil {
		return
	}
	c.entries.Put(key, b, now.Add(c.ttl))
}

// remove forgets key.
func (c *bindingCache) remove(key string) {
	if c == nil {
		return
	}
	c.entries.Remove(key)
}

// len is the number of entries held, for tests.
func (c *bindingCache) len() int { return c.entries.Len() }
