package upstreamtls

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestVerifyClassifiesReasons(t *testing.T) {
	ca := newTestCA(t, "internal")
	other := newTestCA(t, "other")
	now := time.Now()
	good, _ := ca.serverLeaf(t, now, time.Hour)
	expired, _ := ca.serverLeaf(t, now.Add(-3*time.Hour), time.Hour)
	foreign, _ := other.serverLeaf(t, now, time.Hour)
	self, _ := selfSigned(t, "self", false, now.Add(-time.Hour), now.Add(time.Hour))
	internal := func() *x509.Certificate { return ca.root }
	selfPin, _ := parsePin(PinOf(self))
	goodPin, _ := parsePin(PinOf(good))

	tests := []struct {
		name   string
		v      *verifier
		chain  []*x509.Certificate
		host   string
		reason string // "" means accepted
	}{
		{"internal CA, IP SAN", &verifier{internalRoot: internal}, []*x509.Certificate{good, ca.inter}, "127.0.0.1", ""},
		{"internal CA, DNS SAN", &verifier{internalRoot: internal}, []*x509.Certificate{good, ca.inter}, "app.test", ""},
		{"intermediate missing", &verifier{internalRoot: internal}, []*x509.Certificate{good}, "app.test", reasonUnknownAuthority},
		{"another CA", &verifier{internalRoot: internal}, []*x509.Certificate{foreign, other.inter}, "127.0.0.1", reasonUnknownAuthority},
		{"wrong IP", &verifier{internalRoot: internal}, []*x509.Certificate{good, ca.inter}, "10.0.0.5", reasonNameMismatch},
		{"wrong name", &verifier{internalRoot: internal}, []*x509.Certificate{good, ca.inter}, "db.test", reasonNameMismatch},
		{"expired", &verifier{internalRoot: internal}, []*x509.Certificate{expired, ca.inter}, "127.0.0.1", reasonExpired},
		{"self-signed, not pinned", &verifier{internalRoot: internal}, []*x509.Certificate{self}, "127.0.0.1", reasonUnknownAuthority},
		{"self-signed, pinned", &verifier{pins: []spkiPin{goodPin, selfPin}}, []*x509.Certificate{self}, "anything", ""},
		{"pin mismatch", &verifier{pins: []spkiPin{goodPin}}, []*x509.Certificate{self}, "127.0.0.1", reasonPinMismatch},
		{"pin and CA both hold", &verifier{internalRoot: internal, pins: []spkiPin{goodPin}}, []*x509.Certificate{good, ca.inter}, "127.0.0.1", ""},
		{"pin holds, CA does not", &verifier{internalRoot: internal, pins: []spkiPin{selfPin}}, []*x509.Certificate{self}, "127.0.0.1", reasonUnknownAuthority},
		{"trust pool", &verifier{pool: poolOf(other.root)}, []*x509.Certificate{foreign, other.inter}, "127.0.0.1", ""},
		{"internal or pool", &verifier{internalRoot: internal, pool: poolOf(other.root)}, []*x509.Certificate{foreign, other.inter}, "127.0.0.1", ""},
		{"internal CA without a root yet", &verifier{internalRoot: func() *x509.Certificate { return nil }}, []*x509.Certificate{good, ca.inter}, "127.0.0.1", reasonUnknownAuthority},
		{"nothing trusted", &verifier{}, []*x509.Certificate{self}, "127.0.0.1", reasonUnknownAuthority},
		{"no certificate", &verifier{internalRoot: internal}, nil, "127.0.0.1", reasonNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.verify(tt.chain, tt.host)
			if got := reasonOf(err); got != tt.reason {
				t.Fatalf("verify: reason %q (%v), want %q", got, err, tt.reason)
			}
		})
	}
}

func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	return classifyHandshakeError(err)
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

// The root is asked for at every verification: a leaf from a new CA is
// accepted once the CA has it, with the intermediate the peer sends.
func TestVerifyFollowsTheCurrentRoot(t *testing.T) {
	first, second := newTestCA(t, "first"), newTestCA(t, "second")
	current := first.root
	v := &verifier{internalRoot: func() *x509.Certificate { return current }}
	leaf, _ := second.serverLeaf(t, time.Now(), time.Hour)
	if err := v.verify([]*x509.Certificate{leaf, second.inter}, "127.0.0.1"); reasonOf(err) != reasonUnknownAuthority {
		t.Fatalf("leaf of another root: %v, want unknown_authority", err)
	}
	current = second.root
	if err := v.verify([]*x509.Certificate{leaf, second.inter}, "127.0.0.1"); err != nil {
		t.Fatalf("after the root changed: %v", err)
	}
}

func TestClassifyHandshakeError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("wrapped: %w", &verifyError{reasonPinMismatch, errors.New("x")}), reasonPinMismatch},
		{context.DeadlineExceeded, reasonTimeout},
		{os.ErrDeadlineExceeded, reasonTimeout},
		{errors.New("remote error: tls: handshake failure"), reasonHandshake},
	}
	for _, tt := range tests {
		if got := classifyHandshakeError(tt.err); got != tt.want {
			t.Errorf("classifyHandshakeError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
