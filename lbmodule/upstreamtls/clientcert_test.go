package upstreamtls

import (
	"context"
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"go.uber.org/zap"
)

func newTestClientCert(ca *testCA, lifetime time.Duration, now *time.Time) *clientCert {
	return &clientCert{
		issuer:   func() ([]*x509.Certificate, crypto.Signer) { return []*x509.Certificate{ca.inter}, ca.interKey },
		lifetime: lifetime,
		logger:   zap.NewNop(),
		now:      func() time.Time { return *now },
	}
}

func TestClientCertIsVerifiableAndScheduled(t *testing.T) {
	ca := newTestCA(t, "internal")
	now := time.Now()
	c := newTestClientCert(ca, 3*time.Hour, &now)
	if err := c.renew(); err != nil {
		t.Fatal(err)
	}
	cur := c.current.Load()
	leaf := cur.tls.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         poolOf(ca.root),
		Intermediates: poolOf(ca.inter),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("client certificate does not verify as a client of the CA: %v", err)
	}
	if len(cur.tls.Certificate) != 2 {
		t.Errorf("chain has %d certificates, want leaf and intermediate", len(cur.tls.Certificate))
	}
	// NotAfter has whole seconds, hence the tolerance.
	if want := now.Add(2 * time.Hour); cur.renewAt.Sub(want).Abs() > time.Second {
		t.Errorf("renew at %s, want %s (a third of 3h left)", cur.renewAt, want)
	}
}

// The intermediate expires in 12h: a 24h certificate is cut to 12h, and
// renewal is planned from what it got.
func TestClientCertNeverOutlivesItsIssuer(t *testing.T) {
	ca := newTestCA(t, "internal")
	now := time.Now()
	c := newTestClientCert(ca, 24*time.Hour, &now)
	if err := c.renew(); err != nil {
		t.Fatal(err)
	}
	cur := c.current.Load()
	if !cur.tls.Leaf.NotAfter.Equal(ca.inter.NotAfter) {
		t.Errorf("NotAfter %s, want the intermediate's %s", cur.tls.Leaf.NotAfter, ca.inter.NotAfter)
	}
	if !cur.renewAt.Before(ca.inter.NotAfter.Add(-3 * time.Hour)) {
		t.Errorf("renew at %s is too close to the expiry %s", cur.renewAt, ca.inter.NotAfter)
	}
}

func TestGetClientCertificateReplacesAnExpiredOne(t *testing.T) {
	ca := newTestCA(t, "internal")
	now := time.Now()
	c := newTestClientCert(ca, time.Minute, &now)
	if err := c.renew(); err != nil {
		t.Fatal(err)
	}
	first := c.current.Load().tls.Leaf.SerialNumber
	got, _ := c.getClientCertificate(nil)
	if got.Leaf.SerialNumber.Cmp(first) != 0 {
		t.Fatal("a valid certificate was replaced")
	}
	now = now.Add(2 * time.Minute)
	got, err := c.getClientCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Leaf.SerialNumber.Cmp(first) == 0 {
		t.Fatal("an expired certificate was presented")
	}
}

func TestMaintainRenewsAndStopsWithTheContext(t *testing.T) {
	ca := newTestCA(t, "internal")
	c := newTestClientCert(ca, minClientCertLifetime, new(time.Time))
	c.now = time.Now
	if err := c.renew(); err != nil {
		t.Fatal(err)
	}
	first := c.current.Load()
	c.current.Store(&issuedCert{tls: first.tls, renewAt: time.Now()}) // due now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.maintain(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for c.current.Load().tls.Leaf.SerialNumber.Cmp(first.tls.Leaf.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the certificate due for renewal was not renewed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("maintain did not end with its context")
	}
}

func TestRetryDelay(t *testing.T) {
	for lifetime, want := range map[time.Duration]time.Duration{
		10 * time.Second: time.Second,
		60 * time.Second: 2 * time.Second,
		24 * time.Hour:   time.Minute,
	} {
		if got := retryDelay(lifetime); got != want {
			t.Errorf("retryDelay(%s) = %s, want %s", lifetime, got, want)
		}
	}
}
