package sessionstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/boundedcache"
)

// refillCheckInterval is how often a client writes again the writes that
// failed and looks at the store's epochs.
const refillCheckInterval = 2 * time.Second

// maxPending bounds the writes kept for retry while Redis is unreachable.
const maxPending = 65536

// rewriteBatch is how many bindings one pipelined round trip writes back.
const rewriteBatch = 512

// knownBindings is what one Redis client remembers of the bindings it read
// from the server or wrote, so that the store is not the only copy:
//
//   - While Redis cannot be asked (a failover, a restart, a partition), the
//     Store serves a session its last known binding instead of falling
//     back to hashing, so it keeps its backend.
//   - A write that failed is kept and written again (with the script it
//     was, so Add never overwrites another node's newer binding) once
//     Redis answers: on the new primary after a failover.
//   - Every group of the store carries an epoch, a random token. When a
//     group's epoch changes or disappears, the server lost its data (it
//     restarted empty, or a failover promoted a replica that had none), and
//     the client writes back, with Add, every live binding it knows in that
//     group. The sessions and counts come back as the nodes that served
//     them last remember them.
//
// A binding is remembered when this client fetched it from the server or
// wrote it, not on client-side cache hits, so the hit path costs nothing
// more. The memory is bounded by the capacity (known_bindings); past it,
// arbitrary entries make room.
type knownBindings struct {
	entries *boundedcache.Cache[knownBinding]
	off     bool // known_bindings off: remember nothing

	// One copy of each upstream name, shared by the entries: decoded
	// bindings carry a fresh string each.
	names     sync.Map // string -> string
	nameCount atomic.Int32

	mu       sync.Mutex
	pending  map[string]pendingWrite // by full binding key
	prefixes map[string]bool         // key prefixes of the stores using this client
	epochs   map[string]string       // last seen epoch by epoch key
}

// knownBinding is one remembered binding and where it belongs.
type knownBinding struct {
	b      Binding
	prefix string // the store's key prefix
	key    string // the session key, a suffix of the full key
}

// pendingWrite is a write that failed, to be done again.
type pendingWrite struct {
	knownBinding
	put bool // Put (learned from the application); otherwise Add
}

func newKnownBindings(capacity int) *knownBindings {
	return &knownBindings{
		off:      capacity <= 0,
		entries:  boundedcache.New[knownBinding](max(capacity, 1)),
		pending:  map[string]pendingWrite{},
		prefixes: map[string]bool{},
		epochs:   map[string]string{},
	}
}

// usePrefix registers a store's key prefix, whose epochs the client checks.
func (k *knownBindings) usePrefix(prefix string) {
	k.mu.Lock()
	k.prefixes[prefix] = true
	k.mu.Unlock()
}

// remember records b as the binding of key under fullKey.
func (k *knownBindings) remember(fullKey, prefix, key string, b Binding) {
	if k.off {
		return
	}
	b.Upstream = k.intern(b.Upstream)
	k.entries.Put(fullKey, knownBinding{b: b, prefix: prefix, key: fullKey[len(fullKey)-len(key):]}, b.Expires)
}

// maxNames bounds the interned upstream names (a pool's size is far less).
const maxNames = 4096

// intern returns the shared copy of an upstream name.
func (k *knownBindings) intern(name string) string {
	if v, ok := k.names.Load(name); ok {
		return v.(string)
	}
	if k.nameCount.Load() < maxNames {
		if _, loaded := k.names.LoadOrStore(name, name); !loaded {
			k.nameCount.Add(1)
		}
	}
	return name
}

// lookup returns the remembered binding of fullKey while it is live.
func (k *knownBindings) lookup(fullKey string, now time.Time) (Binding, bool) {
	e, ok := k.entries.Get(fullKey, now)
	if !ok || !e.b.Live(now) {
		return Binding{}, false
	}
	return e.b, true
}

// forget drops fullKey (its binding was deleted).
func (k *knownBindings) forget(fullKey string) {
	k.entries.Remove(fullKey)
	k.mu.Lock()
	delete(k.pending, fullKey)
	k.mu.Unlock()
}

// unwritten remembers b and keeps the write for retry.
func (k *knownBindings) unwritten(fullKey, prefix, key string, b Binding, put bool) {
	if k.off {
		return
	}
	k.remember(fullKey, prefix, key, b)
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.pending[fullKey]; !ok && len(k.pending) >= maxPending {
		return
	}
	k.pending[fullKey] = pendingWrite{knownBinding{b: b, prefix: prefix, key: fullKey[len(fullKey)-len(key):]}, put}
}

// sync writes the pending writes and refills the groups whose epoch
// changed. It stops at the first failure: the server is still away.
func (k *knownBindings) sync(ctx context.Context, conn *redisConn, logger *zap.Logger) {
	if n, err := k.retryPending(ctx, conn); n > 0 || err != nil {
		logger.Info("redis session store: wrote again the bindings whose write had failed",
			zap.Int("bindings", n), zap.Error(err))
	}
	k.mu.Lock()
	prefixes := make([]string, 0, len(k.prefixes))
	for p := range k.prefixes {
		prefixes = append(prefixes, p)
	}
	k.mu.Unlock()
	for _, prefix := range prefixes {
		changed, err := k.checkEpochs(ctx, conn, prefix)
		if err != nil {
			return
		}
		if len(changed) == 0 {
			continue
		}
		n, err := k.refill(ctx, conn, prefix, changed)
		logger.Warn("redis session store lost its data (epoch changed); wrote back the bindings this node knows",
			zap.String("key_prefix", prefix), zap.Int("groups", len(changed)), zap.Int("bindings", n), zap.Error(err))
	}
}

