package sessionstore

import (
	"hash/maphash"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// memoryTables holds one table per memory store name across config reloads.
var memoryTables = caddy.NewUsagePool()

const memoryShards = 64

// memoryTable is a sharded map of bindings, so that requests on different
// sessions rarely wait on one lock, plus a copy-on-write drain set that the
// request path reads without locking.
//
// Each shard keeps its entries in least-recently-used order. When the
// table is past its limit, the least recently used entry of all (the
// oldest of the shards' oldest) is evicted: exact LRU at the cost of one
// look at each shard's tail per eviction, paid only when full. A read
// moves an entry to the front at most once per touchEvery, so the hit
// path mostly takes only a shard's read lock.
type memoryTable struct {
	seed      maphash.Seed
	shards    [memoryShards]memoryShard
	drainMu   sync.Mutex
	draining  atomic.Pointer[map[string]bool]
	stop      chan struct{}
	size      atomic.Int64 // entries in all shards, expired ones included until swept
	limit     atomic.Int64
	evictions prometheus.Counter
}

// touchEvery is how stale an entry's place in the LRU order may be; an
// eviction may pick an entry used less than this ago over an older one.
const touchEvery = time.Second

type memoryShard struct {
	sync.RWMutex
	m          map[string]*memoryEntry
	head, tail *memoryEntry // most and least recently used
}

type memoryEntry struct {
	key        string
	b          Binding
	used       int64 // unix nanoseconds of the last use
	prev, next *memoryEntry
}

func newMemoryTable(evictions prometheus.Counter) *memoryTable {
	t := &memoryTable{seed: maphash.MakeSeed(), stop: make(chan struct{}), evictions: evictions}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*memoryEntry)
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
	e, ok := s.m[key]
	if !ok || !e.b.Live(now) {
		s.RUnlock()
		return Binding{}, ErrNotFound
	}
	b, fresh := e.b, now.UnixNano()-e.used < int64(touchEvery)
	s.RUnlock()
	if !fresh {
		s.Lock()
		if e, ok := s.m[key]; ok {
			s.touch(e, now)
		}
		s.Unlock()
	}
	return b, nil
}

// update runs decide under the shard lock with the current binding and
// whether it is live; if decide says so, its binding is stored. It returns
// the binding in force afterwards and whether decide's binding was stored.
// A new key past the limit evicts the least recently used binding.
func (t *memoryTable) update(key string, now time.Time, decide func(cur Binding, live bool) (Binding, bool)) (Binding, bool, error) {
	s := t.shard(key)
	s.Lock()
	e, ok := s.m[key]
	var cur Binding
	if ok {
		cur = e.b
	}
	next, store := decide(cur, ok && cur.Live(now))
	if !store {
		s.Unlock()
		return cur, false, nil
	}
	if ok {
		e.b = next
		s.touch(e, now)
		s.Unlock()
		return next, true, nil
	}
	e = &memoryEntry{key: key, b: next}
	s.m[key] = e
	s.touch(e, now)
	s.Unlock()
	if t.size.Add(1) > t.limit.Load() {
		t.evictOldest()
	}
	return next, true, nil
}

// evictOldest removes least recently used entries until the table is
// within its limit.
func (t *memoryTable) evictOldest() {
	for t.size.Load() > t.limit.Load() {
		victim, oldest := -1, int64(0)
		for i := range t.shards {
			s := &t.shards[i]
			s.RLock()
			if s.tail != nil && (victim < 0 || s.tail.used < oldest) {
				victim, oldest = i, s.tail.used
			}
			s.RUnlock()
		}
		if victim < 0 {
			return
		}
		s := &t.shards[victim]
		s.Lock()
		if e := s.tail; e != nil {
			s.remove(e)
			t.size.Add(-1)
			t.evictions.Inc()
		}
		s.Unlock()
	}
}

func (t *memoryTable) delete(key string) {
	s := t.shard(key)
	s.Lock()
	if e, ok := s.m[key]; ok {
		s.remove(e)
		t.size.Add(-1)
	}
	s.Unlock()
}

// touch marks e used at now: the front of the shard's order. The shard
// must be locked.
func (s *memoryShard) touch(e *memoryEntry, now time.Time) {
	e.used = now.UnixNano()
	if s.head == e {
		return
	}
	s.unlink(e)
	e.next = s.head
	if s.head != nil {
		s.head.prev = e
	}
	s.head = e
	if s.tail == nil {
		s.tail = e
	}
}

// remove deletes e from the shard. The shard must be locked.
func (s *memoryShard) remove(e *memoryEntry) {
	s.unlink(e)
	delete(s.m, e.key)
}

func (s *memoryShard) unlink(e *memoryEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if s.head == e {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if s.tail == e {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
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
		for _, e := range s.m {
			if e.b.Live(now) {
				out[e.b.Upstream]++
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
				for _, e := range s.m {
					if !e.b.Live(now) {
						s.remove(e)
						t.size.Add(-1)
					}
				}
				s.Unlock()
			}
		}
	}
}
