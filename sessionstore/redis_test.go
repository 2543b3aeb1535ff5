package sessionstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/internal/testproc"
)

// newTestRedis provisions a Redis backend for addr; mutate adjusts the
// config first.
func newTestRedis(t testing.TB, addr string, mutate func(*RedisBackend)) *RedisBackend {
	t.Helper()
	r := &RedisBackend{Addresses: []string{addr}}
	if mutate != nil {
		mutate(r)
	}
	provisionForTest(t, r)
	return r
}

// TestRedisTwoNodes runs two LB nodes, each with its own client and cache,
// against one Redis: a change on one is seen by the other through the
// invalidation Redis pushes, long before client_cache_ttl.
func TestRedisTwoNodes(t *testing.T) {
	srv := testproc.StartRedis(t)
	ctx := context.Background()
	nodeA := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "two:" })
	// A different dial timeout gives node B its own client, as a second
	// process would have.
	nodeB := newTestRedis(t, srv.Addr, func(r *RedisBackend) {
		r.KeyPrefix = "two:"
		r.DialTimeout = caddy.Duration(2 * time.Second)
	})
	if nodeA.poolKey == nodeB.poolKey {
		t.Fatal("the two nodes share one client; the test would prove nothing")
	}
	if nodeA.ClientCacheTTL != caddy.Duration(time.Minute) {
		t.Fatalf("default client_cache_ttl = %v, want 1m", time.Duration(nodeA.ClientCacheTTL))
	}

	if _, ok, err := nodeB.Add(ctx, "s", bindingFor("a:1", time.Hour)); err != nil || !ok {
		t.Fatalf("Add on B: %v, %v", ok, err)
	}
	if b, err := nodeA.Get(ctx, "s"); err != nil || b.Upstream != "a:1" {
		t.Fatalf("Get on A = %+v, %v", b, err)
	}
	connA, _ := nodeA.client.get()
	hit := connA.DoCache(ctx, connA.B().Get().Key("two:b:s").Cache(), time.Minute)
	if !hit.IsCacheHit() {
		t.Fatal("A's second read of the binding was not served from its client-side cache")
	}

	if _, ok, err := nodeB.Swap(ctx, "s", "a:1", bindingFor("b:1", time.Hour)); err != nil || !ok {
		t.Fatalf("Swap on B: %v, %v", ok, err)
	}
	waitFor(t, time.Second, "A sees B's rebind", func() bool {
		b, err := nodeA.Get(ctx, "s")
		return err == nil && b.Upstream == "b:1"
	})

	wantDraining(t, nodeA, nil) // cached now
	if err := nodeB.SetDraining(ctx, "a:1", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "A sees B's drain", func() bool {
		d, err := nodeA.Draining(ctx)
		return err == nil && d["a:1"]
	})
	if err := nodeB.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "A sees B's delete", func() bool {
		_, err := nodeA.Get(ctx, "s")
		return errors.Is(err, ErrNotFound)
	})
}

// TestRedisOutage kills redis-server under a Store: calls fail fast, the
// breaker answers ErrUnavailable without waiting, and after a restart on
// the same port the client reconnects by itself.
func TestRedisOutage(t *testing.T) {
	srv := testproc.StartRedis(t)
	testStoreOutage(t, srv, newTestRedis(t, srv.Addr, nil))
}

