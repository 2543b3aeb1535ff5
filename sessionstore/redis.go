package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
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
// set of sessions per upstream: Counts is exact.
//
// Three deployments are supported. A single server (or a primary and the
// replicas listed after it). A primary found through Redis Sentinel
// (sentinel <master_set>, the addresses are then the Sentinels'): the
// client asks the Sentinels for the primary, follows a failover and never
// writes to a replica. A Redis Cluster, detected when the first server that
// answers runs in cluster mode: the keys are spread over 64 hash-tag groups
// so that every script touches one slot (see keyLayout), and Counts is the
// exact sum of the groups.
//
// The client remembers the bindings it read or wrote (knownBindings): while
// Redis cannot be asked, a session it knows keeps its backend; a write that
// failed is written again when Redis answers; a store that lost its data is
// refilled.
//
// One client is kept per distinct connection settings and shared by every
// config that uses them, so a config reload keeps its connections and its
// cache.
type RedisBackend struct {
	// The Redis server's address, host:port. When several are given, each
	// connection tries them in order, starting with the last one that
	// answered, so they must reach the same data (for example a primary and
	// the replica a failover promotes). With sentinel, the Sentinels'
	// addresses. A Redis Cluster node's address connects to the whole
	// cluster. Placeholders like {env.REDIS_ADDR} are resolved at load.
	// Default: 127.0.0.1:6379 (127.0.0.1:26379 with sentinel).
	Addresses []string `json:"addresses,omitempty"`

	// The name of the master set the Sentinels at Addresses monitor. The
	// client asks them for the primary, follows a failover and never
	// writes to a replica.
	Sentinel string `json:"sentinel,omitempty"`

	// The ACL user and password the Sentinels require (their requirepass
	// or ACL), which may differ from the data nodes'. Placeholders are
	// resolved at load; never logged.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// How many bindings this node remembers to serve while Redis cannot be
	// asked and to refill a store that lost its data. Each takes about
	// 330 bytes (BENCHMARKS.md). Default: 100000; -1 remembers none.
	KnownBindings int `json:"known_bindings,omitempty"`

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

	// How often this node writes its record to the store's node registry
	// (GET /lb/fleet). A node that misses three heartbeats drops out of
	// the registry. Default: 5s; -1 (Caddyfile: off) registers nothing.
	Heartbeat caddy.Duration `json:"heartbeat,omitempty"`

	// Settings with placeholders resolved.
	addrs                              []string
	username, password                 string
	sentinelUsername, sentinelPassword string

	client  *redisClient // the shared client
	recent  *recentWrites
	poolKey string
	logger  *zap.Logger

	drainKey string // KeyPrefix + "drain"

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
	if len(r.Addresses) == 0 && r.Sentinel != "" {
		r.Addresses = []string{"127.0.0.1:26379"}
	}
	if len(r.Addresses) == 0 {
		r.Addresses = []string{"127.0.0.1:6379"}
	}
	if r.KnownBindings == 0 {
		r.KnownBindings = defaultKnownBindings
	}
	if r.Heartbeat == 0 {
		r.Heartbeat = caddy.Duration(defaultHeartbeat)
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
	r.sentinelUsername = repl.ReplaceKnown(r.SentinelUsername, "")
	r.sentinelPassword = repl.ReplaceKnown(r.SentinelPassword, "")
	r.Sentinel = repl.ReplaceKnown(r.Sentinel, "")
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
		return connectRedis(opt, max(r.KnownBindings, 0), r.logger)
	})
	if err != nil {
		return err
	}
	r.client = val.(*redisClient)
	r.recent = r.client.recent
	r.client.known.usePrefix(r.KeyPrefix)
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
	if strings.ContainsAny(r.KeyPrefix, "{}") {
		return fmt.Errorf("redis key_prefix %q: must not contain { or }, which Redis Cluster reads as a hash tag", r.KeyPrefix)
	}
	if r.KnownBindings < -1 {
		return fmt.Errorf("redis known_bindings %d: want a count, or -1 for none", r.KnownBindings)
	}
	if r.Sentinel == "" && (r.SentinelUsername != "" || r.SentinelPassword != "") {
		return errors.New("redis sentinel_username and sentinel_password need sentinel <master_set>")
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
	r.client.known.releasePrefix(r.KeyPrefix)
	r.client = nil
	_, err := redisClients.Delete(r.poolKey)
	return err
}

