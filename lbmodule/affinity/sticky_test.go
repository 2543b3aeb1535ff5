package affinity

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddylb/caddylb/sessionstore"
)

const testSecret = "test-secret-0123456789abcdef"

func testContext(t testing.TB) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// provision provisions cfg as Caddy would, in a namespace of its own so
// that tests sharing the default memory store do not see each other.
func provision(t testing.TB, ctx caddy.Context, cfg Sticky) *Sticky {
	t.Helper()
	s := &cfg
	if s.Namespace == "" {
		s.Namespace = t.Name()
	}
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	t.Cleanup(func() { _ = s.Cleanup() })
	return s
}

func testPool(dials ...string) reverseproxy.UpstreamPool {
	pool := make(reverseproxy.UpstreamPool, len(dials))
	for i, d := range dials {
		pool[i] = &reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: d}
	}
	return pool
}

// newRequest makes a request the way Caddy's server prepares it: with vars
// and a replacer in its context.
func newRequest(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{})
	ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer())
	r = r.WithContext(ctx)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

func lbCookie(t testing.TB, w *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	var found *http.Cookie
	for _, line := range w.Header().Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("bad Set-Cookie %q: %v", line, err)
		}
		if c.Name == name {
			if found != nil {
				t.Fatalf("two Set-Cookie lines for %s: %v", name, w.Header().Values("Set-Cookie"))
			}
			found = c
		}
	}
	return found
}

func outcomeOf(r *http.Request) string { return stateOf(r).outcome }

func TestLBCookieSession(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Secrets: []string{testSecret}, TTL: caddy.Duration(time.Hour)})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")

	// First visit: a new session and a signed, private cookie.
	r := newRequest()
	w := httptest.NewRecorder()
	first := s.Select(pool, r, w)
	if first == nil || outcomeOf(r) != outcomeNew {
		t.Fatalf("first visit: %v %q", first, outcomeOf(r))
	}
	c := lbCookie(t, w, defaultCookieName)
	if c == nil || !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode || c.Secure {
		t.Fatalf("cookie attributes: %+v", c)
	}
	if strings.Contains(c.Value, "9001") || strings.Contains(c.Value, "127.0.0.1") {
		t.Fatalf("cookie reveals the upstream: %s", c.Value)
	}
	if got := w.Header().Get("Cache-Control"); got != "private" {
		t.Fatalf("Cache-Control %q, want private", got)
	}
	if n := countsFor(t, s)[first.Dial]; n != 0 {
		t.Fatalf("a first visit must not be recorded yet, store has %d", n)
	}

	// Second visit: same upstream; the session is recorded and the cookie re-issued once.
	r = newRequest(c)
	w = httptest.NewRecorder()
	if got := s.Select(pool, r, w); got != first || outcomeOf(r) != outcomeHit {
		t.Fatalf("second visit went to %v (%q), want %v hit", got, outcomeOf(r), first)
	}
	recorded := lbCookie(t, w, defaultCookieName)
	if recorded == nil {
		t.Fatal("the returning client's cookie was not re-issued as recorded")
	}
	if n := countsFor(t, s)[first.Dial]; n != 1 {
		t.Fatalf("store counts %d sessions on %s, want 1", n, first.Dial)
	}

	// Third visit: a plain hit, no Set-Cookie, no Cache-Control from us.
	for range 20 {
		r = newRequest(recorded)
		w = httptest.NewRecorder()
		if got := s.Select(pool, r, w); got != first {
			t.Fatalf("hit went to %v, want %v", got, first)
		}
		if len(w.Header().Values("Set-Cookie")) != 0 || w.Header().Get("Cache-Control") != "" {
			t.Fatalf("a plain hit set headers: %v", w.Header())
		}
	}
}

