package affinity

import (
	"strconv"

	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy sticky {
//		cookie <name>
//		secret <current> [<previous>...]
//		app_cookie <name>
//		header <name>
//		client_ip
//		store <name>
//		namespace <name>
//		ttl <duration>
//		domain <domain>
//		path <path>
//		samesite lax|strict|none
//		secure
//		max_age <duration>
//		token_max_age <duration>
//		fallback <policy> [<args...>]
//		on_unavailable rebind|strict
//	}
func (s *Sticky) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // policy name
	if d.NextArg() {
		return d.Errf("lb_policy sticky takes its options in a block, got argument %q", d.Val())
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "cookie", "app_cookie", "header", "store", "namespace", "domain", "path", "samesite", "on_unavailable":
			if !d.NextArg() {
				return d.ArgErr()
			}
			val := d.Val()
			if d.NextArg() {
				return d.Errf("%s takes one argument", opt)
			}
			*map[string]*string{
				"cookie": &s.Cookie, "app_cookie": &s.AppCookie, "header": &s.Header,
				"store": &s.Store, "namespace": &s.Namespace, "domain": &s.Domain,
				"path": &s.Path, "samesite": &s.SameSite, "on_unavailable": &s.OnUnavailable,
			}[opt] = val
		case "secret":
			s.Secrets = append(s.Secrets, d.RemainingArgs()...)
			if len(s.Secrets) == 0 {
				return d.ArgErr()
			}
		case "client_ip", "secure":
			if d.NextArg() {
				return d.Errf("%s takes no arguments", opt)
			}
			if opt == "client_ip" {
				s.ClientIP = true
			} else {
				s.Secure = true
			}
		case "ttl", "max_age", "token_max_age":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := quantity.ParseDurationOrDefault(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if d.NextArg() {
				return d.Errf("%s takes one argument", opt)
			}
			switch opt {
			case "ttl":
				s.TTL = caddy.Duration(dur)
			case "max_age":
				s.MaxAge = caddy.Duration(dur)
			default:
				s.TokenMaxAge = caddy.Duration(dur)
			}
		case "fallback":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if s.FallbackRaw != nil {
				return d.Err("fallback already specified")
			}
			name := d.Val()
			modID := "http.reverse_proxy.selection_policies." + name
			unm, err := caddyfile.UnmarshalModule(d, modID)
			if err != nil {
				return err
			}
			sel, ok := unm.(reverseproxy.Selector)
			if !ok {
				return d.Errf("module %s (%T) is not a reverseproxy.Selector", modID, unm)
			}
			s.FallbackRaw = caddyconfig.JSONModuleObject(sel, "policy", name, nil)
		default:
			return d.Errf("unrecognized lb_policy sticky option %s (known: cookie, secret, app_cookie, header, client_ip, store, namespace, ttl, domain, path, samesite, secure, max_age, token_max_age, fallback, on_unavailable)", strconv.Quote(opt))
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Sticky)(nil)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	sticky_learn
func (l *Learn) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("sticky_learn takes no options, got %q", d.Val())
	}
	return nil
}
