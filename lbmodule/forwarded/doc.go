// Package forwarded is caddy-lb's `forwarded` HTTP handler
// (http.handlers.forwarded): it decides who the client really is when
// requests pass through proxies or a CDN, removes forwarding headers nobody
// trusted vouches for, and sends the upstream one consistent set of
// X-Forwarded-* and RFC 7239 Forwarded headers.
//
// It plugs into Caddy as the first handler of a route: it sets Caddy's
// client_ip variable (so client_ip matchers, client_ip_hash, access logs and
// the sticky policy see the real client) and the {http.forwarded.*}
// placeholders.
//
// See docs/forwarded.md.
package forwarded