func countsFor(t testing.TB, s *Sticky) map[string]int64 {
	t.Helper()
	c, err := s.store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLBCookieSecretRotation(t *testing.T) {
	ctx := testContext(t)
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	old := provision(t, ctx, Sticky{Cookie: "lb", Secrets: []string{"old-secret-0123456789"}})
	r := newRequest()
	w := httptest.NewRecorder()
	up := old.Select(pool, r, w)
	c := lbCookie(t, w, "lb")

	rotated := provision(t, ctx, Sticky{Cookie: "lb", Secrets: []string{"new-secret-0123456789", "old-secret-0123456789"}, Namespace: old.Namespace})
	r = newRequest(c)
	w = httptest.NewRecorder()
	if got := rotated.Select(pool, r, w); got != up || outcomeOf(r) != outcomeHit {
		t.Fatalf("old cookie after rotation: %v %q, want %v hit", got, outcomeOf(r), up)
	}
	fresh := lbCookie(t, w, "lb")
	if fresh == nil {
		t.Fatal("cookie signed with the old secret was not re-signed")
	}
	if tok, err := rotated.signer.verify(fresh.Value); err != nil || tok.secret != 0 {
		t.Fatalf("re-signed cookie: secret %d, err %v", tok.secret, err)
	}

	dropped := provision(t, ctx, Sticky{Cookie: "lb", Secrets: []string{"new-secret-0123456789"}, Namespace: old.Namespace})
	r = newRequest(c)
	if dropped.Select(pool, r, httptest.NewRecorder()); outcomeOf(r) != outcomeNew {
		t.Fatalf("cookie of a removed secret: outcome %q, want new", outcomeOf(r))
	}
}

func TestLBCookieBadValuesAreNewSessions(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Secrets: []string{testSecret}})
	other := provision(t, ctx, Sticky{Secrets: []string{"another-secret-0123456789"}})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002")
	forged := other.signer.issue(newSessionID(), "127.0.0.1:9001", time.Now(), flagRecorded)
	for _, v := range []string{"", "garbage", "127.0.0.1:9001", forged, strings.Repeat("A", tokenLen), strings.Repeat("x", 8000), "%00%ff", `"quoted"`} {
		r := newRequest(&http.Cookie{Name: defaultCookieName, Value: v})
		w := httptest.NewRecorder()
		if up := s.Select(pool, r, w); up == nil || outcomeOf(r) != outcomeNew {
			t.Fatalf("cookie %.20q: %v %q, want a new session", v, up, outcomeOf(r))
		}
		if lbCookie(t, w, defaultCookieName) == nil {
			t.Fatalf("cookie %.20q: no fresh cookie issued", v)
		}
	}
}

func TestRetryReplacesTheCookieAndAvoidsTheFailedUpstream(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Secrets: []string{testSecret}})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")

	r := newRequest()
	w := httptest.NewRecorder()
	w.Header().Add("Set-Cookie", "app=1; Path=/") // set by an earlier handler
	first := s.Select(pool, r, w)
	second := s.Select(pool, r, w) // reverse_proxy retries after first failed
	if second == nil || second == first {
		t.Fatalf("retry chose %v after %v failed", second, first)
	}
	c := lbCookie(t, w, defaultCookieName) // fails on two lines
	tok, err := s.signer.verify(c.Value)
	if err != nil || s.findByTag(pool, tok) != second {
		t.Fatalf("the cookie does not point at the retried upstream")
	}
	if got := w.Header().Values("Set-Cookie"); len(got) != 2 || got[0] != "app=1; Path=/" {
		t.Fatalf("other cookies disturbed: %v", got)
	}
}

