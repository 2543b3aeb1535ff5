package sessionstore

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/internal/testproc"
)

// newTestMemcached provisions a memcached backend for addr; mutate adjusts
// the config first.
func newTestMemcached(t testing.TB, addr string, mutate func(*MemcachedBackend)) *MemcachedBackend {
	t.Helper()
	m := &MemcachedBackend{Servers: []string{addr}}
	if mutate != nil {
		mutate(m)
	}
	provisionForTest(t, m)
	return m
}

// TestMemcachedTwoNodes runs two LB nodes against one memcached: another
// node's change is seen once the local cache entry is older than
// local_cache_ttl, not before, and a node sees its own writes at once.
func TestMemcachedTwoNodes(t *testing.T) {
	srv := testproc.StartMemcached(t)
	ctx := context.Background()
	const ttl = 500 * time.Millisecond
	nodeA := newTestMemcached(t, srv.Addr, func(m *MemcachedBackend) {
		m.KeyPrefix = "two:"
		m.LocalCacheTTL = caddy.Duration(ttl)
	})
	// A different idle-connection limit gives node B its own client and
	// cache, as a second process would have.
	nodeB := newTestMemcached(t, srv.Addr, func(m *MemcachedBackend) {
		m.KeyPrefix = "two:"
		m.LocalCacheTTL = caddy.Duration(ttl)
		m.MaxIdleConns = 8
	})
	if nodeA.conn == nodeB.conn {
		t.Fatal("the two nodes share one client; the test would prove nothing")
	}

	if _, ok, err := nodeA.Add(ctx, "s", bindingFor("a:1", time.Hour)); err != nil || !ok {
		t.Fatalf("Add on A: %v, %v", ok, err)
	}
	cachedAt := time.Now()
	if _, ok, err := nodeB.Swap(ctx, "s", "a:1", bindingFor("b:1", time.Hour)); err != nil || !ok {
		t.Fatalf("Swap on B: %v, %v", ok, err)
	}
	if b, err := nodeB.Get(ctx, "s"); err != nil || b.Upstream != "b:1" {
		t.Fatalf("B does not see its own write: %+v, %v", b, err)
	}
	if b, err := nodeA.Get(ctx, "s"); err != nil || b.Upstream != "a:1" || time.Since(cachedAt) >= ttl {
		t.Fatalf("A = %+v, %v after %v; want its cached a:1 within local_cache_ttl", b, err, time.Since(cachedAt))
	}
	waitFor(t, ttl+time.Second, "A sees B's rebind", func() bool {
		b, err := nodeA.Get(ctx, "s")
		return err == nil && b.Upstream == "b:1"
	})

	wantDraining(t, nodeA, nil) // cached now
	if err := nodeB.SetDraining(ctx, "a:1", true); err != nil {
		t.Fatal(err)
	}
	wantDraining(t, nodeB, []string{"a:1"})
	waitFor(t, ttl+time.Second, "A sees B's drain", func() bool {
		d, err := nodeA.Draining(ctx)
		return err == nil && d["a:1"]
	})
}

func TestMemcachedOutage(t *testing.T) {
	srv := testproc.StartMemcached(t)
	testStoreOutage(t, srv, newTestMemcached(t, srv.Addr, nil))
}

