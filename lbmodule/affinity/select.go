package affinity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/rendezvous"
	"github.com/caddylb/caddylb/sessionstore"
)

// Outcomes of one selection, as counted in metrics and written to the access log.
const (
	outcomeHit          = "hit"           // the session's upstream served it
	outcomeNew          = "new"           // a new session was bound
	outcomeNone         = "none"          // no session key yet (no app cookie or header)
	outcomeRebound      = "rebound"       // the session moved to another upstream
	outcomeStrictReject = "strict_reject" // strict mode refused to move it: 503
	outcomeStoreError   = "store_error"   // the store failed; chosen by hashing the key
	outcomeLearned      = "learned"       // sticky_learn recorded a session from a response
	outcomeNoUpstream   = "no_upstream"   // nothing available to serve the request
)

// requestState is what one request's Selects (retries call Select again)
// and the sticky_learn handler share, kept in the request's vars.
type requestState struct {
	tried     []string // upstreams chosen earlier in this request: they failed
	setCookie string   // the Set-Cookie line this request added, to replace on retry
	learning  bool     // the sticky_learn handler wraps this response
	policy    *Sticky  // the policy that chose last
	upstream  string   // what it chose
	outcome   string
	value     string // the session key value the request carried
	bound     string // the upstream the store had bound it to, if any

	// For the per-upstream counts (see countUpstream), under countMu with
	// tried: the request's replacer; Caddy's upstream placeholders as they
	// were when the last try began; how many of tried are counted; whether
	// a sticky_learn handler around the proxy counts the tries when it
	// returns (inLearn: set and read on the request's goroutine alone);
	// whether the sweep counts them instead (tracked), has settled the
	// request (its client left while it still ran), or could not track it
	// (untracked: too many in flight).
	countMu       sync.Mutex
	repl          *caddy.Replacer
	latencyBefore any
	counted       int
	inLearn       bool
	tracked       bool
	settled       bool
	untracked     bool
}

const stateVarKey = "caddylb.sticky"

func stateOf(r *http.Request) *requestState {
	if st, ok := caddyhttp.GetVar(r.Context(), stateVarKey).(*requestState); ok {
		return st
	}
	st := new(requestState)
	caddyhttp.SetVar(r.Context(), stateVarKey, st)
	return st
}

func (st *requestState) triedBefore(dial string) bool {
	for _, d := range st.tried {
		if d == dial {
			return true
		}
	}
	return false
}

// usable reports whether up may serve this request: it is healthy, not
// full, and did not already fail on it.
func (st *requestState) usable(up *reverseproxy.Upstream) bool {
	return up != nil && up.Available() && !st.triedBefore(up.Dial)
}

// Select picks the session's upstream, binding or rebinding it as needed.
// It runs once per attempt; a second call in the same request means the
// previous choice failed, and that upstream is treated as unavailable.
func (s *Sticky) Select(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter) *reverseproxy.Upstream {
	st := stateOf(r)
	var up *reverseproxy.Upstream
	var outcome string
	if s.mode == keyLBCookie {
		up, outcome = s.selectByCookie(pool, r, w, st)
	} else if value := s.sessionValue(r); value == "" {
		up = s.pickNew(pool, r, st)
		outcome = outcomeFor(up, outcomeNone)
	} else {
		up, outcome = s.selectByStore(pool, r, st, value)
	}
	if s.mode == keyAppCookie && !st.learning && s.warned.CompareAndSwap(false, true) {
		s.logger.Warn("sticky app_cookie saw a request that did not pass through sticky_learn; sessions the application creates on this route are not learned",
			zap.String("app_cookie", s.AppCookie), zap.String("uri", r.RequestURI))
	}
	s.record(r, st, up, outcome)
	return up
}

// sessionValue extracts the session key's raw value from the request.
func (s *Sticky) sessionValue(r *http.Request) string {
	switch s.mode {
	case keyAppCookie:
		if c, err := r.Cookie(s.AppCookie); err == nil {
			return c.Value
		}
	case keyHeader:
		return r.Header.Get(s.Header)
	case keyClientIP:
		ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		return ip
	}
	return ""
}