func TestRebindAndStrict(t *testing.T) {
	ctx := testContext(t)
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	for _, mode := range []string{onUnavailableRebind, onUnavailableStrict} {
		t.Run(mode, func(t *testing.T) {
			s := provision(t, ctx, Sticky{Secrets: []string{testSecret}, OnUnavailable: mode})
			r := newRequest()
			w := httptest.NewRecorder()
			bound := s.Select(pool, r, w)
			c := lbCookie(t, w, defaultCookieName)

			// The bound upstream fails during a request: strict refuses
			// to move the session, rebind moves it and re-issues the cookie.
			r = newRequest(c)
			w = httptest.NewRecorder()
			if s.Select(pool, r, w) != bound {
				t.Fatal("not sent to the bound upstream first")
			}
			w = httptest.NewRecorder()
			next := s.Select(pool, r, w)
			if mode == onUnavailableStrict {
				if next != nil || outcomeOf(r) != outcomeStrictReject {
					t.Fatalf("strict: %v %q, want nil strict_reject", next, outcomeOf(r))
				}
				return
			}
			if next == nil || next == bound || outcomeOf(r) != outcomeRebound {
				t.Fatalf("rebind: %v %q", next, outcomeOf(r))
			}
			// Health checks still count the bound upstream available: one
			// failed request is served elsewhere, the session stays bound.
			// (Rebinding an unhealthy upstream for good is tested end to
			// end in integration/, where backends really die.)
			if moved := lbCookie(t, w, defaultCookieName); moved != nil {
				t.Fatalf("a transient failure re-issued the cookie: %v", moved)
			}
			r = newRequest(c)
			if got := s.Select(pool, r, httptest.NewRecorder()); got != bound || outcomeOf(r) != outcomeHit {
				t.Fatalf("after a transient failure: %v %q, want %v hit", got, outcomeOf(r), bound)
			}
		})
	}
}

func TestRemovedUpstreamRebindsEvenInStrictMode(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Secrets: []string{testSecret}, OnUnavailable: onUnavailableStrict})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	cookies := map[string]*http.Cookie{}
	for len(cookies) < 3 {
		r := newRequest()
		w := httptest.NewRecorder()
		up := s.Select(pool, r, w)
		cookies[up.Dial] = lbCookie(t, w, defaultCookieName)
	}
	shrunk := reverseproxy.UpstreamPool{pool[0], pool[2]}
	for dial, c := range cookies {
		r := newRequest(c)
		got := s.Select(shrunk, r, httptest.NewRecorder())
		switch {
		case dial == pool[1].Dial && (got == nil || outcomeOf(r) != outcomeRebound):
			t.Fatalf("session of the removed upstream: %v %q", got, outcomeOf(r))
		case dial != pool[1].Dial && (got == nil || got.Dial != dial):
			t.Fatalf("session of surviving %s moved to %v", dial, got)
		}
	}
}

func TestNilResponseWriter(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Secrets: []string{testSecret}})
	r := newRequest()
	if up := s.Select(testPool("127.0.0.1:9001"), r, nil); up == nil {
		t.Fatal("no upstream with a nil ResponseWriter")
	}
}

func TestNoUpstreamAvailable(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Secrets: []string{testSecret}})
	r := newRequest()
	w := httptest.NewRecorder()
	if up := s.Select(reverseproxy.UpstreamPool{}, r, w); up != nil {
		t.Fatalf("empty pool gave %v", up)
	}
	if len(w.Header().Values("Set-Cookie")) != 0 {
		t.Fatal("cookie set without an upstream")
	}
}

