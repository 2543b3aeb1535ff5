package affinity

import (
	"hash/maphash"
	"sync"
	"time"
)

// replayCache remembers, per node, what was decided for an LB cookie that
// asked for work: recording a new session, refreshing or re-signing one,
// moving one off a removed upstream. A browser comes back with the
// cookie it was given in answer; a client without a cookie jar (scripts,
// API clients, load tools) keeps sending the first one, and without this
// every such request would cost store commands and a new Set-Cookie. With
// it, any number of replays of one cookie cost a few store commands (one
// per node) and one re-issue.
//
// It is keyed by the cookie's value, so a newer cookie for the same
// session is decided afresh. Entries live refreshAfter (half the TTL): a
// replayed cookie is looked at again about as often as a returning
// browser's binding is refreshed. A shard that is full drops one
// arbitrary entry for each new one: losing an entry costs one more store
// command, never a wrong answer.
type replayCache struct {
	seed     maphash.Seed
	perShard int
	shards   [replayShards]replayShard
}

const (
	replayShards = 16
	// replayCapacity bounds the cache: about 100 bytes an entry.
	replayCapacity = 1 << 16
)

type replayShard struct {
	sync.Mutex
	m map[string]replayEntry
}

type replayEntry struct {
	upstream string
	until    time.Time
}

func newReplayCache(capacity int) *replayCache {
	c := &replayCache{seed: maphash.MakeSeed(), perShard: max(1, capacity/replayShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]replayEntry)
	}
	return c
}

func (c *replayCache) shard(cookie string) *replayShard {
	return &c.shards[maphash.String(c.seed, cookie)%replayShards]
}

// get returns the upstream decided for cookie, or "".
func (c *replayCache) get(cookie string, now time.Time) string {
	s := c.shard(cookie)
	s.Lock()
	defer s.Unlock()
	e, ok := s.m[cookie]
	if !ok {
		return ""
	}
	if !now.Before(e.until) {
		delete(s.m, cookie)
		return ""
	}
	return e.upstream
}

// put records that cookie was sent to upstream, until until.
func (c *replayCache) put(cookie, upstream string, until time.Time) {
	s := c.shard(cookie)
	s.Lock()
	defer s.Unlock()
	if _, ok := s.m[cookie]; !ok && len(s.m) >= c.perShard {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[cookie] = replayEntry{upstream: upstream, until: until}
}
