package forwarded

import (
	"io"
	"net/http"
	"strings"
)

// headerClass sorts request header names for sanitizing.
type headerClass uint8

const (
	// notForwarding: any header this handler leaves alone.
	notForwarding headerClass = iota

	// managed: Forwarded and X-Forwarded-For/-Proto/-Host/-Port. Always
	// removed and written afresh from the one chain this handler computed.
	managed

	// contradicting: headers that restate the client's address or scheme
	// (X-Real-IP, True-Client-IP, CF-Connecting-IP, X-Forwarded-Ssl...,
	// see contradictingNames). Always removed: nothing refreshes them, so
	// any value could contradict the managed headers. (A trusted CDN's
	// header named by client_header is read before it goes.)
	contradicting

	// passable: the rest of the X-Forwarded-* family (X-Forwarded-Prefix,
	// -Uri, -Method, -Server...). Removed from untrusted peers; kept from
	// trusted peers when spelled with hyphens.
	passable
)

// contradictingNames restate the client's address or scheme in one value
// and are refreshed by nobody here, by length for a quick look-up. X-Forwarded
// and Forwarded-For are read by the common PHP get_client_ip() snippets
// (HTTP_X_FORWARDED, HTTP_FORWARDED_FOR); the rest are the single-value
// client headers of CDNs, cloud load balancers and proxies, which
// applications and frameworks are told to read: Cloudflare
// (CF-Connecting-IP, CF-Connecting-IPv6, CF-Pseudo-IPv4), Akamai
// (True-Client-IP, Akamai-Client-IP), Fastly (Fastly-Client-IP), Azure
// Front Door (X-Azure-ClientIP, X-Azure-SocketIP), Google (X-ProxyUser-Ip,
// X-Appengine-User-Ip), Fly.io (Fly-Client-IP), Envoy
// (X-Envoy-External-Address), ingress-nginx (X-Original-Forwarded-For),
// Amazon CloudFront (CloudFront-Viewer-Address), Imperva (Incap-Client-IP),
// and the generic X-Real-IP, X-Real-Client-IP, X-Client-Real-IP,
// X-Client-IP, Client-IP, X-Cluster-Client-IP, X-Remote-Addr, X-Remote-IP,
// X-Originating-IP.
var contradictingNames = byLength(
	"x-real-ip", "true-client-ip", "x-client-ip", "client-ip",
	"x-cluster-client-ip", "front-end-https", "x-forwarded", "forwarded-for",
	"cf-connecting-ip", "cf-connecting-ipv6", "cf-pseudo-ipv4",
	"fastly-client-ip", "akamai-client-ip", "fly-client-ip",
	"x-azure-clientip", "x-azure-socketip", "x-proxyuser-ip", "x-appengine-user-ip",
	"x-original-forwarded-for", "x-remote-addr", "x-remote-ip", "x-originating-ip",
	"x-envoy-external-address", "cloudfront-viewer-address", "incap-client-ip",
	"x-real-client-ip", "x-client-real-ip",
)

// byLength indexes names by their length, which is all the look-up
// costs for the many headers of no such length.
func byLength(names ...string) *[32][]string {
	var t [32][]string
	for _, n := range names {
		t[len(n)] = append(t[len(n)], n)
	}
	return &t
}

// classifyHeader tells which class the header name k belongs to. Case is
// ignored and "_" counts as "-": PHP, CGI and WSGI turn both into "_", so
// X_Forwarded_For reaches an application as HTTP_X_FORWARDED_FOR just like
// X-Forwarded-For does, while Go keeps it under its own key
// ("X_forwarded_for").
func classifyHeader(k string) headerClass {
	if len(k) < 9 { // the shortest member, "Forwarded" and "Client-IP"
		return notForwarding
	}
	switch k[0] | 0x20 { // the first letters of the family's names
	case 'x', 'f', 't', 'c', 'a', 'i':
	default:
		return notForwarding
	}
	const xf = "x-forwarded-"
	if len(k) > len(xf) && equalHeaderName(k[:len(xf)], xf) {
		switch rest := k[len(xf):]; {
		case equalHeaderName(rest, "for"), equalHeaderName(rest, "proto"),
			equalHeaderName(rest, "host"), equalHeaderName(rest, "port"):
			return managed
		case equalHeaderName(rest, "ssl"), equalHeaderName(rest, "scheme"),
			equalHeaderName(rest, "protocol"), equalHeaderName(rest, "proto-version"):
			return contradicting
		default:
			return passable
		}
	}
	if len(k) < len(contradictingNames) {
		for _, name := range contradictingNames[len(k)] {
			if equalHeaderName(k, name) {
				return contradicting
			}
		}
	}
	if equalHeaderName(k, "forwarded") {
		return managed
	}
	return notForwarding
}

