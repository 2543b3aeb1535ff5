package sessionstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Memcached cannot list keys, so the memcached backend counts sessions with
// counters it keeps beside the bindings. Plain per-upstream counters would
// only ever grow, since nobody sees a binding expire. Instead, each binding
// is counted in a bucket named by its upstream and the minute in which it
// expires:
//
//	P n:<upstream id>:<expiry minute>   decimal counter
//	P upstreams                         JSON {upstream: latest expiry minute}
//
// Writing a binding increments its bucket; replacing, refreshing or
// deleting one decrements the bucket of the binding it replaces (read from
// memcached by the same call). Counts sums, per upstream, the buckets from
// the current minute to the latest one, so a binding stops counting at the
// end of the minute in which it expires without anyone subtracting it, and
// old buckets expire from memcached by themselves.
//
// What that guarantees: with no expiry, eviction or failure in between,
// counts after any sequence of binds, moves and deletes are exact. Beyond
// that they are approximate, and every error heals by itself once the
// buckets involved have passed (at most the bindings' TTL):
//   - a binding is still counted up to one window (a minute) after it
//     expires;
//   - a binding memcached evicts early, or loses in a restart, is counted
//     until its expiry;
//   - two nodes writing the same session at the same instant, or a counter
//     update that fails after the binding was written, can leave one
//     session counted twice or not at all;
//   - bindings expiring more than a week ahead are not counted.
//
// The upstream id is a hash, so any upstream string (unix sockets,
// IPv6 literals, spaces) gives a valid memcached key.
type sessionCounters struct {
	client *memcache.Client
	prefix string
	window time.Duration

	mu     sync.Mutex
	listed map[string]int64 // upstream -> latest bucket known to be in the list key
}

const (
	memcachedCountWindow  = time.Minute
	memcachedCountHorizon = 7 * 24 * time.Hour
	// memcachedMultiGetBatch bounds the keys of one GetMulti request.
	memcachedMultiGetBatch = 200
)

func newSessionCounters(client *memcache.Client, prefix string) *sessionCounters {
	return &sessionCounters{client: client, prefix: prefix, window: memcachedCountWindow, listed: make(map[string]int64)}
}

func (sc *sessionCounters) bucket(t time.Time) int64 {
	return t.UnixMilli() / sc.window.Milliseconds()
}

func (sc *sessionCounters) listKey() string { return sc.prefix + "upstreams" }

func (sc *sessionCounters) counterKey(upstream string, bucket int64) string {
	sum := sha256.Sum256([]byte(upstream))
	return sc.prefix + "n:" + hex.EncodeToString(sum[:12]) + ":" + strconv.FormatInt(bucket, 10)
}

// record moves one session's count from binding old to binding next; either
// may be the zero Binding (no binding before, or none after).
func (sc *sessionCounters) record(old, next Binding, now time.Time) error {
	nowBucket := sc.bucket(now)
	oldBucket, nextBucket := int64(-1), int64(-1)
	if old.Upstream != "" {
		if b := sc.bucket(old.Expires); b >= nowBucket { // past buckets are not summed any more
			oldBucket = b
		}
	}
	if next.Upstream != "" {
		nextBucket = sc.bucket(next.Expires)
	}
	if old.Upstream == next.Upstream && oldBucket == nextBucket {
		return nil // refreshed within the same minute: same counter
	}
	var errs []error
	if oldBucket >= 0 {
		errs = append(errs, sc.decrement(old.Upstream, oldBucket))
	}
	if nextBucket >= 0 {
		errs = append(errs, sc.increment(next.Upstream, nextBucket, now), sc.list(next.Upstream, nextBucket, now))
	}
	return errors.Join(errs...)
}

func (sc *sessionCounters) increment(upstream string, bucket int64, now time.Time) error {
	key := sc.counterKey(upstream, bucket)
	// The counter outlives its bucket by one window, then memcached drops it.
	until := time.UnixMilli((bucket + 2) * sc.window.Milliseconds())
	for range memcachedCASAttempts {
		_, err := sc.client.Increment(key, 1)
		if !errors.Is(err, memcache.ErrCacheMiss) {
			return err
		}
		err = sc.client.Add(&memcache.Item{Key: key, Value: []byte("1"), Expiration: memcachedExpiration(until.Sub(now), now)})
		if !errors.Is(err, memcache.ErrNotStored) {
			return err
		}
		// Another node created the counter first: increment it.
	}
	return fmt.Errorf("counter %s: created and removed concurrently %d times", key, memcachedCASAttempts)
}