// CallTimeout implements CallTimeouter: the Store applies it to every call.
func (r *RedisBackend) CallTimeout() time.Duration { return time.Duration(r.Timeout) }

// defaultKnownBindings is how many bindings a client remembers by default.
const defaultKnownBindings = 100000

// Get implements Backend. A hit is answered from the client-side cache,
// except for a key this client has just written (see recentWrites).
func (r *RedisBackend) Get(ctx context.Context, key string) (Binding, error) {
	conn, err := r.client.get()
	if err != nil {
		return Binding{}, fmt.Errorf("redis GET: %w", err)
	}
	now := time.Now()
	fullKey := conn.layout.bindingKey(r.KeyPrefix, key)
	var res rueidis.RedisResult
	if r.recent.has(fullKey, now) {
		res = conn.Do(ctx, conn.B().Get().Key(fullKey).Build())
	} else {
		res = conn.DoCache(ctx, conn.B().Get().Key(fullKey).Cache(), time.Duration(r.ClientCacheTTL))
	}
	s, err := res.ToString()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			if b, mine := r.client.known.notFound(r.KeyPrefix, key, !res.IsCacheHit(), now); mine {
				return b, nil
			}
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
	if !res.IsCacheHit() {
		r.client.known.remember(r.KeyPrefix, key, b, now)
	}
	return b, nil
}

// LastKnown implements Remembering: the binding of key this node last read
// or wrote, while it is live.
func (r *RedisBackend) LastKnown(key string) (Binding, bool) {
	return r.client.known.lookup(r.KeyPrefix, key, time.Now())
}

// Unwritten implements Remembering: b is remembered as the binding of key
// and written (with Put when put, else Add) once Redis answers.
func (r *RedisBackend) Unwritten(key string, b Binding, put bool) {
	r.client.known.unwritten(r.KeyPrefix, key, b, put, time.Now())
}

// LastDraining implements Remembering: the drain set last read.
func (r *RedisBackend) LastDraining() (map[string]bool, bool) {
	if d := r.drain.Load(); d != nil {
		return d.set, true
	}
	return nil, false
}

// Mode reports the deployment the backend is connected to ("single",
// "sentinel" or "cluster"), or "" before it connected.
func (r *RedisBackend) Mode() string {
	if conn, err := r.client.get(); err == nil {
		return conn.mode
	}
	return ""
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
	conn, err := r.client.get()
	if err != nil {
		return Binding{}, false, fmt.Errorf("redis %s script: %w", name, err)
	}
	now := time.Now()
	exec := bindExec(conn.layout, r.KeyPrefix, key, b, from, now)
	fullKey := exec.Keys[0]
	res := script.Exec(ctx, conn, exec.Keys, exec.Args)
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
		r.client.known.remember(r.KeyPrefix, key, b, now)
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
	r.client.known.remember(r.KeyPrefix, key, cur, now)
	return cur, false, nil
}

// Delete implements Backend.
func (r *RedisBackend) Delete(ctx context.Context, key string) error {
	conn, err := r.client.get()
	if err != nil {
		return fmt.Errorf("redis delete script: %w", err)
	}
	g := conn.layout.group(key)
	fullKey := conn.layout.bindingKey(r.KeyPrefix, key)
	err = redisDeleteScript.Exec(ctx, conn,
		[]string{fullKey},
		[]string{conn.layout.groupPrefix(r.KeyPrefix, g), key,
			strconv.FormatInt(maxPendingAge.Milliseconds(), 10), strconv.FormatInt(time.Now().UnixMilli(), 10)}).Error()
	r.recent.add(fullKey, time.Now())
	r.client.known.forget(r.KeyPrefix, key)
	if err != nil {
		return fmt.Errorf("redis delete script: %w", err)
	}
	return nil
}

