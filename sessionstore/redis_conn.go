package sessionstore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// redisClients holds one client per distinct connection settings across
// config reloads.
var redisClients = caddy.NewUsagePool()

// errNotConnected is what calls answer before the first connection to the
// servers succeeded (they were unreachable when the config loaded).
var errNotConnected = errors.New("not connected yet: no server answered")

// Redis deployments the backend talks to.
const (
	redisSingle   = "single"   // one server, or a primary and the replicas a failover promotes
	redisSentinel = "sentinel" // the primary that the Sentinels name
	redisCluster  = "cluster"  // Redis Cluster, detected from the servers
)

// redisConn is the connection of one client: rueidis's client and how the
// data is laid out for the deployment it reached.
type redisConn struct {
	rueidis.Client
	mode   string
	layout keyLayout
}

// redisClient is a pooled client: its connection (made in the background
// when the servers did not answer at load), the keys it wrote lately, the
// bindings it knows (see knownBindings) and the loop that keeps them in
// the store. The pool closes it when the last config using it is cleaned
// up.
type redisClient struct {
	conn   atomic.Pointer[redisConn]
	recent *recentWrites
	known  *knownBindings
	opt    redisConnectOptions
	logger *zap.Logger
	stop   chan struct{}
	done   sync.WaitGroup
}

// get returns the connection, or errNotConnected.
func (c *redisClient) get() (*redisConn, error) {
	if conn := c.conn.Load(); conn != nil {
		return conn, nil
	}
	return nil, errNotConnected
}

// Destruct implements caddy.Destructor.
func (c *redisClient) Destruct() error {
	close(c.stop)
	c.done.Wait()
	if conn := c.conn.Load(); conn != nil {
		conn.Close()
	}
	return nil
}

// redisConnectOptions is everything connecting needs: the rueidis options
// for a single server (with a dialer that rotates over the addresses) and
// the settings to build the Sentinel or Cluster options from.
type redisConnectOptions struct {
	single    rueidis.ClientOption
	tls       *tls.Config
	sentinel  string // master set name; "" without Sentinels
	refillGap time.Duration
}

// clientOption builds the connection options and the pool key, a hash of
// every setting that shapes the connection (passwords and CA included, so
// a changed secret gets a new client and no secret appears in the key).
func (r *RedisBackend) clientOption() (redisConnectOptions, string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %d %d %t %q %q %q %d", r.addrs, r.username, r.password, r.DB, r.DialTimeout,
		r.DisableClientCache, r.Sentinel, r.sentinelUsername, r.sentinelPassword, r.KnownBindings)
	var tlsConfig *tls.Config
	if r.TLS != nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLS.ServerName}
		fmt.Fprintf(h, " tls %q", r.TLS.ServerName)
		if r.TLS.CAFile != "" {
			pem, err := os.ReadFile(r.TLS.CAFile)
			if err != nil {
				return redisConnectOptions{}, "", fmt.Errorf("redis tls ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return redisConnectOptions{}, "", fmt.Errorf("redis tls ca_file %s: no PEM certificates found", r.TLS.CAFile)
			}
			tlsConfig.RootCAs = pool
			h.Write(pem)
		}
	}
	dialer := &redisDialer{addrs: r.addrs, tls: tlsConfig}
	opt := redisConnectOptions{
		single: rueidis.ClientOption{
			InitAddress:       r.addrs,
			Username:          r.username,
			Password:          r.password,
			SelectDB:          r.DB,
			ClientName:        "caddylb",
			Dialer:            net.Dialer{Timeout: time.Duration(r.DialTimeout)},
			DialCtxFn:         dialer.dial,
			DisableCache:      r.DisableClientCache,
			ForceSingleClient: true,
		},
		tls:       tlsConfig,
		sentinel:  r.Sentinel,
		refillGap: refillCheckInterval,
	}
	if r.Sentinel != "" {
		opt.single.Sentinel = rueidis.SentinelOption{
			MasterSet:  r.Sentinel,
			Username:   r.sentinelUsername,
			Password:   r.sentinelPassword,
			ClientName: "caddylb",
			Dialer:     net.Dialer{Timeout: time.Duration(r.DialTimeout)},
			TLSConfig:  tlsConfig,
			// Follow +switch-master events, and ask again every few
			// seconds in case one was missed (rueidis's advice).
			TopologyRefreshInterval: 3 * time.Second,
		}
	}
	return opt, "redis:" + hex.EncodeToString(h.Sum(nil)), nil
}

// connectRedis creates the pooled client and connects it. A deployment
// that refuses this client's settings (login, database, client tracking)
// is a configuration error; one that merely does not answer is logged, and
// the client keeps trying in the background while calls fail fast and
// requests fall back.
func connectRedis(opt redisConnectOptions, capacity int, logger *zap.Logger) (*redisClient, error) {
	c := &redisClient{
		recent: newRecentWrites(recentWriteWindow),
		known:  newKnownBindings(capacity),
		opt:    opt,
		logger: logger,
		stop:   make(chan struct{}),
	}
	conn, err := dialRedis(opt)
	if err != nil && redisRefused(err) {
		if errors.Is(err, rueidis.ErrNoCache) {
			return nil, fmt.Errorf("connecting to redis %v: the server does not support client tracking over RESP3 (Redis 6+); add `client_cache off`: %w", opt.single.InitAddress, err)
		}
		return nil, fmt.Errorf("connecting to redis %v: %w", opt.single.InitAddress, err)
	}
	if err != nil {
		logger.Warn("redis session store not reachable; connecting in the background",
			zap.Strings("addresses", opt.single.InitAddress), zap.Error(err))
	} else {
		c.conn.Store(conn)
		logger.Info("redis session store connected", zap.String("mode", conn.mode),
			zap.Strings("addresses", opt.single.InitAddress))
	}
	c.done.Add(1)
	go c.maintain()
	return c, nil
}