// TestRedisAppFromJSON runs the session_store app from a JSON config as
// Caddy does, with the password from the environment, and reloads it: the
// new config reuses the old config's client, and stopping closes it.
func TestRedisAppFromJSON(t *testing.T) {
	// Braces in the password must survive placeholder resolution.
	const password = "p4ss{word}"
	srv := testproc.StartRedisWithPassword(t, password)
	t.Setenv("CADDYLB_TEST_REDIS_PASSWORD", password)
	cfg := []byte(fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"apps": {"session_store": {"stores": {"shared": {
			"backend": "redis",
			"addresses": [%q],
			"password": "{env.CADDYLB_TEST_REDIS_PASSWORD}",
			"key_prefix": "json:"
		}}}}
	}`, srv.Addr))
	ctx := context.Background()
	running := func() (*Store, *RedisBackend) {
		t.Helper()
		app, err := caddy.ActiveContext().AppIfConfigured("session_store")
		if err != nil {
			t.Fatalf("session_store app: %v", err)
		}
		store, err := app.(*App).Store("shared")
		if err != nil {
			t.Fatal(err)
		}
		return store, store.Backend().(*RedisBackend)
	}

	if err := caddy.Load(cfg, false); err != nil {
		t.Fatalf("loading the config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	store, before := running()
	clientBefore := before.client // Cleanup clears the field
	if err := store.Put(ctx, "k", bindingFor("a:1", time.Hour)); err != nil {
		t.Fatalf("Put through the running store: %v", err)
	}
	if store.timeout != 250*time.Millisecond {
		t.Errorf("store timeout = %v, want the backend's 250ms default", store.timeout)
	}

	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("reloading: %v", err)
	}
	store, after := running()
	if after == before {
		t.Fatal("the reload did not provision a new backend")
	}
	if before.client != nil {
		t.Error("the old config was not cleaned up")
	}
	if after.client != clientBefore {
		t.Fatal("the reload opened a new client instead of reusing the old one")
	}
	if refs, _ := redisClients.References(after.poolKey); refs != 1 {
		t.Fatalf("client references after the reload = %d, want 1 (the old config released its own)", refs)
	}
	if b, err := store.Get(ctx, "k"); err != nil || b.Upstream != "a:1" {
		t.Fatalf("Get after the reload = %+v, %v", b, err)
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, ok := redisClients.References(after.poolKey); ok {
		t.Fatal("client still pooled after Caddy stopped")
	}
}

// TestRedisSharedClient provisions the app twice side by side, as during a
// reload: both configs hold one client, released with the last.
func TestRedisSharedClient(t *testing.T) {
	srv := testproc.StartRedis(t)
	raw := json.RawMessage(fmt.Sprintf(`{"backend": "redis", "addresses": [%q]}`, srv.Addr))
	provisionApp := func() (*RedisBackend, context.CancelFunc) {
		t.Helper()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		app := &App{StoresRaw: map[string]json.RawMessage{"shared": raw}}
		if err := app.Provision(ctx); err != nil {
			cancel()
			t.Fatal(err)
		}
		store, err := app.Store("shared")
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return store.Backend().(*RedisBackend), cancel
	}
	r1, cancel1 := provisionApp()
	defer cancel1()
	r2, cancel2 := provisionApp()
	if r1.client != r2.client {
		t.Fatal("the same settings got two clients")
	}
	if refs, _ := redisClients.References(r1.poolKey); refs != 2 {
		t.Fatalf("client references = %d, want 2", refs)
	}
	cancel2() // cleans up the modules loaded in that context
	if refs, _ := redisClients.References(r1.poolKey); refs != 1 {
		t.Fatalf("client references after one cleanup = %d, want 1", refs)
	}
	if err := r1.Put(context.Background(), "k", bindingFor("a:1", time.Hour)); err != nil {
		t.Fatalf("the remaining config lost its client: %v", err)
	}
	cancel1()
	if _, ok := redisClients.References(r1.poolKey); ok {
		t.Fatal("client still pooled after the last cleanup")
	}
}

// TestRedisProvisionErrors checks that a refusal is a clear config error
// that does not reveal the password, and that an unreachable server is not.
func TestRedisProvisionErrors(t *testing.T) {
	srv := testproc.StartRedisWithPassword(t, "right-password")

	for _, tc := range []struct {
		name     string
		password string
		want     string
	}{
		{"wrong password", "wrong-password", "WRONGPASS"},
		{"no password", "", "NOAUTH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &RedisBackend{Addresses: []string{srv.Addr}, Password: tc.password}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := r.Provision(ctx)
			if err == nil {
				_ = r.Cleanup()
				t.Fatal("Provision succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), srv.Addr) {
				t.Errorf("error %q does not name %s and the address", err, tc.want)
			}
			if tc.password != "" && strings.Contains(err.Error(), tc.password) {
				t.Errorf("error %q reveals the password", err)
			}
			// Caddy cleans up a module whose Provision failed.
			if err := r.Cleanup(); err != nil {
				t.Errorf("Cleanup after a failed Provision: %v", err)
			}
		})
	}

	t.Run("unreachable server", func(t *testing.T) {
		r := newTestRedis(t, testproc.FreeAddr(t), nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := r.Get(ctx, "k"); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("Get from an unreachable server = %v, want an error", err)
		} else if !strings.Contains(err.Error(), "redis GET") {
			t.Errorf("error %q does not say what failed", err)
		}
	})

	t.Run("cleanup without provision", func(t *testing.T) {
		var r RedisBackend
		if err := r.Cleanup(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cleanup twice", func(t *testing.T) {
		r := &RedisBackend{Addresses: []string{srv.Addr}, Password: "right-password", KeyPrefix: "twice:"}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		if err := r.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		key := r.poolKey
		for range 2 {
			if err := r.Cleanup(); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := redisClients.References(key); ok {
			t.Fatal("client still pooled")
		}
	})
}

func TestRedisValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    RedisBackend
		want string
	}{
		{"address without port", RedisBackend{Addresses: []string{"localhost"}}, "want host:port"},
		{"negative db", RedisBackend{DB: -1}, "db -1"},
		{"ca file missing", RedisBackend{TLS: &RedisTLS{CAFile: "/nonexistent/ca.pem"}}, "ca_file"},
		{"hash tag in prefix", RedisBackend{KeyPrefix: "app{1}:"}, "must not contain { or }"},
		{"sentinel password without sentinel", RedisBackend{SentinelPassword: "x"}, "need sentinel <master_set>"},
		{"known bindings below -1", RedisBackend{KnownBindings: -2}, "known_bindings -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := tc.r.Provision(ctx)
			if err == nil {
				_ = tc.r.Cleanup()
				t.Fatal("Provision succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRedisUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name, input, want, wantErr string
	}{
		{name: "defaults", input: `session_store s redis`, want: `{}`},
		{name: "inline addresses", input: `session_store s redis 10.0.0.1:6379 10.0.0.2:6379`,
			want: `{"addresses":["10.0.0.1:6379","10.0.0.2:6379"]}`},
		{name: "everything", input: `session_store s redis {
				address 10.0.0.1:6379 10.0.0.2:6379
				address 10.0.0.3:6379
				username lb
				password {env.REDIS_PASSWORD}
				db 2
				key_prefix shop:
				tls
				tls_server_name redis.internal
				tls_ca_file /etc/redis/ca.pem
				timeout 100ms
				dial_timeout 2s
				client_cache_ttl 30s
				client_cache off
			}`,
			want: `{"addresses":["10.0.0.1:6379","10.0.0.2:6379","10.0.0.3:6379"],"username":"lb",` +
				`"password":"{env.REDIS_PASSWORD}","db":2,"key_prefix":"shop:",` +
				`"tls":{"server_name":"redis.internal","ca_file":"/etc/redis/ca.pem"},` +
				`"timeout":100000000,"dial_timeout":2000000000,"client_cache_ttl":30000000000,"disable_client_cache":true}`},
		{name: "bare tls", input: "session_store s redis {\n tls \n}", want: `{"tls":{}}`},
		{name: "tls option implies tls", input: "session_store s redis {\n tls_server_name r.internal \n}",
			want: `{"tls":{"server_name":"r.internal"}}`},
		{name: "client cache on", input: "session_store s redis {\n client_cache on \n}", want: `{}`},

		{name: "unknown option", input: "session_store s redis {\n adress 1.2.3.4:6379 \n}", wantErr: `unrecognized redis session store option "adress"`},
		{name: "address without value", input: "session_store s redis {\n address \n}", wantErr: "wrong argument count"},
		{name: "two passwords", input: "session_store s redis {\n password a b \n}", wantErr: "wrong argument count"},
		{name: "db not a number", input: "session_store s redis {\n db one \n}", wantErr: `db: want a non-negative integer, got "one"`},
		{name: "negative db", input: "session_store s redis {\n db -1 \n}", wantErr: "non-negative integer"},
		{name: "bad duration", input: "session_store s redis {\n timeout soon \n}", wantErr: `timeout: "soon" is not a positive duration like 15m`},
		{name: "zero duration", input: "session_store s redis {\n client_cache_ttl 0s \n}", wantErr: `client_cache_ttl: "0s" is not a positive duration`},
		{name: "tls with argument", input: "session_store s redis {\n tls yes \n}", wantErr: `tls takes no arguments, got "yes"`},
		{name: "client cache maybe", input: "session_store s redis {\n client_cache maybe \n}", wantErr: `client_cache: want on or off, got "maybe"`},
		{name: "sentinel", input: "session_store s redis {\n sentinel m1 \n address 10.0.0.1:26379 \n sentinel_username su \n sentinel_password sp \n}",
			want: `{"addresses":["10.0.0.1:26379"],"sentinel":"m1","sentinel_username":"su","sentinel_password":"sp"}`},
		{name: "sentinel without name", input: "session_store s redis {\n sentinel \n}", wantErr: "wrong argument count"},
		{name: "known bindings", input: "session_store s redis {\n known_bindings 5000 \n heartbeat 2s \n}", want: `{"known_bindings":5000,"heartbeat":2000000000}`},
		{name: "known bindings off", input: "session_store s redis {\n known_bindings off \n heartbeat off \n}", want: `{"known_bindings":-1,"heartbeat":-1}`},
		{name: "known bindings zero", input: "session_store s redis {\n known_bindings 0 \n}", wantErr: `known_bindings: want a positive count or off, got "0"`},
		{name: "heartbeat bad", input: "session_store s redis {\n heartbeat never \n}", wantErr: `heartbeat: "never" is not a positive duration like 15m, or off`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unm, err := unmarshalStoreOption(tc.input, "session_store.backends.redis")
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

// TestCallerDeadlineReplacesTheTimeout: a call with a deadline (the admin
// API's) waits up to it, past the store's 250ms per-call timeout, and a
// shorter one ends the call sooner; the request path, without one, keeps
// the timeout.
func TestCallerDeadlineReplacesTheTimeout(t *testing.T) {
	srv := testproc.StartRedis(t)
	be := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "dl:"; r.DisableClientCache = true; r.KnownBindings = -1 })
	ctx := context.Background()
	store := NewStore("deadline", be, nil)
	if err := store.Put(ctx, "k", bindingFor("10.0.0.1:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
	pause := func() {
		if _, err := testproc.RedisDo(srv.Addr, "", "CLIENT", "PAUSE", "1000", "ALL"); err != nil {
			t.Fatal(err)
		}
	}
	pause()
	start := time.Now()
	if _, err := store.Get(ctx, "k"); err == nil || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("request-path Get during a 1 s pause: %v after %v, want the 250ms timeout", err, time.Since(start))
	}
	time.Sleep(time.Second) // the pause ends; the breaker's back-off too
	waitFor(t, 6*time.Second, "the breaker closed", func() bool {
		_, err := store.Get(ctx, "k")
		return err == nil
	})
	pause()
	admin, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start = time.Now()
	if b, err := store.Get(admin, "k"); err != nil || b.Upstream != "10.0.0.1:80" {
		t.Fatalf("Get with a 3 s deadline during a 1 s pause: %+v %v after %v", b, err, time.Since(start))
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Fatalf("the call did not wait for the pause (%v): was it paused?", took)
	}

	// A caller that gives up (an admin client hanging up) says nothing
	// about the store: the breaker stays closed for the request path.
	pause()
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := store.Get(short, "k"); err == nil {
		t.Fatal("a 100ms call during a 1 s pause succeeded")
	}
	time.Sleep(time.Second) // the pause ends
	if _, err := store.Get(ctx, "k"); err != nil {
		t.Fatalf("request-path Get after an admin call gave up: %v (the breaker opened)", err)
	}
}

// LocalCounts counts what this node remembers (its known bindings) of
// its own store, and nothing with known_bindings off.
func TestRedisLocalCounts(t *testing.T) {
	srv := testproc.StartRedis(t)
	ctx := context.Background()
	be := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "lc:" })
	other := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "lc2:" })
	exp := time.Now().Add(time.Hour)
	for i, up := range []string{"a:1", "a:1", "b:1"} {
		if err := be.Put(ctx, fmt.Sprintf("s%d", i), Binding{Upstream: up, Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Put(ctx, "s9", Binding{Upstream: "a:1", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if got := be.LocalCounts(); got["a:1"] != 2 || got["b:1"] != 1 || len(got) != 2 {
		t.Fatalf("local counts %v, want a:1 2 and b:1 1 (not the other prefix's)", got)
	}
	store := NewStore("lc", be, nil)
	if got, ok := store.LocalCounts(ctx); !ok || got["a:1"] != 2 {
		t.Fatalf("Store.LocalCounts %v %v", got, ok)
	}
	off := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "lc3:"; r.KnownBindings = -1 })
	_ = off.Put(ctx, "s1", Binding{Upstream: "a:1", Expires: exp})
	if got, ok := NewStore("off", off, nil).LocalCounts(ctx); ok || got != nil {
		t.Fatalf("known_bindings off: %v %v, want none", got, ok)
	}
}
