package upstreamtls

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddypki"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Reencrypt{})
}

// Reencrypt is a reverse_proxy transport that speaks TLS to every upstream
// and verifies it: against Caddy's internal CA, a trust pool or public-key
// pins, with an optional client certificate from the internal CA. It
// embeds Caddy's HTTP transport; all of its options apply.
type Reencrypt struct {
	reverseproxy.HTTPTransport

	// The ID of the pki app's CA whose root upstream certificates must
	// chain to, usually "local". The certificate must also name the
	// upstream (see verify_names). Default: "local" when neither
	// pin_spki nor tls_trust_pool is given.
	TrustInternal string `json:"trust_internal,omitempty"`

	// The ID of the pki app's CA that issues the client certificate
	// presented to upstreams that ask for one. Default: no client
	// certificate (or tls_client_auth's).
	ClientCertInternal string `json:"client_cert_internal,omitempty"`

	// How long each client certificate is valid. It is renewed, in
	// memory, when a third of this is left. Minimum 10s. Default: 24h.
	ClientCertLifetime caddy.Duration `json:"client_cert_lifetime,omitempty"`

	// Base64 SHA-256 hashes of the public keys (SubjectPublicKeyInfo)
	// that upstreams may present; several allow a rotation. Alone, a
	// matching key is accepted without a chain (self-signed backends);
	// with a trust anchor, both must hold.
	PinSPKI []string `json:"pin_spki,omitempty"`

	// The name to verify, and send as SNI, per upstream dial address
	// ("10.0.0.5:8443": "app1.internal"). Without an entry the
	// tls_server_name is used if set, else the upstream's host: its
	// DNS name, or its IP address, which must then be an IP SAN.
	VerifyNames map[string]string `json:"verify_names,omitempty"`

	verifier   *verifier
	clientCert *clientCert
	baseTLS    *tls.Config
	dialPlain  func(ctx context.Context, network, addr string) (net.Conn, error)
	logger     *zap.Logger
	clientCA   string // client_cert internal's CA id
	clientRoot string // its root's fingerprint
	refusals   *refusalLog
}

// CaddyModule returns the Caddy module information.
func (Reencrypt) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.reencrypt",
		New: func() caddy.Module { return new(Reencrypt) },
	}
}

