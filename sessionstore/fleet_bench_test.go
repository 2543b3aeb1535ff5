package sessionstore

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddylb/caddylb/internal/testproc"
)

// deployments starts the three Redis deployments once for a benchmark:
// a single server, a primary with a replica behind three Sentinels, and a
// three-primary cluster. Each entry provisions a backend on one and
// reads the command count of its servers (for round trips per op).
type deployment struct {
	name     string
	backend  func(b *testing.B, prefix string) *RedisBackend
	commands func(b *testing.B) int64
	servers  int // that commands asks
}

func startDeployments(b *testing.B) []deployment {
	single := testproc.StartRedis(b)
	primary := testproc.StartRedis(b)
	testproc.StartRedisReplica(b, primary.Addr)
	sentinels := testproc.StartSentinels(b, 3, "bench", primary.Addr, "")
	sentinels.WaitKnowsReplicas(b, 1)
	cluster := testproc.StartRedisCluster(b, 3)
	calls := func(addrs ...string) func(b *testing.B) int64 {
		return func(b *testing.B) int64 { return infoSum(b, addrs, "stats", "total_commands_processed") }
	}
	return []deployment{
		{"single", func(b *testing.B, prefix string) *RedisBackend {
			return newTestRedis(b, single.Addr, func(r *RedisBackend) { r.KeyPrefix = prefix; r.Heartbeat = -1 })
		}, calls(single.Addr), 1},
		{"sentinel", func(b *testing.B, prefix string) *RedisBackend {
			return newTestRedis(b, "", func(r *RedisBackend) {
				r.Addresses, r.Sentinel, r.KeyPrefix, r.Heartbeat = sentinels.Addrs, "bench", prefix, -1
			})
		}, calls(primary.Addr), 1},
		{"cluster", func(b *testing.B, prefix string) *RedisBackend {
			return newTestRedis(b, cluster.Addrs[0], func(r *RedisBackend) { r.KeyPrefix = prefix; r.Heartbeat = -1 })
		}, calls(cluster.Addrs...), len(cluster.Addrs)},
	}
}

