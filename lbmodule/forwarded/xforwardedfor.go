package forwarded

import (
	"errors"
	"slices"
	"strings"
)

// ErrHeaderTooLong is returned for an X-Forwarded-For or Forwarded header
// whose field lines hold more than MaxHeaderBytes together.
var ErrHeaderTooLong = errors.New("forwarding header longer than MaxHeaderBytes")

// ParseXForwardedFor parses the field lines of an X-Forwarded-For header
// into its hops, left to right as written: the first is the client as the
// left-most proxy saw it, the last the hop nearest to us. Lines are one
// comma-separated list (RFC 9110 section 5.3); empty entries are skipped.
// An entry is an IPv4 address, an IPv6 address (bare or in brackets), either
// optionally with a port, an RFC 7239 obfuscated identifier or "unknown";
// any other entry becomes an unknown hop, so it keeps its position and can
// never be trusted.
//
// At most MaxHops hops are returned, the right-most ones; truncated reports
// that entries further left were dropped. A header longer than
// MaxHeaderBytes yields ErrHeaderTooLong and no hops.
func ParseXForwardedFor(values []string) (hops []Node, truncated bool, err error) {
	hops, truncated, err = appendXForwardedForNearestFirst(nil, values)
	slices.Reverse(hops)
	return hops, truncated, err
}

// appendXForwardedForNearestFirst appends the hops of values to dst, the
// nearest (right-most) first: the order the trust walk needs, and the
// order in which entries beyond MaxHops can be dropped without reading
// them.
func appendXForwardedForNearestFirst(dst []Node, values []string) ([]Node, bool, error) {
	total := 0
	for _, v := range values {
		total += len(v)
		if total > MaxHeaderBytes {
			return dst, false, ErrHeaderTooLong
		}
	}
	n := 0
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				entry, rest = rest[j+1:], rest[:j]
			} else {
				entry, rest = rest, ""
			}
			entry = trimOWS(entry)
			if entry == "" {
				continue
			}
			if n == MaxHops {
				return dst, true, nil
			}
			node, _ := parseNode(entry, true) // a bad entry is an unknown hop
			dst = append(dst, node)
			n++
		}
	}
	return dst, false, nil
}

// AppendXForwardedFor appends hops, left to right, as one X-Forwarded-For
// field value ("192.0.2.60, 2001:db8::1, [2001:db8::2]:8080").
func AppendXForwardedFor(b []byte, hops []Node) []byte {
	for i, n := range hops {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendXFFNode(b, n)
	}
	return b
}

// trimOWS trims optional whitespace (SP and HTAB, RFC 9110 section 5.6.3).
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
