package upstreamtls

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

// BenchmarkHandshake is the cost of one new connection's TLS 1.3
// handshake, both ends in process over net.Pipe, server certificate
// from an intermediate: reencrypt's own verification (internal root
// fetched per handshake) against crypto/tls's (what `transport http`
// with tls_trust_pool does), and with a pin alone.
func BenchmarkHandshake(b *testing.B) {
	ca := newTestCA(b, "bench")
	leaf, key := ca.serverLeaf(b, time.Now(), time.Hour)
	serverCfg := &tls.Config{Certificates: []tls.Certificate{{
		Certificate: [][]byte{leaf.Raw, ca.inter.Raw}, PrivateKey: key, Leaf: leaf,
	}}}
	pin, _ := parsePin(PinOf(leaf))
	reencrypt := func(v *verifier) *tls.Config {
		return &tls.Config{
			ServerName:         "127.0.0.1",
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				return v.verify(cs.PeerCertificates, "127.0.0.1")
			},
		}
	}
	cases := []struct {
		name string
		cfg  *tls.Config
	}{
		{"transport_http_trust_pool", &tls.Config{ServerName: "127.0.0.1", RootCAs: poolOf(ca.root)}},
		{"reencrypt_trust_internal", reencrypt(&verifier{internalRoot: func() *x509.Certificate { return ca.root }})},
		{"reencrypt_pin_only", reencrypt(&verifier{pins: []spkiPin{pin}})},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				handshakeOnce(b, c.cfg, serverCfg)
			}
		})
	}
}

func handshakeOnce(b *testing.B, clientCfg, serverCfg *tls.Config) {
	cc, sc := net.Pipe()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sc, serverCfg)
		done <- s.Handshake()
		sc.Close() // not s.Close: its close_notify would block on the pipe
	}()
	c := tls.Client(cc, clientCfg)
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	cc.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkVerify is reencrypt's verification alone, per new connection.
func BenchmarkVerify(b *testing.B) {
	ca := newTestCA(b, "bench")
	leaf, _ := ca.serverLeaf(b, time.Now(), time.Hour)
	v := &verifier{internalRoot: func() *x509.Certificate { return ca.root }}
	chain := []*x509.Certificate{leaf, ca.inter}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.verify(chain, "127.0.0.1"); err != nil {
			b.Fatal(err)
		}
	}
}
