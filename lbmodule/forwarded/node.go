package forwarded

import (
	"net/netip"
	"strconv"
	"strings"
)

// Limits that bound the work one request's forwarding headers can cause.
const (
	// MaxHeaderBytes is the largest X-Forwarded-For or Forwarded header the
	// parsers read, all field lines of that header counted together. A
	// longer header is rejected as a whole (ErrHeaderTooLong).
	MaxHeaderBytes = 8 << 10

	// MaxHops is the number of hops the parsers return at most: the
	// nearest (right-most) ones. Hops further left are dropped and the
	// result is reported as truncated.
	MaxHops = 64

	// maxNodeLen bounds one node ("[v6%zone]:port", an obfuscated name).
	maxNodeLen = 128

	// maxHostLen bounds a forwarded host: a DNS name (253) plus ":65535".
	maxHostLen = 253 + 6
)

// Node is one hop of a forwarding chain as X-Forwarded-For writes it, or as
// the for= and by= parameters of RFC 7239 Forwarded do (RFC 7239 section
// 6). The zero Node is the identifier "unknown".
type Node struct {
	// Addr is the hop's IP address, without zone. It is invalid when the
	// hop is unknown or obfuscated.
	Addr netip.Addr

	// Port is the hop's port; 0 when absent or obfuscated.
	Port uint16

	// Obfuscated is an obfuscated identifier such as "_hidden" (RFC 7239
	// section 6.3), empty otherwise.
	Obfuscated string
}

// IsIP reports whether the node names an IP address.
func (n Node) IsIP() bool { return n.Addr.IsValid() }

// String returns the node as X-Forwarded-For writes it: "192.0.2.1",
// "2001:db8::1", "[2001:db8::1]:4711", "_hidden" or "unknown".
func (n Node) String() string { return string(appendXFFNode(nil, n)) }

// parseNode parses a node as RFC 7239 section 6 writes it:
// nodename [ ":" node-port ]. With bareIPv6, an IPv6 address may also
// appear without brackets (and then without port), as it does in
// X-Forwarded-For. Zones are accepted and dropped. ok is false for
// anything else; callers treat such a hop as unknown.
func parseNode(s string, bareIPv6 bool) (n Node, ok bool) {
	if s == "" || len(s) > maxNodeLen {
		return Node{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Node{}, false
		}
		addr, err := netip.ParseAddr(s[1:end])
		if err != nil || !addr.Is6() {
			return Node{}, false
		}
		n.Addr = addr.WithZone("")
		rest := s[end+1:]
		if rest == "" {
			return n, true
		}
		if rest[0] != ':' {
			return Node{}, false
		}
		return n.withPort(rest[1:])
	}
	if strings.Count(s, ":") >= 2 {
		if !bareIPv6 {
			return Node{}, false
		}
		addr, err := netip.ParseAddr(s)
		if err != nil || !addr.Is6() {
			return Node{}, false
		}
		n.Addr = addr.WithZone("")
		return n, true
	}
	name, port, hasPort := strings.Cut(s, ":")
	switch {
	case name == "":
		return Node{}, false
	case name[0] == '_':
		if !isObfuscated(name) {
			return Node{}, false
		}
		n.Obfuscated = name
	case strings.EqualFold(name, "unknown"):
	default:
		addr, err := netip.ParseAddr(name)
		if err != nil || !addr.Is4() {
			return Node{}, false
		}
		n.Addr = addr
	}
	if !hasPort {
		return n, true
	}
	return n.withPort(port)
}

// withPort sets n's port from a node-port: 1*5DIGIT, or an obfuscated
// port ("_" 1*(ALPHA / DIGIT / "." / "_" / "-")), which is dropped.
func (n Node) withPort(s string) (Node, bool) {
	if s != "" && s[0] == '_' {
		return n, isObfuscated(s)
	}
	p, ok := parsePort(s)
	if !ok {
		return Node{}, false
	}
	n.Port = p
	return n, true
}

// parsePort parses 1*5DIGIT up to 65535.
func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

// isObfuscated reports whether s is an obfnode or obfport:
// "_" 1*(ALPHA / DIGIT / "." / "_" / "-") (RFC 7239 section 6.3).
func isObfuscated(s string) bool {
	if len(s) < 2 || s[0] != '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// appendXFFNode appends n as X-Forwarded-For writes it: IPv6 bare unless
// it has a port, then bracketed.
func appendXFFNode(b []byte, n Node) []byte {
	switch {
	case n.Addr.Is6() && n.Port != 0:
		b = append(b, '[')
		b = n.Addr.AppendTo(b)
		b = append(b, ']')
	case n.Addr.IsValid():
		b = n.Addr.AppendTo(b)
	case n.Obfuscated != "":
		b = append(b, n.Obfuscated...)
	default:
		b = append(b, "unknown"...)
	}
	if n.Port != 0 {
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(n.Port), 10)
	}
	return b
}

// appendForwardedNode appends n as a value of RFC 7239's for= or by=:
// IPv6 always bracketed, and quoted whenever the text holds ':' or '['
// (neither is a token character).
func appendForwardedNode(b []byte, n Node) []byte {
	quote := n.Addr.Is6() || n.Port != 0
	if quote {
		b = append(b, '"')
	}
	if n.Addr.Is6() {
		b = append(b, '[')
		b = n.Addr.AppendTo(b)
		b = append(b, ']')
		if n.Port != 0 {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(n.Port), 10)
		}
	} else {
		b = appendXFFNode(b, n)
	}
	if quote {
		b = append(b, '"')
	}
	return b
}
