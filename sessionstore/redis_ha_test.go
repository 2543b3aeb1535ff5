package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/internal/testproc"
)

// TestRedisClusterAcrossSlots runs two nodes against a three-primary
// Redis Cluster, each given the address of a different primary only:
// both detect the cluster, see each other's bindings and drain flags, and
// count exactly; the bindings spread over every primary.
func TestRedisClusterAcrossSlots(t *testing.T) {
	cluster := testproc.StartRedisCluster(t, 3)
	nodeA := newTestRedis(t, cluster.Addrs[0], func(r *RedisBackend) { r.KeyPrefix = "cl:" })
	nodeB := newTestRedis(t, cluster.Addrs[1], func(r *RedisBackend) { r.KeyPrefix = "cl:"; r.DialTimeout = caddy.Duration(2 * time.Second) })
	if nodeA.poolKey == nodeB.poolKey {
		t.Fatal("the two nodes share one client")
	}
	if nodeA.Mode() != redisCluster || nodeB.Mode() != redisCluster {
		t.Fatalf("modes %q %q, want cluster", nodeA.Mode(), nodeB.Mode())
	}
	ctx := context.Background()
	const n = 600
	ups := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}
	for i := range n {
		node := nodeA
		if i%2 == 1 {
			node = nodeB
		}
		if _, added, err := node.Add(ctx, "s"+strconv.Itoa(i), bindingFor(ups[i%3], time.Hour)); err != nil || !added {
			t.Fatalf("Add s%d: added=%v err=%v", i, added, err)
		}
	}
	for i := range n {
		node := nodeB
		if i%2 == 1 {
			node = nodeA
		}
		b, err := node.Get(ctx, "s"+strconv.Itoa(i))
		if err != nil || b.Upstream != ups[i%3] {
			t.Fatalf("Get s%d on the other node: %+v %v", i, b, err)
		}
	}
	// Rebinding moves a session between upstream sets of its group.
	if _, ok, err := nodeB.Swap(ctx, "s0", ups[0], bindingFor(ups[1], time.Hour)); err != nil || !ok {
		t.Fatalf("Swap: %v %v", ok, err)
	}
	if err := nodeA.Delete(ctx, "s3"); err != nil {
		t.Fatal(err)
	}
	for _, node := range []*RedisBackend{nodeA, nodeB} {
		counts, err := node.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{ups[0]: n/3 - 2, ups[1]: n/3 + 1, ups[2]: n / 3}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Fatalf("Counts = %v, want %v", counts, want)
		}
	}
	if err := nodeA.SetDraining(ctx, ups[2], true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "drain seen by the other node", func() bool {
		d, err := nodeB.Draining(ctx)
		return err == nil && d[ups[2]]
	})
	// Every primary holds a share of the bindings.
	for _, addr := range cluster.Addrs {
		out, err := testproc.RedisDo(addr, "", "DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := strconv.Atoi(out)
		if keys < n/10 {
			t.Errorf("primary %s holds %d keys of %d bindings: not spread", addr, keys, n)
		}
		t.Logf("primary %s: %d keys", addr, keys)
	}
	// A hit is served from the client-side cache: no command reaches a
	// primary (once the key is no longer one this node just wrote).
	time.Sleep(3 * recentWriteWindow)
	if _, err := nodeA.Get(ctx, "s10"); err != nil {
		t.Fatal(err)
	}
	before := clusterGets(t, cluster)
	for range 100 {
		if _, err := nodeA.Get(ctx, "s10"); err != nil {
			t.Fatal(err)
		}
	}
	if after := clusterGets(t, cluster); after != before {
		t.Errorf("100 cached hits made %d GETs on the cluster, want 0", after-before)
	}
}

// clusterGets sums the GET calls the cluster's primaries served.
func clusterGets(t *testing.T, c *testproc.Cluster) int {
	t.Helper()
	total := 0
	for _, addr := range c.Addrs {
		out, err := testproc.RedisDo(addr, "", "INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_get:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				total += n
			}
		}
	}
	return total
}

