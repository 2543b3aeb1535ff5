package l4sticky

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddylb/caddylb/internal/quantity"
	"github.com/caddylb/caddylb/internal/reloadwarn"
)

func init() {
	caddy.RegisterModule(Passthrough{})
}

// Passthrough is the listener wrapper caddy.listeners.passthrough: the
// short form of caddy-l4's layer4 wrapper for the common case. Each host
// entry passes the TLS connections whose SNI it names, undecrypted, to
// its upstreams, with PROXY protocol and the sticky policy by default;
// every other connection goes on to the next wrapper (Caddy's tls and the
// HTTP sites). It builds the layer4 wrapper and hands it the listener.
type Passthrough struct {
	// The hostnames passed through and where to.
	Hosts []PassHost `json:"hosts,omitempty"`

	wrapper caddy.ListenerWrapper
}

// PassHost is one group of hostnames passed through to one pool.
type PassHost struct {
	// The SNI names, as caddy-l4's tls sni matcher takes them (*.example.com works).
	SNI []string `json:"sni,omitempty"`
	// The backends, host:port, which terminate TLS themselves.
	Upstreams []string `json:"upstreams,omitempty"`
	// The PROXY protocol version sent to the backends so they learn the
	// client's address: "v2" (default), "v1", or "off" for backends that
	// do not read it.
	ProxyProtocol string `json:"proxy_protocol,omitempty"`
	// The caddy-l4 selection policy. Default: sticky by client IP on an
	// in-process memory store.
	SelectionRaw json.RawMessage `json:"selection,omitempty"`
	// Passive health checks: a backend whose dial fails max_fails times
	// within fail_duration is not chosen until then. Defaults: 30s, 1.
	FailDuration caddy.Duration `json:"fail_duration,omitempty"`
	MaxFails     int            `json:"max_fails,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Passthrough) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.passthrough",
		New: func() caddy.Module { return new(Passthrough) },
	}
}

// Provision builds and loads the equivalent layer4 listener wrapper.
func (p *Passthrough) Provision(ctx caddy.Context) error {
	reloadwarn.Check(ctx.Logger())
	if len(p.Hosts) == 0 {
		return fmt.Errorf("passthrough: no hostnames")
	}
	seen := map[string]bool{}
	for _, h := range p.Hosts {
		for _, name := range h.SNI {
			if seen[strings.ToLower(name)] {
				return fmt.Errorf("passthrough: hostname %s is listed twice; only its first entry would be used", name)
			}
			seen[strings.ToLower(name)] = true
		}
	}
	routes := make([]map[string]any, 0, len(p.Hosts))
	for i, h := range p.Hosts {
		if len(h.SNI) == 0 || len(h.Upstreams) == 0 {
			return fmt.Errorf("passthrough: entry %d needs hostnames and upstreams", i+1)
		}
		ups := make([]map[string]any, len(h.Upstreams))
		for j, u := range h.Upstreams {
			if _, _, err := net.SplitHostPort(u); err != nil {
				return fmt.Errorf("passthrough %s: upstream %q: want host:port", h.SNI[0], u)
			}
			ups[j] = map[string]any{"dial": []string{u}}
		}
		pp := h.ProxyProtocol
		switch pp {
		case "":
			pp = "v2"
		case "v1", "v2":
		case "off":
			pp = ""
		default:
			return fmt.Errorf("passthrough %s: proxy_protocol must be v1, v2 or off, got %q", h.SNI[0], pp)
		}
		selection, err := withNamespace(h.SelectionRaw, "l4:"+h.SNI[0])
		if err != nil {
			return fmt.Errorf("passthrough %s: %v", h.SNI[0], err)
		}
		failDuration := time.Duration(h.FailDuration)
		if failDuration == 0 {
			failDuration = 30 * time.Second
		}
		maxFails := h.MaxFails
		if maxFails == 0 {
			maxFails = 1
		}
		handler := map[string]any{
			"handler":   "proxy",
			"upstreams": ups,
			"health_checks": map[string]any{"passive": map[string]any{
				"fail_duration": caddy.Duration(failDuration), "max_fails": maxFails,
			}},
			"load_balancing": map[string]any{
				"selection":    selection,
				"try_duration": caddy.Duration(2 * time.Second),
				"try_interval": caddy.Duration(100 * time.Millisecond),
			},
		}
		if pp != "" {
			handler["proxy_protocol"] = pp
		}
		routes = append(routes, map[string]any{
			"match":  []map[string]any{{"tls": map[string]any{"sni": h.SNI}}},
			"handle": []map[string]any{handler},
		})
	}
	raw, err := json.Marshal(map[string]any{"routes": routes})
	if err != nil {
		return err
	}
	mod, err := ctx.LoadModuleByID("caddy.listeners.layer4", raw)
	if err != nil {
		return fmt.Errorf("passthrough: %v", err)
	}
	p.wrapper = mod.(caddy.ListenerWrapper)
	return nil
}

// withNamespace is the selection policy of an entry: sticky by default,
// and a sticky policy without a namespace gets one of its own (from the
// entry's first hostname), so that two entries sharing a store do not
// move each other's clients.
func withNamespace(raw json.RawMessage, namespace string) (json.RawMessage, error) {
	if raw == nil {
		raw = json.RawMessage(`{"policy":"sticky"}`)
	}
	var sel map[string]any
	if err := json.Unmarshal(raw, &sel); err != nil {
		return nil, err
	}
	if sel["policy"] == "sticky" && sel["namespace"] == nil {
		sel["namespace"] = namespace
	}
	return json.Marshal(sel)
}

// WrapListener implements caddy.ListenerWrapper.
func (p *Passthrough) WrapListener(l net.Listener) net.Listener { return p.wrapper.WrapListener(l) }

// UnmarshalCaddyfile sets up the wrapper from Caddyfile tokens. Syntax:
//
//	passthrough {
//		<sni>... <upstream>...
//		<sni>... {
//			to <upstream>...
//			proxy_protocol v1|v2|off
//			lb_policy <name> [{ ... }]
//			fail_duration <duration>
//			max_fails <n>
//		}
//	}
//
// On a line, the tokens with a port (host:port) are upstreams, the others
// hostnames.
func (p *Passthrough) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // passthrough
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var h PassHost
		for tok := d.Val(); ; tok = d.Val() {
			_, _, err := net.SplitHostPort(tok)
			switch {
			case err == nil && len(h.SNI) == 0:
				return d.Errf("passthrough: %q: a line starts with hostnames (without a port), then the upstreams (host:port)", tok)
			case err == nil:
				h.Upstreams = append(h.Upstreams, tok)
			case len(h.Upstreams) > 0:
				return d.Errf("passthrough: upstream %q needs a port (host:port)", tok)
			default:
				h.SNI = append(h.SNI, tok)
			}
			if !d.NextArg() {
				break
			}
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			opt := d.Val()
			switch opt {
			case "to":
				args := d.RemainingArgs()
				if len(args) == 0 {
					return d.ArgErr()
				}
				h.Upstreams = append(h.Upstreams, args...)
			case "proxy_protocol":
				if !d.AllArgs(&h.ProxyProtocol) {
					return d.ArgErr()
				}
			case "fail_duration":
				var v string
				if !d.AllArgs(&v) {
					return d.ArgErr()
				}
				dur, err := quantity.ParseDuration(v)
				if err != nil {
					return d.Errf("fail_duration: %v", err)
				}
				h.FailDuration = caddy.Duration(dur)
			case "max_fails":
				var v string
				if !d.AllArgs(&v) {
					return d.ArgErr()
				}
				var n int
				if _, err := fmt.Sscan(v, &n); err != nil || n <= 0 {
					return d.Errf("max_fails: want a positive count, got %q", v)
				}
				h.MaxFails = n
			case "lb_policy":
				if !d.NextArg() {
					return d.ArgErr()
				}
				name := d.Val()
				mod, err := caddyfile.UnmarshalModule(d, "layer4.proxy.selection_policies."+name)
				if err != nil {
					return err
				}
				h.SelectionRaw = caddyconfig.JSONModuleObject(mod, "policy", name, nil)
			default:
				return d.Errf("unrecognized passthrough option %q", opt)
			}
		}
		if len(h.SNI) == 0 || len(h.Upstreams) == 0 {
			return d.Errf("passthrough: each entry needs hostnames and upstreams (host:port)")
		}
		p.Hosts = append(p.Hosts, h)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Passthrough)(nil)
	_ caddy.ListenerWrapper = (*Passthrough)(nil)
	_ caddyfile.Unmarshaler = (*Passthrough)(nil)
)
