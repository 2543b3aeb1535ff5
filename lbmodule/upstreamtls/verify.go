package upstreamtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"sync/atomic"
)

// Reasons a connection to an upstream is refused: the reason label of
// caddylb_upstream_tls_handshake_failures_total and of the log line.
const (
	reasonNoCertificate    = "no_certificate"
	reasonUnknownAuthority = "unknown_authority"
	reasonNameMismatch     = "name_mismatch"
	reasonExpired          = "expired"
	reasonInvalid          = "invalid_certificate"
	reasonPinMismatch      = "pin_mismatch"
	reasonTimeout          = "timeout"
	reasonHandshake        = "handshake"
	// The upstream refused the client certificate (counted by reencrypt's
	// RoundTrip and dial, not by classifyHandshakeError).
	reasonClientCertRefused = "client_cert_refused"
)

// verifyError is a refused peer certificate with its reason.
type verifyError struct {
	reason string
	err    error
}

func (e *verifyError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// verifier decides whether an upstream's certificate chain is acceptable.
// It is built once per transport and used by every handshake.
type verifier struct {
	// internalRoot returns the internal CA's current root, nil if the
	// internal CA is not trusted. It is asked at every verification.
	internalRoot func() *x509.Certificate
	// pool holds the roots of tls_trust_pool, nil if none.
	pool *x509.CertPool
	// pins are the accepted public keys; empty means any.
	pins []spkiPin

	internalPool atomic.Pointer[rootPool]
}

// rootPool caches a pool of one root, rebuilt when the root changes.
type rootPool struct {
	root *x509.Certificate
	pool *x509.CertPool
}

// hasAnchor reports whether a chain must lead to some trusted root; with
// pins alone it need not (a self-signed backend).
func (v *verifier) hasAnchor() bool {
	return v.internalRoot != nil || v.pool != nil
}

// verify checks the peer's chain as the server presented it: leaf first.
// name is the DNS name or IP address the leaf must name.
func (v *verifier) verify(certs []*x509.Certificate, name string) error {
	if len(certs) == 0 {
		return &verifyError{reasonNoCertificate, errors.New("the upstream presented no certificate")}
	}
	leaf := certs[0]
	if len(v.pins) > 0 && !matchesAnyPin(leaf, v.pins) {
		return &verifyError{reasonPinMismatch, errors.New("public key " + PinOf(leaf) + " matches no pin_spki")}
	}
	if !v.hasAnchor() {
		if len(v.pins) == 0 { // never reached by a provisioned transport: refuse rather than trust all
			return &verifyError{reasonUnknownAuthority, errors.New("nothing is trusted: no CA and no pin_spki")}
		}
		return nil
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	opts := x509.VerifyOptions{
		DNSName:       name,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	var firstErr error
	for _, roots := range v.rootPools() {
		opts.Roots = roots
		_, err := leaf.Verify(opts)
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil { // trust_internal without a root: nothing verifies
		firstErr = x509.UnknownAuthorityError{Cert: leaf}
	}
	return &verifyError{classifyVerifyError(firstErr), firstErr}
}

// rootPools are the trusted root sets, internal CA first.
func (v *verifier) rootPools() []*x509.CertPool {
	pools := make([]*x509.CertPool, 0, 2)
	if v.internalRoot != nil {
		if p := v.currentInternalPool(); p != nil {
			pools = append(pools, p)
		}
	}
	if v.pool != nil {
		pools = append(pools, v.pool)
	}
	return pools
}

// currentInternalPool is a pool of the internal CA's root as it is now;
// the pool is rebuilt only when the root changes.
func (v *verifier) currentInternalPool() *x509.CertPool {
	root := v.internalRoot()
	if root == nil {
		return nil
	}
	if cached := v.internalPool.Load(); cached != nil && cached.root == root {
		return cached.pool
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	v.internalPool.Store(&rootPool{root: root, pool: pool})
	return pool
}

// classifyVerifyError names the reason an x509 verification failed.
func classifyVerifyError(err error) string {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return reasonUnknownAuthority
	case errors.As(err, &hostname):
		return reasonNameMismatch
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return reasonExpired
	case errors.As(err, &invalid):
		return reasonInvalid
	}
	return reasonHandshake
}

// classifyHandshakeError names the reason a TLS handshake failed: the
// verifier's reason when it refused the peer, else timeout or handshake.
func classifyHandshakeError(err error) string {
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.reason
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return reasonTimeout
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return classifyVerifyError(certErr.Err)
	}
	return reasonHandshake
}
