// Package affinity is caddy-lb's session affinity: the `lb_policy sticky`
// selection policy of Caddy's reverse_proxy
// (http.reverse_proxy.selection_policies.sticky) and the `sticky_learn`
// handler (http.handlers.sticky_learn) that lets it learn sessions from
// upstream responses.
//
// A session is keyed by a signed LB cookie (the default), the application's
// own session cookie, a request header or the client IP; its binding to an
// upstream lives in a session store (package sessionstore).
//
// See docs/sessions.md.
package affinity

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/boundedcache"
	"github.com/caddylb/caddylb/internal/fleetinfo"
	"github.com/caddylb/caddylb/internal/lbstats"
	"github.com/caddylb/caddylb/internal/reloadwarn"
	"github.com/caddylb/caddylb/sessionstore"
)

func init() {
	caddy.RegisterModule(Sticky{})
}

// Sticky is a selection policy that keeps each session on one upstream.
type Sticky struct {
	// Name of the cookie the load balancer issues to pin a session, when no
	// other key is configured. Default: "lb_affinity".
	Cookie string `json:"cookie,omitempty"`

	// Keys that sign the LB cookie (HMAC-SHA256). The first signs new
	// cookies; every one verifies, so a secret is rotated by putting a new
	// one first and keeping the old one for a while. Placeholders such as
	// {env.LB_SECRET} are expanded. Several LB nodes must share them. If
	// empty, a random secret is made per process and cookies are not
	// recognised by other nodes or after a restart. With client_ip, the
	// first one also keys the hash of each client IP in the store
	// (required with a shared store; rotating it moves those sessions
	// once).
	Secrets []string `json:"secrets,omitempty"`

	// Name of the application's own session cookie (PHPSESSID,
	// JSESSIONID, laravel_session...). Sessions are keyed by its value and
	// learned from the upstream's Set-Cookie by the sticky_learn handler,
	// so no LB cookie is issued.
	AppCookie string `json:"app_cookie,omitempty"`

	// Name of a request header whose value keys the session (API tokens,
	// SignalR, mobile clients). A response header of the same name is
	// learned too when the sticky_learn handler runs.
	Header string `json:"header,omitempty"`

	// Key sessions by the client IP as Caddy determined it (after
	// trusted_proxies or the forwarded handler).
	ClientIP bool `json:"client_ip,omitempty"`

	// Name of a session store declared with the session_store global
	// option. Default: an in-process memory store.
	Store string `json:"store,omitempty"`

	// Separates the bindings of policies that share a store and a key
	// (two sites both keyed by client IP, say). Default: derived from
	// the key, e.g. "app_cookie:PHPSESSID".
	Namespace string `json:"namespace,omitempty"`

	// How long a binding lives without requests. Each session's binding
	// is refreshed at most once per half TTL. Default: 1h.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Domain attribute of the LB cookie. Default: none (host-only).
	Domain string `json:"domain,omitempty"`
	// Path attribute of the LB cookie. Default: "/".
	Path string `json:"path,omitempty"`
	// SameSite attribute of the LB cookie: lax, strict or none. Default: lax.
	SameSite string `json:"samesite,omitempty"`
	// Always mark the LB cookie Secure. By default it is Secure when the
	// client connected over HTTPS (directly or via a trusted proxy).
	Secure bool `json:"secure,omitempty"`
	// The LB cookie's Max-Age. Default: none, a browser-session cookie.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// How long after it was issued an LB cookie is honoured, whatever
	// the browser does with Max-Age: an older one (a cookie copied from
	// a log, replayed by a script) starts a new session. A returning
	// client gets a fresh cookie every half ttl, so only clients idle for
	// longer than this lose their session, as their binding has expired
	// by then anyway. Default: the longer of ttl and max_age.
	TokenMaxAge caddy.Duration `json:"token_max_age,omitempty"`

	// The policy that picks an upstream for new sessions and for rebinding.
	// Default: least_conn.
	FallbackRaw json.RawMessage `json:"fallback,omitempty" caddy:"namespace=http.reverse_proxy.selection_policies inline_key=policy"`

	// What happens when a session's upstream is unavailable (unhealthy,
	// full, or failed on this request): "rebind" (default) moves the
	// session to a healthy upstream for every node; "strict" answers 503.
	// An upstream removed from the config is always rebound.
	OnUnavailable string `json:"on_unavailable,omitempty"`

	mode         keyMode
	namespace    string
	ttl          time.Duration
	refreshAfter time.Duration
	tokenMaxAge  time.Duration
	replays      *replays
	sameSite     http.SameSite
	signer       *signer
	fallback     reverseproxy.Selector
	store        *sessionstore.Store
	releaseStore func()
	logger       *zap.Logger
	warned       *atomic.Bool // missing sticky_learn reported
	secretDigest string       // fleetinfo.SecretDigest of the signing keys
	outcomes     *lbstats.Outcomes
}

