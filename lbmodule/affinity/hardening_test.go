package affinity

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/sessionstore"
)

// countingBackend counts the calls policies make to their store.
type countingBackend struct {
	sessionstore.Backend
	calls atomic.Int64
}

func (c *countingBackend) Get(ctx context.Context, key string) (sessionstore.Binding, error) {
	c.calls.Add(1)
	return c.Backend.Get(ctx, key)
}

func (c *countingBackend) Add(ctx context.Context, key string, b sessionstore.Binding) (sessionstore.Binding, bool, error) {
	c.calls.Add(1)
	return c.Backend.Add(ctx, key, b)
}

func (c *countingBackend) Swap(ctx context.Context, key, from string, b sessionstore.Binding) (sessionstore.Binding, bool, error) {
	c.calls.Add(1)
	return c.Backend.Swap(ctx, key, from, b)
}

func (c *countingBackend) Put(ctx context.Context, key string, b sessionstore.Binding) error {
	c.calls.Add(1)
	return c.Backend.Put(ctx, key, b)
}

func (c *countingBackend) Draining(ctx context.Context) (map[string]bool, error) {
	c.calls.Add(1)
	return c.Backend.Draining(ctx)
}

// nodes provisions n policies with one config, standing in for LB nodes
// that share one store, counted.
func nodes(t *testing.T, n int, cfg Sticky) ([]*Sticky, *countingBackend) {
	t.Helper()
	ctx := testContext(t)
	var out []*Sticky
	var counted *countingBackend
	for range n {
		s := provision(t, ctx, cfg)
		if counted == nil {
			counted = &countingBackend{Backend: s.store.Backend()}
		}
		s.store = sessionstore.NewStore("shared", counted, nil)
		out = append(out, s)
	}
	return out, counted
}

// issue returns the cookie a first visit gets, and its upstream.
func issue(t *testing.T, s *Sticky, pool reverseproxy.UpstreamPool) (*http.Cookie, *reverseproxy.Upstream) {
	t.Helper()
	w := httptest.NewRecorder()
	up := s.Select(pool, newRequest(), w)
	return lbCookie(t, w, s.Cookie), up
}

// TestReplayedFirstCookieIsRecordedOnce: a client without a cookie jar
// keeps sending the first cookie it got (not yet recorded). Each request
// once made a store script call and got a new Set-Cookie; now 200 replays
// through two nodes cost a store command per node and one re-issue.
func TestReplayedFirstCookieIsRecordedOnce(t *testing.T) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	lb, store := nodes(t, 2, Sticky{Secrets: []string{testSecret}})
	first, up := issue(t, lb[0], pool)
	store.calls.Store(0)
	reissued := 0
	for i := range 200 {
		r := newRequest(first)
		w := httptest.NewRecorder()
		if got := lb[i%2].Select(pool, r, w); got != up || outcomeOf(r) != outcomeHit {
			t.Fatalf("replay %d: %v %q, want %v hit", i, got, outcomeOf(r), up)
		}
		if lbCookie(t, w, defaultCookieName) != nil {
			reissued++
		}
	}
	if reissued != 1 {
		t.Fatalf("%d replays got a new cookie, want 1", reissued)
	}
	if n := store.calls.Load(); n > 2 {
		t.Fatalf("200 replays cost %d store calls, want one per node", n)
	}
	if n := countsFor(t, lb[0])[up.Dial]; n != 1 {
		t.Fatalf("%d bindings on %s, want the one session", n, up.Dial)
	}
}

// TestReplayedStaleCookieIsRefreshedOnce: the same for a recorded cookie
// past half its TTL: one refresh and one re-issue per node, whatever the
// number of replays.
func TestReplayedStaleCookieIsRefreshedOnce(t *testing.T) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002")
	lb, store := nodes(t, 1, Sticky{Secrets: []string{testSecret}, TTL: caddy.Duration(time.Hour)})
	var id [sessionIDLen]byte
	id[0] = 7
	stale := &http.Cookie{Name: defaultCookieName, Value: lb[0].signer.issue(id, pool[1].Dial, time.Now().Add(-40*time.Minute), flagRecorded)}
	store.calls.Store(0)
	reissued := 0
	for range 50 {
		w := httptest.NewRecorder()
		if got := lb[0].Select(pool, newRequest(stale), w); got != pool[1] {
			t.Fatalf("stale cookie sent to %v", got)
		}
		if lbCookie(t, w, defaultCookieName) != nil {
			reissued++
		}
	}
	if reissued != 1 || store.calls.Load() != 1 {
		t.Fatalf("50 replays of a stale cookie: %d re-issues and %d store calls, want 1 and 1", reissued, store.calls.Load())
	}
}

