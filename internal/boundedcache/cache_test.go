package boundedcache

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestGetUntilTheDeadline(t *testing.T) {
	c := New[string](100)
	now := time.Now()
	c.Put("k", "v", now.Add(time.Second))
	if v, ok := c.Get("k", now.Add(999*time.Millisecond)); !ok || v != "v" {
		t.Fatalf("before the deadline: %q %v", v, ok)
	}
	if _, ok := c.Get("k", now.Add(time.Second)); ok {
		t.Fatal("served at its deadline")
	}
	c.Put("k", "w", now.Add(time.Hour))
	c.Remove("k")
	if _, ok := c.Get("k", now); ok {
		t.Fatal("served after Remove")
	}
}

// TestBounded writes far more keys than the capacity, from one goroutine
// and then from many (run with -race): the cache never holds more than
// its capacity, and a key just written by the only writer is served.
func TestBounded(t *testing.T) {
	const capacity = 1024
	c := New[int](capacity)
	until := time.Now().Add(time.Hour)
	for i := range 10 * capacity {
		key := strconv.Itoa(i)
		c.Put(key, i, until)
		if v, ok := c.Get(key, time.Now()); !ok || v != i {
			t.Fatalf("%s not served right after it was put", key)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 * capacity {
				key := strconv.Itoa(g) + "-" + strconv.Itoa(i)
				c.Put(key, i, until)
				c.Get(key, time.Now())
			}
		}()
	}
	wg.Wait()
	if n := c.Len(); n > capacity {
		t.Fatalf("holds %d entries, capacity %d", n, capacity)
	}
}
