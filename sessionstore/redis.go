package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(RedisBackend{})
}

// RedisBackend keeps bindings in a Redis server (6 or later) shared by every
// LB node, using the rueidis client.
//
// Reads are served from memory: Get and Draining use Redis's
// server-assisted client-side caching (RESP3 CLIENT TRACKING), so a hit
// costs no network round trip. When any node changes a binding or the drain
// set, Redis pushes an invalidation to every node that cached it, which
// drops its copy at once; a node therefore sees another node's change within
// the push's network delay. Without a push (which Redis sends on every
// write) an entry lives at most client_cache_ttl and never past the
// binding's own expiry, and every entry of a connection is dropped when the
// connection drops, so nothing stale survives a Redis restart. A node sees
// its own writes at once: for a moment after writing a key it reads that
// key from Redis, since the push invalidating its own copy arrives after
// the write's reply.
//
// Writes are Lua scripts, atomic on the server, which also keep one sorted
// set of sessions per upstream: Counts is exact. The backend addresses a
// single Redis (or a primary with replicas); it does not support Redis
// Cluster, since the scripts touch keys of several hash slots.
//
// One client is kept per distinct connection settings and shared by every
// config that uses them, so a config reload keeps its connections and its
// cache.
type RedisBackend struct {
	// The Redis server's address, host:port. When several are given, each
	// connection tries them in order, starting with the last one that
	// answered, so they must reach the same data (for example a primary and
	// the replica a failover promotes). Placeholders like {env.REDIS_ADDR}
	// are resolved at load. Default: 127.0.0.1:6379.
	Addresses []string `json:"addresses,omitempty"`

	// The ACL user to log in as (Redis 6 ACLs). Default: the default user.
	// Placeholders are resolved at load.
	Username string `json:"username,omitempty"`

	// The password to log in with. Use a placeholder such as
	// {env.REDIS_PASSWORD} to keep it out of the config. It is never logged.
	Password string `json:"password,omitempty"`

	// The logical database number (SELECT). Default: 0.
	DB int `json:"db,omitempty"`

	// The prefix of every key this store writes, so several stores or
	// applications can share one Redis. Default: "caddylb:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Connect with TLS. The server's certificate is always verified, against
	// the system roots unless ca_file is set, and its name against the
	// address's host unless server_name is set. Default: plain TCP.
	TLS *RedisTLS `json:"tls,omitempty"`

	// How long one store call may take before it counts as a failure and
	// the request goes on without the store. Default: 250ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long connecting (TCP, TLS and login) may take. Default: 1s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// How long a binding or the drain set may be served from this node's
	// memory. Redis invalidates a cached entry as soon as anyone writes it,
	// so this bounds staleness only if an invalidation is lost, and a
	// binding is never served past its expiry. Default: 1m.
	ClientCacheTTL caddy.Duration `json:"client_cache_ttl,omitempty"`

	// Turn off client-side caching: every Get and Draining asks Redis. Needed
	// for servers without RESP3 client tracking (Redis before 6, some
	// proxies and managed services).
	DisableClientCache bool `json:"disable_client_cache,omitempty"`

	// Settings with placeholders resolved.
	addrs              []string
	username, password string

	client  rueidis.Client
	recent  *recentWrites // keys this client wrote lately, shared with it
	poolKey string
	logger  *zap.Logger

	bindingPrefix string // KeyPrefix + "b:"
	upstreamsKey  string // KeyPrefix + "upstreams"
	drainKey      string // KeyPrefix + "drain"

	drain *atomic.Pointer[drainSet] // last decoded drain set
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// The name to verify the server's certificate against. Default: the host
	// of the address dialed.
	ServerName string `json:"server_name,omitempty"`

	// A PEM file of CA certificates to trust instead of the system roots,
	// for servers with a private CA.
	CAFile string `json:"ca_file,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (RedisBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "session_store.backends.redis",
		New: func() caddy.Module { return new(RedisBackend) },
	}
}

// Provision applies defaults, resolves placeholders and attaches the
// backend to the shared client for its settings, connecting if it is the
// first. An unreachable server does not fail the config (the store falls
// back until Redis answers); a server that refuses the login, the database
// or client tracking does.
func (r *RedisBackend) Provision(ctx caddy.Context) error {
	r.logger = ctx.Logger()
	if len(r.Addresses) == 0 {
		r.Addresses = []string{"127.0.0.1:6379"}
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = "caddylb:"
	}
	if r.Timeout == 0 {
		r.Timeout = caddy.Duration(250 * time.Millisecond)
	}
	if r.DialTimeout == 0 {
		r.DialTimeout = caddy.Duration(time.Second)
	}
	if r.ClientCacheTTL == 0 {
		r.ClientCacheTTL = caddy.Duration(time.Minute)
	}
	// ReplaceKnown rather than ReplaceAll: {env.*} is always known, and a
	// password that happens to contain braces must survive intact.
	repl := caddy.NewReplacer()
	r.addrs = make([]string, len(r.Addresses))
	for i, a := range r.Addresses {
		r.addrs[i] = repl.ReplaceKnown(a, "")
	}
	r.username = repl.ReplaceKnown(r.Username, "")
	r.password = repl.ReplaceKnown(r.Password, "")
	r.bindingPrefix = r.KeyPrefix + "b:"
	r.upstreamsKey = r.KeyPrefix + "upstreams"
	r.drainKey = r.KeyPrefix + "drain"
	r.drain = new(atomic.Pointer[drainSet])

	// Check before dialing, so a bad config is reported as such rather than
	// as a connection error. Caddy calls Validate again; it is cheap.
	if err := r.Validate(); err != nil {
		return err
	}
	opt, key, err := r.clientOption()
	if err != nil {
		return err
	}
	val, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return connectRedis(opt, r.logger)
	})
	if err != nil {
		return err
	}
	r.client = val.(*redisClient).Client
	r.recent = val.(*redisClient).recent
	r.poolKey = key
	return nil
}

// Validate checks the settings after placeholders are resolved.
func (r *RedisBackend) Validate() error {
	for _, a := range r.addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return fmt.Errorf("redis address %q: want host:port", a)
		}
	}
	if r.DB < 0 {
		return fmt.Errorf("redis db %d: must not be negative", r.DB)
	}
	if r.Timeout < 0 || r.DialTimeout < 0 || r.ClientCacheTTL < 0 {
		return errors.New("redis timeout, dial_timeout and client_cache_ttl must not be negative")
	}
	return nil
}

// Cleanup releases this config's reference to the shared client; the last
// one closes it. It is safe after a failed or partial Provision.
func (r *RedisBackend) Cleanup() error {
	if r.client == nil {
		return nil
	}
	r.client = nil
	_, err := redisClients.Delete(r.poolKey)
	return err
}

// CallTimeout implements CallTimeouter: the Store applies it to every call.
func (r *RedisBackend) CallTimeout() time.Duration { return time.Duration(r.Timeout) }

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	session_store <name> redis [<host:port>...] {
//		address <host:port>...
//		username <user>
//		password <password>
//		db <n>
//		key_prefix <prefix>
//		tls
//		tls_server_name <name>
//		tls_ca_file <pem file>
//		timeout <duration>
//		dial_timeout <duration>
//		client_cache_ttl <duration>
//		client_cache off
//	}
//
// Addresses may follow `redis` on the first line or come from `address`.
// tls_server_name and tls_ca_file imply tls.
func (r *RedisBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // backend name
	r.Addresses = append(r.Addresses, d.RemainingArgs()...)
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			r.Addresses = append(r.Addresses, args...)
		case "username":
			r.Username, err = oneArg(d)
		case "password":
			r.Password, err = oneArg(d)
		case "db":
			r.DB, err = intArg(d)
		case "key_prefix":
			r.KeyPrefix, err = oneArg(d)
		case "tls":
			err = noArgs(d)
			r.tlsSettings()
		case "tls_server_name":
			r.tlsSettings().ServerName, err = oneArg(d)
		case "tls_ca_file":
			r.tlsSettings().CAFile, err = oneArg(d)
		case "timeout":
			r.Timeout, err = durationArg(d)
		case "dial_timeout":
			r.DialTimeout, err = durationArg(d)
		case "client_cache_ttl":
			r.ClientCacheTTL, err = durationArg(d)
		case "client_cache":
			var v string
			if v, err = oneArg(d); err == nil {
				switch v {
				case "on":
					r.DisableClientCache = false
				case "off":
					r.DisableClientCache = true
				default:
					err = d.Errf("client_cache: want on or off, got %q", v)
				}
			}
		default:
			return d.Errf("unrecognized redis session store option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *RedisBackend) tlsSettings() *RedisTLS {
	if r.TLS == nil {
		r.TLS = new(RedisTLS)
	}
	return r.TLS
}

// Get implements Backend. A hit is answered from the client-side cache,
// except for a key this client has just written (see recentWrites).
func (r *RedisBackend) Get(ctx context.Context, key string) (Binding, error) {
	now := time.Now()
	fullKey := r.bindingPrefix + key
	var res rueidis.RedisResult
	if r.recent.has(fullKey, now) {
		res = r.client.Do(ctx, r.client.B().Get().Key(fullKey).Build())
	} else {
		res = r.client.DoCache(ctx, r.client.B().Get().Key(fullKey).Cache(), time.Duration(r.ClientCacheTTL))
	}
	s, err := res.ToString()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return Binding{}, ErrNotFound
		}
		return Binding{}, fmt.Errorf("redis GET: %w", err)
	}
	b, err := DecodeBinding(s)
	if err != nil {
		return Binding{}, fmt.Errorf("redis GET %s: %w", key, err)
	}
	if !b.Live(now) {
		return Binding{}, ErrNotFound
	}
	return b, nil
}

// Add implements Backend.
func (r *RedisBackend) Add(ctx context.Context, key string, b Binding) (Binding, bool, error) {
	return r.bind(ctx, redisAddScript, "add", key, "", b)
}

// Swap implements Backend.
func (r *RedisBackend) Swap(ctx context.Context, key, from string, b Binding) (Binding, bool, error) {
	return r.bind(ctx, redisSwapScript, "swap", key, from, b)
}

// Put implements Backend.
func (r *RedisBackend) Put(ctx context.Context, key string, b Binding) error {
	_, _, err := r.bind(ctx, redisPutScript, "put", key, "", b)
	return err
}

// bind runs one of the binding scripts and decodes its answer.
func (r *RedisBackend) bind(ctx context.Context, script *rueidis.Lua, name, key, from string, b Binding) (Binding, bool, error) {
	if b.Upstream == "" {
		return Binding{}, false, fmt.Errorf("redis %s %s: binding has no upstream", name, key)
	}
	value := EncodeBinding(b)
	now := time.Now()
	ttl := strconv.FormatInt(b.TTL(now).Milliseconds(), 10)
	fullKey := r.bindingPrefix + key
	res := script.Exec(ctx, r.client,
		[]string{fullKey, r.upstreamsKey},
		[]string{r.KeyPrefix, key, value, ttl, b.Upstream, from})
	r.recent.add(fullKey, now) // even on error: the script may have run
	reply, err := res.ToArray()
	if err != nil {
		return Binding{}, false, fmt.Errorf("redis %s script: %w", name, err)
	}
	if len(reply) != 2 {
		return Binding{}, false, fmt.Errorf("redis %s script: unexpected reply of %d elements", name, len(reply))
	}
	stored, err := reply[0].AsInt64()
	if err != nil {
		return Binding{}, false, fmt.Errorf("redis %s script: %w", name, err)
	}
	if stored == 1 {
		return b, true, nil
	}
	s, err := reply[1].ToString()
	if err != nil {
		return Binding{}, false, fmt.Errorf("redis %s script: %w", name, err)
	}
	cur, err := DecodeBinding(s)
	if err != nil {
		return Binding{}, false, fmt.Errorf("redis %s %s: %w", name, key, err)
	}
	return cur, false, nil
}

// Delete implements Backend.
func (r *RedisBackend) Delete(ctx context.Context, key string) error {
	fullKey := r.bindingPrefix + key
	err := redisDeleteScript.Exec(ctx, r.client,
		[]string{fullKey},
		[]string{r.KeyPrefix, key}).Error()
	r.recent.add(fullKey, time.Now())
	if err != nil {
		return fmt.Errorf("redis delete script: %w", err)
	}
	return nil
}

// SetDraining implements Backend.
func (r *RedisBackend) SetDraining(ctx context.Context, upstream string, draining bool) error {
	defer r.recent.add(r.drainKey, time.Now())
	if draining {
		if err := r.client.Do(ctx, r.client.B().Sadd().Key(r.drainKey).Member(upstream).Build()).Error(); err != nil {
			return fmt.Errorf("redis SADD: %w", err)
		}
		return nil
	}
	if err := r.client.Do(ctx, r.client.B().Srem().Key(r.drainKey).Member(upstream).Build()).Error(); err != nil {
		return fmt.Errorf("redis SREM: %w", err)
	}
	return nil
}

// Draining implements Backend. The set is read through the client-side
// cache, and while its members stay the same every call returns the same
// map, so the request path allocates nothing.
func (r *RedisBackend) Draining(ctx context.Context) (map[string]bool, error) {
	var res rueidis.RedisResult
	if r.recent.has(r.drainKey, time.Now()) {
		res = r.client.Do(ctx, r.client.B().Smembers().Key(r.drainKey).Build())
	} else {
		res = r.client.DoCache(ctx, r.client.B().Smembers().Key(r.drainKey).Cache(), time.Duration(r.ClientCacheTTL))
	}
	members, err := res.ToArray()
	if err != nil {
		return nil, fmt.Errorf("redis SMEMBERS: %w", err)
	}
	if prev := r.drain.Load(); prev != nil && prev.sameMembers(members) {
		return prev.set, nil
	}
	next := &drainSet{set: make(map[string]bool, len(members))}
	for i := range members {
		m, err := members[i].ToString()
		if err != nil {
			return nil, fmt.Errorf("redis SMEMBERS: %w", err)
		}
		next.set[m] = true
	}
	r.drain.Store(next)
	return next.set, nil
}

// drainSet is a decoded drain set, kept to hand out again while the members
// do not change.
type drainSet struct {
	set map[string]bool
}

// sameMembers reports whether members (a Redis set, so without repeats)
// are exactly the members of d.
func (d *drainSet) sameMembers(members []rueidis.RedisMessage) bool {
	if len(members) != len(d.set) {
		return false
	}
	for i := range members {
		m, err := members[i].ToString()
		if err != nil || !d.set[m] {
			return false
		}
	}
	return true
}

// Counts implements Backend. It is exact: expired sessions are removed from
// each upstream's sorted set before it is counted, atomically.
func (r *RedisBackend) Counts(ctx context.Context) (map[string]int64, error) {
	reply, err := redisCountsScript.Exec(ctx, r.client,
		[]string{r.upstreamsKey}, []string{r.KeyPrefix}).ToArray()
	if err != nil {
		return nil, fmt.Errorf("redis counts script: %w", err)
	}
	counts := make(map[string]int64, len(reply)/2)
	for i := 0; i+1 < len(reply); i += 2 {
		up, err := reply[i].ToString()
		if err != nil {
			return nil, fmt.Errorf("redis counts script: %w", err)
		}
		n, err := reply[i+1].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("redis counts script: %w", err)
		}
		counts[up] = n
	}
	return counts, nil
}

// Interface guards
var (
	_ Backend               = (*RedisBackend)(nil)
	_ CallTimeouter         = (*RedisBackend)(nil)
	_ caddy.Provisioner     = (*RedisBackend)(nil)
	_ caddy.Validator       = (*RedisBackend)(nil)
	_ caddy.CleanerUpper    = (*RedisBackend)(nil)
	_ caddyfile.Unmarshaler = (*RedisBackend)(nil)
)
