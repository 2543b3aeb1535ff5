package sessionstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// The drain set lives in one memcached key holding a sorted JSON list of
// upstreams. Writers change it with a compare-and-swap loop; readers keep
// the decoded set for local_cache_ttl and hand out the same map while the
// stored value is unchanged.

// memcachedDrainSet is the decoded drain set with the value it came from
// and how long it may be served.
type memcachedDrainSet struct {
	set   map[string]bool
	raw   []byte
	until time.Time
}

// SetDraining implements Backend. The set is one key holding a JSON list,
// changed with a compare-and-swap loop.
func (m *MemcachedBackend) SetDraining(ctx context.Context, upstream string, draining bool) error {
	c := m.conn
	for range memcachedCASAttempts {
		if err := ctx.Err(); err != nil {
			return err
		}
		item, err := c.client.Get(c.drainKey())
		var members []string
		switch {
		case errors.Is(err, memcache.ErrCacheMiss):
			item = nil
		case err != nil:
			return fmt.Errorf("memcached gets: %w", err)
		default:
			if members, err = decodeDrainList(item.Value); err != nil {
				return err
			}
		}
		i, found := slices.BinarySearch(members, upstream)
		if found == draining {
			c.rememberDrain(itemValue(item), time.Now())
			return nil
		}
		if draining {
			members = slices.Insert(members, i, upstream)
		} else {
			members = slices.Delete(members, i, i+1)
		}
		value, err := json.Marshal(members)
		if err != nil {
			return err
		}
		if item == nil {
			err = c.client.Add(&memcache.Item{Key: c.drainKey(), Value: value})
		} else {
			item.Value = value
			err = c.client.CompareAndSwap(item)
		}
		if errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCASConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("memcached set drain: %w", err)
		}
		c.rememberDrain(value, time.Now())
		return nil
	}
	return fmt.Errorf("memcached set drain: %d conflicting writes in a row", memcachedCASAttempts)
}

// Draining implements Backend. The set is served from memory for
// local_cache_ttl, and while its value stays the same every call returns
// the same map. While one call refreshes it, others get the previous set.
func (m *MemcachedBackend) Draining(ctx context.Context) (map[string]bool, error) {
	c := m.conn
	cur := c.drain.Load()
	if cur != nil && time.Now().Before(cur.until) {
		return cur.set, nil
	}
	if cur != nil && !c.drainMu.TryLock() {
		return cur.set, nil
	}
	if cur == nil {
		c.drainMu.Lock()
	}
	defer c.drainMu.Unlock()
	if cur = c.drain.Load(); cur != nil && time.Now().Before(cur.until) {
		return cur.set, nil // refreshed while we waited
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	item, err := c.client.Get(c.drainKey())
	if err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
		return nil, fmt.Errorf("memcached get: %w", err)
	}
	next, err := c.rememberDrain(itemValue(item), time.Now())
	if err != nil {
		return nil, err
	}
	return next.set, nil
}

// rememberDrain records raw as the drain set read or written at now,
// keeping the previous map when raw has not changed.
func (c *memcachedConn) rememberDrain(raw []byte, now time.Time) (*memcachedDrainSet, error) {
	next := &memcachedDrainSet{raw: raw, until: now.Add(c.cacheTTL)}
	if prev := c.drain.Load(); prev != nil && bytes.Equal(prev.raw, raw) {
		next.set = prev.set
	} else {
		members, err := decodeDrainList(raw)
		if err != nil {
			return nil, err
		}
		next.set = make(map[string]bool, len(members))
		for _, up := range members {
			next.set[up] = true
		}
	}
	c.drain.Store(next)
	return next, nil
}

// decodeDrainList decodes the drain key's value, a sorted JSON list.
func decodeDrainList(raw []byte) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var members []string
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("memcached drain set: malformed value %q", truncate(string(raw), 64))
	}
	slices.Sort(members)
	return members, nil
}

func itemValue(item *memcache.Item) []byte {
	if item == nil {
		return nil
	}
	return item.Value
}
