package forwarded

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/reloadwarn"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Format names, as `accept` and `emit` take them.
const (
	FormatXForwarded = "x_forwarded" // X-Forwarded-For, -Proto, -Host, -Port
	FormatForwarded  = "forwarded"   // RFC 7239 Forwarded
)

// formats is a set of header formats.
type formats uint8

const (
	xForwarded formats = 1 << iota
	rfc7239
)

// Handler finds the real client of a request that may have passed through
// proxies, removes forwarding headers nobody trusted vouches for, makes
// the client Caddy's client_ip, and prepares consistent X-Forwarded-* and
// Forwarded headers for reverse_proxy to send upstream.
//
// The client is the first hop, walking from the TCP peer leftwards through
// the forwarding chain, that is not trusted. Nothing is trusted by
// default: with no trust configured the handler makes every request look
// like a direct client's, which is right at the edge.
type Handler struct {
	// Sources of the address ranges of proxies whose forwarding headers
	// are believed: any http.ip_sources module, e.g. `static` with a list
	// of CIDRs, or a plugin that fetches and refreshes a CDN's published
	// ranges. A hop is trusted when its address is in any source. Default:
	// none.
	TrustedProxiesRaw []json.RawMessage `json:"trusted_proxies,omitempty" caddy:"namespace=http.ip_sources inline_key=source"`

	// Number of nearest hops trusted whatever their address, the TCP peer
	// being the first: 1 trusts the peer, 2 also the last X-Forwarded-For
	// entry, and so on. Meant for a listener that only a known chain of
	// proxies can reach, such as a cloud load balancer whose addresses are
	// not published. Never use it where clients can connect directly: they
	// would name their own address. 0 to 64; default 0.
	TrustedHops int `json:"trusted_hops,omitempty"`

	// Trust a peer connected over a unix socket, whose address Caddy sees
	// as "@" (a local proxy or sidecar). Such a hop has no address, so it
	// is left out of the chain sent upstream. Default: false, and a unix
	// peer is then the client, named "unknown" upstream.
	TrustedUnix bool `json:"trusted_unix,omitempty"`

	// Header formats read from trusted peers: "x_forwarded"
	// (X-Forwarded-For, -Proto, -Host, -Port) and "forwarded" (RFC 7239).
	// A format that is not accepted is removed like an untrusted one.
	// Default: ["x_forwarded"].
	//
	// With both accepted and both present, they must agree: on the client
	// (when X-Forwarded-For and Forwarded are both there) and on the
	// scheme, host and port (when both formats give one). If they
	// disagree, the request is refused with 400, and a scheme, host or
	// port that only one format states is not believed. Preferring either
	// format would let a client forge it through any trusted proxy that
	// passes that format on unchanged (AWS ALB, for one, appends to
	// X-Forwarded-For but passes Forwarded through); so would taking the
	// peer for the client. Accept both only when every trusted proxy
	// writes both.
	Accept []string `json:"accept,omitempty"`

	// Header formats sent upstream: "x_forwarded" (X-Forwarded-For,
	// -Proto, -Host, -Port) and "forwarded" (RFC 7239). All are built from
	// one chain, so they agree. Default: ["x_forwarded"].
	Emit []string `json:"emit,omitempty"`

	// Single-value client headers of a trusted CDN or proxy, such as
	// Cloudflare's CF-Connecting-IP, believed only from trusted peers:
	// the first one present with one valid IP address becomes the client
	// (as stock Caddy's client_ip_headers does), in place of the client
	// X-Forwarded-For names; the trusted hops stay in the chain sent
	// upstream. From anyone else they are removed like every forwarding
	// header. Every proxy trusted must set (not pass on) the header.
	// Default: none.
	ClientHeaders []string `json:"client_headers,omitempty"`

	sources       []caddyhttp.IPRangeSource
	clientHeaders []string   // canonical
	names         classifier // the headers to remove
	accept        formats
	emit          formats
	logger        *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.forwarded",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults and loads the trusted_proxies sources.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	reloadwarn.Check(h.logger)
	var err error
	if h.accept, err = parseFormats("accept", h.Accept); err != nil {
		return err
	}
	if h.emit, err = parseFormats("emit", h.Emit); err != nil {
		return err
	}
	if h.clientHeaders, err = canonicalClientHeaders(h.ClientHeaders); err != nil {
		return err
	}
	h.names = newClassifier(h.clientHeaders)
	if h.TrustedProxiesRaw != nil {
		mods, err := ctx.LoadModule(h, "TrustedProxiesRaw")
		if err != nil {
			return fmt.Errorf("loading trusted_proxies sources: %v", err)
		}
		for _, mod := range mods.([]any) {
			src, ok := mod.(caddyhttp.IPRangeSource)
			if !ok {
				return fmt.Errorf("trusted_proxies: module %T is not an IP range source", mod)
			}
			h.sources = append(h.sources, src)
		}
	}
	if err := checkStaticRanges(h.sources, h.logger); err != nil {
		return err
	}
	if h.TrustedHops > 0 {
		h.logger.Warn("trusted_hops trusts the nearest hops whatever their address; clients must not be able to reach this listener directly",
			zap.Int("trusted_hops", h.TrustedHops))
	}
	return nil
}