// Provision builds the embedded HTTP transport, then takes over its TLS
// dial so that every connection is verified here.
func (r *Reencrypt) Provision(ctx caddy.Context) error {
	r.logger = ctx.Logger()
	r.refusals = new(refusalLog)
	if r.TLS == nil {
		r.TLS = new(reverseproxy.TLSConfig)
	}
	if r.ClientCertLifetime == 0 {
		r.ClientCertLifetime = caddy.Duration(defaultClientCertLifetime)
	}
	if err := r.refuseUnsafeOptions(); err != nil {
		return err
	}
	pins, err := parsePins(r.PinSPKI)
	if err != nil {
		return err
	}
	// Read before the embedded Provision: loading the pool clears CARaw.
	trustPool := r.hasTrustPool()
	if r.TrustInternal == "" && len(pins) == 0 && !trustPool {
		r.TrustInternal = caddypki.DefaultCAID
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	if err := r.HTTPTransport.Provision(ctx); err != nil {
		return err
	}
	r.verifier = &verifier{pins: pins}
	if trustPool {
		if cfg := r.Transport.TLSClientConfig; cfg != nil {
			r.verifier.pool = cfg.RootCAs
		}
		if r.verifier.pool == nil {
			return errors.New("tls_trust_pool gave no certificate pool")
		}
	}
	if err := r.provisionInternalCA(ctx); err != nil {
		return err
	}
	r.takeOverTLSDial()
	return nil
}

// hasTrustPool reports whether tls_trust_pool (or its deprecated forms)
// names trusted roots.
func (r *Reencrypt) hasTrustPool() bool {
	//lint:ignore SA1019 the deprecated forms still name roots the user trusts
	return r.TLS.CARaw != nil || len(r.TLS.RootCAPool) > 0 || len(r.TLS.RootCAPEMFiles) > 0
}

// refuseUnsafeOptions rejects every setting under which a request could
// reach an upstream unverified or in plain text.
func (r *Reencrypt) refuseUnsafeOptions() error {
	switch {
	case r.TLS.InsecureSkipVerify:
		return errors.New("reencrypt refuses tls_insecure_skip_verify: to accept a backend with a self-signed certificate, pin its key with pin_spki")
	case len(r.TLS.ExceptPorts) > 0:
		return fmt.Errorf("reencrypt refuses tls_except_ports %v: it never speaks plain HTTP", r.TLS.ExceptPorts)
	case slices.Contains(r.Versions, "h2c"):
		return errors.New("reencrypt refuses versions h2c: h2c is plain text")
	case slices.Contains(r.Versions, "3"):
		return errors.New("reencrypt does not support versions 3 (HTTP/3 to upstreams)")
	case len(r.NetworkProxyRaw) > 0 || r.ForwardProxyURL != "":
		return errors.New("reencrypt refuses network_proxy: each upstream's certificate is verified on a direct connection")
	case r.ClientCertInternal != "" && (r.TLS.ClientCertificateFile != "" || r.TLS.ClientCertificateAutomate != ""):
		return errors.New("reencrypt: client_cert internal and tls_client_auth both set a client certificate; keep one")
	case r.ClientCertLifetime < caddy.Duration(minClientCertLifetime):
		return fmt.Errorf("client_cert_lifetime %s: the minimum is %s", time.Duration(r.ClientCertLifetime), minClientCertLifetime)
	}
	for upstream, name := range r.VerifyNames {
		if name == "" {
			return fmt.Errorf("verify_names %q: empty name", upstream)
		}
	}
	return nil
}

// provisionInternalCA loads the pki app (it is added when the config has
// none) and wires the CAs named by trust_internal and client_cert.
func (r *Reencrypt) provisionInternalCA(ctx caddy.Context) error {
	if r.TrustInternal == "" && r.ClientCertInternal == "" {
		return nil
	}
	pkiApp, err := ctx.App("pki")
	if err != nil {
		return fmt.Errorf("loading pki app: %v", err)
	}
	pki := pkiApp.(*caddypki.PKI)
	if r.TrustInternal != "" {
		ca, err := pki.GetCA(ctx, r.TrustInternal)
		if err != nil {
			return fmt.Errorf("trust_internal %s: %v", r.TrustInternal, err)
		}
		r.verifier.internalRoot = ca.RootCertificate
		publishRoot(ctx, r.TrustInternal, ca.RootCertificate())
	}
	if r.ClientCertInternal != "" {
		ca, err := pki.GetCA(ctx, r.ClientCertInternal)
		if err != nil {
			return fmt.Errorf("client_cert internal %s: %v", r.ClientCertInternal, err)
		}
		r.clientRoot = rootFingerprint(ca.RootCertificate())
		r.clientCA = r.ClientCertInternal
		publishRoot(ctx, r.ClientCertInternal, ca.RootCertificate())
		r.clientCert = &clientCert{
			issuer: func() ([]*x509.Certificate, crypto.Signer) {
				return ca.IntermediateCertificateChain(), ca.IntermediateKey()
			},
			lifetime: time.Duration(r.ClientCertLifetime),
			logger:   r.logger,
			now:      time.Now,
		}
		if err := r.clientCert.renew(); err != nil {
			return fmt.Errorf("client_cert internal %s: %v", r.ClientCertInternal, err)
		}
		go r.clientCert.maintain(ctx)
	}
	return nil
}

// takeOverTLSDial replaces the TLS handshake of the embedded transport by
// dialTLS. The base TLS config keeps what Caddy built (ALPN, curves,
// tls_client_auth) but refuses every peer by itself: only dialTLS, which
// knows the upstream, installs a verification that can pass.
func (r *Reencrypt) takeOverTLSDial() {
	rt := r.Transport
	base := rt.TLSClientConfig
	if base == nil {
		base = new(tls.Config)
	}
	base.InsecureSkipVerify = true // verification is VerifyConnection's, below and per connection
	base.VerifyConnection = func(tls.ConnectionState) error {
		return errors.New("reencrypt: TLS outside its own dial refused")
	}
	if r.clientCert != nil {
		base.Certificates = nil
		base.GetClientCertificate = r.clientCert.getClientCertificate
	}
	rt.TLSClientConfig = base
	r.baseTLS = base
	r.dialPlain = rt.DialContext
	rt.Proxy = nil // upstreams are dialed directly, even with HTTPS_PROXY set
	rt.DialTLSContext = r.dialTLS
}

// RoundTrip sends req over TLS, whatever scheme it came with: reencrypt
// never sends plain HTTP.
func (r *Reencrypt) RoundTrip(req *http.Request) (*http.Response, error) {
	req.URL.Scheme = "https"
	resp, err := r.Transport.RoundTrip(req)
	if err != nil {
		// Under TLS 1.3 a server refuses a client certificate after the
		// handshake the client saw complete: the alert comes with the
		// first read, here.
		r.reportRefusal(req.Context(), req.URL.Host, err)
	}
	return resp, err
}

// EnableH2C refuses: h2c is plain text.
func (r *Reencrypt) EnableH2C() error {
	return errors.New("reencrypt refuses h2c upstreams: h2c is plain text")
}

// Cleanup closes idle connections; the client certificate's renewal ends
// with the config's context.
func (r *Reencrypt) Cleanup() error {
	return r.HTTPTransport.Cleanup()
}

// Interface guards
var (
	_ caddy.Provisioner                                = (*Reencrypt)(nil)
	_ caddy.CleanerUpper                               = (*Reencrypt)(nil)
	_ http.RoundTripper                                = (*Reencrypt)(nil)
	_ reverseproxy.TLSTransport                        = (*Reencrypt)(nil)
	_ reverseproxy.H2CTransport                        = (*Reencrypt)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*Reencrypt)(nil)
	_ caddyfile.Unmarshaler                            = (*Reencrypt)(nil)
)
