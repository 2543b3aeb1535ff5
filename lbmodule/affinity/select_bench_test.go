package affinity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/internal/lbstats"
	"github.com/caddylb/caddylb/internal/testproc"
	"github.com/caddylb/caddylb/sessionstore"
)

// benchHit measures Select alone. The request is built once; each
// iteration clears its per-request sticky state and response headers, as a
// fresh request would have them.
func benchHit(b *testing.B, s reverseproxy.Selector, pool reverseproxy.UpstreamPool, prepare func(*http.Request)) {
	b.Helper()
	r := newRequest()
	prepare(r)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if st, _ := caddyhttp.GetVar(r.Context(), stateVarKey).(*requestState); st != nil {
			*st = requestState{learning: st.learning}
		}
		clear(w.Header())
		if s.Select(pool, r, w) == nil {
			b.Fatal("no upstream")
		}
	}
}

// returningCookie gets the recorded LB cookie a returning client carries.
func returningCookie(b *testing.B, s *Sticky, pool reverseproxy.UpstreamPool) *http.Cookie {
	w := httptest.NewRecorder()
	s.Select(pool, newRequest(), w)
	first := lbCookie(b, w, s.Cookie)
	w = httptest.NewRecorder()
	s.Select(pool, newRequest(first), w)
	return lbCookie(b, w, s.Cookie)
}

func BenchmarkSelectHit(b *testing.B) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")

	b.Run("stock_cookie", func(b *testing.B) {
		stock := new(reverseproxy.CookieHashSelection)
		stock.Name, stock.Secret = "lb", testSecret
		stock.FallbackRaw = json.RawMessage(`{"policy":"least_conn"}`)
		if err := stock.Provision(testContext(b)); err != nil {
			b.Fatal(err)
		}
		w := httptest.NewRecorder()
		stock.Select(pool, newRequest(), w)
		c := w.Result().Cookies()[0]
		benchHit(b, stock, pool, func(r *http.Request) { r.AddCookie(c) })
	})

	b.Run("sticky_cookie_memory", func(b *testing.B) {
		s := provision(b, testContext(b), Sticky{Secrets: []string{testSecret}})
		c := returningCookie(b, s, pool)
		benchHit(b, s, pool, func(r *http.Request) { r.AddCookie(c) })
	})

	b.Run("sticky_app_cookie_memory", func(b *testing.B) {
		ctx := testContext(b)
		l := new(Learn)
		_ = l.Provision(ctx)
		b.Cleanup(func() { _ = l.Cleanup() })
		s := provision(b, ctx, Sticky{AppCookie: "PHPSESSID"})
		_ = s.store.Put(context.Background(), s.StoreKey("abc"), sessionstore.Binding{Upstream: pool[1].Dial, Expires: time.Now().Add(time.Hour)})
		c := &http.Cookie{Name: "PHPSESSID", Value: "abc"}
		benchHit(b, s, pool, func(r *http.Request) {
			r.AddCookie(c)
			stateOf(r).learning = true
		})
	})
}

// withRedisStore swaps the policy's store for a Redis one on a fresh
// redis-server, as `store shared` with a redis session_store would give.
func withRedisStore(b *testing.B, s *Sticky) {
	srv := testproc.StartRedis(b)
	backend := &sessionstore.RedisBackend{Addresses: []string{srv.Addr}}
	if err := backend.Provision(testContext(b)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = backend.Cleanup() })
	s.store = sessionstore.NewStore("bench", backend, nil)
}

func BenchmarkSelectHitRedis(b *testing.B) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")

	b.Run("sticky_cookie_redis", func(b *testing.B) {
		s := provision(b, testContext(b), Sticky{Secrets: []string{testSecret}})
		withRedisStore(b, s)
		c := returningCookie(b, s, pool)
		benchHit(b, s, pool, func(r *http.Request) { r.AddCookie(c) })
	})

	b.Run("sticky_app_cookie_redis", func(b *testing.B) {
		ctx := testContext(b)
		l := new(Learn)
		_ = l.Provision(ctx)
		b.Cleanup(func() { _ = l.Cleanup() })
		s := provision(b, ctx, Sticky{AppCookie: "PHPSESSID"})
		withRedisStore(b, s)
		_ = s.store.Put(context.Background(), s.StoreKey("abc"), sessionstore.Binding{Upstream: pool[1].Dial, Expires: time.Now().Add(time.Hour)})
		time.Sleep(time.Second) // past the window in which a node reads its own fresh writes from the server
		c := &http.Cookie{Name: "PHPSESSID", Value: "abc"}
		benchHit(b, s, pool, func(r *http.Request) {
			r.AddCookie(c)
			stateOf(r).learning = true
		})
	})
}

func BenchmarkSelectNewSession(b *testing.B) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	s := provision(b, testContext(b), Sticky{Secrets: []string{testSecret}})
	benchHit(b, s, pool, func(*http.Request) {})
}

// BenchmarkCountUpstream is what the per-upstream counts cost a request on
// the hit path, all of it: at Select, reading Caddy's latency placeholder
// from a real request's replacer and tracking the request; after it ends,
// the sweep's settling (counter look-up, two atomic adds, two placeholder
// reads). Each iteration is one request whose context ends.
func BenchmarkCountUpstream(b *testing.B) {
	s := &Sticky{}
	up := testPool("127.0.0.1:9001")[0]
	base := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	repl := caddyhttp.NewTestReplacer(base)
	repl.Set(statusPlaceholder, 200)
	repl.Set(hostportPlaceholder, up.Dial)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.WithValue(base.Context(), caddy.ReplacerCtxKey, repl))
		r := base.WithContext(ctx)
		st := new(requestState)
		s.countUpstream(r, st, up, outcomeHit)         // appends the try, as record does
		repl.Set(latencyPlaceholder, time.Duration(i)) // the round trip answered
		cancel()
		if i++; i%64 == 0 {
			lbstats.Settle()
		}
	}
	lbstats.Settle()
}

// stateSink keeps the baseline's request state on the heap, as stateOf's
// is in a real request.
var stateSink *requestState

// BenchmarkRequestBaseline is BenchmarkCountUpstream's harness alone
// (context, request copy, state), to subtract.
func BenchmarkRequestBaseline(b *testing.B) {
	up := testPool("127.0.0.1:9001")[0]
	base := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	repl := caddyhttp.NewTestReplacer(base)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.WithValue(base.Context(), caddy.ReplacerCtxKey, repl))
		r := base.WithContext(ctx)
		st := &requestState{tried: []string{up.Dial}}
		stateSink, _ = st, r
		repl.Set(latencyPlaceholder, time.Duration(i))
		cancel()
		i++
	}
}