// canonicalClientHeaders checks the client_header names and returns
// them as Go's header map keys them.
func canonicalClientHeaders(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, " \t:") {
			return nil, fmt.Errorf("client_header: %q is not a header name", n)
		}
		if classifyHeader(n) == managed {
			return nil, fmt.Errorf("client_header: %s is read from trusted peers already (accept); name a single-value header such as CF-Connecting-IP", n)
		}
		out = append(out, http.CanonicalHeaderKey(n))
	}
	return out, nil
}

// parseFormats turns the format names of `accept` or `emit` into a set;
// nil means x_forwarded.
func parseFormats(directive string, names []string) (formats, error) {
	if len(names) == 0 {
		return xForwarded, nil
	}
	var f formats
	for _, name := range names {
		switch name {
		case FormatXForwarded:
			f |= xForwarded
		case FormatForwarded:
			f |= rfc7239
		default:
			return 0, fmt.Errorf("%s: unknown format %q; want %q or %q", directive, name, FormatXForwarded, FormatForwarded)
		}
	}
	return f, nil
}

// checkStaticRanges refuses a static trusted range that holds every
// address, and warns about very broad public ones: every address in a
// trusted range can forge the client's address and scheme (trap: Laravel's
// proxies='*', trusting 0.0.0.0/0). Sources other than static are asked
// nothing here: they may need a request.
func checkStaticRanges(sources []caddyhttp.IPRangeSource, logger *zap.Logger) error {
	private := privatePrefixes()
	for _, src := range sources {
		static, ok := src.(*caddyhttp.StaticIPRange)
		if !ok {
			continue
		}
		for _, p := range static.GetIPRanges(nil) {
			if p.Bits() == 0 {
				return fmt.Errorf("trusted_proxies: %s trusts every address, so any client could forge its address; "+
					"list the ranges of your proxies, or use trusted_hops if only proxies can reach this listener", p)
			}
			broad := p.Addr().Is4() && p.Bits() < 8 || p.Addr().Is6() && !p.Addr().Is4In6() && p.Bits() < 16
			if broad && !insideAny(p, private) {
				logger.Warn("trusted_proxies: very broad public range; every address in it can forge the client address",
					zap.Stringer("range", p))
			}
		}
	}
	return nil
}

func privatePrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range caddyhttp.PrivateRangesCIDR() {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// insideAny reports whether p lies within one of outer.
func insideAny(p netip.Prefix, outer []netip.Prefix) bool {
	for _, o := range outer {
		if o.Bits() <= p.Bits() && o.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.TrustedHops < 0 || h.TrustedHops > MaxHops {
		return fmt.Errorf("trusted_hops: %d is out of range 0..%d", h.TrustedHops, MaxHops)
	}
	return nil
}

// scratch holds one request's parsed hops. A few KB, so it is pooled
// rather than put on the stack or allocated per request.
type scratch struct {
	xffHops [MaxHops + 2]Node // the peer, the chain, a truncation sentinel
	rfcHops [MaxHops + 2]Node
	elems   [MaxHops]Element
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// ServeHTTP decides the client, sanitizes the forwarding headers, writes
// the emitted ones, and updates Caddy's client_ip and the placeholders.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Caddy's vars, looked up once: each GetVar or SetVar walks the whole
	// context chain (a dozen values deep by now) to find the same map.
	// Without one (a request Caddy's server did not make), nothing is
	// recorded, as SetVar would do.
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if vars == nil {
		vars = map[string]any{}
	}
	// Once per request: a second pass (a nested route, an invoked named
	// route) would read back this handler's own headers as a new chain.
	if done, _ := vars[doneVarKey].(bool); done {
		return next.ServeHTTP(w, r)
	}
	vars[doneVarKey] = true
	var v verdict
	h.decide(r, &v)
	if v.conflict != "" {
		if v.scratch != nil {
			scratchPool.Put(v.scratch)
		}
		return caddyhttp.Error(http.StatusBadRequest,
			fmt.Errorf("X-Forwarded-For/-Proto/-Host/-Port and Forwarded from trusted proxy %s disagree on %s", r.RemoteAddr, v.conflict))
	}
	present := h.names.removeForwardingHeaders(r.Header, v.trustedPeer)
	if present&hasConnection != 0 {
		h.names.removeForwardingConnectionTokens(r.Header)
	}
	if r.Trailer != nil { // the client announced trailers
		h.names.removeForwardingTrailers(r.Trailer)
		r.Body = trailerSanitizingBody{ReadCloser: r.Body, trailer: r.Trailer, names: h.names}
	}
	h.writeHeaders(r.Header, &v, present)
	if v.scratch != nil {
		v.hops = nil
		scratchPool.Put(v.scratch)
	}

	setClientIPVar(vars, v.clientAddr, v.clientText())
	// The forwarding headers are now this handler's own, so reverse_proxy
	// may keep them: it then appends the peer to X-Forwarded-For, which
	// writeHeaders left out for that reason (emit.go).
	vars[caddyhttp.TrustedProxyVarKey] = true
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(v.placeholders())
	}
	return next.ServeHTTP(w, r)
}

// Cleanup drops the references to the trusted_proxies sources; Caddy
// cleans the source modules up with the config that loaded them.
func (h *Handler) Cleanup() error {
	h.sources = nil
	return nil
}

// Interface guards
var (
	_ caddy.Module                = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)

// doneVarKey marks a request this handler has already processed.
const doneVarKey = "caddylb.forwarded.done"