// TestMemcachedSharedClient provisions the same settings twice, as a
// reload does: one client, released with the last config.
func TestMemcachedSharedClient(t *testing.T) {
	srv := testproc.StartMemcached(t)
	m1 := &MemcachedBackend{Servers: []string{"{env.CADDYLB_TEST_MEMCACHED}"}}
	t.Setenv("CADDYLB_TEST_MEMCACHED", srv.Addr)
	m2 := &MemcachedBackend{Servers: []string{srv.Addr}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for _, m := range []*MemcachedBackend{m1, m2} {
		if err := m.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if m1.conn != m2.conn {
		t.Fatal("the same settings got two clients")
	}
	if err := m1.Put(ctx, "k", bindingFor("a:1", time.Hour)); err != nil {
		t.Fatalf("Put through the placeholder address: %v", err)
	}
	if refs, _ := memcachedConns.References(m1.poolKey); refs != 2 {
		t.Fatalf("references = %d, want 2", refs)
	}
	key := m1.poolKey
	for _, m := range []*MemcachedBackend{m1, m2, m2} { // the extra Cleanup must do nothing
		if err := m.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := memcachedConns.References(key); ok {
		t.Fatal("client still pooled after the last cleanup")
	}
	var never MemcachedBackend
	if err := never.Cleanup(); err != nil {
		t.Fatalf("Cleanup without Provision: %v", err)
	}
}

// TestMemcachedOddUpstreams checks that counter keys stay valid memcached
// keys whatever the upstream string holds.
func TestMemcachedOddUpstreams(t *testing.T) {
	srv := testproc.StartMemcached(t)
	m := newTestMemcached(t, srv.Addr, nil)
	ctx := context.Background()
	ups := []string{"unix//run/app.sock", "[::1]:8080", "with space:80", "tab\there:80", strings.Repeat("long", 100) + ":80"}
	want := make(map[string]int64)
	for i, up := range ups {
		if _, ok, err := m.Add(ctx, "k"+string(rune('a'+i)), bindingFor(up, time.Hour)); err != nil || !ok {
			t.Fatalf("Add to %q: %v, %v", up, ok, err)
		}
		want[up] = 1
		if err := m.SetDraining(ctx, up, true); err != nil {
			t.Fatalf("SetDraining(%q): %v", up, err)
		}
	}
	wantCounts(t, m, want)
	wantDraining(t, m, ups)
}

// TestMemcachedCorruptValues checks that values someone else wrote under
// our keys give errors or are replaced, never panics.
func TestMemcachedCorruptValues(t *testing.T) {
	srv := testproc.StartMemcached(t)
	m := newTestMemcached(t, srv.Addr, func(m *MemcachedBackend) { m.DisableLocalCache = true })
	ctx := context.Background()
	raw := memcache.New(srv.Addr)
	for _, it := range []*memcache.Item{
		{Key: "caddylb:b:bad", Value: []byte("not a binding")},
		{Key: "caddylb:drain", Value: []byte("{not json")},
		{Key: "caddylb:upstreams", Value: []byte("[1,2")},
	} {
		if err := raw.Set(it); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Get(ctx, "bad"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a corrupt binding = %v, want an error", err)
	}
	next := bindingFor("a:1", time.Hour)
	if cur, ok, err := m.Add(ctx, "bad", next); err != nil || !ok || !sameBinding(cur, next) {
		t.Errorf("Add over a corrupt binding = %+v, %v, %v; want it replaced", cur, ok, err)
	}
	if _, err := m.Draining(ctx); err == nil {
		t.Error("Draining with a corrupt drain key: no error")
	}
	if c, err := m.Counts(ctx); err != nil || c["a:1"] != 1 {
		t.Errorf("Counts with a corrupt list key = %v, %v; want a:1=1 (the list is rewritten)", c, err)
	}
}

func TestMemcachedExpiration(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		ttl  time.Duration
		want int32
	}{
		{time.Millisecond, 1},
		{0, 1},
		{time.Second, 1},
		{1001 * time.Millisecond, 2},
		{time.Hour, 3600},
		{30 * 24 * time.Hour, 30 * 24 * 3600}, // the longest relative time
		{30*24*time.Hour + time.Second, 1_802_592_001}, // absolute from here on
		{100 * 365 * 24 * time.Hour, math.MaxInt32},    // clamped
	} {
		if got := memcachedExpiration(tc.ttl, now); got != tc.want {
			t.Errorf("memcachedExpiration(%v) = %d, want %d", tc.ttl, got, tc.want)
		}
	}
}

func TestMemcachedUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input, want, wantErr string
	}{
		{name: "defaults", input: `session_store s memcached`, want: `{}`},
		{name: "servers", input: `session_store shared memcached 127.0.0.1:11211 127.0.0.1:11212`,
			want: `{"servers":["127.0.0.1:11211","127.0.0.1:11212"]}`},
		{name: "everything", input: `session_store s memcached 10.0.0.1:11211 {
				key_prefix shop:
				timeout 100ms
				local_cache_ttl 2s
				max_idle_conns 128
			}`,
			want: `{"servers":["10.0.0.1:11211"],"key_prefix":"shop:","timeout":100000000,"local_cache_ttl":2000000000,"max_idle_conns":128}`},
		{name: "local cache off", input: "session_store s memcached 10.0.0.1:11211 {\n local_cache off \n}",
			want: `{"servers":["10.0.0.1:11211"],"disable_local_cache":true}`},

		{name: "unknown option", input: "session_store s memcached {\n server 10.0.0.1:11211 \n}", wantErr: `unrecognized memcached session store option "server"`},
		{name: "bad duration", input: "session_store s memcached {\n local_cache_ttl forever \n}", wantErr: `local_cache_ttl: "forever" is not a positive duration`},
		{name: "negative conns", input: "session_store s memcached {\n max_idle_conns -5 \n}", wantErr: "max_idle_conns: want a non-negative integer"},
		{name: "local cache maybe", input: "session_store s memcached {\n local_cache maybe \n}", wantErr: `local_cache: want on or off, got "maybe"`},
		{name: "prefix twice", input: "session_store s memcached {\n key_prefix a b \n}", wantErr: "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unm, err := unmarshalStoreOption(tc.input, "session_store.backends.memcached")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(unm)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestMemcachedValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    MemcachedBackend
		want string
	}{
		{"server without port", MemcachedBackend{Servers: []string{"cache.internal"}}, "want host:port"},
		{"prefix with space", MemcachedBackend{KeyPrefix: "my app:"}, "spaces or control characters"},
		{"prefix too long", MemcachedBackend{KeyPrefix: strings.Repeat("p", 129)}, "longer than 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := tc.m.Provision(ctx)
			if err == nil {
				_ = tc.m.Cleanup()
				t.Fatal("Provision succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}
