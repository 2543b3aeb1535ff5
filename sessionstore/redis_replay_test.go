package sessionstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/internal/testproc"
)

// TestPendingWriteBeforeConnectReachesTheCluster: a write that failed
// while no cluster node answered (the node keyed nothing for a cluster
// yet) is written into the cluster once the client connects, and the
// known binding is still found.
func TestPendingWriteBeforeConnectReachesTheCluster(t *testing.T) {
	cluster := testproc.StartRedisCluster(t, 3)
	other := newTestRedis(t, cluster.Addrs[1], func(r *RedisBackend) { r.KeyPrefix = "pc:" })
	cluster.Nodes[0].Kill()
	node := newTestRedis(t, cluster.Addrs[0], func(r *RedisBackend) {
		r.KeyPrefix = "pc:"
		r.DialTimeout = caddy.Duration(300 * time.Millisecond)
	})
	if node.Mode() != "" {
		t.Fatal("connected to a killed node")
	}
	store := NewStore("pc", node, nil)
	b := bindingFor("10.0.0.9:80", time.Hour)
	store.Remember("sess1", b, false)
	cluster.Nodes[0].Restart(t) // it rejoins with its slots (nodes.conf)
	waitFor(t, 20*time.Second, "the pending write in the cluster", func() bool {
		got, err := other.Get(context.Background(), "sess1")
		return err == nil && got.Upstream == b.Upstream
	})
	if node.Mode() != redisCluster {
		t.Fatalf("mode %q", node.Mode())
	}
	if got, ok := node.LastKnown("sess1"); !ok || got.Upstream != b.Upstream {
		t.Fatalf("LastKnown after connecting: %+v %v", got, ok)
	}
}

// TestReplayNeverUndoesNewerDecisions: node A's kept writes are written
// back once Redis answers, but not over what happened meanwhile: a newer
// binding node B learned stays, a session deleted after A made its write
// stays deleted; a kept Put newer than the store's binding replaces it,
// and a kept Add of an unbound session is written.
func TestReplayNeverUndoesNewerDecisions(t *testing.T) {
	srv := testproc.StartRedis(t)
	ctx := context.Background()
	a := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "rp:" })
	b := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "rp:"; r.DialTimeout = caddy.Duration(2 * time.Second) })
	sa := NewStore("a", a, nil)

	if err := b.Put(ctx, "older-in-store", bindingFor("old:80", 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	sa.Remember("learned", bindingFor("a:80", time.Hour), true)
	sa.Remember("deleted", bindingFor("a:80", time.Hour), false)
	sa.Remember("newer-put", bindingFor("a:80", time.Hour), true)
	sa.Remember("unbound", bindingFor("a:80", time.Hour), false)
	time.Sleep(5 * time.Millisecond)
	// Meanwhile, through node B: a newer binding, and a deletion.
	if err := b.Put(ctx, "learned", bindingFor("b:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Add(ctx, "deleted", bindingFor("b:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "newer-put", bindingFor("old:80", 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*refillCheckInterval, "A's kept writes done", func() bool {
		a.client.known.mu.Lock()
		defer a.client.known.mu.Unlock()
		return len(a.client.known.pending) == 0
	})
	for key, want := range map[string]string{"learned": "b:80", "newer-put": "a:80", "unbound": "a:80"} {
		got, err := b.Get(ctx, key)
		if err != nil || got.Upstream != want {
			t.Errorf("%s after A's retry: %+v %v, want %s", key, got, err, want)
		}
	}
	if got, err := b.Get(ctx, "deleted"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a session deleted after A's write came back: %+v %v", got, err)
	}
	// A's own copy follows: the binding in force, or none.
	if got, ok := a.LastKnown("learned"); !ok || got.Upstream != "b:80" {
		t.Errorf("A's copy of learned after its write-back lost: %+v %v, want b:80", got, ok)
	}
	if got, ok := a.LastKnown("deleted"); ok {
		t.Errorf("A still keeps the deleted session: %+v", got)
	}
	// So a refill after the store loses its data writes back nothing stale.
	time.Sleep(refillCheckInterval + 500*time.Millisecond) // A has seen the epoch
	if _, err := testproc.RedisDo(srv.Addr, "", "FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*refillCheckInterval, "A's refill", func() bool {
		v, _ := testproc.RedisDo(srv.Addr, "", "GET", "rp:b:unbound")
		return v != ""
	})
	for key, want := range map[string]string{"learned": "|b:80", "deleted": ""} {
		v, _ := testproc.RedisDo(srv.Addr, "", "GET", "rp:b:"+key)
		if (want == "" && v != "") || !strings.HasSuffix(v, want) {
			t.Errorf("after the refill Redis holds %q for %s, want %q", v, key, want)
		}
	}
}

// TestNotFoundDropsTheCopy: a node that reads "no binding" from Redis
// (another node deleted it) keeps no copy to serve or write back, but a
// write of its own still waiting for its retry is what it reads.
func TestNotFoundDropsTheCopy(t *testing.T) {
	srv := testproc.StartRedis(t)
	ctx := context.Background()
	a := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "nf:" })
	b := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "nf:"; r.DialTimeout = caddy.Duration(2 * time.Second) })
	if err := a.Put(ctx, "s", bindingFor("x:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "A reads the deletion", func() bool {
		_, err := a.Get(ctx, "s")
		return errors.Is(err, ErrNotFound)
	})
	if got, ok := a.LastKnown("s"); ok {
		t.Fatalf("A keeps a copy of a binding it read as deleted: %+v", got)
	}
	// A write kept for retry is this node's own: it reads it back.
	a.client.known.unwritten("nf:", "mine", bindingFor("y:80", time.Hour), true, time.Now())
	if got, err := a.Get(ctx, "mine"); err != nil || got.Upstream != "y:80" {
		t.Fatalf("A's own kept write: %+v %v", got, err)
	}
}

