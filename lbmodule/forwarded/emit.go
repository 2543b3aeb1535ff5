package forwarded

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// How the emitted headers survive reverse_proxy.
//
// reverse_proxy rewrites X-Forwarded-For, -Proto and -Host after every
// handler has run (addForwardedHeaders, reverseproxy.go in Caddy
// v2.11.9), from the trusted_proxy variable and r.RemoteAddr:
//
//   - trusted_proxy false: X-Forwarded-For becomes the peer's IP alone, and
//     -Proto/-Host are set from the connection; the chain is lost.
//   - trusted_proxy true: the peer's IP is appended to X-Forwarded-For, and
//     the last -Proto and -Host values are kept.
//   - a field present with a nil value is left out entirely ("omit").
//   - a unix-socket peer ("@"), trusted: X-Forwarded-For is kept as it is.
//
// So the handler sets trusted_proxy to true once it has replaced every
// forwarding header with its own, and writes X-Forwarded-For WITHOUT the
// peer, which reverse_proxy then appends, giving exactly client, proxies,
// peer. Its -Proto and -Host are single values, which reverse_proxy keeps.
// When x_forwarded is not emitted, the three fields are set to nil so that
// reverse_proxy adds none. Forwarded and X-Forwarded-Port, which
// reverse_proxy does not touch, carry the whole chain themselves. A
// `header_up` in reverse_proxy runs after all this and overrides it.

// writeHeaders writes the emitted formats, all from the one chain in v.
// The forwarding headers have been removed already.
// It sets or deletes every canonical managed header (see
// removeForwardingHeaders, which found those in present), so none the
// client sent survives.
func (h *Handler) writeHeaders(hdr http.Header, v *verdict, present headerSet) {
	// The hops sent upstream are hops[v.client] down to hops[nearest]. A
	// unix peer has no address to name; it is left out unless it is the
	// client itself ("unknown").
	nearest := 0
	if v.peerUnix && v.client > 0 {
		nearest = 1
	}
	vals := make([]string, 0, 5) // one backing array for every field written
	var stack [128]byte          // room for the usual chain, so building it does not allocate
	set := func(name, value string) {
		vals = append(vals, value)
		hdr[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	del := func(bit headerSet, name string) {
		if present&bit != 0 {
			delete(hdr, name)
		}
	}

	if h.emit&xForwarded != 0 {
		xffNearest := nearest
		if !v.peerUnix {
			xffNearest = 1 // reverse_proxy appends the peer
		}
		if v.client >= xffNearest {
			b := stack[:0]
			for i := v.client; i >= xffNearest; i-- {
				if i != v.client {
					b = append(b, ", "...)
				}
				b = appendXFFNode(b, sentNode(v.hop(i)))
			}
			set("X-Forwarded-For", string(b))
		} else {
			del(hasXForwardedFor, "X-Forwarded-For")
		}
		set("X-Forwarded-Proto", v.proto)
		if v.host != "" {
			set("X-Forwarded-Host", v.host)
		} else {
			// No Host (HTTP/1.0): none to forward, and reverse_proxy
			// would send an empty line of its own.
			hdr["X-Forwarded-Host"] = nil
		}
		if v.port != "" {
			set("X-Forwarded-Port", v.port)
		} else {
			del(hasXForwardedPort, "X-Forwarded-Port")
		}
	} else {
		hdr["X-Forwarded-For"] = nil
		hdr["X-Forwarded-Proto"] = nil
		hdr["X-Forwarded-Host"] = nil
		del(hasXForwardedPort, "X-Forwarded-Port")
	}

	if h.emit&rfc7239 != 0 {
		b := stack[:0]
		for i := v.client; i >= nearest; i-- {
			if i == v.client {
				e := Element{For: sentNode(v.hop(i)), Proto: v.proto}
				if validHost(v.host) {
					e.Host = v.host
				}
				b = appendForwardedElement(b, e)
				continue
			}
			b = append(b, ", for="...)
			b = appendForwardedNode(b, sentNode(v.hop(i)))
		}
		set("Forwarded", string(b))
	} else {
		del(hasForwarded, "Forwarded")
	}
}

// sentNode is a hop as sent upstream: IPv4-mapped addresses as IPv4, and
// no port (few consumers of X-Forwarded-For accept ports, and both
// formats must name the hops alike).
func sentNode(n Node) Node {
	n.Addr = n.Addr.Unmap()
	n.Port = 0
	return n
}

// setClientIPVar makes addr Caddy's client_ip (in vars, the request's
// Caddy vars), for the client_ip matcher, client_ip_hash, access logs and
// the sticky policy. It leaves the variable alone when it already holds
// addr (the usual case at the edge, saving an allocation), and empties it
// when no address is known (a unix-socket client).
//
// It compares text, not addresses: Caddy wrote the variable with
// netip.Addr.String, so the same address reads the same. text, when not
// "", is addr as the request spelled it (clientText): at the edge, what
// Caddy formatted the variable from, so most requests compare two strings
// and format nothing.
func setClientIPVar(vars map[string]any, addr netip.Addr, text string) {
	if !addr.IsValid() {
		// Unknown client: whatever Caddy guessed before (its left-most
		// X-Forwarded-For pick, say) must not stand.
		vars[caddyhttp.ClientIPVarKey] = ""
		return
	}
	if cur, ok := vars[caddyhttp.ClientIPVarKey].(string); ok {
		if text != "" && cur == text {
			return
		}
		var buf [64]byte // an IPv6 address with a zone; a longer one is appended on the heap
		if string(addr.AppendTo(buf[:0])) == cur {
			return
		}
	}
	vars[caddyhttp.ClientIPVarKey] = addr.String()
}

// Placeholder names.
const (
	placeholderPrefix     = "http.forwarded."
	placeholderClientIP   = placeholderPrefix + "client_ip"
	placeholderClientPort = placeholderPrefix + "client_port"
	placeholderProto      = placeholderPrefix + "proto"
	placeholderHost       = placeholderPrefix + "host"
	placeholderPort       = placeholderPrefix + "port"
)

// placeholders returns the provider of the {http.forwarded.*}
// placeholders. Values are formatted when asked for, so a request whose
// config uses none pays nothing for them.
//
// client_ip is the client's address; when the chain names the client only
// "unknown" or by an obfuscated identifier, it is that name (Caddy's
// client_ip variable gets the nearest known address instead, as it must
// hold an IP). client_port is empty when no port is known.
func (v *verdict) placeholders() caddy.ReplacerFunc {
	client, proto, host, port := v.clientNode, v.proto, v.host, v.port
	return func(key string) (any, bool) {
		if !strings.HasPrefix(key, placeholderPrefix) {
			return nil, false
		}
		switch key {
		case placeholderClientIP:
			switch {
			case client.IsIP():
				return client.Addr.Unmap().String(), true
			case client.Obfuscated != "":
				return client.Obfuscated, true
			}
			return "unknown", true
		case placeholderClientPort:
			if client.Port == 0 {
				return "", true
			}
			return strconv.Itoa(int(client.Port)), true
		case placeholderProto:
			return proto, true
		case placeholderHost:
			return host, true
		case placeholderPort:
			return port, true
		}
		return nil, false
	}
}
