package forwarded

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
)

// verdict is what the handler decided about one request.
type verdict struct {
	// trustedPeer: the peer is trusted and what it forwarded was used.
	trustedPeer bool
	// peerUnix: the peer came over a unix socket and has no address.
	peerUnix bool
	// peer is the TCP peer, hop 0.
	peer Node
	// peerText is the peer's IPv4 address as r.RemoteAddr spells it, ""
	// for any other peer.
	peerText string
	// hops is the chain, nearest first, hops[0] the peer, in scratch; nil
	// when the peer is not trusted (the chain is then the peer alone).
	hops    []Node
	scratch *scratch
	// client indexes the client in hops.
	client int

	// clientNode is hops[client], kept after the scratch is returned.
	clientNode Node
	// clientAddr is the address for Caddy's client_ip: the client's. It
	// is invalid when the chain names the client only "unknown", by an
	// obfuscated identifier, or not at all: never a trusted hop's address,
	// which would let a client pass as the proxy in front of it.
	clientAddr netip.Addr

	// conflict names the field on which X-Forwarded-* and Forwarded from a
	// trusted peer disagree; the request is refused.
	conflict string

	// proto, host and port are those the client used.
	proto, host, port string
}

// claims is what the trusted peer's headers of one format say.
type claims struct {
	// hops is the chain, nearest first, hops[0] the peer; client indexes
	// the first untrusted hop.
	hops   []Node
	client int
	// hasChain: X-Forwarded-For or Forwarded itself was present.
	hasChain bool
	// proto, host and port as forwarded; "" when not given.
	proto, host, port string
}

// decide walks the chain and settles the client, scheme, host and port
// into v. The scratch holding a trusted peer's chain is taken from the
// pool only when the peer is trusted; the caller returns it (v.scratch).
func (h *Handler) decide(r *http.Request, v *verdict) {
	peer, peerText, unix := peerNode(r.RemoteAddr)
	v.peerUnix = unix
	v.proto, v.host, v.port = ownView(r)
	v.peer, v.peerText = peer, peerText
	if h.trustsHop(r, 0, peer, unix) {
		v.scratch = scratchPool.Get().(*scratch)
		c, conflict := h.readClaims(r, v.scratch, peer, unix)
		if conflict != "" {
			v.conflict = conflict
			return
		}
		v.trustedPeer = true
		if addr, ok := h.clientFromHeader(r); ok {
			c.hops, c.client = withClient(c.hops, c.client, addr)
		}
		v.hops, v.client = c.hops, c.client
		v.apply(c)
	}
	v.clientNode = v.hop(v.client)
	if v.clientNode.IsIP() {
		v.clientAddr = v.clientNode.Addr.Unmap()
	}
}

// clientFromHeader reads the first client_header present: one field
// line holding one IP address. Anything else (a list, two lines, a name)
// is not believed, and the next header, or the chain, decides.
func (h *Handler) clientFromHeader(r *http.Request) (netip.Addr, bool) {
	for _, name := range h.clientHeaders {
		values := r.Header[name]
		if len(values) == 0 {
			continue
		}
		if len(values) == 1 {
			if addr, err := netip.ParseAddr(trimOWS(values[0])); err == nil && addr.Zone() == "" {
				return addr.Unmap(), true
			}
		}
		if ce := h.logger.Check(zap.DebugLevel, "client_header from a trusted peer is not one IP address; ignored"); ce != nil {
			ce.Write(zap.String("header", name), zap.Strings("values", values), zap.String("remote_addr", r.RemoteAddr))
		}
	}
	return netip.Addr{}, false
}

// withClient puts addr in the chain as the client, in place of the hop
// the chain named; the trusted hops nearer stay. hops lives in the
// scratch, which has room for one more.
func withClient(hops []Node, client int, addr netip.Addr) ([]Node, int) {
	if client == 0 { // the chain named nobody beyond the trusted peer
		return append(hops, Node{Addr: addr}), len(hops)
	}
	hops[client] = Node{Addr: addr}
	return hops, client
}