// TestRedisSentinelFailover kills the primary under a Sentinel-backed
// store: known bindings are served while no primary answers, writes made
// meanwhile are written to the new primary once it is promoted, and the
// client never writes to a replica.
func TestRedisSentinelFailover(t *testing.T) {
	primary := testproc.StartRedis(t)
	replica := testproc.StartRedisReplica(t, primary.Addr)
	sentinels := testproc.StartSentinels(t, 3, "lbmaster", primary.Addr, "sentinel-secret")
	sentinels.WaitKnowsReplicas(t, 1)
	be := newTestRedis(t, "", func(r *RedisBackend) {
		r.Addresses = sentinels.Addrs
		r.Sentinel = "lbmaster"
		r.SentinelPassword = "sentinel-secret"
		r.KeyPrefix = "sen:"
	})
	if be.Mode() != redisSentinel {
		t.Fatalf("mode %q, want sentinel", be.Mode())
	}
	store := NewStore("sentinel", be, nil)
	ctx := context.Background()
	for i := range 50 {
		if err := store.Put(ctx, "k"+strconv.Itoa(i), bindingFor("10.0.0.1:80", time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// The replica has them before the primary dies.
	waitFor(t, 5*time.Second, "replica caught up", func() bool {
		out, err := testproc.RedisDo(replica.Addr, "", "EXISTS", "sen:b:k49")
		return err == nil && out == "1"
	})
	primary.Kill()
	start := time.Now()
	var failedOver time.Duration
	// Until the Sentinels promote the replica, every known session keeps
	// its upstream; a session learned meanwhile is kept for later.
	learnedDuring := false
	for time.Since(start) < 30*time.Second {
		for i := range 50 {
			b, err := store.Get(ctx, "k"+strconv.Itoa(i))
			if err != nil || b.Upstream != "10.0.0.1:80" {
				t.Fatalf("Get k%d %v after the kill: %+v %v", i, time.Since(start), b, err)
			}
		}
		if !learnedDuring {
			if err := store.Put(ctx, "during", bindingFor("10.0.0.2:80", time.Hour)); err != nil {
				store.Remember("during", bindingFor("10.0.0.2:80", time.Hour), true)
				learnedDuring = true
			}
		}
		if p, err := sentinels.Primary(); err == nil && p == replica.Addr {
			failedOver = time.Since(start)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if failedOver == 0 {
		t.Fatal("the Sentinels did not promote the replica within 30s")
	}
	t.Logf("failover after %v", failedOver.Round(time.Millisecond))
	// Writes reach the new primary.
	waitFor(t, 15*time.Second, "a write accepted by the new primary", func() bool {
		return store.Put(ctx, "after", bindingFor("10.0.0.3:80", time.Hour)) == nil
	})
	out, err := testproc.RedisDo(replica.Addr, "", "GET", "sen:b:after")
	if err != nil || !strings.HasSuffix(out, "|10.0.0.3:80") {
		t.Fatalf("the promoted replica holds %q (%v) for the write made after the failover", out, err)
	}
	if learnedDuring {
		waitFor(t, 10*time.Second, "the write that failed during the failover, written again", func() bool {
			out, err := testproc.RedisDo(replica.Addr, "", "GET", "sen:b:during")
			return err == nil && strings.HasSuffix(out, "|10.0.0.2:80")
		})
	} else {
		t.Log("no write failed during the failover window")
	}
	counts, err := store.Counts(ctx)
	if err != nil || counts["10.0.0.1:80"] != 50 {
		t.Fatalf("Counts after the failover: %v %v", counts, err)
	}
}

// TestRedisRefillAfterEmptyRestart restarts Redis with no data: the nodes
// write back the bindings they know, with Add, so a binding another node
// wrote since is kept, and the counts come back.
func TestRedisRefillAfterEmptyRestart(t *testing.T) {
	srv := testproc.StartRedis(t)
	nodeA := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "re:" })
	// Its own dial timeout gives node B its own client, as a second process.
	nodeB := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "re:"; r.DialTimeout = caddy.Duration(2 * time.Second) })
	ctx := context.Background()
	for i := range 60 {
		node := nodeA
		if i >= 30 {
			node = nodeB
		}
		if err := node.Put(ctx, "app"+strconv.Itoa(i), bindingFor(fmt.Sprintf("10.0.0.%d:80", i%3+1), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// Let both clients see the epoch once.
	time.Sleep(refillCheckInterval + 500*time.Millisecond)
	srv.Restart(t) // --save "": it comes back empty
	// Generous: with every package testing at once on two cores, the
	// clients' reconnect and refill took over 13 s once.
	waitFor(t, 4*refillCheckInterval+25*time.Second, "every binding back", func() bool {
		out, err := testproc.RedisDo(srv.Addr, "", "EVAL", "return #redis.call('KEYS', 're:b:*')", "0")
		return err == nil && out == "60"
	})
	for i := range 60 {
		b, err := nodeB.Get(ctx, "app"+strconv.Itoa(i))
		if err != nil || b.Upstream != fmt.Sprintf("10.0.0.%d:80", i%3+1) {
			t.Fatalf("app%d after the refill: %+v %v", i, b, err)
		}
	}
	counts, err := nodeA.Counts(ctx)
	if err != nil || counts["10.0.0.1:80"] != 20 || counts["10.0.0.2:80"] != 20 || counts["10.0.0.3:80"] != 20 {
		t.Fatalf("Counts after the refill: %v %v", counts, err)
	}
}

// TestRedisStaleServedOnlyWhenUnreachable checks that a known binding is
// served only while Redis cannot be asked: a deletion made while it can
// is final.
func TestRedisStaleServedOnlyWhenUnreachable(t *testing.T) {
	srv := testproc.StartRedis(t)
	be := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "st:" })
	store := NewStore("stale", be, nil)
	ctx := context.Background()
	if err := store.Put(ctx, "gone", bindingFor("10.0.0.1:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted binding: %v, want ErrNotFound", err)
	}
	if err := store.Put(ctx, "kept", bindingFor("10.0.0.2:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	b, err := store.Get(ctx, "kept")
	if err != nil || b.Upstream != "10.0.0.2:80" {
		t.Fatalf("known binding with Redis down: %+v %v", b, err)
	}
	if _, err := store.Get(ctx, "gone"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted binding with Redis down: %v, want the store error", err)
	}
	if _, err := store.Get(ctx, "never"); err == nil {
		t.Fatal("unknown key with Redis down answered")
	}
}

// TestRedisConnectsInTheBackground starts with the server down: calls
// fail fast until it answers, then the client connects by itself.
func TestRedisConnectsInTheBackground(t *testing.T) {
	srv := testproc.StartRedis(t)
	srv.Kill()
	be := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "bg:" })
	if _, err := be.Get(context.Background(), "x"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Get with no server: %v", err)
	}
	srv.Restart(t)
	waitFor(t, 3*refillCheckInterval, "connected", func() bool { return be.Mode() == redisSingle })
	if err := be.Put(context.Background(), "x", bindingFor("10.0.0.1:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
}