// learnResponse runs the sticky_learn handler around a Select whose
// "upstream" answers with the given Set-Cookie lines.
func learnResponse(t testing.TB, l *Learn, s *Sticky, pool reverseproxy.UpstreamPool, r *http.Request, setCookies ...string) *reverseproxy.Upstream {
	t.Helper()
	var chosen *reverseproxy.Upstream
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		chosen = s.Select(pool, r, w)
		for _, sc := range setCookies {
			w.Header().Add("Set-Cookie", sc)
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := l.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	return chosen
}

func TestAppCookieLearning(t *testing.T) {
	ctx := testContext(t)
	l := new(Learn)
	if err := l.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Cleanup() })
	s := provision(t, ctx, Sticky{AppCookie: "PHPSESSID"})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")

	// Login: no session yet; the application sets PHPSESSID.
	r := newRequest()
	loginUpstream := learnResponse(t, l, s, pool, r, "PHPSESSID=abc123; path=/; HttpOnly")
	if outcomeOf(r) != outcomeNone {
		t.Fatalf("login outcome %q, want none", outcomeOf(r))
	}
	// Every later request with that cookie goes where it was set.
	for range 10 {
		r = newRequest(&http.Cookie{Name: "PHPSESSID", Value: "abc123"})
		if got := s.Select(pool, r, httptest.NewRecorder()); got != loginUpstream || outcomeOf(r) != outcomeHit {
			t.Fatalf("after login: %v %q, want %v hit", got, outcomeOf(r), loginUpstream)
		}
	}
	// The store never holds the raw session id.
	if _, err := s.store.Get(context.Background(), "abc123"); err == nil {
		t.Fatal("raw session id used as a store key")
	}
	// Logout: the application expires the cookie and the binding goes.
	r = newRequest(&http.Cookie{Name: "PHPSESSID", Value: "abc123"})
	learnResponse(t, l, s, pool, r, "PHPSESSID=deleted; Max-Age=0; path=/")
	if _, err := s.store.Get(context.Background(), s.StoreKey("abc123")); err != sessionstore.ErrNotFound {
		t.Fatalf("binding after logout: %v, want ErrNotFound", err)
	}
}

func TestAppCookieNeedsLearnHandler(t *testing.T) {
	ctx := testContext(t)
	s := &Sticky{AppCookie: "PHPSESSID"}
	err := s.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "sticky_learn") {
		t.Fatalf("provision without sticky_learn: %v", err)
	}
	_ = s.Cleanup()
}

func TestHeaderAndClientIPKeys(t *testing.T) {
	ctx := testContext(t)
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	tests := []struct {
		name  string
		cfg   Sticky
		keyed func(r *http.Request, v string)
	}{
		{"header", Sticky{Header: "x-session-token"}, func(r *http.Request, v string) { r.Header.Set("X-Session-Token", v) }},
		{"client_ip", Sticky{ClientIP: true}, func(r *http.Request, v string) {
			caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, v)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := provision(t, ctx, tt.cfg)
			seen := map[string]bool{}
			for i := range 30 {
				v := "203.0.113." + string(rune('0'+i%10))
				r := newRequest()
				tt.keyed(r, v)
				w := httptest.NewRecorder()
				up := s.Select(pool, r, w)
				r2 := newRequest()
				tt.keyed(r2, v)
				if again := s.Select(pool, r2, httptest.NewRecorder()); again != up || outcomeOf(r2) != outcomeHit {
					t.Fatalf("key %s: %v then %v (%q)", v, up, again, outcomeOf(r2))
				}
				if len(w.Header().Values("Set-Cookie")) != 0 {
					t.Fatal("LB cookie issued in a non-cookie key mode")
				}
				seen[up.Dial] = true
			}
			if len(seen) < 2 {
				t.Fatalf("all keys went to %v: fallback is not spreading new sessions", seen)
			}
			r := newRequest()
			if s.Select(pool, r, httptest.NewRecorder()); outcomeOf(r) != outcomeNone {
				t.Fatalf("request without key: %q, want none", outcomeOf(r))
			}
		})
	}
}

func TestDrainKeepsSessionsAndTakesNoNewOnes(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Header: "X-Session"})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002")
	bound := map[string]string{}
	for i := range 20 {
		r := newRequest()
		key := "user-" + string(rune('a'+i))
		r.Header.Set("X-Session", key)
		bound[key] = s.Select(pool, r, nil).Dial
	}
	if err := s.store.SetDraining(context.Background(), "127.0.0.1:9001", true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.store.SetDraining(context.Background(), "127.0.0.1:9001", false) })
	for key, dial := range bound {
		r := newRequest()
		r.Header.Set("X-Session", key)
		if got := s.Select(pool, r, nil); got.Dial != dial {
			t.Fatalf("bound session %s moved from %s to %s by drain", key, dial, got.Dial)
		}
	}
	for i := range 20 {
		r := newRequest()
		r.Header.Set("X-Session", "new-"+string(rune('a'+i)))
		if got := s.Select(pool, r, nil); got.Dial == "127.0.0.1:9001" {
			t.Fatal("a new session went to the draining upstream")
		}
	}
	// Everything draining: serve rather than refuse.
	_ = s.store.SetDraining(context.Background(), "127.0.0.1:9002", true)
	t.Cleanup(func() { _ = s.store.SetDraining(context.Background(), "127.0.0.1:9002", false) })
	r := newRequest()
	r.Header.Set("X-Session", "late")
	if s.Select(pool, r, nil) == nil {
		t.Fatal("all upstreams draining gave no upstream")
	}
}