// SetDraining implements Backend.
func (r *RedisBackend) SetDraining(ctx context.Context, upstream string, draining bool) error {
	conn, err := r.client.get()
	if err != nil {
		return fmt.Errorf("redis drain: %w", err)
	}
	defer r.recent.add(r.drainKey, time.Now())
	if draining {
		if err := conn.Do(ctx, conn.B().Sadd().Key(r.drainKey).Member(upstream).Build()).Error(); err != nil {
			return fmt.Errorf("redis SADD: %w", err)
		}
		return nil
	}
	if err := conn.Do(ctx, conn.B().Srem().Key(r.drainKey).Member(upstream).Build()).Error(); err != nil {
		return fmt.Errorf("redis SREM: %w", err)
	}
	return nil
}

// Draining implements Backend. The set is read through the client-side
// cache, and while its members stay the same every call returns the same
// map, so the request path allocates nothing.
func (r *RedisBackend) Draining(ctx context.Context) (map[string]bool, error) {
	conn, err := r.client.get()
	if err != nil {
		return nil, fmt.Errorf("redis SMEMBERS: %w", err)
	}
	var res rueidis.RedisResult
	if r.recent.has(r.drainKey, time.Now()) {
		res = conn.Do(ctx, conn.B().Smembers().Key(r.drainKey).Build())
	} else {
		res = conn.DoCache(ctx, conn.B().Smembers().Key(r.drainKey).Cache(), time.Duration(r.ClientCacheTTL))
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

// LocalCounts returns the live bindings of this store this node
// remembers (known_bindings), per upstream; nil with known_bindings off.
func (r *RedisBackend) LocalCounts() map[string]int64 {
	c := r.client // read once: Cleanup clears it
	if c == nil || c.known == nil {
		return nil
	}
	return c.known.counts(r.KeyPrefix, time.Now())
}

// Counts implements Backend. It is exact: expired sessions are removed from
// each upstream's sorted set before it is counted, atomically. On a
// cluster each of the 64 groups is counted by its own script, all in one
// pipelined round trip per primary; a binding is in exactly one group, so
// the sum is exact but for writes that land while the groups are counted.
func (r *RedisBackend) Counts(ctx context.Context) (map[string]int64, error) {
	conn, err := r.client.get()
	if err != nil {
		return nil, fmt.Errorf("redis counts script: %w", err)
	}
	l := conn.layout
	var results []rueidis.RedisResult
	if l.groups() == 1 {
		results = []rueidis.RedisResult{redisCountsScript.Exec(ctx, conn,
			[]string{l.upstreamsKey(r.KeyPrefix, 0)}, []string{l.groupPrefix(r.KeyPrefix, 0)})}
	} else {
		execs := make([]rueidis.LuaExec, l.groups())
		for g := range execs {
			execs[g] = rueidis.LuaExec{
				Keys: []string{l.upstreamsKey(r.KeyPrefix, g)},
				Args: []string{l.groupPrefix(r.KeyPrefix, g)},
			}
		}
		results = redisCountsScript.ExecMulti(ctx, conn, execs...)
	}
	counts := map[string]int64{}
	for _, res := range results {
		reply, err := res.ToArray()
		if err != nil {
			return nil, fmt.Errorf("redis counts script: %w", err)
		}
		for i := 0; i+1 < len(reply); i += 2 {
			up, err := reply[i].ToString()
			if err != nil {
				return nil, fmt.Errorf("redis counts script: %w", err)
			}
			n, err := reply[i+1].AsInt64()
			if err != nil {
				return nil, fmt.Errorf("redis counts script: %w", err)
			}
			counts[up] += n
		}
	}
	return counts, nil
}

// Interface guards
var (
	_ Backend               = (*RedisBackend)(nil)
	_ Remembering           = (*RedisBackend)(nil)
	_ FleetBackend          = (*RedisBackend)(nil)
	_ CallTimeouter         = (*RedisBackend)(nil)
	_ caddy.Provisioner     = (*RedisBackend)(nil)
	_ caddy.Validator       = (*RedisBackend)(nil)
	_ caddy.CleanerUpper    = (*RedisBackend)(nil)
	_ caddyfile.Unmarshaler = (*RedisBackend)(nil)
)
