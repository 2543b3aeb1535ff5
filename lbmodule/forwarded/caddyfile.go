package forwarded

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	forwarded {
//		trusted_proxies <cidr|ip|private_ranges>...
//		trusted_proxies <ip_source module> [<args...>] [{ ... }]
//		trusted_hops <n>
//		trusted_unix
//		accept x_forwarded|forwarded...
//		emit x_forwarded|forwarded...
//		client_header <name>...
//	}
//
// trusted_proxies may be repeated: address lines add to one static source,
// and each module line (e.g. `trusted_proxies cloudflare`) adds a source.
// With no block, nothing is trusted: every request is treated as coming
// straight from its client, which is right at the edge.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("forwarded takes its options in a block, got argument %q", d.Val())
	}
	var ranges []string
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "trusted_proxies":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if !looksLikeRange(d.Val()) {
				src, err := unmarshalIPSource(d)
				if err != nil {
					return err
				}
				h.TrustedProxiesRaw = append(h.TrustedProxiesRaw, src)
				continue
			}
			for {
				arg := d.Val()
				switch {
				case arg == "private_ranges":
					ranges = append(ranges, caddyhttp.PrivateRangesCIDR()...)
				case looksLikeRange(arg):
					if _, err := caddyhttp.CIDRExpressionToPrefix(arg); err != nil {
						return d.Errf("trusted_proxies: %v", err)
					}
					ranges = append(ranges, arg)
				default:
					return d.Errf("trusted_proxies: %q is not a CIDR, an IP address or private_ranges; "+
						"an ip_sources module goes on its own trusted_proxies line", arg)
				}
				if !d.NextArg() {
					break
				}
			}
		case "trusted_hops":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 || n > MaxHops {
				return d.Errf("trusted_hops: %q is not a number from 0 to %d", d.Val(), MaxHops)
			}
			h.TrustedHops = n
			if d.NextArg() {
				return d.ArgErr()
			}
		case "trusted_unix":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.TrustedUnix = true
		case "client_header":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			if _, err := canonicalClientHeaders(names); err != nil {
				return d.Err(err.Error())
			}
			h.ClientHeaders = append(h.ClientHeaders, names...)
		case "accept", "emit":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			if _, err := parseFormats(opt, names); err != nil {
				return d.Err(err.Error())
			}
			if opt == "accept" {
				h.Accept = names
			} else {
				h.Emit = names
			}
		default:
			return d.Errf("unrecognized forwarded option %q", opt)
		}
	}
	if len(ranges) > 0 {
		static := caddyconfig.JSONModuleObject(caddyhttp.StaticIPRange{Ranges: ranges}, "source", "static", nil)
		h.TrustedProxiesRaw = append([]json.RawMessage{static}, h.TrustedProxiesRaw...)
	}
	return nil
}

// looksLikeRange tells an address argument of trusted_proxies from a
// module name: module names hold no digits first, dots, colons or slashes.
func looksLikeRange(arg string) bool {
	if arg == "" {
		return true // reported as not a CIDR by the caller
	}
	return arg == "private_ranges" || strings.ContainsAny(arg, "./:") || arg[0] >= '0' && arg[0] <= '9'
}

// unmarshalIPSource reads `<module> [<args...>] [{ ... }]` of
// trusted_proxies, d positioned on the module name, as Caddy's own
// `servers { trusted_proxies }` option does.
func unmarshalIPSource(d *caddyfile.Dispenser) (json.RawMessage, error) {
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "http.ip_sources."+name)
	if err != nil {
		return nil, err
	}
	if _, ok := unm.(caddyhttp.IPRangeSource); !ok {
		return nil, d.Errf("trusted_proxies: module %s (%T) is not an IP range source", name, unm)
	}
	return caddyconfig.JSONModuleObject(unm, "source", unm.(caddy.Module).CaddyModule().ID.Name(), nil), nil
}
