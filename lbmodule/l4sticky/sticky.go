// Package l4sticky is caddy-lb's TLS pass-through on caddy-l4: the sticky
// selection policy of caddy-l4's proxy (layer4.proxy.selection_policies.
// sticky), with which connections passed through without being decrypted
// keep their backend by client IP (or SNI and client IP) in the same
// session stores as the HTTP policy, so every LB node sharing a store
// agrees, drains are honoured, and a backend joining or leaving the pool
// moves no client that has a binding; and the passthrough listener
// wrapper (caddy.listeners.passthrough), the short form of caddy-l4's
// layer4 wrapper for passing hostnames through by SNI.
//
// See docs/passthrough.md.
package l4sticky

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"github.com/mholt/caddy-l4/modules/l4proxy"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/lbstats"
	"github.com/caddylb/caddylb/internal/perconfig"
	"github.com/caddylb/caddylb/internal/promreg"
	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddylb/caddylb/internal/reloadwarn"
	"github.com/caddylb/caddylb/internal/rendezvous"
	"github.com/caddylb/caddylb/sessionstore"
)

func init() {
	caddy.RegisterModule(Sticky{})
}

// Sticky binds each client to one upstream of a layer4 proxy.
type Sticky struct {
	// Name of a session store declared with the session_store global
	// option. Default: an in-process memory store (this node only).
	Store string `json:"store,omitempty"`

	// How long a binding lives without connections. Each client's binding
	// is refreshed at most once per half TTL. Default: 1h.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// What identifies a client: "client_ip" (default) or "sni_client_ip",
	// which binds each hostname of a client separately.
	Key string `json:"key,omitempty"`

	// Keys of the HMAC that turns client IPs into store keys (an unkeyed
	// hash of an IP could be reversed); the first is used. Required with
	// a shared store, and the same on every node. Placeholders such as
	// {env.LB_STICKY_SECRET} are expanded.
	Secrets []string `json:"secrets,omitempty"`

	// Separates these bindings from those of other policies sharing the
	// store. Default: "l4:" and the key.
	Namespace string `json:"namespace,omitempty"`

	// The policy that picks an upstream for a new client and when a
	// client's upstream is unavailable. Default: least_conn.
	FallbackRaw json.RawMessage `json:"fallback,omitempty" caddy:"namespace=layer4.proxy.selection_policies inline_key=policy"`

	ttl          time.Duration
	secret       []byte
	macs         *sync.Pool // HMACs keyed by secret, reused per connection
	fallback     l4proxy.Selector
	store        *sessionstore.Store
	releaseStore func()
	logger       *zap.Logger
	outcomes     *lbstats.Outcomes
}

const (
	keyClientIP    = "client_ip"
	keySNIClientIP = "sni_client_ip"
	defaultTTL     = time.Hour
)

// CaddyModule returns the Caddy module information.
func (Sticky) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.proxy.selection_policies.sticky",
		New: func() caddy.Module { return new(Sticky) },
	}
}