// classifier sorts header names for one handler: the forwarding family,
// and the handler's client_header names, which are removed like the
// family's single-value client headers whatever they are.
type classifier struct {
	clientHeaders []string // lowercase, with "-" for "_"
}

func newClassifier(clientHeaders []string) classifier {
	c := classifier{}
	for _, n := range clientHeaders {
		// As equalHeaderName compares: lower case, "_" as "-".
		c.clientHeaders = append(c.clientHeaders, strings.ReplaceAll(strings.ToLower(n), "_", "-"))
	}
	return c
}

func (c classifier) class(k string) headerClass {
	if cl := classifyHeader(k); cl != notForwarding || len(c.clientHeaders) == 0 {
		return cl
	}
	for _, n := range c.clientHeaders {
		if equalHeaderName(k, n) {
			return contradicting
		}
	}
	return notForwarding
}

// equalHeaderName reports whether k equals the lowercase, hyphenated name,
// ignoring case and taking "_" for "-".
func equalHeaderName(k, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// removeForwardingHeaders deletes every header of the forwarding family
// from h, whatever its spelling (trap: stripping only some lets the rest
// through). From a trusted peer, the passable members spelled with hyphens
// stay.
//
// The canonical spellings of the managed headers are left for writeHeaders,
// which sets or deletes each of them: deleting a map key only to assign it
// again was a tenth of the handler's time. It returns which of them are
// there, and whether a Connection header is, so that nothing looks for or
// deletes a header that is not there (a map deletion hashes the key even
// when a small map's look-up need not).
func (c classifier) removeForwardingHeaders(h http.Header, trustedPeer bool) headerSet {
	var present headerSet
	for k := range h {
		switch c.class(k) {
		case notForwarding:
			if k == "Connection" {
				present |= hasConnection
			}
			continue
		case managed:
			if i := canonicalManagedIndex(k); i >= 0 {
				present |= 1 << i
				continue
			}
		case passable:
			if trustedPeer && strings.IndexByte(k, '_') < 0 {
				continue
			}
		}
		delete(h, k)
	}
	return present
}

// headerSet records which canonical managed headers (bit i for
// canonicalManaged[i]) and whether Connection are in a request.
type headerSet uint8

const (
	hasXForwardedFor headerSet = 1 << iota
	hasXForwardedProto
	hasXForwardedHost
	hasXForwardedPort
	hasForwarded
	hasConnection
)

// removeForwardingConnectionTokens drops forwarding header names from the
// Connection header. A hop removes the headers that Connection names (RFC
// 9110 section 7.6.1; reverse_proxy does, before it adds its own
// X-Forwarded-*), so a client sending "Connection: X-Forwarded-For" could
// otherwise make the next hop delete the chain written here.
func (c classifier) removeForwardingConnectionTokens(h http.Header) {
	values := h["Connection"]
	if len(values) == 0 || !c.connectionNamesForwarding(values) {
		return
	}
	kept := make([]string, 0, len(values))
	for _, v := range values {
		var b strings.Builder
		for tok := range strings.SplitSeq(v, ",") {
			tok = trimOWS(tok)
			if tok == "" || c.class(tok) != notForwarding {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(tok)
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = kept
}

// connectionNamesForwarding reports whether any token of the Connection
// field lines is a forwarding header, without allocating.
func (c classifier) connectionNamesForwarding(values []string) bool {
	for _, v := range values {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if c.class(trimOWS(tok)) != notForwarding {
				return true
			}
		}
	}
	return false
}

// canonicalManaged are the managed headers as Go's header map keys them,
// in the order of headerSet's bits; writeHeaders always sets or deletes
// every one of them.
var canonicalManaged = [...]string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "Forwarded"}

// canonicalManagedIndex is k's index in canonicalManaged, or -1.
func canonicalManagedIndex(k string) int {
	for i, name := range canonicalManaged {
		if k == name {
			return i
		}
	}
	return -1
}

// removeForwardingTrailers drops trailer fields named like forwarding
// headers: a chunked body's trailer is merged into the request's Trailer
// map, which reverse_proxy passes on, and some servers and frameworks
// merge trailers into the headers an application reads.
func (c classifier) removeForwardingTrailers(t http.Header) {
	for k := range t {
		if c.class(k) != notForwarding {
			delete(t, k)
		}
	}
}

// trailerSanitizingBody removes forwarding trailers once the body has
// been read to its end, when net/http has filled in the trailer and
// before reverse_proxy copies it for the upstream.
type trailerSanitizingBody struct {
	io.ReadCloser
	trailer http.Header
	names   classifier
}

func (b trailerSanitizingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.names.removeForwardingTrailers(b.trailer)
	}
	return n, err
}
