package forwarded

import (
	"net/netip"
	"slices"
	"strings"
)

// Element is one forwarded-element of an RFC 7239 Forwarded header: what
// one proxy recorded about the request it received.
type Element struct {
	// For is the node that made the request to that proxy; "unknown"
	// when the parameter is absent.
	For Node

	// By is the proxy's own interface that received the request.
	By Node

	// Proto is the scheme of that request, lowercased ("https"); empty
	// when absent.
	Proto string

	// Host is the Host header of that request, with port if it had one;
	// empty when absent.
	Host string
}

// ParseForwarded parses the field lines of an RFC 7239 Forwarded header
// into its elements, left to right as written. Lines are one
// comma-separated list; pairs within an element are separated by ";";
// parameter names are case-insensitive; values are tokens or quoted
// strings with backslash escapes (RFC 7239 section 4). Unknown parameters
// are ignored (section 5.5).
//
// An element that breaks the grammar (a pair without "=", a bad token, an
// unterminated quoted string, a parameter given twice, an invalid node,
// scheme or host) is kept as a zero Element: a hop that is unknown and
// therefore never trusted. Commas inside quoted strings do not split
// elements.
//
// At most MaxHops elements are returned, the right-most ones; truncated
// reports that elements further left were dropped. A header longer than
// MaxHeaderBytes yields ErrHeaderTooLong and no elements.
func ParseForwarded(values []string) (elems []Element, truncated bool, err error) {
	return appendForwarded(nil, values)
}

// appendForwarded appends the elements of values to dst, keeping only the
// last MaxHops: once that many are held, each new element overwrites the
// oldest, and the ring is put back in order at the end.
func appendForwarded(dst []Element, values []string) ([]Element, bool, error) {
	total := 0
	for _, v := range values {
		total += len(v)
		if total > MaxHeaderBytes {
			return dst, false, ErrHeaderTooLong
		}
	}
	base, n := len(dst), 0
	for _, v := range values {
		for pos := 0; pos < len(v); {
			e, present, next := parseForwardedElement(v, pos)
			pos = next
			if !present {
				continue
			}
			if n < MaxHops {
				dst = append(dst, e)
			} else {
				dst[base+n%MaxHops] = e
			}
			n++
		}
	}
	if n > MaxHops {
		ring := dst[base:]
		oldest := n % MaxHops
		slices.Reverse(ring[:oldest])
		slices.Reverse(ring[oldest:])
		slices.Reverse(ring)
	}
	return dst, n > MaxHops, nil
}

// Parameter bits, to refuse an element that repeats one (RFC 7239 section 4:
// "Each parameter MUST NOT occur more than once per forwarded-element").
const (
	paramFor = 1 << iota
	paramBy
	paramProto
	paramHost
)

// parseForwardedElement parses the element of v starting at pos, up to the
// next comma outside a quoted string. present is false for an empty
// element (list syntax allows them; RFC 9110 section 5.6.1). next is the
// position after the comma.
func parseForwardedElement(v string, pos int) (e Element, present bool, next int) {
	var seen int
	for {
		pos = skipOWS(v, pos)
		if pos >= len(v) {
			return e, seen != 0, pos
		}
		switch v[pos] {
		case ',':
			return e, seen != 0, pos + 1
		case ';':
			pos++
			continue
		}
		// forwarded-pair = token "=" value
		nameEnd := scanToken(v, pos)
		if nameEnd == pos || nameEnd >= len(v) || v[nameEnd] != '=' {
			return Element{}, true, skipElement(v, pos)
		}
		name := v[pos:nameEnd]
		value, end, ok := parseValue(v, nameEnd+1)
		if !ok {
			// from the value's start, so that a quoted string is skipped whole
			return Element{}, true, skipElement(v, nameEnd+1)
		}
		if end = skipOWS(v, end); end < len(v) && v[end] != ';' && v[end] != ',' {
			return Element{}, true, skipElement(v, end)
		}
		bit, ok := e.set(name, value)
		if !ok || seen&bit != 0 {
			return Element{}, true, skipElement(v, end)
		}
		seen |= bit | 1<<8 // bit 8: the element has at least one pair
		pos = end
	}
}

// set stores one pair's value and returns the parameter's bit (0 for an
// extension parameter). ok is false for a value that is not valid for its
// parameter.
func (e *Element) set(name, value string) (bit int, ok bool) {
	switch {
	case strings.EqualFold(name, "for"):
		e.For, ok = parseNode(value, false)
		return paramFor, ok
	case strings.EqualFold(name, "by"):
		e.By, ok = parseNode(value, false)
		return paramBy, ok
	case strings.EqualFold(name, "proto"):
		if !isScheme(value) {
			return paramProto, false
		}
		e.Proto = strings.ToLower(value)
		return paramProto, true
	case strings.EqualFold(name, "host"):
		if !validHost(value) {
			return paramHost, false
		}
		e.Host = value
		return paramHost, true
	}
	return 0, true
}