// TestTombstoneUsesTheServersClock: a deleting node whose clock runs 30 s
// ahead does not make a session re-created a second later unwritable.
func TestTombstoneUsesTheServersClock(t *testing.T) {
	srv := testproc.StartRedis(t)
	ctx := context.Background()
	a := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "sk:" })
	conn, err := a.client.get()
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(30 * time.Second).UnixMilli()
	if err := redisDeleteScript.Exec(ctx, conn, []string{"sk:b:s"},
		[]string{"sk:", "s", "600000", strconv.FormatInt(ahead, 10)}).Error(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	k := a.client.known
	if err := k.measureOffset(ctx, conn); err != nil {
		t.Fatal(err)
	}
	k.unwritten("sk:", "s", bindingFor("z:80", time.Hour), false, time.Now())
	if _, err := k.retryPending(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if v, _ := testproc.RedisDo(srv.Addr, "", "GET", "sk:b:s"); !strings.HasSuffix(v, "|z:80") {
		t.Fatalf("the re-created session was not written (Redis holds %q)", v)
	}
}

// TestDeleteOverAHugeExpiry: a stored value with an absurd expiry is
// deleted, with its tombstone, not half-way.
func TestDeleteOverAHugeExpiry(t *testing.T) {
	srv := testproc.StartRedis(t)
	a := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "he:" })
	if _, err := testproc.RedisDo(srv.Addr, "", "SET", "he:b:s", "99999999999999999999|x:80"); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(context.Background(), "s"); err != nil {
		t.Fatal(err)
	}
	if v, _ := testproc.RedisDo(srv.Addr, "", "EXISTS", "he:b:s", "he:d:s"); v != "1" {
		t.Fatalf("after Delete: %s of the binding and its tombstone exist, want only the tombstone", v)
	}
}

