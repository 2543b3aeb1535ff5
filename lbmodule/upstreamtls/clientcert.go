package upstreamtls

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Bounds of client_cert_lifetime. The floor keeps renewal (at a third
// of the lifetime left) well clear of handshake and clock jitter.
const (
	defaultClientCertLifetime = 24 * time.Hour
	minClientCertLifetime     = 10 * time.Second
)

// clientCommonName is the subject of the load balancer's client
// certificate; backends that check more than the CA can match it.
const clientCommonName = "caddy-lb"

// issuingCA gives the current issuing chain (intermediate first) and key.
// Caddy's pki app renews its intermediate, so it is asked at each issue.
type issuingCA func() ([]*x509.Certificate, crypto.Signer)

// clientCert holds the load balancer's client certificate in memory and
// renews it before it expires, so backends that require mutual TLS keep
// accepting the load balancer without a reload.
type clientCert struct {
	issuer   issuingCA
	lifetime time.Duration
	logger   *zap.Logger
	now      func() time.Time

	current atomic.Pointer[issuedCert]
	renewMu sync.Mutex // one renewal at a time
}

// issuedCert is a certificate with the time to replace it.
type issuedCert struct {
	tls     tls.Certificate
	renewAt time.Time
}

// renew issues a new certificate and makes it current.
func (c *clientCert) renew() error {
	c.renewMu.Lock()
	defer c.renewMu.Unlock()
	chain, key := c.issuer()
	if len(chain) == 0 {
		return fmt.Errorf("client certificate: the CA has no intermediate")
	}
	now := c.now()
	leaf, leafKey, err := issueLeaf(leafRequest{
		commonName: clientCommonName,
		usage:      x509.ExtKeyUsageClientAuth,
		lifetime:   c.lifetime,
	}, chain[0], key, now)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	der := [][]byte{leaf.Raw}
	for _, ca := range chain {
		der = append(der, ca.Raw)
	}
	// Renew when a third of the lifetime it actually got is left (the
	// issuer's expiry may have cut it short).
	renewAt := now.Add(leaf.NotAfter.Sub(now) * 2 / 3)
	c.current.Store(&issuedCert{
		tls:     tls.Certificate{Certificate: der, PrivateKey: leafKey, Leaf: leaf},
		renewAt: renewAt,
	})
	c.logger.Info("issued upstream client certificate",
		zap.String("serial", leaf.SerialNumber.Text(16)),
		zap.Time("expires", leaf.NotAfter),
		zap.Time("renew_at", renewAt))
	return nil
}

// getClientCertificate is tls.Config.GetClientCertificate. Should the
// background renewal have fallen behind (a suspended host, a failing
// CA), an expired certificate is replaced here before it is presented.
func (c *clientCert) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cur := c.current.Load()
	if cur == nil || !c.now().Before(cur.tls.Leaf.NotAfter) {
		if err := c.renew(); err != nil {
			return nil, err
		}
		cur = c.current.Load()
	}
	return &cur.tls, nil
}

// maintain renews the certificate on schedule until ctx ends (the config
// is unloaded). A failed renewal is retried soon, well before expiry.
func (c *clientCert) maintain(ctx context.Context) {
	for {
		wait := time.Until(c.current.Load().renewAt)
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if err := c.renew(); err != nil {
			c.logger.Error("renewing upstream client certificate", zap.Error(err))
			if !sleepCtx(ctx, retryDelay(c.lifetime)) {
				return
			}
		}
	}
}

// retryDelay is the pause after a failed renewal: a thirtieth of the
// lifetime, between one second and one minute.
func retryDelay(lifetime time.Duration) time.Duration {
	return min(max(lifetime/30, time.Second), time.Minute)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
