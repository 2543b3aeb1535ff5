package sessionstore

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/internal/testproc"
)

// BenchmarkGetHit measures the request path's common case: the session's
// binding exists and this node has read it before. Redis answers from its
// client-side cache and memcached from its local cache, so no case here
// waits on the network.
func BenchmarkGetHit(b *testing.B) {
	redisSrv := testproc.StartRedis(b)
	memcachedSrv := testproc.StartMemcached(b)
	backends := []struct {
		name string
		new  func(b *testing.B) Backend
	}{
		{"memory", func(b *testing.B) Backend {
			m := new(MemoryBackend)
			m.open("bench-" + b.Name())
			b.Cleanup(func() { _ = m.Cleanup() })
			return m
		}},
		{"redis", func(b *testing.B) Backend {
			return newTestRedis(b, redisSrv.Addr, func(r *RedisBackend) { r.KeyPrefix = b.Name() + ":" })
		}},
		{"memcached", func(b *testing.B) Backend {
			return newTestMemcached(b, memcachedSrv.Addr, func(m *MemcachedBackend) {
				m.KeyPrefix = b.Name() + ":"
				m.LocalCacheTTL = caddy.Duration(time.Hour) // stay cached for the whole run
			})
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			benchmarkGetHit(b, be.new(b))
		})
		b.Run("store/"+be.name, func(b *testing.B) {
			benchmarkGetHit(b, NewStore("bench", be.new(b), nil))
		})
	}
}

type getter interface {
	Get(ctx context.Context, key string) (Binding, error)
	Put(ctx context.Context, key string, b Binding) error
}

func benchmarkGetHit(b *testing.B, g getter) {
	ctx := context.Background()
	const key = "AAAAAAAAAAAAAAAAAAAAAAAA"
	if err := g.Put(ctx, key, Binding{Upstream: "10.0.0.1:8080", Expires: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	if _, err := g.Get(ctx, key); err != nil { // fill the cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