// retryPending writes the pending writes, a batch at a time.
func (k *knownBindings) retryPending(ctx context.Context, conn *redisConn) (int, error) {
	k.mu.Lock()
	if len(k.pending) == 0 {
		k.mu.Unlock()
		return 0, nil
	}
	keys := make([]string, 0, len(k.pending))
	writes := make([]pendingWrite, 0, len(k.pending))
	for fk, w := range k.pending {
		keys = append(keys, fk)
		writes = append(writes, w)
	}
	k.mu.Unlock()
	now := time.Now()
	done := 0
	for start := 0; start < len(writes); start += rewriteBatch {
		end := min(start+rewriteBatch, len(writes))
		var adds, puts []rueidis.LuaExec
		var addKeys, putKeys []string
		for i := start; i < end; i++ {
			w := writes[i]
			if !w.b.Live(now) {
				k.dropPending(keys[i], w)
				continue
			}
			// Where the connected deployment keeps it: a write that failed
			// before the first connection was keyed for a single server.
			exec := bindExec(conn.layout, conn.layout.bindingKey(w.prefix, w.key), w.prefix, w.key, w.b, "", now)
			if w.put {
				puts, putKeys = append(puts, exec), append(putKeys, keys[i])
			} else {
				adds, addKeys = append(adds, exec), append(addKeys, keys[i])
			}
		}
		for _, batch := range []struct {
			script *rueidis.Lua
			execs  []rueidis.LuaExec
			keys   []string
		}{{redisAddScript, adds, addKeys}, {redisPutScript, puts, putKeys}} {
			if len(batch.execs) == 0 {
				continue
			}
			// A short deadline per batch: while the failover is under way
			// rueidis retries, and the next tick tries again anyway.
			bctx, cancel := context.WithTimeout(ctx, time.Second)
			results := batch.script.ExecMulti(bctx, conn, batch.execs...)
			cancel()
			for i, res := range results {
				if err := res.Error(); err != nil {
					return done, err
				}
				k.dropPending(batch.keys[i], k.pendingOf(batch.keys[i]))
				done++
				storeMetrics.rewritten.WithLabelValues("retry").Inc()
			}
		}
	}
	return done, nil
}

func (k *knownBindings) pendingOf(fullKey string) pendingWrite {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pending[fullKey]
}

// dropPending removes w unless a newer write replaced it meanwhile.
func (k *knownBindings) dropPending(fullKey string, w pendingWrite) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if cur, ok := k.pending[fullKey]; ok && cur == w {
		delete(k.pending, fullKey)
	}
}

// checkEpochs reads every group's epoch, sets the missing ones, and
// answers the groups whose epoch differs from the one seen before. The
// first look at a group only records its epoch.
func (k *knownBindings) checkEpochs(ctx context.Context, conn *redisConn, prefix string) ([]int, error) {
	n := conn.layout.groups()
	cmds := make(rueidis.Commands, n)
	for g := range n {
		cmds[g] = conn.B().Get().Key(conn.layout.epochKey(prefix, g)).Build()
	}
	var changed []int
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for g, res := range conn.DoMulti(ctx, cmds...) {
		key := conn.layout.epochKey(prefix, g)
		epoch, err := res.ToString()
		if rueidis.IsRedisNil(err) {
			// SET NX then GET: of several nodes finding it missing, one
			// sets it and all read the same token.
			token := make([]byte, 8)
			_, _ = rand.Read(token)
			set := conn.B().Set().Key(key).Value(hex.EncodeToString(token)).Nx().Build()
			if err := conn.Do(ctx, set).Error(); err != nil && !rueidis.IsRedisNil(err) {
				return nil, err
			}
			epoch, err = conn.Do(ctx, conn.B().Get().Key(key).Build()).ToString()
		}
		if err != nil {
			return nil, err
		}
		k.mu.Lock()
		last, seen := k.epochs[key]
		k.epochs[key] = epoch
		k.mu.Unlock()
		if seen && last != epoch {
			changed = append(changed, g)
		}
	}
	return changed, nil
}

// refill writes back, with Add, every live binding this client knows in
// the given groups of prefix.
func (k *knownBindings) refill(ctx context.Context, conn *redisConn, prefix string, groups []int) (int, error) {
	want := map[int]bool{}
	for _, g := range groups {
		want[g] = true
	}
	now := time.Now()
	var batch []rueidis.LuaExec
	done := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, res := range redisAddScript.ExecMulti(bctx, conn, batch...) {
			if err := res.Error(); err != nil {
				return err
			}
			done++
			storeMetrics.rewritten.WithLabelValues("refill").Inc()
		}
		batch = batch[:0]
		return nil
	}
	var all []knownBinding
	k.entries.Range(now, func(_ string, e knownBinding) bool {
		if e.prefix == prefix && e.b.Live(now) && want[conn.layout.group(e.key)] {
			all = append(all, e)
		}
		return true
	})
	for _, e := range all {
		batch = append(batch, bindExec(conn.layout, conn.layout.bindingKey(prefix, e.key), prefix, e.key, e.b, "", now))
		if len(batch) == rewriteBatch {
			if err := flush(); err != nil {
				return done, err
			}
		}
	}
	return done, flush()
}

// bindExec is one run of a binding script (see redis_scripts.go).
func bindExec(l keyLayout, fullKey, prefix, key string, b Binding, from string, now time.Time) rueidis.LuaExec {
	g := l.group(key)
	return rueidis.LuaExec{
		Keys: []string{fullKey, l.upstreamsKey(prefix, g)},
		Args: []string{l.groupPrefix(prefix, g), key, EncodeBinding(b),
			strconv.FormatInt(b.TTL(now).Milliseconds(), 10), b.Upstream, from},
	}
}