// Provision applies defaults and finds the store and the fallback.
func (s *Sticky) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	reloadwarn.Check(s.logger)
	if err := promreg.Register(ctx.GetMetricsRegistry(), decisions, lbstats.Collector); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	if s.Key == "" {
		s.Key = keyClientIP
	}
	if s.Key != keyClientIP && s.Key != keySNIClientIP {
		return fmt.Errorf("layer4 lb_policy sticky: key must be client_ip or sni_client_ip, got %q", s.Key)
	}
	if s.Namespace == "" {
		s.Namespace = "l4:" + s.Key
	}
	s.outcomes = lbstats.PolicyOutcomes(s.PolicyName(), outcomeNames)
	s.ttl = time.Duration(s.TTL)
	if s.ttl == 0 {
		s.ttl = defaultTTL
	}
	if s.ttl < time.Second {
		return fmt.Errorf("layer4 lb_policy sticky: ttl %v is shorter than 1s", s.ttl)
	}
	repl := caddy.NewReplacer()
	if len(s.Secrets) > 0 {
		s.secret = []byte(repl.ReplaceKnown(s.Secrets[0], ""))
		if len(s.secret) < 16 {
			return errors.New("layer4 lb_policy sticky: the secret must be at least 16 bytes after placeholders")
		}
	}
	if s.FallbackRaw == nil {
		s.FallbackRaw = caddyconfig.JSONModuleObject(l4proxy.LeastConnSelection{}, "policy", "least_conn", nil)
	}
	mod, err := ctx.LoadModule(s, "FallbackRaw")
	if err != nil {
		return fmt.Errorf("layer4 lb_policy sticky: loading fallback: %v", err)
	}
	s.fallback = mod.(l4proxy.Selector)
	if _, self := s.fallback.(*Sticky); self {
		return errors.New("layer4 lb_policy sticky: the fallback cannot be sticky itself")
	}
	s.store, s.releaseStore, err = sessionstore.Lookup(ctx, s.Store)
	if err != nil {
		return err
	}
	if s.store.Shared() && s.secret == nil {
		return fmt.Errorf("layer4 lb_policy sticky: the shared session store %q needs `secret`: store keys of client IPs are keyed hashes, the same on every node; use e.g. secret {env.LB_STICKY_SECRET}", s.Store)
	}
	if s.secret == nil {
		// The memory store: this process only. One key for the process,
		// so bindings outlive config reloads as the store does.
		s.secret = processSecret()
	}
	secret := s.secret
	s.macs = &sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}
	if err := s.claim(ctx); err != nil {
		return err
	}
	register(ctx, s)
	return nil
}

// processSecret is the HMAC key of policies without a secret on the
// memory store, made once per process.
var processSecret = sync.OnceValue(func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
})

// claims are the stores and namespaces of the layer4 sticky policies of
// each config: two policies on one store and namespace would read each
// other's bindings and move each other's clients.
var claims perconfig.Map[map[string]bool]