func (sc *sessionCounters) decrement(upstream string, bucket int64) error {
	_, err := sc.client.Decrement(sc.counterKey(upstream, bucket), 1)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil // counter evicted: nothing to subtract from
	}
	return err
}

// list makes sure the list key names upstream with a latest bucket of at
// least bucket, so Counts reads that far. Each node updates it at most once
// per upstream and window.
func (sc *sessionCounters) list(upstream string, bucket int64, now time.Time) error {
	sc.mu.Lock()
	known := sc.listed[upstream]
	sc.mu.Unlock()
	if bucket <= known {
		return nil
	}
	nowBucket := sc.bucket(now)
	for range memcachedCASAttempts {
		item, latest, err := sc.readList()
		if err != nil {
			return err
		}
		if latest[upstream] < bucket {
			latest[upstream] = bucket
			for up, b := range latest {
				if b < nowBucket {
					delete(latest, up) // nothing left to count there
				}
			}
			value, err := json.Marshal(latest)
			if err != nil {
				return err
			}
			if item == nil {
				err = sc.client.Add(&memcache.Item{Key: sc.listKey(), Value: value})
			} else {
				item.Value = value
				err = sc.client.CompareAndSwap(item)
			}
			if errors.Is(err, memcache.ErrNotStored) || errors.Is(err, memcache.ErrCASConflict) {
				continue
			}
			if err != nil {
				return err
			}
		}
		sc.mu.Lock()
		sc.listed[upstream] = max(sc.listed[upstream], latest[upstream])
		sc.mu.Unlock()
		return nil
	}
	return fmt.Errorf("upstream list: %d conflicting writes in a row", memcachedCASAttempts)
}

// readList returns the list key's item (nil if missing) and its decoded
// content. A value that does not decode is replaced.
func (sc *sessionCounters) readList() (*memcache.Item, map[string]int64, error) {
	latest := make(map[string]int64)
	item, err := sc.client.Get(sc.listKey())
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, latest, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if json.Unmarshal(item.Value, &latest) != nil {
		clear(latest)
	}
	return item, latest, nil
}

// counts sums each listed upstream's buckets from now on.
func (sc *sessionCounters) counts(now time.Time) (map[string]int64, error) {
	_, latest, err := sc.readList()
	if err != nil {
		return nil, err
	}
	from := sc.bucket(now)
	horizon := sc.bucket(now.Add(memcachedCountHorizon))
	var keys []string
	owner := make(map[string]string)
	for up, last := range latest {
		for b := from; b <= min(last, horizon); b++ {
			k := sc.counterKey(up, b)
			keys = append(keys, k)
			owner[k] = up
		}
	}
	counts := make(map[string]int64)
	for len(keys) > 0 {
		batch := keys[:min(len(keys), memcachedMultiGetBatch)]
		keys = keys[len(batch):]
		items, err := sc.client.GetMulti(batch)
		if err != nil {
			return nil, err
		}
		for k, item := range items {
			// decr may leave the number space-padded.
			n, err := strconv.ParseInt(strings.TrimSpace(string(item.Value)), 10, 64)
			if err == nil && n > 0 {
				counts[owner[k]] += n
			}
		}
	}
	return counts, nil
}

// memcachedMaxRelativeExpiry is the longest expiration memcached reads as
// seconds from now; it reads any larger number as a Unix time.
const memcachedMaxRelativeExpiry = 30 * 24 * 60 * 60

// memcachedExpiration converts a lifetime into memcached's expiration
// field: whole seconds rounded up (an item must not vanish before its
// binding expires), at least 1 (0 means never), and an absolute Unix time
// beyond 30 days.
func memcachedExpiration(d time.Duration, now time.Time) int32 {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	if secs <= memcachedMaxRelativeExpiry {
		return int32(secs)
	}
	return int32(min(now.Unix()+secs, math.MaxInt32))
}