// parseValue parses value = token / quoted-string at pos. end is the
// position after it. A quoted string without escapes is returned as a
// substring of v, so the common case does not allocate.
func parseValue(v string, pos int) (value string, end int, ok bool) {
	if pos >= len(v) {
		return "", pos, false
	}
	if v[pos] != '"' {
		end = scanToken(v, pos)
		return v[pos:end], end, end > pos
	}
	start := pos + 1
	escaped := false
	for i := start; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			if !escaped {
				return v[start:i], i + 1, true
			}
			return unescapeQuoted(v[start:i]), i + 1, true
		case c == '\\':
			// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
			if i+1 >= len(v) || !isQuotedPairChar(v[i+1]) {
				return "", len(v), false
			}
			escaped = true
			i++
		case c != '\t' && (c < 0x20 || c == 0x7f):
			return "", i, false
		}
	}
	return "", len(v), false // unterminated
}

func unescapeQuoted(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isQuotedPairChar(c byte) bool { return c == '\t' || c >= 0x20 && c != 0x7f }

// skipElement returns the position after the comma that ends the element
// holding pos, stepping over quoted strings, or len(v).
func skipElement(v string, pos int) int {
	for inQuote := false; pos < len(v); pos++ {
		switch c := v[pos]; {
		case inQuote && c == '\\':
			pos++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == ',':
			return pos + 1
		}
	}
	return len(v)
}

func skipOWS(v string, pos int) int {
	for pos < len(v) && (v[pos] == ' ' || v[pos] == '\t') {
		pos++
	}
	return pos
}

// scanToken returns the end of the token starting at pos (RFC 9110 section
// 5.6.2).
func scanToken(v string, pos int) int {
	for pos < len(v) && isTokenChar(v[pos]) {
		pos++
	}
	return pos
}

func isTokenChar(c byte) bool {
	if isAlnum(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// isScheme reports whether s is a URI scheme: ALPHA *( ALPHA / DIGIT / "+"
// / "-" / "." ) (RFC 3986 section 3.1), as RFC 7239 section 5.4 requires.
func isScheme(s string) bool {
	if s == "" || len(s) > 32 || !isAlnum(s[0]) || s[0] <= '9' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validHost reports whether s is uri-host [ ":" port ] (RFC 7239 section
// 5.3). Registered names are limited to letters, digits and "-._~": no
// percent-encoding, no sub-delims, so a forwarded host can go into a
// header, a URL or a log line as it is.
func validHost(s string) bool {
	if s == "" || len(s) > maxHostLen {
		return false
	}
	host, port := s, ""
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		addr, err := netip.ParseAddr(s[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return false
		}
		host, port = "", s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
			if !validPort(port) {
				return false
			}
		}
		return true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if !validPort(port) {
			return false
		}
	}
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' && c != '~' {
			return false
		}
	}
	return true
}

// hostPort returns the port of a valid host ("example.com:8443" gives
// "8443"), or "".
func hostPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[i:], ']') >= 0 {
		return ""
	}
	return host[i+1:]
}

// AppendForwarded appends elems, left to right, as one Forwarded field
// value. Every element starts with for= (the zero Node is written as
// "unknown"); by=, host= and proto= follow when set. Values that are not
// tokens are quoted.
func AppendForwarded(b []byte, elems []Element) []byte {
	for i, e := range elems {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendForwardedElement(b, e)
	}
	return b
}

func appendForwardedElement(b []byte, e Element) []byte {
	b = append(b, "for="...)
	b = appendForwardedNode(b, e.For)
	if e.By != (Node{}) {
		b = append(b, ";by="...)
		b = appendForwardedNode(b, e.By)
	}
	if e.Host != "" {
		b = append(b, ";host="...)
		b = appendTokenOrQuoted(b, e.Host)
	}
	if e.Proto != "" {
		b = append(b, ";proto="...)
		b = appendTokenOrQuoted(b, e.Proto)
	}
	return b
}

// appendTokenOrQuoted appends s as a token when it is one, else as a
// quoted string with '"' and '\' escaped.
func appendTokenOrQuoted(b []byte, s string) []byte {
	if s != "" && scanToken(s, 0) == len(s) {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