func (s *Sticky) claim(ctx caddy.Context) error {
	what := s.Store + "\x00" + s.Namespace
	var taken bool
	claims.With(ctx, func() map[string]bool { return map[string]bool{} }, func(m map[string]bool) {
		taken = m[what]
		m[what] = true
	})
	if taken {
		return fmt.Errorf("layer4 lb_policy sticky: another policy in this config uses store %q and namespace %q; it would move this one's clients: give each its own `namespace`", s.Store, s.Namespace)
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

// Select returns the client's bound upstream while it is available and
// not removed from the pool; otherwise the fallback's choice among the
// available upstreams that are not draining, which becomes the binding.
func (s *Sticky) Select(pool l4proxy.UpstreamPool, conn *layer4.Connection) *l4proxy.Upstream {
	up, outcome := s.choose(pool, conn)
	s.count(conn, up, outcome)
	return up
}

// choose is Select without the counting.
func (s *Sticky) choose(pool l4proxy.UpstreamPool, conn *layer4.Connection) (*l4proxy.Upstream, string) {
	key := s.storeKey(conn)
	// The store's own per-call timeout and circuit breaker apply.
	ctx := context.Background()
	now := time.Now()
	b, err := s.store.Get(ctx, key)
	if err == nil {
		if up := usable(pool, b.Upstream, conn); up != nil {
			if b.Expires.Sub(now) < s.ttl/2 {
				_, _, _ = s.store.Swap(ctx, key, b.Upstream, sessionstore.Binding{Upstream: b.Upstream, Expires: now.Add(s.ttl)})
			}
			return up, "hit"
		}
	}
	draining, _ := s.store.Draining(ctx)
	candidates := make(l4proxy.UpstreamPool, 0, len(pool))
	for _, up := range pool {
		if !draining[up.String()] {
			candidates = append(candidates, up)
		}
	}
	if err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		// The store cannot be asked: every node picks the same backend
		// for the client by hashing its key, and the choice is written
		// with Add once the store answers.
		up := pickByHash(candidates, key, conn)
		if up != nil {
			s.store.Remember(key, sessionstore.Binding{Upstream: up.String(), Expires: now.Add(s.ttl)}, false)
		}
		return up, "store_error"
	}
	up := s.fallback.Select(candidates, conn)
	if up == nil {
		return nil, "no_upstream"
	}
	// A new client is added; one bound to an upstream that cannot take
	// it is moved, once. Either way, if another node wrote first, follow.
	binding := sessionstore.Binding{Upstream: up.String(), Expires: now.Add(s.ttl)}
	outcome := "new"
	var cur sessionstore.Binding
	var written bool
	var werr error
	if err == nil {
		outcome = "rebound"
		cur, written, werr = s.store.Swap(ctx, key, b.Upstream, binding)
	} else {
		cur, written, werr = s.store.Add(ctx, key, binding)
	}
	if werr == nil && !written {
		if other := usable(pool, cur.Upstream, conn); other != nil {
			return other, "hit"
		}
	}
	return up, outcome
}

// pickByHash is rendezvous hashing of key over the available upstreams
// of pool: the same choice on every node, and a backend joining or
// leaving moves only the clients it wins or held.
func pickByHash(pool l4proxy.UpstreamPool, key string, conn *layer4.Connection) *l4proxy.Upstream {
	var best *l4proxy.Upstream
	var bestScore uint64
	for _, up := range pool {
		if !available(up, conn) {
			continue
		}
		if score := rendezvous.Weight(up.String(), key); best == nil || score > bestScore {
			best, bestScore = up, score
		}
	}
	return best
}

// storeKey is the store key of the connection's client: an HMAC of the
// namespace, the SNI (with sni_client_ip) and the client IP.
func (s *Sticky) storeKey(conn *layer4.Connection) string {
	ip := conn.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	sni := ""
	if s.Key == keySNIClientIP {
		sni = conn.Replacer().ReplaceKnown("{l4.tls.server_name}", "")
	}
	return s.keyOf(sni, ip)
}

// SessionStoreKey is the store key of a client IP, optionally
// "<sni> <ip>" with sni_client_ip (for GET /lb/sessions).
func (s *Sticky) SessionStoreKey(value string) (string, error) {
	sni, ip, hasSNI := strings.Cut(value, " ")
	if !hasSNI {
		sni, ip = "", value
	}
	if net.ParseIP(ip) == nil {
		return "", fmt.Errorf("%q is not a client IP", ip)
	}
	if s.Key != keySNIClientIP {
		sni = "" // not part of this policy's keys
	}
	return s.keyOf(sni, net.ParseIP(ip).String()), nil
}

func (s *Sticky) keyOf(sni, ip string) string {
	var m hash.Hash
	if s.macs != nil {
		m = s.macs.Get().(hash.Hash)
		defer s.macs.Put(m)
		m.Reset()
	} else {
		m = hmac.New(sha256.New, s.secret)
	}
	m.Write([]byte(s.Namespace))
	m.Write([]byte{0})
	m.Write([]byte(sni))
	m.Write([]byte{0})
	m.Write([]byte(ip))
	var sum [sha256.Size]byte
	return s.Namespace + ":" + base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:18])
}

// usable is the upstream of pool named id (its dial addresses) if it can
// take a connection now, else nil.
func usable(pool l4proxy.UpstreamPool, id string, conn *layer4.Connection) *l4proxy.Upstream {
	for _, up := range pool {
		if up.String() == id && available(up, conn) {
			return up
		}
	}
	return nil
}

// available reports whether up can take a connection now (healthy, under
// its max_connections). caddy-l4 keeps that test to its own policies;
// its "first" policy answers it for a pool of one.
func available(up *l4proxy.Upstream, conn *layer4.Connection) bool {
	return (&l4proxy.FirstSelection{}).Select(l4proxy.UpstreamPool{up}, conn) != nil
}

var decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddylb",
	Subsystem: "l4_sticky",
	Name:      "decisions_total",
	Help:      "Upstream choices of the layer4 sticky policy, by outcome: hit, new, rebound, store_error, no_upstream.",
}, []string{"outcome"})

// PolicyName names the policy by its store and namespace, the key of its
// outcome counts on the dashboard and across reloads.
func (s *Sticky) PolicyName() string {
	store := s.Store
	if store == "" {
		store = "(default memory)"
	}
	return "layer4 " + store + " " + s.Namespace
}

// Outcomes returns the policy's choices by outcome.
func (s *Sticky) Outcomes() map[string]int64 { return s.outcomes.Snapshot() }