// keyMode is what identifies a session.
type keyMode int

const (
	keyLBCookie keyMode = iota
	keyAppCookie
	keyHeader
	keyClientIP
)

func (m keyMode) String() string {
	return [...]string{"cookie", "app_cookie", "header", "client_ip"}[m]
}

const (
	defaultCookieName   = "lb_affinity"
	defaultTTL          = time.Hour
	onUnavailableRebind = "rebind"
	onUnavailableStrict = "strict"
)

// CaddyModule returns the Caddy module information.
func (Sticky) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.sticky",
		New: func() caddy.Module { return new(Sticky) },
	}
}

// Provision sets up the policy: defaults, secrets, fallback and store.
func (s *Sticky) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	reloadwarn.Check(s.logger)
	s.warned = new(atomic.Bool)
	if err := s.provisionKey(); err != nil {
		return err
	}
	s.ttl = time.Duration(s.TTL)
	if s.ttl == 0 {
		s.ttl = defaultTTL
	}
	s.refreshAfter = s.ttl / 2
	s.tokenMaxAge = time.Duration(s.TokenMaxAge)
	if s.tokenMaxAge == 0 {
		s.tokenMaxAge = max(s.ttl, time.Duration(s.MaxAge))
	}
	s.replays = boundedcache.New[string](replayCapacity)
	if s.OnUnavailable == "" {
		s.OnUnavailable = onUnavailableRebind
	}
	if s.Path == "" {
		s.Path = "/"
	}
	var err error
	if s.sameSite, err = parseSameSite(s.SameSite); err != nil {
		return err
	}
	if err := s.provisionSecrets(); err != nil {
		return err
	}

	if s.FallbackRaw == nil {
		s.FallbackRaw = caddyconfig.JSONModuleObject(reverseproxy.LeastConnSelection{}, "policy", "least_conn", nil)
	}
	mod, err := ctx.LoadModule(s, "FallbackRaw")
	if err != nil {
		return fmt.Errorf("loading fallback selection policy: %v", err)
	}
	s.fallback = mod.(reverseproxy.Selector)
	switch s.fallback.(type) {
	case *reverseproxy.CookieHashSelection, *Sticky:
		return fmt.Errorf("fallback policy %T cannot be used with sticky: it would issue its own cookie; use least_conn, round_robin, random or client_ip_hash", s.fallback)
	}

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering sticky metrics: %v", err)
	}
	s.store, s.releaseStore, err = sessionstore.Lookup(ctx, s.Store)
	if err != nil {
		return err
	}
	if s.mode == keyClientIP && len(s.Secrets) == 0 && s.store.Shared() {
		return fmt.Errorf("lb_policy sticky: client_ip with the shared session store %q needs `secret`: store keys of client IPs are keyed hashes (an unkeyed one could be reversed), and every node must use the same key; use e.g. secret {env.LB_STICKY_SECRET}", s.Store)
	}
	if claim(ctx, "namespace\x00"+s.Store+"\x00"+s.namespace) > 0 {
		s.logger.Warn("another lb_policy sticky in this config uses the same store and session namespace; if they proxy to different upstreams, each will move the other's sessions: give each its own `namespace` (and, for LB cookies, its own `cookie` name or `path`)",
			zap.String("store", s.Store), zap.String("namespace", s.namespace))
	}
	s.publishFleet(ctx)
	s.outcomes = lbstats.PolicyOutcomes(s.PolicyName(), outcomeNames)
	if s.mode == keyAppCookie && !learnsAhead(ctx) {
		return fmt.Errorf("lb_policy sticky: app_cookie %s in %s learns sessions from upstream responses, which needs the sticky_learn handler ahead of this reverse_proxy, in its site: add the line `sticky_learn` to that site block (or, in JSON, a {\"handler\": \"sticky_learn\"} route before reverse_proxy in the same route list or one enclosing it)", s.AppCookie, siteName(ctx))
	}
	return nil
}