// TestRetryKeepsANewerFailedWrite: a write that fails again while the
// previous one is being retried is kept, and written.
func TestRetryKeepsANewerFailedWrite(t *testing.T) {
	srv := testproc.StartRedis(t)
	r := &RedisBackend{Addresses: []string{srv.Addr}, KeyPrefix: "dp:", Heartbeat: -1}
	provisionForTest(t, r)
	opt, _, err := r.clientOption()
	if err != nil {
		t.Fatal(err)
	}
	opt.refillGap = time.Hour // the test drives the retries
	c, err := connectRedis(opt, 1000, r.logger)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Destruct()
	conn, _ := c.get()
	c.known.usePrefix("dp:")
	c.known.unwritten("dp:", "s", bindingFor("first:80", time.Hour), true, time.Now())
	if _, err := testproc.RedisDo(srv.Addr, "", "CLIENT", "PAUSE", "600", "WRITE"); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		c.known.unwritten("dp:", "s", bindingFor("second:80", time.Hour), true, time.Now())
	}()
	if _, err := c.known.retryPending(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	c.known.mu.Lock()
	left := len(c.known.pending)
	c.known.mu.Unlock()
	if left != 1 {
		t.Fatalf("%d writes pending after the retry, want the newer one", left)
	}
	if _, err := c.known.retryPending(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	if v, _ := testproc.RedisDo(srv.Addr, "", "GET", "dp:b:s"); !strings.HasSuffix(v, "|second:80") {
		t.Fatalf("Redis holds %q, want the newer write", v)
	}
}

// TestRegistryKeepsNodesWithLongerHeartbeats: a node with a short
// heartbeat does not drop one whose record, on a longer one, is live.
func TestRegistryKeepsNodesWithLongerHeartbeats(t *testing.T) {
	srv := testproc.StartRedis(t)
	ctx := context.Background()
	a := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "hb:" })
	if err := a.Register(ctx, "slow", []byte(`{"id":"slow"}`), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	if err := a.Register(ctx, "fast", []byte(`{"id":"fast"}`), time.Second); err != nil {
		t.Fatal(err)
	}
	if m, err := a.Members(ctx); err != nil || len(m) != 2 {
		t.Fatalf("members %q %v, want slow and fast", m, err)
	}
}

// TestClusterWithDatabaseIsAConfigError: `db 1` on a cluster fails the
// config with a message saying why, instead of "not reachable".
func TestClusterWithDatabaseIsAConfigError(t *testing.T) {
	cluster := testproc.StartRedisCluster(t, 3)
	r := &RedisBackend{Addresses: []string{cluster.Addrs[0]}, DB: 1}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := r.Provision(ctx)
	if err == nil {
		_ = r.Cleanup()
		t.Fatal("db 1 on a cluster provisioned")
	}
	if !strings.Contains(err.Error(), "database 0 only") {
		t.Fatalf("error %q does not say a cluster has database 0 only", err)
	}
}

// TestReleasedPrefixIsNotChecked: a key prefix no config uses any more
// is neither checked nor refilled by the shared client.
func TestReleasedPrefixIsNotChecked(t *testing.T) {
	srv := testproc.StartRedis(t)
	a := &RedisBackend{Addresses: []string{srv.Addr}, KeyPrefix: "one:"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := a.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	b := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "two:" })
	known := b.client.known
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	known.mu.Lock()
	defer known.mu.Unlock()
	if len(known.prefixes) != 1 || known.prefixes["two:"] != 1 {
		t.Fatalf("prefixes after one config's cleanup: %v", known.prefixes)
	}
}

// TestReplayOverGarbage: a tombstone or binding that is not ours (another
// program under the prefix) neither errors the replay nor wedges the
// queue: the kept write is written.
func TestReplayOverGarbage(t *testing.T) {
	srv := testproc.StartRedis(t)
	a := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "gb:" })
	for _, kv := range [][2]string{{"gb:d:tomb", "not-a-number"}, {"gb:b:bad", "no separator"}} {
		if _, err := testproc.RedisDo(srv.Addr, "", "SET", kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	store := NewStore("gb", a, nil)
	store.Remember("tomb", bindingFor("10.0.0.1:80", time.Hour), false)
	store.Remember("bad", bindingFor("10.0.0.2:80", time.Hour), true)
	waitFor(t, 3*refillCheckInterval, "both kept writes done", func() bool {
		a.client.known.mu.Lock()
		defer a.client.known.mu.Unlock()
		return len(a.client.known.pending) == 0
	})
	for key, want := range map[string]string{"tomb": "10.0.0.1:80", "bad": "10.0.0.2:80"} {
		if v, _ := testproc.RedisDo(srv.Addr, "", "GET", "gb:b:"+key); !strings.HasSuffix(v, "|"+want) {
			t.Errorf("%s: Redis holds %q, want the kept write to %s", key, v, want)
		}
	}
}