// outcomeNames are the outcomes, in the order of a policy's lbstats.Outcomes.
var outcomeNames = []string{"hit", "new", "rebound", "store_error", "no_upstream"}

// triedVar is the connection variable holding the upstream the last
// Select chose: caddy-l4 selects again only after the dial failed.
const triedVar = "caddylb.l4sticky.tried"

// count keeps the metrics and the dashboard's counts: the outcome, per
// policy; per upstream, the connection (when it is chosen), a session
// bound, and a failed dial of the upstream chosen before on this
// connection, which caddy-l4 tells only by selecting again (so the last
// failed dial, when it gives up, is not counted: it exports no outcome).
func (s *Sticky) count(conn *layer4.Connection, up *l4proxy.Upstream, outcome string) {
	decisions.WithLabelValues(outcome).Inc()
	s.outcomes.Add(slices.Index(outcomeNames, outcome))
	if prev, ok := conn.GetVar(triedVar).(*lbstats.Upstream); ok && prev != nil {
		prev.Errors.Add(1) // once: the variable is cleared or replaced below
	}
	if up == nil {
		conn.SetVar(triedVar, (*lbstats.Upstream)(nil))
		return
	}
	c := lbstats.UpstreamCounters(up.String())
	c.Requests.Add(1)
	if outcome == "new" || outcome == "rebound" {
		c.Bound.Add(1)
	}
	conn.SetVar(triedVar, c)
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy sticky {
//		store <name>
//		ttl <duration>
//		key client_ip|sni_client_ip
//		secret <secret>
//		namespace <name>
//		fallback <policy> [<args>]
//	}
func (s *Sticky) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "store", "key", "secret", "namespace":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "store":
				s.Store = v
			case "key":
				s.Key = v
			case "secret":
				s.Secrets = append(s.Secrets, v)
			case "namespace":
				s.Namespace = v
			}
		case "ttl":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := quantity.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("ttl: %v", err)
			}
			s.TTL = caddy.Duration(dur)
		case "fallback":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			mod, err := caddyfile.UnmarshalModule(d, "layer4.proxy.selection_policies."+name)
			if err != nil {
				return err
			}
			s.FallbackRaw = caddyconfig.JSONModuleObject(mod, "policy", name, nil)
		default:
			return d.Errf("unrecognized layer4 sticky option %q", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ l4proxy.Selector      = (*Sticky)(nil)
	_ caddy.Provisioner     = (*Sticky)(nil)
	_ caddy.CleanerUpper    = (*Sticky)(nil)
	_ caddyfile.Unmarshaler = (*Sticky)(nil)
)

// Policy is a provisioned layer4 sticky policy as the admin API sees it.
type Policy struct {
	Sticky *Sticky
	Proxy  *l4proxy.Handler // the proxy whose upstreams it picks from
}

// StoreHandle returns the policy's session store.
func (s *Sticky) StoreHandle() *sessionstore.Store { return s.store }

// KeyMode is what keys the policy's bindings: client_ip or sni_client_ip.
func (s *Sticky) KeyMode() string { return s.Key }

// Available reports whether up can take a connection now.
func Available(up *l4proxy.Upstream) bool { return available(up, nil) }

// policies are the layer4 sticky policies of each loaded config.
var policies perconfig.Map[*[]Policy]

// register records s, provisioned inside proxy, for the admin API.
func register(ctx caddy.Context, s *Sticky) {
	chain := ctx.Modules()
	for i := len(chain) - 1; i >= 0; i-- {
		if h, ok := chain[i].(*l4proxy.Handler); ok {
			policies.With(ctx, func() *[]Policy { return new([]Policy) }, func(p *[]Policy) {
				*p = append(*p, Policy{Sticky: s, Proxy: h})
			})
			return
		}
	}
}

// Policies returns the layer4 sticky policies of the config ctx belongs
// to (the running one: caddy.ActiveContext()).
func Policies(ctx context.Context) []Policy {
	if c, ok := ctx.(caddy.Context); ok && c.Context == nil {
		return nil // no config runs yet (the first one is being provisioned)
	}
	var out []Policy
	policies.Get(ctx, func(p *[]Policy, ok bool) {
		if ok {
			out = append(out, *p...)
		}
	})
	return out
}
