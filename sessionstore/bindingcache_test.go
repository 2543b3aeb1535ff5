package sessionstore

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestBindingCacheServesUntilDeadlineOrExpiry(t *testing.T) {
	c := newBindingCache(1000, time.Second)
	now := time.Now()
	c.put("fresh", Binding{Upstream: "a:1", Expires: now.Add(time.Hour)}, now)
	c.put("expiring", Binding{Upstream: "a:1", Expires: now.Add(100 * time.Millisecond)}, now)

	if b, ok := c.get("fresh", now.Add(999*time.Millisecond)); !ok || b.Upstream != "a:1" {
		t.Errorf("entry not served within the cache TTL: %+v, %v", b, ok)
	}
	if _, ok := c.get("fresh", now.Add(time.Second)); ok {
		t.Error("entry served at its cache deadline")
	}
	if _, ok := c.get("expiring", now.Add(100*time.Millisecond)); ok {
		t.Error("entry served after its binding expired")
	}
	c.remove("fresh")
	if _, ok := c.get("fresh", now); ok {
		t.Error("removed entry served")
	}
	var off *bindingCache
	off.put("k", Binding{Upstream: "a:1", Expires: now.Add(time.Hour)}, now)
	if _, ok := off.get("k", now); ok {
		t.Error("a nil cache served an entry")
	}
	off.remove("k")
}

// TestBindingCacheBounded writes far more keys than the capacity, from one
// goroutine and then from many (run with -race): the cache never holds more
// than its capacity, and a key just written is served.
func TestBindingCacheBounded(t *testing.T) {
	const capacity = 1024
	c := newBindingCache(capacity, time.Minute)
	now := time.Now()
	b := Binding{Upstream: "a:1", Expires: now.Add(time.Hour)}
	for i := range 10 * capacity {
		key := strconv.Itoa(i)
		c.put(key, b, now)
		if _, ok := c.get(key, now); !ok {
			t.Fatalf("%s not served right after it was put", key)
		}
	}
	if n := c.len(); n > capacity || n < capacity/2 {
		t.Fatalf("cache holds %d entries, want at most %d (and not nearly empty)", n, capacity)
	}

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				key := strconv.Itoa(g) + ":" + strconv.Itoa(i)
				c.put(key, b, now)
				c.get(key, now)
				if i%7 == 0 {
					c.remove(key)
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > capacity {
		t.Fatalf("cache holds %d entries after concurrent writes, want at most %d", n, capacity)
	}
}