// provisionKey decides the key mode and the default namespace.
func (s *Sticky) provisionKey() error {
	var modes []keyMode
	if s.AppCookie != "" {
		modes = append(modes, keyAppCookie)
	}
	if s.Header != "" {
		modes = append(modes, keyHeader)
	}
	if s.ClientIP {
		modes = append(modes, keyClientIP)
	}
	if len(modes) > 1 {
		return fmt.Errorf("lb_policy sticky: choose one session key, got %d (app_cookie, header, client_ip are exclusive)", len(modes))
	}
	if len(modes) == 1 {
		s.mode = modes[0]
		if s.Cookie != "" {
			return fmt.Errorf("lb_policy sticky: cookie %q is the LB cookie key and cannot be combined with %s", s.Cookie, s.mode)
		}
	}
	if s.Cookie == "" {
		s.Cookie = defaultCookieName
	}
	if s.mode == keyLBCookie && strings.EqualFold(s.Cookie, s.AppCookie) {
		return fmt.Errorf("lb_policy sticky: the LB cookie %q would overwrite the application's cookie", s.Cookie)
	}
	if s.mode == keyLBCookie && !validCookieName(s.Cookie) {
		return fmt.Errorf("lb_policy sticky: invalid cookie name %q", s.Cookie)
	}
	if s.mode == keyAppCookie && !validCookieName(s.AppCookie) {
		return fmt.Errorf("lb_policy sticky: invalid app_cookie name %q", s.AppCookie)
	}
	if s.mode == keyHeader {
		s.Header = http.CanonicalHeaderKey(s.Header)
	}
	s.namespace = s.Namespace
	if s.namespace == "" {
		switch s.mode {
		case keyLBCookie:
			s.namespace = "cookie:" + s.Cookie
		case keyAppCookie:
			s.namespace = "app_cookie:" + s.AppCookie
		case keyHeader:
			s.namespace = "header:" + s.Header
		case keyClientIP:
			s.namespace = "client_ip"
		}
	}
	return nil
}

// provisionSecrets expands placeholders in the secrets and builds the signer.
func (s *Sticky) provisionSecrets() error {
	repl := caddy.NewReplacer()
	var keys [][]byte
	for i, raw := range s.Secrets {
		secret := repl.ReplaceAll(raw, "")
		if secret == "" {
			return fmt.Errorf("lb_policy sticky: secret %d is empty after expanding placeholders (is the environment variable set?)", i+1)
		}
		if len(secret) < 16 {
			return fmt.Errorf("lb_policy sticky: secret %d is %d bytes; use at least 16 random bytes", i+1, len(secret))
		}
		keys = append(keys, []byte(secret))
	}
	if len(keys) == 0 {
		if s.mode == keyLBCookie {
			s.logger.Warn("lb_policy sticky has no secret: using a random one made at process start, so LB cookies are not recognised by other nodes or after a restart; set `secret {env.LB_STICKY_SECRET}`")
		}
		keys = append(keys, processSecret())
	}
	s.signer = newSigner(s.Cookie, keys)
	secrets := make([]string, len(keys))
	for i, k := range keys {
		secrets[i] = string(k)
	}
	s.secretDigest = fleetinfo.SecretDigest(secrets...)
	return nil
}