func TestFollowsAnotherNodesBinding(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Header: "X-Session"})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	// Another node bound the session to 9003 a moment ago.
	key := s.StoreKey("shared-user")
	if err := s.store.Put(context.Background(), key, sessionstore.Binding{Upstream: "127.0.0.1:9003", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r := newRequest()
	r.Header.Set("X-Session", "shared-user")
	if got := s.Select(pool, r, nil); got.Dial != "127.0.0.1:9003" {
		t.Fatalf("went to %s, want the stored 127.0.0.1:9003", got.Dial)
	}
}

func TestMarkPrivate(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, "private"},
		{[]string{"public, max-age=600"}, "private, max-age=600"},
		{[]string{"max-age=60, s-maxage=600"}, "private, max-age=60"},
		{[]string{"no-store"}, "no-store"},
		{[]string{"private, max-age=5"}, "private, max-age=5"},
		{[]string{"no-cache", "must-revalidate"}, "private, no-cache, must-revalidate"},
		{[]string{"Public"}, "private"},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.in {
			h.Add("Cache-Control", v)
		}
		h.Set("CDN-Cache-Control", "max-age=600")
		h.Set("Surrogate-Control", "max-age=600")
		markPrivate(h)
		if h.Get("CDN-Cache-Control") != "" || h.Get("Surrogate-Control") != "" {
			t.Errorf("CDN cache controls kept: %v", h)
		}
		if got := strings.Join(h.Values("Cache-Control"), ", "); got != tt.want {
			t.Errorf("markPrivate(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCookieAttributes(t *testing.T) {
	ctx := testContext(t)
	pool := testPool("127.0.0.1:9001")
	tests := []struct {
		name    string
		cfg     Sticky
		prepare func(r *http.Request)
		check   func(c *http.Cookie) bool
	}{
		{"plain http is not Secure", Sticky{}, func(*http.Request) {}, func(c *http.Cookie) bool { return !c.Secure }},
		{"tls is Secure", Sticky{}, func(r *http.Request) { r.TLS = &tls.ConnectionState{} }, func(c *http.Cookie) bool { return c.Secure }},
		{"trusted proxy https is Secure", Sticky{}, func(r *http.Request) {
			caddyhttp.SetVar(r.Context(), caddyhttp.TrustedProxyVarKey, true)
			r.Header.Set("X-Forwarded-Proto", "https")
		}, func(c *http.Cookie) bool { return c.Secure }},
		{"untrusted https claim is ignored", Sticky{}, func(r *http.Request) {
			r.Header.Set("X-Forwarded-Proto", "https")
		}, func(c *http.Cookie) bool { return !c.Secure }},
		{"forwarded handler says https", Sticky{}, func(r *http.Request) {
			r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("http.forwarded.proto", "https")
		}, func(c *http.Cookie) bool { return c.Secure }},
		{"secure option", Sticky{Secure: true}, func(*http.Request) {}, func(c *http.Cookie) bool { return c.Secure }},
		{"samesite none implies Secure", Sticky{SameSite: "none"}, func(*http.Request) {}, func(c *http.Cookie) bool {
			return c.Secure && c.SameSite == http.SameSiteNoneMode
		}},
		{"domain path max_age", Sticky{Domain: "example.com", Path: "/app", MaxAge: caddy.Duration(2 * time.Hour), SameSite: "strict"}, func(*http.Request) {}, func(c *http.Cookie) bool {
			return c.Domain == "example.com" && c.Path == "/app" && c.MaxAge == 7200 && c.SameSite == http.SameSiteStrictMode && c.HttpOnly
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Secrets = []string{testSecret}
			s := provision(t, ctx, tt.cfg)
			r := newRequest()
			tt.prepare(r)
			w := httptest.NewRecorder()
			s.Select(pool, r, w)
			c := lbCookie(t, w, defaultCookieName)
			if c == nil || !tt.check(c) {
				t.Fatalf("cookie %+v", c)
			}
		})
	}
}

func TestProvisionErrors(t *testing.T) {
	ctx := testContext(t)
	t.Setenv("CADDYLB_TEST_SECRET", "from-the-environment-0123456789")
	tests := []struct {
		name string
		cfg  Sticky
		want string // "" means it must load
	}{
		{"env secret", Sticky{Secrets: []string{"{env.CADDYLB_TEST_SECRET}"}}, ""},
		{"unset env secret", Sticky{Secrets: []string{"{env.CADDYLB_TEST_UNSET}"}}, "empty after expanding"},
		{"short secret", Sticky{Secrets: []string{"short"}}, "at least 16"},
		{"two keys", Sticky{Header: "X-A", ClientIP: true}, "choose one session key"},
		{"cookie with header", Sticky{Cookie: "lb", Header: "X-A"}, "cannot be combined"},
		{"bad cookie name", Sticky{Cookie: "a b"}, "invalid cookie name"},
		{"bad samesite", Sticky{SameSite: "sometimes"}, "samesite must be"},
		{"bad on_unavailable", Sticky{OnUnavailable: "panic"}, "on_unavailable must be"},
		{"tiny ttl", Sticky{TTL: caddy.Duration(time.Millisecond)}, "too short"},
		{"cookie fallback", Sticky{FallbackRaw: []byte(`{"policy":"cookie"}`)}, "cannot be used with sticky"},
		{"unknown store", Sticky{Store: "nope"}, `session store "nope" is not declared`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &tt.cfg
			err := s.Provision(ctx)
			if err == nil {
				err = s.Validate()
			}
			_ = s.Cleanup()
			if tt.want == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAppCookieRotatingValueMovesTheBinding(t *testing.T) {
	ctx := testContext(t)
	l := new(Learn)
	if err := l.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Cleanup() })
	s := provision(t, ctx, Sticky{AppCookie: "laravel_session", TTL: caddy.Duration(2 * time.Hour)})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")

	up := learnResponse(t, l, s, pool, newRequest(), "laravel_session=v0; path=/")
	value := "v0"
	// Laravel re-encrypts its cookie on every response: each value must
	// keep the user on the same backend, and bindings must not pile up.
	for i := 1; i <= 20; i++ {
		next := "v" + strings.Repeat("x", i)
		r := newRequest(&http.Cookie{Name: "laravel_session", Value: value})
		if got := learnResponse(t, l, s, pool, r, "laravel_session="+next+"; path=/"); got != up {
			t.Fatalf("response %d went to %v, want %v", i, got, up)
		}
		old, err := s.store.Get(context.Background(), s.StoreKey(value))
		if err != nil || time.Until(old.Expires) > retiredGrace {
			t.Fatalf("replaced value %s: %v, expires in %v; want retired within %v", value, err, time.Until(old.Expires), retiredGrace)
		}
		value = next
	}
	cur, err := s.store.Get(context.Background(), s.StoreKey(value))
	if err != nil || cur.Upstream != up.Dial || time.Until(cur.Expires) < time.Hour {
		t.Fatalf("latest value: %+v %v", cur, err)
	}
}

func TestUnknownAppCookieIsHashedNotStored(t *testing.T) {
	ctx := testContext(t)
	l := new(Learn)
	_ = l.Provision(ctx)
	t.Cleanup(func() { _ = l.Cleanup() })
	s := provision(t, ctx, Sticky{AppCookie: "PHPSESSID"})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	spread := map[string]bool{}
	for i := range 30 {
		c := &http.Cookie{Name: "PHPSESSID", Value: "invented-" + strings.Repeat("z", i)}
		r1, r2 := newRequest(c), newRequest(c)
		a, b := s.Select(pool, r1, nil), s.Select(pool, r2, nil)
		if a != b || outcomeOf(r1) != outcomeNone {
			t.Fatalf("invented cookie %d: %v then %v (%q)", i, a, b, outcomeOf(r1))
		}
		spread[a.Dial] = true
	}
	if len(spread) < 2 {
		t.Fatalf("hashing sent every invented session to %v", spread)
	}
	if n := len(countsFor(t, s)); n != 0 {
		t.Fatalf("invented cookies created %d bindings", n)
	}
}

func TestRetriesMayReturnToTheOnlyUpstream(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Secrets: []string{testSecret}})
	pool := testPool("127.0.0.1:9001")
	r := newRequest()
	w := httptest.NewRecorder()
	first := s.Select(pool, r, w)
	// lb_try_duration keeps retrying one upstream while it restarts.
	for range 3 {
		if again := s.Select(pool, r, w); again != first {
			t.Fatalf("retry on a one-upstream pool gave %v", again)
		}
	}
}

func TestTTLSlidesWithUseAndExpiresWithout(t *testing.T) {
	ctx := testContext(t)
	s := provision(t, ctx, Sticky{Header: "X-Session", TTL: caddy.Duration(2 * time.Second)})
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	request := func(key string) (*reverseproxy.Upstream, string) {
		r := newRequest()
		r.Header.Set("X-Session", key)
		up := s.Select(pool, r, nil)
		return up, outcomeOf(r)
	}
	active, _ := request("active")
	request("idle")
	// Past half the TTL a hit refreshes the binding, so an active session
	// outlives its first expiry; an idle one does not.
	time.Sleep(1200 * time.Millisecond)
	if up, outcome := request("active"); up != active || outcome != outcomeHit {
		t.Fatalf("active session at 1.2s: %v %q", up, outcome)
	}
	time.Sleep(1200 * time.Millisecond)
	if up, outcome := request("active"); up != active || outcome != outcomeHit {
		t.Fatalf("active session at 2.4s (past its first expiry): %v %q", up, outcome)
	}
	if _, outcome := request("idle"); outcome != outcomeNew {
		t.Fatalf("idle session at 2.4s: outcome %q, want new (expired)", outcome)
	}
}

func TestAddedUpstreamLeavesBindingsWhereTheyAre(t *testing.T) {
	ctx := testContext(t)
	pool := testPool("127.0.0.1:9001", "127.0.0.1:9002")
	for _, cfg := range []Sticky{{Secrets: []string{testSecret}}, {Header: "X-Session"}} {
		s := provision(t, ctx, cfg)
		type session struct {
			cookie *http.Cookie
			key    string
			bound  string
		}
		var sessions []session
		for i := range 20 {
			r := newRequest()
			key := "user-" + strings.Repeat("k", i)
			r.Header.Set("X-Session", key)
			w := httptest.NewRecorder()
			up := s.Select(pool, r, w)
			sessions = append(sessions, session{lbCookie(t, w, defaultCookieName), key, up.Dial})
		}
		grown := append(pool, testPool("127.0.0.1:9003")...)
		for _, ss := range sessions {
			r := newRequest()
			if ss.cookie != nil {
				r.AddCookie(ss.cookie)
			}
			r.Header.Set("X-Session", ss.key)
			if got := s.Select(grown, r, httptest.NewRecorder()); got.Dial != ss.bound || outcomeOf(r) != outcomeHit {
				t.Fatalf("%s: after adding an upstream a session moved from %s to %s (%q)", s.KeyMode(), ss.bound, got.Dial, outcomeOf(r))
			}
		}
	}
}
