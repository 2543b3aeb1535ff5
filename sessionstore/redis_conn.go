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
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// redisClients holds one client per distinct connection settings across
// config reloads.
var redisClients = caddy.NewUsagePool()

// redisClient is a pooled client with the keys it wrote lately; the pool
// closes it when the last config using it is cleaned up.
type redisClient struct {
	rueidis.Client
	recent *recentWrites
}

// Destruct implements caddy.Destructor.
func (c *redisClient) Destruct() error {
	c.Close()
	return nil
}

// clientOption builds the rueidis options and the pool key, a hash of every
// setting that shapes the connection (password and CA included, so a
// changed secret gets a new client and no secret appears in the key).
func (r *RedisBackend) clientOption() (rueidis.ClientOption, string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %d %d %t", r.addrs, r.username, r.password, r.DB, r.DialTimeout, r.DisableClientCache)
	var tlsConfig *tls.Config
	if r.TLS != nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLS.ServerName}
		fmt.Fprintf(h, " tls %q", r.TLS.ServerName)
		if r.TLS.CAFile != "" {
			pem, err := os.ReadFile(r.TLS.CAFile)
			if err != nil {
				return rueidis.ClientOption{}, "", fmt.Errorf("redis tls ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return rueidis.ClientOption{}, "", fmt.Errorf("redis tls ca_file %s: no PEM certificates found", r.TLS.CAFile)
			}
			tlsConfig.RootCAs = pool
			h.Write(pem)
		}
	}
	dialer := &redisDialer{addrs: r.addrs, tls: tlsConfig}
	opt := rueidis.ClientOption{
		InitAddress:       r.addrs,
		Username:          r.username,
		Password:          r.password,
		SelectDB:          r.DB,
		ClientName:        "caddylb",
		Dialer:            net.Dialer{Timeout: time.Duration(r.DialTimeout)},
		DialCtxFn:         dialer.dial,
		DisableCache:      r.DisableClientCache,
		ForceSingleClient: true,
	}
	return opt, "redis:" + hex.EncodeToString(h.Sum(nil)), nil
}

// connectRedis creates the client. With ForceSingleClient rueidis returns a
// client even when the first dial fails and redials on demand, so a server
// that is merely down is logged and tolerated; one that answers with a
// refusal is a configuration error.
func connectRedis(opt rueidis.ClientOption, logger *zap.Logger) (*redisClient, error) {
	client, err := rueidis.NewClient(opt)
	if err == nil {
		return &redisClient{client, newRecentWrites(recentWriteWindow)}, nil
	}
	if client != nil && !redisRefused(err) {
		logger.Warn("redis session store not reachable; connecting again on first use",
			zap.Strings("addresses", opt.InitAddress), zap.Error(err))
		return &redisClient{client, newRecentWrites(recentWriteWindow)}, nil
	}
	if client != nil {
		client.Close()
	}
	if errors.Is(err, rueidis.ErrNoCache) {
		return nil, fmt.Errorf("connecting to redis %v: the server does not support client tracking over RESP3 (Redis 6+); add `client_cache off`: %w", opt.InitAddress, err)
	}
	return nil, fmt.Errorf("connecting to redis %v: %w", opt.InitAddress, err)
}

// redisRefused reports whether err is Redis refusing this client's
// settings (login, database, client tracking) rather than a network or
// transient server condition.
func redisRefused(err error) bool {
	if errors.Is(err, rueidis.ErrNoCache) {
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