// Validate checks the option values.
func (s *Sticky) Validate() error {
	switch s.OnUnavailable {
	case onUnavailableRebind, onUnavailableStrict:
	default:
		return fmt.Errorf("lb_policy sticky: on_unavailable must be rebind or strict, got %q", s.OnUnavailable)
	}
	if s.ttl < time.Second {
		return fmt.Errorf("lb_policy sticky: ttl %v is too short; use at least 1s", s.ttl)
	}
	if s.MaxAge < 0 || (s.MaxAge > 0 && time.Duration(s.MaxAge) < time.Second) {
		return fmt.Errorf("lb_policy sticky: max_age must be at least 1s, got %v", time.Duration(s.MaxAge))
	}
	if s.tokenMaxAge < s.refreshAfter {
		return fmt.Errorf("lb_policy sticky: token_max_age %v is shorter than half the ttl (%v), when returning clients get a fresh cookie: they would lose their session while active", s.tokenMaxAge, s.refreshAfter)
	}
	if s.mode == keyLBCookie {
		probe := &http.Cookie{Name: s.Cookie, Value: "x", Path: s.Path, Domain: s.Domain}
		if err := probe.Valid(); err != nil {
			return fmt.Errorf("lb_policy sticky: invalid LB cookie attributes: %v", err)
		}
		if !strings.HasPrefix(s.Path, "/") {
			return fmt.Errorf("lb_policy sticky: path %q must start with /", s.Path)
		}
	}
	return nil
}

// Cleanup releases the store.
func (s *Sticky) Cleanup() error {
	if s.releaseStore != nil {
		s.releaseStore()
		s.releaseStore = nil
	}
	return nil
}

// StoreHandle returns the policy's session store.
func (s *Sticky) StoreHandle() *sessionstore.Store { return s.store }

// KeyMode names what identifies a session: cookie, app_cookie, header or client_ip.
func (s *Sticky) KeyMode() string { return s.mode.String() }

// SessionStoreKey turns a session key as an operator has it (an LB cookie
// value, an application session id, a header value, a client IP) into the
// store key of this policy's binding.
func (s *Sticky) SessionStoreKey(value string) (string, error) {
	if s.mode != keyLBCookie {
		return s.StoreKey(value), nil
	}
	tok, err := s.signer.verify(value)
	if err != nil {
		return "", fmt.Errorf("not an LB cookie of this policy: %v", err)
	}
	return s.StoreKey(string(tok.sessionID[:])), nil
}

// PolicyName names the policy by its store and namespace, which no two
// policies of one config share (unless warned about): the key of its
// outcome counts, on the dashboard and across reloads.
func (s *Sticky) PolicyName() string {
	store := s.Store
	if store == "" {
		store = "(default memory)"
	}
	return store + " " + s.namespace
}

// Outcomes returns the policy's selection counts by outcome.
func (s *Sticky) Outcomes() map[string]int64 { return s.outcomes.Snapshot() }

// NamespaceName returns the namespace separating this policy's bindings.
func (s *Sticky) NamespaceName() string { return s.namespace }

// processSecret is the key of policies without a secret: random, made once
// per process, so that config reloads keep every LB cookie valid.
var processSecret = sync.OnceValue(func() []byte {
	id := newSessionID()
	return id[:]
})

func parseSameSite(v string) (http.SameSite, error) {
	switch strings.ToLower(v) {
	case "", "lax":
		return http.SameSiteLaxMode, nil
	case "strict":
		return http.SameSiteStrictMode, nil
	case "none":
		return http.SameSiteNoneMode, nil
	}
	return 0, fmt.Errorf("lb_policy sticky: samesite must be lax, strict or none, got %q", v)
}

// validCookieName reports whether name is an RFC 6265 token.
func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// Interface guards
var (
	_ reverseproxy.Selector = (*Sticky)(nil)
	_ caddy.Provisioner     = (*Sticky)(nil)
	_ caddy.Validator       = (*Sticky)(nil)
	_ caddy.CleanerUpper    = (*Sticky)(nil)
)
