package dashboard

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddylb/caddylb/internal/quantity"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	lb_dashboard {
//		actions
//		refresh <duration>
//		hosts <name>...
//	}
func (d *Dashboard) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // the directive name
	if disp.NextArg() {
		return disp.ArgErr()
	}
	for disp.NextBlock(0) {
		switch opt := disp.Val(); opt {
		case "actions":
			if disp.NextArg() {
				return disp.ArgErr()
			}
			d.Actions = true
		case "refresh":
			if !disp.NextArg() {
				return disp.ArgErr()
			}
			dur, err := quantity.ParseDuration(disp.Val())
			if err != nil {
				return disp.Errf("lb_dashboard refresh: %v", err)
			}
			if disp.NextArg() {
				return disp.ArgErr()
			}
			d.Refresh = caddy.Duration(dur)
		case "hosts":
			args := disp.RemainingArgs()
			if len(args) == 0 {
				return disp.ArgErr()
			}
			d.Hosts = append(d.Hosts, args...)
		default:
			return disp.Errf("unrecognized lb_dashboard option %s (known: actions, refresh, hosts)", strconv.Quote(opt))
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Dashboard)(nil)
)