// TestRemovedUpstreamIsRebondOnceToOneUpstream: cookies of an upstream
// that was removed from the config, sent in parallel through two nodes,
// all land on one upstream, which the store then holds. The
// compare-and-swap once read the current binding as its "from", so every
// request moved the session again.
func TestRemovedUpstreamIsReboundOnceToOneUpstream(t *testing.T) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003", "127.0.0.1:9004")
	for _, recorded := range []bool{false, true} {
		lb, _ := nodes(t, 2, Sticky{Secrets: []string{testSecret}, Namespace: t.Name() + map[bool]string{false: "-new", true: "-recorded"}[recorded]})
		var c *http.Cookie
		var up *reverseproxy.Upstream
		for up == nil || up != pool[0] { // a session on the upstream to remove
			c, up = issue(t, lb[0], pool)
		}
		if recorded {
			w := httptest.NewRecorder()
			lb[1].Select(pool, newRequest(c), w)
			c = lbCookie(t, w, defaultCookieName)
		}
		shrunk := pool[1:]
		var mu sync.Mutex
		landed := map[string]int{}
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got := lb[i%2].Select(shrunk, newRequest(c), httptest.NewRecorder())
				mu.Lock()
				defer mu.Unlock()
				if got == nil {
					landed["none"]++
				} else {
					landed[got.Dial]++
				}
			}()
		}
		wg.Wait()
		if len(landed) != 1 || landed["none"] > 0 {
			t.Fatalf("recorded %v: the removed upstream's session landed on %v, want one upstream", recorded, landed)
		}
		tok := mustVerify(t, lb[0], c)
		b, err := lb[0].store.Get(context.Background(), lb[0].StoreKey(string(tok.sessionID[:])))
		if err != nil || landed[b.Upstream] != 40 {
			t.Fatalf("recorded %v: the store binds %q (%v); requests went to %v", recorded, b.Upstream, err, landed)
		}
		// Later requests with the old cookie keep going there.
		for i := range 10 {
			if got := lb[i%2].Select(shrunk, newRequest(c), httptest.NewRecorder()); got.Dial != b.Upstream {
				t.Fatalf("request %d went to %s after the rebind to %s", i, got.Dial, b.Upstream)
			}
		}
	}
}

func mustVerify(t *testing.T, s *Sticky, c *http.Cookie) lbToken {
	t.Helper()
	tok, err := s.signer.verify(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestDuplicateLBCookiesUseTheFirstThatVerifies: a sibling subdomain can
// plant a second lb_affinity cookie, which the browser may send first.
func TestDuplicateLBCookiesUseTheFirstThatVerifies(t *testing.T) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	s := provision(t, testContext(t), Sticky{Secrets: []string{testSecret}})
	good, up := issue(t, s, pool)
	other := provision(t, testContext(t), Sticky{Secrets: []string{"another-secret-0123456789"}})
	planted, _ := issue(t, other, pool)
	for _, order := range [][]*http.Cookie{
		{{Name: defaultCookieName, Value: "garbage"}, good},
		{planted, good},
		{good, planted},
	} {
		r := newRequest(order...)
		w := httptest.NewRecorder()
		if got := s.Select(pool, r, w); got != up || outcomeOf(r) != outcomeHit {
			t.Fatalf("cookies %q then %q: %v %q, want %v hit", order[0].Value, order[1].Value, got, outcomeOf(r), up)
		}
	}
}

// TestOldLBCookiesExpireOnTheServer: a cookie issued longer ago than
// token_max_age (default: the longer of ttl and max_age) starts a new
// session, whatever the browser kept.
func TestOldLBCookiesExpireOnTheServer(t *testing.T) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002")
	var id [sessionIDLen]byte
	for _, tc := range []struct {
		cfg   Sticky
		age   time.Duration
		isHit bool
	}{
		{Sticky{TTL: caddy.Duration(time.Hour)}, 50 * time.Minute, true},
		{Sticky{TTL: caddy.Duration(time.Hour)}, 61 * time.Minute, false},
		{Sticky{TTL: caddy.Duration(time.Hour), MaxAge: caddy.Duration(24 * time.Hour)}, 23 * time.Hour, true},
		{Sticky{TTL: caddy.Duration(time.Hour), MaxAge: caddy.Duration(24 * time.Hour)}, 25 * time.Hour, false},
		{Sticky{TTL: caddy.Duration(time.Hour), TokenMaxAge: caddy.Duration(2 * time.Hour)}, 90 * time.Minute, true},
		{Sticky{TTL: caddy.Duration(time.Hour), TokenMaxAge: caddy.Duration(2 * time.Hour)}, 3 * time.Hour, false},
	} {
		tc.cfg.Secrets = []string{testSecret}
		s := provision(t, testContext(t), tc.cfg)
		c := &http.Cookie{Name: defaultCookieName, Value: s.signer.issue(id, pool[1].Dial, time.Now().Add(-tc.age), flagRecorded)}
		r := newRequest(c)
		s.Select(pool, r, httptest.NewRecorder())
		if got := outcomeOf(r) == outcomeHit; got != tc.isHit {
			t.Errorf("ttl %v max_age %v token_max_age %v, cookie %v old: outcome %q", time.Duration(tc.cfg.TTL), time.Duration(tc.cfg.MaxAge), time.Duration(tc.cfg.TokenMaxAge), tc.age, outcomeOf(r))
		}
	}
}

