package sessionstore

import (
	"strconv"

	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The network backends' UnmarshalCaddyfile share these readers of a
// subdirective's arguments. Each expects the dispenser on the subdirective
// name and consumes the rest of its line.

// oneArg reads the single argument of the current subdirective.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.AllArgs(&v) {
		return "", d.ArgErr()
	}
	return v, nil
}

// durationArg reads the single duration argument of the current
// subdirective ("250ms", "1m", "1d").
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := quantity.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: %v", name, err)
	}
	return caddy.Duration(dur), nil
}

// intArg reads the single non-negative integer argument of the current
// subdirective.
func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: want a non-negative integer, got %q", name, v)
	}
	return n, nil
}

// noArgs checks that the current subdirective has no arguments (a bare flag).
func noArgs(d *caddyfile.Dispenser) error {
	name := d.Val()
	if d.NextArg() {
		return d.Errf("%s takes no arguments, got %q", name, d.Val())
	}
	return nil
}

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	session_store <name> memory {
//		max_bindings <n>
//	}
func (m *MemoryBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // backend name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_bindings":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("max_bindings must be a positive integer, got %q", d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			m.MaxBindings = n
		default:
			return d.Errf("unrecognized memory session store option %q (known: max_bindings)", d.Val())
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	session_store <name> redis [<host:port>...] {
//		address <host:port>...
//		sentinel <master_set>
//		sentinel_username <user>
//		sentinel_password <password>
//		username <user>
//		password <password>
//		known_bindings <n>|off
//		heartbeat <duration>|off
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
		case "sentinel":
			r.Sentinel, err = oneArg(d)
		case "sentinel_username":
			r.SentinelUsername, err = oneArg(d)
		case "sentinel_password":
			r.SentinelPassword, err = oneArg(d)
		case "heartbeat":
			var v string
			if v, err = oneArg(d); err == nil {
				if v == "off" {
					r.Heartbeat = -1
				} else if dur, perr := quantity.ParseDuration(v); perr != nil {
					err = d.Errf("heartbeat: %v, or off", perr)
				} else {
					r.Heartbeat = caddy.Duration(dur)
				}
			}
		case "known_bindings":
			var v string
			if v, err = oneArg(d); err == nil {
				if v == "off" {
					r.KnownBindings = -1
				} else if n, perr := strconv.Atoi(v); perr != nil || n <= 0 {
					err = d.Errf("known_bindings: want a positive count or off, got %q", v)
				} else {
					r.KnownBindings = n
				}
			}
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

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	session_store <name> memcached <host:port>... {
//		key_prefix <prefix>
//		timeout <duration>
//		local_cache_ttl <duration>
//		local_cache off
//		max_idle_conns <n>
//	}
func (m *MemcachedBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // backend name
	m.Servers = append(m.Servers, d.RemainingArgs()...)
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "key_prefix":
			m.KeyPrefix, err = oneArg(d)
		case "timeout":
			m.Timeout, err = durationArg(d)
		case "local_cache_ttl":
			m.LocalCacheTTL, err = durationArg(d)
		case "local_cache":
			var v string
			if v, err = oneArg(d); err == nil {
				switch v {
				case "on":
					m.DisableLocalCache = false
				case "off":
					m.DisableLocalCache = true
				default:
					err = d.Errf("local_cache: want on or off, got %q", v)
				}
			}
		case "max_idle_conns":
			m.MaxIdleConns, err = intArg(d)
		default:
			return d.Errf("unrecognized memcached session store option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
