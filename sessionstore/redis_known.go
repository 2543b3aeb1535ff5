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

// maxPendingAge is how long a failed write is kept for retry. The
// tombstone a deletion leaves lives at least as long (see luaReplay), so
// a retry never brings back a session deleted after it was made.
const maxPendingAge = 10 * time.Minute

// rewriteBatch is how many bindings one pipelined round trip writes back.
const rewriteBatch = 512

// knownBindings is what one Redis client remembers of the bindings it read
// from the server or wrote, so that the store is not the only copy:
//
//   - While Redis cannot be asked (a failover, a restart, a partition), the
//     Store serves a session its last known binding instead of falling
//     back to hashing, so it keeps its backend.
//   - A write that failed is kept and written again once Redis answers: on
//     the new primary after a failover.
//   - Every group of the store carries an epoch, a random token. When a
//     group's epoch changes or disappears, the server lost its data (it
//     restarted empty, or a failover promoted a replica that had none), and
//     the client writes back every live binding it knows in that group.
//
// Writing back never undoes a newer decision: it runs redisReplayScript,
// which skips a session deleted after this node saw it (deletions leave a
// tombstone with their time in the server's clock; the node's time is
// turned into it by the offset it measures every tick), never replaces a
// binding when adding, and replaces one when putting only with a later
// expiry (a later write). A write-back that finds a newer decision
// replaces the node's copy with it, or forgets it.
//
// Entries are keyed by key prefix and session key, not by the full Redis
// key, which depends on the deployment the client connects to. A binding
// is remembered when this client fetched it from the server or wrote it,
// not on client-side cache hits, so the hit path costs nothing more. The
// memory is bounded by the capacity (known_bindings); past it, arbitrary
// entries make room.
type knownBindings struct {
	entries *boundedcache.Cache[knownBinding]
	off     bool // known_bindings off: remember nothing

	// One copy of each upstream name, shared by the entries: decoded
	// bindings carry a fresh string each.
	names     sync.Map // string -> string
	nameCount atomic.Int32

	// offset is the server's clock minus this node's, in ms, measured
	// every tick: written-back bindings are compared with tombstones in
	// the server's clock.
	offset atomic.Int64

	mu       sync.Mutex
	pending  map[string]pendingWrite // by entry key
	npending atomic.Int32            // len(pending), read without the lock
	prefixes map[string]int          // key prefixes in use -> backends using them
	epochs   map[string]string       // last seen epoch by epoch key
}

// knownBinding is one remembered binding and where it belongs.
type knownBinding struct {
	b      Binding
	seen   int64  // when this node read or wrote it, unix ms
	prefix string // the store's key prefix
	key    string // the session key
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
		prefixes: map[string]int{},
		epochs:   map[string]string{},
	}
}

// entryKey is where an entry is kept: prefix, NUL, session key.
func entryKey(prefix, key string) string { return prefix + "\x00" + key }

// usePrefix registers a backend using a key prefix, whose epochs the
// client checks; releasePrefix undoes it.
func (k *knownBindings) usePrefix(prefix string) {
	k.mu.Lock()
	k.prefixes[prefix]++
	k.mu.Unlock()
}