// hop returns hop i of the chain, 0 being the peer.
func (v *verdict) hop(i int) Node {
	if v.hops == nil {
		return v.peer
	}
	return v.hops[i]
}

// apply takes the scheme, host and port a trusted peer forwarded. Without
// a forwarded port, the port is the host's (forwarded, or the Host header
// the proxy passed on), else the scheme's default: a host without port
// means the client used that.
func (v *verdict) apply(c claims) {
	if c.proto != "" {
		v.proto = c.proto
	}
	if c.host != "" {
		v.host = c.host
	}
	switch {
	case c.port != "":
		v.port = c.port
	case c.proto != "" || c.host != "":
		if p := hostPort(v.host); validPort(p) {
			v.port = p
		} else if p := defaultPort(v.proto); p != "" {
			v.port = p
		}
	}
}

// readClaims reads the accepted formats from a trusted peer. When both
// formats are accepted, present and disagree, it names the field instead:
// believing either would be spoofable through a proxy that passes the
// other on unchanged, and so would taking the peer as the client.
func (h *Handler) readClaims(r *http.Request, s *scratch, peer Node, unix bool) (claims, string) {
	var x, f claims
	if h.accept&xForwarded != 0 {
		x = h.xForwardedClaims(r, s, peer, unix)
	}
	if h.accept&rfc7239 != 0 {
		f = h.forwardedClaims(r, s, peer, unix)
	}
	if x.hops == nil {
		return f, ""
	}
	if f.hops == nil {
		return x, ""
	}
	if field := disagreement(&x, &f); field != "" {
		if ce := h.logger.Check(zap.DebugLevel, "X-Forwarded-* and Forwarded disagree; refusing the request"); ce != nil {
			ce.Write(zap.String("field", field), zap.String("remote_addr", r.RemoteAddr))
		}
		return claims{}, field
	}
	c := x
	if !x.hasChain && f.hasChain {
		c.hops, c.client, c.hasChain = f.hops, f.client, true
	}
	// With both formats in play, a field only one of them states may have
	// been written by the client and passed on by a proxy that sets only
	// the other format: believe only what both state.
	c.proto = bothOrNone(x.proto, f.proto)
	c.host = bothOrNone(x.host, f.host)
	c.port = bothOrNone(x.port, f.port)
	return c, ""
}

// bothOrNone is a when a and b agree, else "" (disagreement already
// refused differing values, so only a missing one remains).
func bothOrNone(a, b string) string {
	if a == b {
		return a
	}
	return ""
}

// disagreement names the first thing X-Forwarded-* and Forwarded both
// state differently, or returns "". What only one format states is no
// disagreement.
func disagreement(x, f *claims) string {
	if x.hasChain && f.hasChain && !sameClient(x.hops[x.client], f.hops[f.client]) {
		return "client"
	}
	if x.proto != "" && f.proto != "" && x.proto != f.proto {
		return "proto"
	}
	if x.host != "" && f.host != "" && !strings.EqualFold(x.host, f.host) {
		return "host"
	}
	if x.port != "" && f.port != "" && x.port != f.port {
		return "port"
	}
	return ""
}

// sameClient compares two client hops: by address, or as both unknown.
func sameClient(a, b Node) bool {
	if a.IsIP() != b.IsIP() {
		return false
	}
	return !a.IsIP() || a.Addr.Unmap() == b.Addr.Unmap()
}

