package upstreamtls

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// tlsH1OnlyVarKey is reverse_proxy's request variable (hosts.go) that asks
// for HTTP/1.1 over TLS, set for protocol upgrades such as WebSocket.
const tlsH1OnlyVarKey = "reverse_proxy.tls_h1_only"

// dialTLS is the transport's DialTLSContext: it dials through Caddy's own
// dialer (dial timeout, PROXY protocol, local address, keep-alive), then
// completes a handshake verified for this upstream. A failure is logged
// with the upstream and reason, counted, and returned, which gives 502.
func (r *Reencrypt) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	upstream, host := upstreamOf(ctx, addr)
	conn, err := r.dialPlain(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	name := r.verifyName(ctx, upstream, host)
	cfg := r.baseTLS.Clone()
	cfg.ServerName = name // crypto/tls sends no SNI for an IP address
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return r.verifier.verify(cs.PeerCertificates, name)
	}
	if caddyhttp.GetVar(ctx, tlsH1OnlyVarKey) == true {
		cfg.NextProtos = nil
	}
	tlsConn := tls.Client(conn, cfg)
	if timeout := r.Transport.TLSHandshakeTimeout; timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		_ = tlsConn.Close()
		if r.reportRefusal(ctx, upstream, err) { // counted and logged there
			return nil, fmt.Errorf("TLS to upstream %s: %s: %w", upstream, refusalMarker, err)
		}
		reason := classifyHandshakeError(err)
		handshakeFailures.WithLabelValues(upstream, reason).Inc()
		r.logger.Error("upstream TLS handshake failed",
			zap.String("upstream", upstream),
			zap.String("server_name", name),
			zap.String("reason", reason),
			zap.Error(err))
		return nil, fmt.Errorf("TLS to upstream %s (verifying %s): %s: %w", upstream, name, reason, err)
	}
	return tlsConn, nil
}

// upstreamOf is the upstream's dial address and host as reverse_proxy
// chose them; addr (the request URL's host) when it did not say.
func upstreamOf(ctx context.Context, addr string) (upstream, host string) {
	if info, ok := reverseproxy.GetDialInfo(ctx); ok && info.Address != "" {
		return info.Address, info.Host
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return addr, host
}

// verifyName is the name the upstream's certificate must carry, also sent
// as SNI: the upstream's verify_names entry, else tls_server_name (with
// placeholders), else the upstream's host.
func (r *Reencrypt) verifyName(ctx context.Context, upstream, host string) string {
	if name, ok := r.VerifyNames[upstream]; ok {
		return name
	}
	if r.TLS.ServerName != "" {
		if repl, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			return repl.ReplaceAll(r.TLS.ServerName, "")
		}
		return r.TLS.ServerName
	}
	return host
}
