// Package upstreamtls is caddy-lb's `transport reencrypt`
// (http.reverse_proxy.transport.reencrypt): TLS from the load balancer to its
// backends, verified by default against Caddy's internal CA or pinned keys,
// with an automatic client certificate for mutual TLS, and the `caddy lb-cert`
// command that issues backend certificates from the same CA.
//
// It plugs into Caddy's reverse_proxy as a transport that embeds Caddy's HTTP
// transport, so every `transport http` option keeps working.
//
// See docs/upstream-tls.md.
package upstreamtls