// BenchmarkDeploymentHit is the request path's common case through each
// Redis deployment: Store.Get of a binding this node read before, over
// 1,000 sessions. It reports the commands the servers processed per Get
// (roundtrips/op), which a hit must keep at 0.
func BenchmarkDeploymentHit(b *testing.B) {
	for _, d := range startDeployments(b) {
		b.Run(d.name, func(b *testing.B) {
			store := NewStore("bench", d.backend(b, "hit:"), nil)
			ctx := context.Background()
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = fmt.Sprintf("AAAAAAAAAAAAAAAAAAAA%04d", i)
				if err := store.Put(ctx, keys[i], Binding{Upstream: "10.0.0.1:8080", Expires: time.Now().Add(time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(3 * recentWriteWindow) // past the read-your-writes window
			for _, k := range keys {
				if _, err := store.Get(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
			before := d.commands(b)
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := store.Get(ctx, keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.StopTimer()
			// The first INFO is one command per server asked.
			b.ReportMetric(float64(d.commands(b)-before-int64(d.servers))/float64(b.N), "roundtrips/op")
		})
	}
}

// BenchmarkDeploymentWrite is learning new sessions as fast as one node
// can: Put of distinct keys from 32 goroutines, each a script run on the
// server. It reports writes/s for one node.
func BenchmarkDeploymentWrite(b *testing.B) {
	for _, d := range startDeployments(b) {
		b.Run(d.name, func(b *testing.B) {
			store := NewStore("bench", d.backend(b, "w"+strconv.Itoa(b.N)+":"), nil)
			var n atomic.Int64
			expires := time.Now().Add(time.Hour)
			b.SetParallelism(16) // x GOMAXPROCS goroutines
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					key := "W" + strconv.FormatInt(n.Add(1), 36)
					if err := store.Put(ctx, key, Binding{Upstream: "10.0.0.1:8080", Expires: expires}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}

// BenchmarkMemoryPerBinding writes 1,000,000 bindings and reports the
// bytes each takes: in the memory store (Go heap), in Redis (used_memory
// of the server, or of the cluster's primaries together), and in a Redis
// node's known_bindings copy. Run with -benchtime 1x.
func BenchmarkMemoryPerBinding(b *testing.B) {
	const n = 1_000_000
	key := func(i int) string { return fmt.Sprintf("%024d", i) } // 24 bytes: a hashed session key
	b.Run("memory-store", func(b *testing.B) {
		for b.Loop() {
			before := heapInUse()
			m := new(MemoryBackend)
			m.MaxBindings = n
			m.open("mem-" + strconv.Itoa(b.N))
			exp := time.Now().Add(time.Hour)
			ctx := context.Background()
			for i := range n {
				_ = m.Put(ctx, "cookie:lb_affinity:"+key(i), Binding{Upstream: "10.0.0." + strconv.Itoa(i%4) + ":8080", Expires: exp})
			}
			b.ReportMetric(float64(heapInUse()-before)/n, "B/binding")
			runtime.KeepAlive(m)
			_ = m.Cleanup()
		}
	})
	b.Run("known-bindings", func(b *testing.B) {
		for b.Loop() {
			before := heapInUse()
			k := newKnownBindings(n)
			exp := time.Now().Add(time.Hour)
			for i := range n {
				sk := "cookie:lb_affinity:" + key(i)
				k.remember("caddylb:", sk, Binding{Upstream: "10.0.0." + strconv.Itoa(i%4) + ":8080", Expires: exp}, time.Now())
			}
			b.ReportMetric(float64(heapInUse()-before)/n, "B/binding")
			runtime.KeepAlive(k)
		}
	})
	for _, d := range startDeployments(b) {
		if d.name == "sentinel" {
			continue // the same server as single, plus a replica holding a copy
		}
		b.Run("redis-"+d.name, func(b *testing.B) {
			for b.Loop() {
				be := d.backend(b, "m:")
				used := func() int64 { return redisUsedMemory(b, be) }
				before := used()
				var next atomic.Int64
				exp := time.Now().Add(time.Hour)
				done := make(chan struct{})
				for range 32 {
					go func() {
						defer func() { done <- struct{}{} }()
						ctx := context.Background()
						for {
							i := int(next.Add(1)) - 1
							if i >= n {
								return
							}
							sk := "cookie:lb_affinity:" + key(i)
							if err := be.Put(ctx, sk, Binding{Upstream: "10.0.0." + strconv.Itoa(i%4) + ":8080", Expires: exp}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				for range 32 {
					<-done
				}
				b.ReportMetric(float64(used()-before)/n, "B/binding")
			}
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// redisUsedMemory sums used_memory over the servers the backend uses.
func redisUsedMemory(b *testing.B, be *RedisBackend) int64 {
	conn, err := be.client.get()
	if err != nil {
		b.Fatal(err)
	}
	var addrs []string
	for addr := range conn.Nodes() {
		addrs = append(addrs, addr)
	}
	return infoSum(b, addrs, "memory", "used_memory")
}

// infoSum sums one numeric field of an INFO section over servers.
func infoSum(b *testing.B, addrs []string, section, field string) int64 {
	var total int64
	for _, addr := range addrs {
		out, err := testproc.RedisDo(addr, "", "INFO", section)
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

// BenchmarkDeploymentHitPaired measures the three deployments' hit paths
// in one process, in interleaved batches of 20,000 Gets (each b.N
// iteration is one round of the three, in rotating order), so that the
// machine's drift hits all alike. It reports each one's median ns per
// Get and the median and quartiles of the per-round throughput ratios
// against the single server. Run with -benchtime 100x.
func BenchmarkDeploymentHitPaired(b *testing.B) {
	deps := startDeployments(b)
	ctx := context.Background()
	stores := make([]*Store, len(deps))
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("AAAAAAAAAAAAAAAAAAAA%04d", i)
	}
	for i, d := range deps {
		stores[i] = NewStore("bench", d.backend(b, "pair:"), nil)
		for _, k := range keys {
			if err := stores[i].Put(ctx, k, Binding{Upstream: "10.0.0.1:8080", Expires: time.Now().Add(time.Hour)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	time.Sleep(3 * recentWriteWindow)
	for _, s := range stores {
		for _, k := range keys {
			if _, err := s.Get(ctx, k); err != nil {
				b.Fatal(err)
			}
		}
	}
	const batch = 20000
	ns := make([][]float64, len(deps))
	b.ResetTimer()
	for round := 0; b.Loop(); round++ {
		for i := range deps {
			j := (i + round) % len(deps)
			start := time.Now()
			for n := range batch {
				if _, err := stores[j].Get(ctx, keys[n%len(keys)]); err != nil {
					b.Fatal(err)
				}
			}
			ns[j] = append(ns[j], float64(time.Since(start).Nanoseconds())/batch)
		}
	}
	b.StopTimer()
	for i, d := range deps {
		b.ReportMetric(median(ns[i]), d.name+"-ns/get")
		if i == 0 {
			continue
		}
		ratios := make([]float64, len(ns[i]))
		for r := range ratios {
			ratios[r] = ns[0][r] / ns[i][r]
		}
		q1, q2, q3 := quartiles(ratios)
		b.ReportMetric(q1, d.name+"/single-q1")
		b.ReportMetric(q2, d.name+"/single-median")
		b.ReportMetric(q3, d.name+"/single-q3")
	}
}

func median(xs []float64) float64 { _, m, _ := quartiles(xs); return m }

func quartiles(xs []float64) (q1, q2, q3 float64) {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0, 0, 0
	}
	return s[n/4], s[n/2], s[(3*n)/4]
}