// TestClientIPStoreKeysAreKeyed: store keys of client IPs cannot be
// reversed without the secret (every IPv4 address could be hashed).
func TestClientIPStoreKeysAreKeyed(t *testing.T) {
	a := provision(t, testContext(t), Sticky{ClientIP: true, Secrets: []string{testSecret}, Namespace: "n"})
	b := provision(t, testContext(t), Sticky{ClientIP: true, Secrets: []string{"another-secret-0123456789"}, Namespace: "n"})
	unkeyed := provision(t, testContext(t), Sticky{Header: "X-Token", Namespace: "n"}) // header keys stay a plain hash
	if a.StoreKey("203.0.113.7") == b.StoreKey("203.0.113.7") {
		t.Fatal("two secrets give one store key for a client IP")
	}
	if a.StoreKey("203.0.113.7") == unkeyed.StoreKey("203.0.113.7") {
		t.Fatal("a client IP's store key is the unkeyed hash")
	}
	if a.StoreKey("203.0.113.7") != a.StoreKey("203.0.113.7") || a.StoreKey("203.0.113.7") == a.StoreKey("203.0.113.8") {
		t.Fatal("store keys are not a function of the address")
	}
}

// downBackend is a store that fails every call.
type downBackend struct{ sessionstore.Backend }

var errStoreDown = errors.New("store down")

func (downBackend) Get(context.Context, string) (sessionstore.Binding, error) {
	return sessionstore.Binding{}, errStoreDown
}
func (downBackend) Add(context.Context, string, sessionstore.Binding) (sessionstore.Binding, bool, error) {
	return sessionstore.Binding{}, false, errStoreDown
}
func (downBackend) Put(context.Context, string, sessionstore.Binding) error { return errStoreDown }
func (downBackend) Draining(context.Context) (map[string]bool, error)       { return nil, errStoreDown }

// TestLBCookieSessionsOutliveAStoreOutage: the cookie routes the session,
// so a cookie due for a refresh is re-issued while the store is down;
// otherwise an active client would lose its session at token_max_age.
func TestLBCookieSessionsOutliveAStoreOutage(t *testing.T) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002")
	s := provision(t, testContext(t), Sticky{Secrets: []string{testSecret}, TTL: caddy.Duration(time.Hour)})
	s.store = sessionstore.NewStore("down", downBackend{s.store.Backend()}, nil)
	var id [sessionIDLen]byte
	id[0] = 9
	for _, tc := range []struct {
		name  string
		flags byte
		age   time.Duration
	}{
		{"recorded, due for a refresh", flagRecorded, 40 * time.Minute},
		{"never recorded", 0, time.Minute},
	} {
		c := &http.Cookie{Name: defaultCookieName, Value: s.signer.issue(id, pool[1].Dial, time.Now().Add(-tc.age), tc.flags)}
		w := httptest.NewRecorder()
		r := newRequest(c)
		if got := s.Select(pool, r, w); got != pool[1] || outcomeOf(r) != outcomeHit {
			t.Fatalf("%s: %v %q with the store down", tc.name, got, outcomeOf(r))
		}
		fresh := lbCookie(t, w, defaultCookieName)
		if fresh == nil {
			t.Fatalf("%s: no fresh cookie while the store is down", tc.name)
		}
		if tok := mustVerify(t, s, fresh); time.Since(tok.issued) > time.Minute || tok.flags&flagRecorded == 0 {
			t.Fatalf("%s: re-issued cookie from %v, flags %b", tc.name, tok.issued, tok.flags)
		}
	}
}

// TestLostRecordedCookieIsReissuedWhenDue: a client whose answer with the
// recorded cookie was lost keeps sending the first one; once that is due
// for a refresh it gets a new cookie, although the session is recorded.
func TestLostRecordedCookieIsReissuedWhenDue(t *testing.T) {
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002")
	lb, _ := nodes(t, 2, Sticky{Secrets: []string{testSecret}, TTL: caddy.Duration(time.Hour)})
	var id [sessionIDLen]byte
	id[0] = 10
	key := lb[0].StoreKey(string(id[:]))
	if err := lb[0].store.Put(context.Background(), key, lb[0].binding(pool[0], time.Now().Add(-40*time.Minute))); err != nil {
		t.Fatal(err)
	}
	old := &http.Cookie{Name: defaultCookieName, Value: lb[0].signer.issue(id, pool[0].Dial, time.Now().Add(-40*time.Minute), 0)}
	w := httptest.NewRecorder()
	if got := lb[1].Select(pool, newRequest(old), w); got != pool[0] {
		t.Fatalf("went to %v", got)
	}
	if fresh := lbCookie(t, w, defaultCookieName); fresh == nil {
		t.Fatal("a first cookie 40 minutes old, its session recorded, got no fresh cookie: the client would lose its session at token_max_age")
	}
	if b, err := lb[0].store.Get(context.Background(), key); err != nil || time.Until(b.Expires) < 50*time.Minute {
		t.Fatalf("binding not refreshed: %v %v", b, err)
	}
}