// xForwardedClaims reads X-Forwarded-For, -Proto, -Host and -Port. Of the
// single-valued ones the right-most value counts: it is the one the
// nearest trusted proxy wrote (trusted proxies should overwrite them, not
// append).
func (h *Handler) xForwardedClaims(r *http.Request, s *scratch, peer Node, unix bool) claims {
	values := r.Header["X-Forwarded-For"]
	s.xffHops[0] = peer
	hops, truncated, err := appendXForwardedForNearestFirst(s.xffHops[:1], values)
	if err != nil {
		h.logUnreadable("X-Forwarded-For", err, r)
		hops = append(s.xffHops[:1], Node{})
	} else if truncated {
		hops = append(hops, Node{}) // what lies beyond is unknown
	}
	c := claims{hops: hops, client: h.walk(r, hops, unix), hasChain: len(values) > 0}
	if p := lastListValue(r.Header["X-Forwarded-Proto"]); isScheme(p) {
		c.proto = strings.ToLower(p)
	}
	if hv := lastListValue(r.Header["X-Forwarded-Host"]); validHost(hv) {
		c.host = hv
	}
	if p := lastListValue(r.Header["X-Forwarded-Port"]); validPort(p) {
		c.port = p
	} else if p := hostPort(c.host); validPort(p) {
		c.port = p
	}
	return c
}

// forwardedClaims reads RFC 7239 Forwarded. Proto and host come from the
// client's element, as the proxy that received the client's request wrote
// them, or failing that from the nearest element right of it that has
// them.
func (h *Handler) forwardedClaims(r *http.Request, s *scratch, peer Node, unix bool) claims {
	values := r.Header["Forwarded"]
	elems, truncated, err := appendForwarded(s.elems[:0], values)
	s.rfcHops[0] = peer
	hops := s.rfcHops[:1]
	if err != nil {
		h.logUnreadable("Forwarded", err, r)
		elems = elems[:0]
		hops = append(hops, Node{})
	}
	for i := len(elems) - 1; i >= 0; i-- {
		hops = append(hops, elems[i].For)
	}
	if truncated {
		hops = append(hops, Node{})
	}
	c := claims{hops: hops, client: h.walk(r, hops, unix), hasChain: len(values) > 0}
	// hop j >= 1 was written in elems[len(elems)-j]
	for j := min(c.client, len(elems)); j >= 1 && (c.proto == "" || c.host == ""); j-- {
		e := &elems[len(elems)-j]
		if c.proto == "" {
			c.proto = e.Proto
		}
		if c.host == "" {
			c.host = e.Host
		}
	}
	if c.host != "" {
		c.port = hostPort(c.host)
	}
	return c
}

func (h *Handler) logUnreadable(header string, err error, r *http.Request) {
	if ce := h.logger.Check(zap.DebugLevel, "unreadable forwarding header from a trusted peer; the client is unknown"); ce != nil {
		ce.Write(zap.String("header", header), zap.Error(err), zap.String("remote_addr", r.RemoteAddr))
	}
}

// walk returns the index of the client in hops (nearest first, hops[0] the
// peer, already known to be trusted): the first hop that is not trusted,
// or the left-most hop when all are.
func (h *Handler) walk(r *http.Request, hops []Node, unix bool) int {
	for i := 1; i < len(hops); i++ {
		if !h.trustsHop(r, i, hops[i], unix) {
			return i
		}
	}
	return len(hops) - 1
}

// trustsHop reports whether hop i (0 is the peer) is trusted: one of the
// trusted_hops nearest, a unix peer with trusted_unix, or an address in a
// trusted_proxies source. An unknown or obfuscated hop is trusted only by
// count.
func (h *Handler) trustsHop(r *http.Request, i int, n Node, unix bool) bool {
	if i < h.TrustedHops {
		return true
	}
	if i == 0 && unix {
		return h.TrustedUnix
	}
	if !n.Addr.IsValid() {
		return false
	}
	addr := n.Addr.Unmap()
	for _, src := range h.sources {
		for _, prefix := range src.GetIPRanges(r) {
			if prefix.Contains(addr) || addr != n.Addr && prefix.Contains(n.Addr) {
				return true
			}
		}
	}
	return false
}

