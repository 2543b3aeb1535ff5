// Package forwarded is caddy-lb's `forwarded` HTTP handler
// (http.handlers.forwarded): it decides who the client really is when
// requests pass through proxies or a CDN, removes forwarding headers that
// nobody trusted vouches for, and sends the upstream one consistent set of
// X-Forwarded-For/-Proto/-Host/-Port and RFC 7239 Forwarded headers.
//
// It plugs into Caddy in three places. It sets Caddy's client_ip variable,
// so the client_ip matcher, client_ip_hash, access logs and the sticky
// policy's client-IP key see the real client (r.RemoteAddr, and with it
// remote_ip and ip_hash, stays the TCP peer). It publishes the
// placeholders {http.forwarded.client_ip}, {http.forwarded.client_port},
// {http.forwarded.proto}, {http.forwarded.host} and {http.forwarded.port}.
// And it prepares the headers so that what reverse_proxy finally sends is
// exactly the chain computed here (emit.go explains how). The handler must
// run before reverse_proxy; Caddy's own server-level trusted_proxies are
// not needed beside it.
//
// # The rules
//
// Client: the chain is walked right to left, nearest hop first: the TCP
// peer, then X-Forwarded-For (or Forwarded) entries from the right. Hops
// are skipped while trusted; the first untrusted hop is the client. When
// all are trusted, the left-most is. An entry that is not an address
// ("unknown", an obfuscated name, garbage) is never trusted by address,
// so it stops the walk: the client is then unknown and Caddy's client_ip
// is empty, never a trusted hop's address. Nothing is trusted by default.
//
// Untrusted peer: every forwarding header, in every spelling (X_Forwarded_For
// reaches PHP as HTTP_X_FORWARDED_FOR), is removed and fresh values are
// set; Connection may not name them. Trusted peer: the accepted formats
// are read; X-Forwarded-Proto, -Host and -Port take their right-most value,
// and are sent as one value. Both formats accepted and disagreeing: the
// request is refused with 400; a field only one of them states is not
// believed (see Handler.Accept for why).
//
// X-Forwarded-Port: the port the client used. At the edge it is the port
// of the listener the client connected to (the Host header's port is the
// client's say), or failing that the Host header's or the scheme's. Behind a trusted proxy that forwards any of them: its
// X-Forwarded-Port, else the port in the host (forwarded, or the Host
// header it passed on), else the default port of the scheme.
//
// Sent upstream: X-Forwarded-For and Forwarded name the same hops, from the
// client to the peer, without ports; hops left of the client are dropped
// (they are the client's own claims). Forwarded's first element carries
// proto and host. A unix-socket peer is left out of both lists (it has no
// address), unless it is the client itself, which is then "unknown".
//
// # Setups
//
// At the edge, where clients connect directly and TLS ends here, nothing
// is trusted:
//
//	example.com {
//		forwarded
//		reverse_proxy app1:8080 app2:8080
//	}
//
// Behind a CDN or another load balancer, trust its ranges and perhaps the
// local network. An ip_sources plugin keeps a CDN's published list fresh
// (here the caddy-cloudflare-ip plugin's `cloudflare` source):
//
//	example.com {
//		forwarded {
//			trusted_proxies cloudflare
//			trusted_proxies private_ranges
//			emit x_forwarded forwarded
//		}
//		reverse_proxy app1:8080 app2:8080
//	}
//
// The applications behind then trust caddy-lb's address only: Laravel
// TrustProxies and Symfony trusted_proxies list it, Express sets
// `trust proxy` to it. chi's middleware.RealIP and gorilla's
// handlers.ProxyHeaders believe any sender, so they are safe only when the
// application is reachable through caddy-lb alone; they read the left-most
// X-Forwarded-For entry, which caddy-lb makes the client.
//
// The header parsers (ParseXForwardedFor, ParseForwarded) are pure
// functions with hard limits on header size (MaxHeaderBytes) and hops
// (MaxHops), so that hostile input costs bounded time and never panics.
package forwarded
