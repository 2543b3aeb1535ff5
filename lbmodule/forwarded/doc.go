// Package forwarded is caddy-lb's `forwarded` HTTP handler
// (http.handlers.forwarded): it decides who the client really is when
// requests pass through proxies or a CDN, removes forwarding headers that
// nobody trusted vouches for, and sends the upstream one consistent set of
// X-Forwarded-For/-Proto/-Host/-Port and RFC 7239 Forwarded headers.
//
// It plugs into Caddy in three places. It sets Caddy's client_ip variable,
// so the client_ip matcher, client_ip_hash, access logs and the sticky
// policy's client-IP key see the real client. It publishes the
// placeholders {http.forwarded.client_ip}, {http.forwarded.client_port},
// {http.forwarded.proto}, {http.forwarded.host} and {http.forwarded.port}.
// And it prepares the headers so that what reverse_proxy finally sends is
// exactly the chain computed here (see emit.go).
//
// The client is found by walking the chain right to left, nearest hop
// first: the TCP peer, then X-Forwarded-For or Forwarded entries from the
// right. Hops are skipped while they are trusted; the first untrusted hop
// is the client. Nothing is trusted unless configured.
//
// The header parsers (ParseXForwardedFor, ParseForwarded) are pure
// functions with hard limits on header size and hop count, so that hostile
// input costs bounded time and never panics.
package forwarded