// StoreKey is the store key of a session key value: a hash, so that the
// store never holds a usable session cookie, and namespaced per policy.
// Client IPs are few enough (2^32 for IPv4) that an unkeyed hash could be
// reversed by trying them all: theirs is keyed with the first secret.
func (s *Sticky) StoreKey(value string) string {
	if s.mode == keyClientIP {
		mac := s.signer.mac(0, []byte("client_ip\x00"), []byte(s.namespace), []byte{0}, []byte(value))
		return base64.RawURLEncoding.EncodeToString(mac[:18])
	}
	sum := sha256.Sum256([]byte(s.namespace + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}

// selectByStore serves the app_cookie, header and client_ip keys, whose
// bindings live only in the store.
func (s *Sticky) selectByStore(pool reverseproxy.UpstreamPool, r *http.Request, st *requestState, value string) (*reverseproxy.Upstream, string) {
	ctx := r.Context()
	key := s.StoreKey(value)
	now := time.Now()
	b, err := s.store.Get(ctx, key)
	switch {
	case err == nil:
		st.value = value
		up := findUpstream(pool, b.Upstream)
		if st.usable(up) {
			st.bound = up.Dial
			if b.Expires.Sub(now) < s.ttl-s.refreshAfter {
				// Compare-and-swap, so a refresh never undoes another node's rebind.
				_, _, _ = s.store.Swap(ctx, key, b.Upstream, s.binding(up, now))
			}
			return up, outcomeHit
		}
		if up != nil && s.OnUnavailable == onUnavailableStrict {
			return nil, outcomeStrictReject
		}
		next := s.rebind(pool, r, st, key, up, b.Upstream)
		return next, outcomeFor(next, outcomeRebound)

	case errors.Is(err, sessionstore.ErrNotFound):
		if s.mode == keyAppCookie {
			// Only the application creates app sessions (learned from its
			// responses); a value it never set is routed by hash, so that
			// invented cookies cost the store nothing and one stays together.
			st.value = value
			return s.pickByHash(pool, value, st, s.draining(r)), outcomeNone
		}
		up := s.pickNew(pool, r, st)
		if up == nil {
			return nil, outcomeNoUpstream
		}
		cur, added, err := s.store.Add(ctx, key, s.binding(up, now))
		switch {
		case err != nil: // a full or failing store: stay together by hash
			return s.hashAndRemember(pool, key, value, st, s.draining(r), now), outcomeStoreError
		case !added:
			// Another node bound this session first: follow it.
			if other := findUpstream(pool, cur.Upstream); st.usable(other) {
				return other, outcomeHit
			}
		}
		return up, outcomeNew

	default:
		if s.mode == keyAppCookie {
			return s.pickByHash(pool, value, st, nil), outcomeStoreError
		}
		return s.hashAndRemember(pool, key, value, st, nil, now), outcomeStoreError
	}
}

// hashAndRemember routes a session the store could not record by hash,
// as every node does while the store is down, and hands the choice to
// the store to write with Add once it answers (when it can keep it), so
// the session stays where it went instead of being picked anew.
func (s *Sticky) hashAndRemember(pool reverseproxy.UpstreamPool, key, value string, st *requestState, draining map[string]bool, now time.Time) *reverseproxy.Upstream {
	up := s.pickByHash(pool, value, st, draining)
	if up != nil {
		s.store.Remember(key, s.binding(up, now), false)
	}
	return up
}

// outcomeFor is outcome, or no_upstream when nothing could be chosen.
func outcomeFor(up *reverseproxy.Upstream, outcome string) string {
	if up == nil {
		return outcomeNoUpstream
	}
	return outcome
}

// selectByCookie serves the LB-cookie key. The cookie itself names the
// upstream (by signed tag), so the hit path never waits on the store; the
// store records sessions for counting and lets nodes agree on rebinds.
func (s *Sticky) selectByCookie(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter, st *requestState) (*reverseproxy.Upstream, string) {
	now := time.Now()
	value, tok, ok := s.lbCookie(r, now)
	if !ok {
		return s.newCookieSession(pool, r, w, st)
	}
	up := s.findByTag(pool, tok)
	usable := st.usable(up)
	if usable && tok.secret == 0 && tok.flags&flagRecorded != 0 && now.Sub(tok.issued) < s.refreshAfter {
		return up, outcomeHit // the hit path: nothing to record
	}
	if !usable && up != nil && s.OnUnavailable == onUnavailableStrict {
		return nil, outcomeStrictReject
	}
	// The cookie asks for work (record, refresh, re-sign, move). A client
	// that keeps sending the same cookie gets the same answer, without
	// store commands or another Set-Cookie.
	if dial, ok := s.replays.Get(value, now); ok {
		if cached := findUpstream(pool, dial); st.usable(cached) {
			return cached, outcomeHit
		}
	}
	key := s.StoreKey(string(tok.sessionID[:]))
	if usable {
		reissue, stored := s.recordCookieSession(r, key, tok, up, now)
		if reissue {
			s.setCookie(w, r, st, s.signer.issue(tok.sessionID, up.Dial, now, flagRecorded))
		}
		if stored { // else the next request with this cookie tries the store again
			s.replays.Put(value, up.Dial, now.Add(s.refreshAfter))
		}
		return up, outcomeHit
	}
	next := s.rebindCookieSession(pool, r, st, key, up)
	if next != nil && (up == nil || !up.Available()) {
		// Moved for good (not only around this request's failed attempt).
		s.setCookie(w, r, st, s.signer.issue(tok.sessionID, next.Dial, now, flagRecorded))
		s.replays.Put(value, next.Dial, now.Add(s.refreshAfter))
	}
	return next, outcomeFor(next, outcomeRebound)
}

// lbCookie returns the first LB cookie of the request that verifies and
// is not older than token_max_age: a sibling subdomain (or a script on
// one) can plant a second cookie of the same name, which browsers send
// first when its Path is longer.
func (s *Sticky) lbCookie(r *http.Request, now time.Time) (string, lbToken, bool) {
	for _, c := range r.CookiesNamed(s.Cookie) {
		tok, err := s.signer.verify(c.Value)
		if err == nil && now.Sub(tok.issued) > s.tokenMaxAge {
			err = errTokenExpired
		}
		if err == nil {
			return c.Value, tok, true
		}
		if ce := s.logger.Check(zap.DebugLevel, "ignoring invalid LB cookie"); ce != nil {
			ce.Write(zap.Error(err), zap.Int("length", len(c.Value)))
		}
	}
	return "", lbToken{}, false
}

// recordCookieSession writes the session of a cookie whose upstream can
// serve it: its first return (the cookie has no recorded flag yet), a
// refresh once half the TTL has passed, or a re-sign with a rotated
// secret. It reports whether the client should get a new cookie, and
// whether the store took the write.
//
// The cookie, not the store, routes the session: a new cookie is issued
// whenever the old one is due (stale, rotated, or not recorded yet), also
// when the store is down, so that sessions outlive an outage longer than
// token_max_age. Only a replay (a cookie not recorded yet whose session
// an earlier request, here or on another node, already recorded, and
// that is not due for a refresh) gets none.
func (s *Sticky) recordCookieSession(r *http.Request, key string, tok lbToken, up *reverseproxy.Upstream, now time.Time) (reissue, stored bool) {
	ctx := r.Context()
	due := tok.secret != 0 || now.Sub(tok.issued) >= s.refreshAfter
	if tok.flags&flagRecorded != 0 {
		return true, s.store.Put(ctx, key, s.binding(up, now)) == nil
	}
	_, added, err := s.store.Add(ctx, key, s.binding(up, now))
	if err == nil && !added && due {
		err = s.store.Put(ctx, key, s.binding(up, now)) // refresh what the earlier request wrote
	}
	return added || due || err != nil, err == nil
}

// rebindCookieSession moves a session whose upstream cannot serve it. up
// is its upstream in the pool, nil when it was removed from the config:
// the cookie's tag then names no dial, so the store says where the
// session is. If another request (here or on another node) already moved
// it to an upstream in the pool, it follows; otherwise it moves it, once,
// with a compare-and-swap from what the store holds.
func (s *Sticky) rebindCookieSession(pool reverseproxy.UpstreamPool, r *http.Request, st *requestState, key string, up *reverseproxy.Upstream) *reverseproxy.Upstream {
	if up != nil {
		return s.rebind(pool, r, st, key, up, up.Dial)
	}
	from := ""
	if b, err := s.store.Get(r.Context(), key); err == nil {
		from = b.Upstream
		if moved := findUpstream(pool, b.Upstream); st.usable(moved) {
			return moved
		}
	}
	return s.rebind(pool, r, st, key, nil, from)
}

func (s *Sticky) newCookieSession(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter, st *requestState) (*reverseproxy.Upstream, string) {
	up := s.pickNew(pool, r, st)
	if up == nil {
		return nil, outcomeNoUpstream
	}
	s.setCookie(w, r, st, s.signer.issue(newSessionID(), up.Dial, time.Now(), 0))
	return up, outcomeNew
}

// rebind moves the session at key away from upstream from (bound is its
// Upstream in this pool, nil if it was removed). If another node moved it
// first to an upstream this node can use, it follows that one. When the
// upstream only failed this request but health checks still count it
// available, the request is served elsewhere and the binding stays: one
// transient error does not move a session for good.
func (s *Sticky) rebind(pool reverseproxy.UpstreamPool, r *http.Request, st *requestState, key string, bound *reverseproxy.Upstream, from string) *reverseproxy.Upstream {
	up := s.pickNew(pool, r, st)
	if up == nil || (bound != nil && bound.Available()) {
		return up
	}
	ctx := r.Context()
	now := time.Now()
	for range 2 {
		cur, swapped, err := s.store.Swap(ctx, key, from, s.binding(up, now))
		if err != nil || swapped {
			return up
		}
		if other := findUpstream(pool, cur.Upstream); st.usable(other) {
			return other
		}
		from = cur.Upstream // the other node's choice is down too: replace it
	}
	return up
}

// pickNew chooses an upstream for a session with the fallback policy,
// among usable upstreams that are not draining. When every usable upstream
// is draining, draining ones are used rather than failing the request.
func (s *Sticky) pickNew(pool reverseproxy.UpstreamPool, r *http.Request, st *requestState) *reverseproxy.Upstream {
	draining := s.draining(r)
	if len(draining) == 0 && len(st.tried) == 0 {
		return s.fallback.Select(pool, r, nil)
	}
	candidates := s.candidates(pool, st, draining)
	if len(candidates) == 0 {
		return nil
	}
	return s.fallback.Select(candidates, r, nil)
}

// candidates lists the upstreams a session may go to, best first: usable
// and not draining; else usable; else, so that lb_try_duration can wait
// out a restart, any available one, even one that failed this request.
func (s *Sticky) candidates(pool reverseproxy.UpstreamPool, st *requestState, draining map[string]bool) reverseproxy.UpstreamPool {
	out := make(reverseproxy.UpstreamPool, 0, len(pool))
	for _, keep := range []func(*reverseproxy.Upstream) bool{
		func(up *reverseproxy.Upstream) bool { return st.usable(up) && !draining[up.Dial] },
		st.usable,
		(*reverseproxy.Upstream).Available,
	} {
		for _, up := range pool {
			if keep(up) {
				out = append(out, up)
			}
		}
		if len(out) > 0 {
			break
		}
	}
	return out
}

// draining returns the store's drain set; none when it cannot be read.
func (s *Sticky) draining(r *http.Request) map[string]bool {
	draining, err := s.store.Draining(r.Context())
	if err != nil {
		return nil
	}
	return draining
}

// pickByHash chooses by rendezvous hashing of the session key: every node
// sends one key to the same upstream without asking the store (while it is
// down, or for app cookies the application never set).
func (s *Sticky) pickByHash(pool reverseproxy.UpstreamPool, value string, st *requestState, draining map[string]bool) *reverseproxy.Upstream {
	var best *reverseproxy.Upstream
	var bestHash uint64
	for _, up := range s.candidates(pool, st, draining) {
		if sum := rendezvous.Weight(up.Dial, value); best == nil || sum > bestHash {
			best, bestHash = up, sum
		}
	}
	return best
}

func (s *Sticky) findByTag(pool reverseproxy.UpstreamPool, tok lbToken) *reverseproxy.Upstream {
	for _, up := range pool {
		if s.signer.upstreamTag(tok.secret, up.Dial) == tok.tag {
			return up
		}
	}
	return nil
}

func findUpstream(pool reverseproxy.UpstreamPool, dial string) *reverseproxy.Upstream {
	for _, up := range pool {
		if up.Dial == dial {
			return up
		}
	}
	return nil
}

func (s *Sticky) binding(up *reverseproxy.Upstream, now time.Time) sessionstore.Binding {
	return sessionstore.Binding{Upstream: up.Dial, Expires: now.Add(s.ttl)}
}

// record counts the outcome and exposes it to the access log and placeholders.
func (s *Sticky) record(r *http.Request, st *requestState, up *reverseproxy.Upstream, outcome string) {
	dial := ""
	if up != nil {
		dial = up.Dial
	}
	s.countUpstream(r, st, up, outcome) // appends the try to st.tried
	st.policy, st.upstream, st.outcome = s, dial, outcome
	s.countDecision(outcome)
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Set(zap.String("sticky_outcome", outcome))
		extra.Set(zap.String("sticky_upstream", dial))
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.sticky.outcome", outcome)
		repl.Set("http.sticky.upstream", dial)
	}
}

// learn records a session the upstream created in its response: the
// application's Set-Cookie (app_cookie) or the response header (header).
// It runs from the sticky_learn handler before the response is written.
func (s *Sticky) learn(ctx context.Context, r *http.Request, header http.Header, upstream string) {
	if upstream == "" {
		return
	}
	st := stateOf(r)
	switch s.mode {
	case keyAppCookie:
		for _, line := range header.Values("Set-Cookie") {
			c, err := http.ParseSetCookie(line)
			if err != nil || c.Name != s.AppCookie {
				continue
			}
			if !cookieLive(c) {
				// The application ended the session: forget the binding.
				if old, err := r.Cookie(s.AppCookie); err == nil {
					_ = s.store.Delete(ctx, s.StoreKey(old.Value))
				}
				continue
			}
			s.learnValue(ctx, st, c.Value, upstream)
		}
	case keyHeader:
		if v := header.Get(s.Header); v != "" {
			s.learnValue(ctx, st, v, upstream)
		}
	}
}

// cookieLive reports whether a Set-Cookie keeps the cookie: Max-Age wins
// over Expires (RFC 6265, section 5.3), and an empty value ends it too.
func cookieLive(c *http.Cookie) bool {
	switch {
	case c.Value == "" || c.MaxAge < 0:
		return false
	case c.MaxAge > 0:
		return true
	}
	return c.Expires.IsZero() || c.Expires.After(time.Now())
}

// retiredGrace is how long the binding of a session key the application
// just replaced keeps working, for requests already under way with it.
const retiredGrace = time.Minute

// learnValue binds value to upstream. A value the request already carried,
// bound there, needs nothing (Select refreshes it). A new value replacing
// the request's (session id regeneration at login, or frameworks such as
// Laravel that re-encrypt the cookie on every response) moves the binding:
// the old key is retired with a short grace, so bindings follow sessions,
// not requests.
func (s *Sticky) learnValue(ctx context.Context, st *requestState, value, upstream string) {
	if value == st.value && st.bound == upstream {
		return
	}
	now := time.Now()
	key := s.StoreKey(value)
	b := sessionstore.Binding{Upstream: upstream, Expires: now.Add(s.ttl)}
	if err := s.store.Put(ctx, key, b); err != nil {
		// Kept to be written when the store answers, and served meanwhile.
		s.store.Remember(key, b, true)
		return
	}
	s.countDecision(outcomeLearned)
	if st.value != "" && st.value != value && st.bound == upstream {
		_, _, _ = s.store.Swap(ctx, s.StoreKey(st.value), upstream, sessionstore.Binding{Upstream: upstream, Expires: now.Add(retiredGrace)})
	}
}
