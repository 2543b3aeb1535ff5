// Package upstreamtls is caddy-lb's `transport reencrypt`
// (http.reverse_proxy.transport.reencrypt): TLS from the load balancer to
// its backends that is verified by default, with an automatic client
// certificate for mutual TLS, and the `caddy lb-cert` command that issues
// backend certificates from the same internal CA.
//
// It plugs into Caddy's reverse_proxy as a transport. It embeds Caddy's
// HTTP transport, so every `transport http` option keeps working, and
// replaces only the TLS dial: each connection to an upstream is verified
// here, not by crypto/tls, so that a refusal can name the upstream and the
// reason (unknown_authority, name_mismatch, expired, pin_mismatch, ...) in
// the log and in the metric caddylb_upstream_tls_handshake_failures_total.
//
// # What is trusted
//
//   - trust_internal [<ca>]: the root of a CA of Caddy's pki app (default
//     `local`), read at every verification, so the CA's intermediate
//     renewing (every few days) never breaks a backend. The chain must lead
//     to that root and the certificate must name the upstream: its DNS name,
//     or its IP address when the upstream is addressed by IP.
//   - tls_trust_pool <source>: any of Caddy's CA pool sources, for example
//     `system` for backends with public certificates.
//   - pin_spki <pin>...: the SHA-256 of the certificate's public key. Alone,
//     a matching key is enough (a self-signed backend); beside a trust
//     anchor, both must hold.
//
// With none of them, trust_internal local is assumed: reencrypt is for
// your own backends, and `caddy lb-cert` gives them certificates from that
// CA. Public roots are never trusted implicitly, because a public
// certificate for some name says nothing about a backend addressed by IP
// on a private network.
//
// Failure is closed: the request gets a 502. Nothing here ever falls back
// to plain HTTP: `http://` upstreams, h2c, except_ports and
// tls_insecure_skip_verify are refused at load time, and every request is
// sent as https.
//
// # Client certificate
//
// client_cert internal [<ca>] issues an ECDSA P-256 certificate (extended
// key usage clientAuth) from the CA's intermediate, keeps it in memory and
// renews it when a third of its lifetime (client_cert_lifetime, default
// 24h) remains, without a reload. Backends that require client
// certificates trust the CA's root (ca.pem from `caddy lb-cert`) and
// accept the load balancer alone.
package upstreamtls