func (k *knownBindings) releasePrefix(prefix string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.prefixes[prefix]--; k.prefixes[prefix] <= 0 {
		delete(k.prefixes, prefix)
		for ek, w := range k.pending {
			if w.prefix == prefix {
				delete(k.pending, ek)
			}
		}
		k.npending.Store(int32(len(k.pending)))
	}
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

// remember records b as the binding of key under prefix, seen at now.
func (k *knownBindings) remember(prefix, key string, b Binding, now time.Time) {
	if k.off {
		return
	}
	b.Upstream = k.intern(b.Upstream)
	ek := entryKey(prefix, key)
	k.entries.Put(ek, knownEntry(ek, prefix, b, now), b.Expires)
}

// knownEntry is the entry for b under ek; its session key shares ek's
// memory rather than holding on to the caller's string.
func knownEntry(ek, prefix string, b Binding, now time.Time) knownBinding {
	return knownBinding{b: b, seen: now.UnixMilli(), prefix: prefix, key: ek[len(prefix)+1:]}
}

// lookup returns the remembered binding of key while it is live.
func (k *knownBindings) lookup(prefix, key string, now time.Time) (Binding, bool) {
	if k.off {
		return Binding{}, false
	}
	e, ok := k.entries.Get(entryKey(prefix, key), now)
	if !ok || !e.b.Live(now) {
		return Binding{}, false
	}
	return e.b, true
}

// forget drops key (its binding was deleted).
func (k *knownBindings) forget(prefix, key string) {
	if k.off {
		return
	}
	ek := entryKey(prefix, key)
	k.entries.Remove(ek)
	k.mu.Lock()
	delete(k.pending, ek)
	k.npending.Store(int32(len(k.pending)))
	k.mu.Unlock()
}

// notFound handles the store saying key has no binding. A write of this
// node's still waiting for its retry is answered instead (a node sees its
// own writes). Otherwise, when the answer came from the server (not the
// client-side cache), a copy kept here is dropped, so it is neither
// served in an outage nor written back in a refill.
func (k *knownBindings) notFound(prefix, key string, fromServer bool, now time.Time) (Binding, bool) {
	if k.off || (!fromServer && k.npending.Load() == 0) {
		return Binding{}, false
	}
	ek := entryKey(prefix, key)
	if k.npending.Load() > 0 {
		k.mu.Lock()
		w, pending := k.pending[ek]
		k.mu.Unlock()
		if pending && w.b.Live(now) {
			return w.b, true
		}
	}
	if fromServer {
		k.entries.Remove(ek)
	}
	return Binding{}, false
}

// unwritten remembers b and keeps the write for retry.
func (k *knownBindings) unwritten(prefix, key string, b Binding, put bool, now time.Time) {
	if k.off {
		return
	}
	k.remember(prefix, key, b, now)
	ek := entryKey(prefix, key)
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.pending[ek]; !ok && len(k.pending) >= maxPending {
		return
	}
	k.pending[ek] = pendingWrite{knownEntry(ek, prefix, b, now), put}
	k.npending.Store(int32(len(k.pending)))
}

// sync writes the pending writes and refills the groups whose epoch
// changed. It stops at the first failure: the server is still away.
func (k *knownBindings) sync(ctx context.Context, conn *redisConn, logger *zap.Logger) {
	if k.off {
		return // nothing kept: nothing to write again
	}
	if err := k.measureOffset(ctx, conn); err != nil {
		return
	}
	n, err := k.retryPending(ctx, conn)
	if n > 0 {
		logger.Info("redis session store: wrote again the bindings whose write had failed",
			zap.Int("bindings", n), zap.Error(err))
	}
	if err != nil {
		return
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

// measureOffset reads the server's clock (TIME) and records its offset
// from this node's, taking the middle of the round trip.
func (k *knownBindings) measureOffset(ctx context.Context, conn *redisConn) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	before := time.Now()
	t, err := conn.Do(ctx, conn.B().Time().Build()).AsIntSlice()
	if err != nil {
		return err
	}
	if len(t) != 2 {
		return nil
	}
	local := before.Add(time.Since(before) / 2).UnixMilli()
	k.offset.Store(t[0]*1000 + t[1]/1000 - local)
	return nil
}

// settle updates the node's copy after a write-back answered: the
// binding in force when the store kept another, none when the session
// was deleted since.
func (k *knownBindings) settle(e knownBinding, res rueidis.RedisResult, now time.Time) {
	reply, err := res.ToArray()
	if err != nil || len(reply) != 2 {
		return
	}
	if stored, _ := reply[0].AsInt64(); stored == 1 {
		return
	}
	s, err := reply[1].ToString()
	if err != nil { // nil: deleted since this node saw it
		k.forgetIfSame(e)
		return
	}
	if cur, err := DecodeBinding(s); err == nil {
		k.replaceIfSame(e, cur, now)
	}
}

// forgetIfSame drops e's entry unless it changed meanwhile.
func (k *knownBindings) forgetIfSame(e knownBinding) {
	ek := entryKey(e.prefix, e.key)
	if cur, ok := k.entries.Get(ek, time.Now()); ok && cur == e {
		k.entries.Remove(ek)
	}
}

// replaceIfSame records cur as e's binding unless e's entry changed
// meanwhile.
func (k *knownBindings) replaceIfSame(e knownBinding, cur Binding, now time.Time) {
	ek := entryKey(e.prefix, e.key)
	if old, ok := k.entries.Get(ek, now); !ok || old == e {
		k.remember(e.prefix, e.key, cur, now)
	}
}

// retryPending writes the pending writes, a batch at a time, and answers
// how many it wrote (or found superseded).
func (k *knownBindings) retryPending(ctx context.Context, conn *redisConn) (int, error) {
	k.mu.Lock()
	if len(k.pending) == 0 {
		k.mu.Unlock()
		return 0, nil
	}
	keys := make([]string, 0, len(k.pending))
	writes := make([]pendingWrite, 0, len(k.pending))
	for ek, w := range k.pending {
		keys = append(keys, ek)
		writes = append(writes, w)
	}
	k.mu.Unlock()
	now := time.Now()
	done := 0
	for start := 0; start < len(writes); start += rewriteBatch {
		end := min(start+rewriteBatch, len(writes))
		var execs []rueidis.LuaExec
		var idx []int
		for i := start; i < end; i++ {
			w := writes[i]
			if !w.b.Live(now) || now.Sub(time.UnixMilli(w.seen)) > maxPendingAge {
				k.dropPending(keys[i], w)
				continue
			}
			execs = append(execs, replayExec(conn.layout, w.knownBinding, w.put, k.offset.Load(), now))
			idx = append(idx, i)
		}
		if len(execs) == 0 {
			continue
		}
		// A short deadline per batch: while a failover is under way
		// rueidis retries, and the next tick tries again anyway.
		bctx, cancel := context.WithTimeout(ctx, time.Second)
		results := redisReplayScript.ExecMulti(bctx, conn, execs...)
		cancel()
		for j, res := range results {
			i := idx[j]
			if err := res.Error(); err != nil {
				if _, refused := rueidis.IsRedisErr(err); !refused {
					return done, err // not answered: try again later
				}
				// Redis answered with an error (a script error, READONLY
				// during a failover...): try the rest; this one comes
				// again until it is answered or too old.
				continue
			}
			k.settle(writes[i].knownBinding, res, now)
			// Dropped only if no newer failed write replaced it meanwhile.
			k.dropPending(keys[i], writes[i])
			done++
			storeMetrics.rewritten.WithLabelValues("retry").Inc()
		}
	}
	return done, nil
}

// dropPending removes w unless a newer write replaced it meanwhile.
func (k *knownBindings) dropPending(ek string, w pendingWrite) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if cur, ok := k.pending[ek]; ok && cur == w {
		delete(k.pending, ek)
		k.npending.Store(int32(len(k.pending)))
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

// refill writes back every live binding this client knows in the given
// groups of prefix (luaReplay in add mode), and answers how many runs
// were made.
func (k *knownBindings) refill(ctx context.Context, conn *redisConn, prefix string, groups []int) (int, error) {
	want := map[int]bool{}
	for _, g := range groups {
		want[g] = true
	}
	now := time.Now()
	var all []knownBinding
	k.entries.Range(now, func(_ string, e knownBinding) bool {
		if e.prefix == prefix && e.b.Live(now) && want[conn.layout.group(e.key)] {
			all = append(all, e)
		}
		return true
	})
	done := 0
	for start := 0; start < len(all); start += rewriteBatch {
		end := min(start+rewriteBatch, len(all))
		execs := make([]rueidis.LuaExec, 0, end-start)
		for _, e := range all[start:end] {
			execs = append(execs, replayExec(conn.layout, e, false, k.offset.Load(), now))
		}
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		results := redisReplayScript.ExecMulti(bctx, conn, execs...)
		cancel()
		for j, res := range results {
			if err := res.Error(); err != nil {
				if _, refused := rueidis.IsRedisErr(err); refused {
					continue
				}
				return done, err
			}
			k.settle(all[start+j], res, now)
			done++
			storeMetrics.rewritten.WithLabelValues("refill").Inc()
		}
	}
	return done, nil
}

// bindExec is one run of a binding script (see redis_scripts.go).
func bindExec(l keyLayout, prefix, key string, b Binding, from string, now time.Time) rueidis.LuaExec {
	g := l.group(key)
	return rueidis.LuaExec{
		Keys: []string{l.bindingKey(prefix, key), l.upstreamsKey(prefix, g)},
		Args: []string{l.groupPrefix(prefix, g), key, EncodeBinding(b),
			strconv.FormatInt(b.TTL(now).Milliseconds(), 10), b.Upstream, from},
	}
}

// replayExec is one run of redisReplayScript writing e back; offset
// turns the time the node saw it into the server's clock.
func replayExec(l keyLayout, e knownBinding, put bool, offset int64, now time.Time) rueidis.LuaExec {
	exec := bindExec(l, e.prefix, e.key, e.b, "", now)
	mode := "add"
	if put {
		mode = "put"
	}
	exec.Args = append(exec.Args, strconv.FormatInt(e.seen+offset, 10), mode)
	return exec
}

// counts returns the live bindings this node remembers under prefix, per
// upstream: the sessions it read or wrote lately.
func (k *knownBindings) counts(prefix string, now time.Time) map[string]int64 {
	if k.off {
		return nil // known_bindings off: nothing is remembered
	}
	out := map[string]int64{}
	ms := now.UnixMilli()
	k.entries.Range(now, func(_ string, e knownBinding) bool {
		if e.prefix == prefix && e.b.Expires.UnixMilli() > ms {
			out[e.b.Upstream]++
		}
		return true
	})
	return out
}