// dialRedis connects to the deployment the options name. Without a
// Sentinel it asks the first server that answers whether it runs in
// cluster mode, and then connects as a cluster client to every primary.
func dialRedis(opt redisConnectOptions) (*redisConn, error) {
	if opt.sentinel != "" {
		o := opt.single
		o.ForceSingleClient = false
		o.DialCtxFn = nil // rueidis dials the sentinels and the primary they name
		o.TLSConfig = opt.tls
		client, err := rueidis.NewClient(o)
		if err != nil {
			return nil, err
		}
		return &redisConn{Client: client, mode: redisSentinel, layout: singleLayout}, nil
	}
	// The probe selects no database: a cluster refuses SELECT, and the
	// answer to `db` is then the clear error below, not a refused login.
	probeOpt := opt.single
	probeOpt.SelectDB = 0
	client, err := rueidis.NewClient(probeOpt)
	if err != nil {
		if client != nil {
			client.Close()
		}
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opt.single.Dialer.Timeout+time.Second)
	defer cancel()
	info, err := client.Do(ctx, client.B().Info().Section("cluster").Build()).ToString()
	if err != nil {
		client.Close()
		return nil, err
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		if opt.single.SelectDB == 0 {
			return &redisConn{Client: client, mode: redisSingle, layout: singleLayout}, nil
		}
		client.Close()
		if client, err = rueidis.NewClient(opt.single); err != nil {
			if client != nil {
				client.Close()
			}
			return nil, err
		}
		return &redisConn{Client: client, mode: redisSingle, layout: singleLayout}, nil
	}
	client.Close()
	if opt.single.SelectDB != 0 {
		return nil, errClusterDB
	}
	o := opt.single
	o.ForceSingleClient = false
	o.DialCtxFn = nil // the cluster client dials every primary the slots name
	o.TLSConfig = opt.tls
	o.ClusterOption.ShardsRefreshInterval = 10 * time.Second
	client, err = rueidis.NewClient(o)
	if err != nil {
		return nil, fmt.Errorf("redis cluster: %w", err)
	}
	return &redisConn{Client: client, mode: redisCluster, layout: clusterLayout}, nil
}

// maintain runs for the client's life: it connects when the servers did
// not answer at load, writes again the writes that failed, and refills a
// store that lost its data (see knownBindings).
func (c *redisClient) maintain() {
	defer c.done.Done()
	tick := time.NewTicker(c.opt.refillGap)
	defer tick.Stop()
	ctx := c.stopContext()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		conn := c.conn.Load()
		if conn == nil {
			next, err := dialRedis(c.opt)
			if err != nil {
				if redisRefused(err) {
					c.logger.Error("redis session store refuses this client's settings", zap.Error(err))
				}
				continue
			}
			c.conn.Store(next)
			c.logger.Info("redis session store connected", zap.String("mode", next.mode),
				zap.Strings("addresses", c.opt.single.InitAddress))
			conn = next
		}
		c.known.sync(ctx, conn, c.logger)
	}
}

// stopContext is a context that ends when the client is destroyed.
func (c *redisClient) stopContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.stop
		cancel()
	}()
	return ctx
}

// errClusterDB is the answer to `db` with a cluster.
var errClusterDB = errors.New("the server is a Redis Cluster node, and a cluster has database 0 only: remove `db`")

// redisRefused reports whether err is Redis refusing this client's
// settings (login, database, client tracking) rather than a network or
// transient server condition.
func redisRefused(err error) bool {
	if errors.Is(err, rueidis.ErrNoCache) || errors.Is(err, errClusterDB) {
		return true
	}
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return false
	}
	msg := re.Error()
	for _, prefix := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "ERR AUTH"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return strings.Contains(msg, "DB index")
}

// redisDialer connects to the first address that answers, starting with
// the one that answered last, so that after a failover connections stay on
// the new server instead of trying the dead one first each time.
type redisDialer struct {
	addrs []string
	tls   *tls.Config
	last  atomic.Uint32
}

func (d *redisDialer) dial(ctx context.Context, _ string, nd *net.Dialer, _ *tls.Config) (net.Conn, error) {
	start := int(d.last.Load())
	var errs []error
	for i := range d.addrs {
		j := (start + i) % len(d.addrs)
		conn, err := d.dialOne(ctx, nd, d.addrs[j])
		if err == nil {
			d.last.Store(uint32(j))
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (d *redisDialer) dialOne(ctx context.Context, nd *net.Dialer, addr string) (net.Conn, error) {
	if d.tls == nil {
		return nd.DialContext(ctx, "tcp", addr)
	}
	// tls.Dialer takes the server name from addr when the config has none.
	td := tls.Dialer{NetDialer: nd, Config: d.tls}
	return td.DialContext(ctx, "tcp", addr)
}