// peerNode reads the TCP peer from r.RemoteAddr the way reverse_proxy does
// (zone dropped), so that the hop reverse_proxy appends to X-Forwarded-For
// is the hop considered here. text is an IPv4 peer's address as
// remoteAddr spells it, "" for any other peer and any port that is not a
// number. unix reports a unix-socket peer ("@").
func peerNode(remoteAddr string) (n Node, text string, unix bool) {
	if remoteAddr == "@" {
		return Node{}, "", true
	}
	// The usual peer, "a.b.c.d:port" as net/http sets it, in one parse.
	if i := strings.LastIndexByte(remoteAddr, ':'); i > 0 {
		if port, ok := parsePort(remoteAddr[i+1:]); ok {
			if addr, err := netip.ParseAddr(remoteAddr[:i]); err == nil && addr.Is4() {
				return Node{Addr: addr, Port: port}, remoteAddr[:i], false
			}
		}
	}
	// IPv6, and anything else another handler may have set.
	return splitPeer(remoteAddr), "", false
}

// splitPeer is peerNode the long way, as reverse_proxy splits the address:
// for any remoteAddr, what peerNode's one parse gives where that applies.
func splitPeer(remoteAddr string) (n Node) {
	host, port, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return Node{}
	}
	host, _, _ = strings.Cut(host, "%")
	if addr, err := netip.ParseAddr(host); err == nil {
		n.Addr = addr
	}
	n.Port, _ = parsePort(port)
	return n
}

// clientText is the client's address as the peer's spelling of it, when
// the client is the peer; "" otherwise.
func (v *verdict) clientText() string {
	if v.clientAddr == v.peer.Addr {
		return v.peerText
	}
	return ""
}

// ownView is the scheme, host and port of the request as it reached this
// server: what the client used when the peer is the client. The port is
// the Host header's, or the scheme's default when the Host has none (that
// is what an omitted port means, RFC 3986 section 3.2.3, also after TLS
// termination or a NAT that maps ports); without a Host header, the port
// of the listener.
func ownView(r *http.Request) (proto, host, port string) {
	proto, host = "http", r.Host
	if r.TLS != nil {
		proto = "https"
	}
	// The port the client used is the one it connected to: the listener's.
	// The Host header's port is the client's say and may be anything.
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && addr.Port > 0 {
		return proto, host, portText(addr.Port)
	}
	if p := hostPort(host); validPort(p) {
		return proto, host, p
	}
	return proto, host, defaultPort(proto)
}

// portTexts remembers the decimal text of the listeners' ports, so that a
// request does not format and allocate it again: a slot per port modulo
// 8, enough for a server's usual one or two listeners (80 and 443 fall in
// different slots); ports that share a slot take turns in it.
var portTexts [8]atomic.Pointer[portTextEntry]

type portTextEntry struct {
	port int
	text string
}

// portText returns the decimal text of a listener's port.
func portText(port int) string {
	slot := &portTexts[port&7]
	if e := slot.Load(); e != nil && e.port == port {
		return e.text
	}
	e := &portTextEntry{port: port, text: strconv.Itoa(port)}
	slot.Store(e)
	return e.text
}

func defaultPort(proto string) string {
	switch proto {
	case "https", "wss":
		return "443"
	case "http", "ws":
		return "80"
	}
	return ""
}

// validPort reports whether s is a port number 1..65535.
func validPort(s string) bool {
	p, ok := parsePort(s)
	return ok && p != 0
}

// lastListValue returns the right-most element of a comma-separated
// header, across its field lines, with whitespace trimmed.
func lastListValue(values []string) string {
	for i := len(values) - 1; i >= 0; i-- {
		for rest := values[i]; rest != ""; {
			var v string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				v, rest = rest[j+1:], rest[:j]
			} else {
				v, rest = rest, ""
			}
			if v = trimOWS(v); v != "" {
				return v
			}
		}
	}
	return ""
}
