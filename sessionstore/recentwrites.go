package sessionstore

import (
	"sync"
	"sync/atomic"
	"time"
)

// recentWrites remembers which keys a Redis client wrote in the last
// moments. Redis invalidates the writer's own cached copy of a key with a
// push that arrives after the write's reply, so for a short while the
// client-side cache can still hold the value from before the write. Reads
// of a key written within the window therefore go to the server, and a
// node always sees its own writes.
//
// Keys are kept in two generations of one window each, swapped as time
// passes, so nothing needs sweeping: a key is remembered for at least one
// window and at most about three. While nothing was written lately, has
// answers without a map lookup.
type recentWrites struct {
	window time.Duration
	mu     sync.Mutex // serializes generation swaps
	gens   atomic.Pointer[writeGenerations]
}

type writeGenerations struct {
	start     time.Time // when cur began
	cur, prev *sync.Map
}

// recentWriteWindow comfortably exceeds the time an invalidation push takes
// to follow the reply of the write that caused it.
const recentWriteWindow = 250 * time.Millisecond

func newRecentWrites(window time.Duration) *recentWrites {
	return &recentWrites{window: window}
}

// add records that key was written at now.
func (w *recentWrites) add(key string, now time.Time) {
	g := w.gens.Load()
	if g == nil || now.Sub(g.start) >= w.window {
		w.mu.Lock()
		if g = w.gens.Load(); g == nil || now.Sub(g.start) >= w.window {
			next := &writeGenerations{start: now, cur: new(sync.Map), prev: new(sync.Map)}
			if g != nil && now.Sub(g.start) < 2*w.window {
				next.prev = g.cur
			}
			w.gens.Store(next)
			g = next
		}
		w.mu.Unlock()
	}
	g.cur.Store(key, struct{}{})
}

// has reports whether key may have been written within the window.
func (w *recentWrites) has(key string, now time.Time) bool {
	g := w.gens.Load()
	if g == nil || now.Sub(g.start) >= 2*w.window {
		return false
	}
	if _, ok := g.cur.Load(key); ok {
		return true
	}
	_, ok := g.prev.Load(key)
	return ok
}
