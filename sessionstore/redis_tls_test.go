package sessionstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/internal/testproc"
)

// writeTestPKI writes a CA and a server certificate for redis.test and
// 127.0.0.1 signed by it, and returns the paths of the CA certificate, the
// server certificate and its key.
func writeTestPKI(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "caddylb test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"redis.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.crt", "CERTIFICATE", caDER), write("srv.crt", "CERTIFICATE", srvDER), write("srv.key", "EC PRIVATE KEY", keyDER)
}

// TestRedisTLS talks to a redis-server that serves TLS only: verified
// against the configured CA and server name it works; with the system
// roots, or under a name the certificate does not carry, it must not.
func TestRedisTLS(t *testing.T) {
	caFile, certFile, keyFile := writeTestPKI(t)
	srv := testproc.StartRedisTLS(t, certFile, keyFile)
	ctx := context.Background()

	good := NewStore("tls", newTestRedis(t, srv.Addr, func(r *RedisBackend) {
		r.TLS = &RedisTLS{CAFile: caFile, ServerName: "redis.test"}
	}), nil)
	b := bindingFor("10.0.0.1:80", time.Minute)
	if err := good.Put(ctx, "k", b); err != nil {
		t.Fatalf("Put over verified TLS: %v", err)
	}
	if got, err := good.Get(ctx, "k"); err != nil || !sameBinding(got, b) {
		t.Fatalf("Get over verified TLS: %+v, %v", got, err)
	}

	for name, tlsCfg := range map[string]*RedisTLS{
		"system roots": {ServerName: "redis.test"},
		"wrong name":   {CAFile: caFile, ServerName: "other.test"},
	} {
		t.Run(name, func(t *testing.T) {
			be := &RedisBackend{Addresses: []string{srv.Addr}, TLS: tlsCfg}
			ctx2, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if err := be.Provision(ctx2); err != nil {
				return // refused at load: fine, nothing was trusted
			}
			defer func() { _ = be.Cleanup() }()
			if err := NewStore("tls", be, nil).Put(ctx, "k2", b); err == nil {
				t.Fatal("Put succeeded against a certificate that must not verify")
			}
		})
	}
}

// TestRedisSentinelTLS runs the Sentinel deployment over TLS only: the
// client reaches the Sentinels and the primary they name with TLS,
// verified against the private CA, and a Sentinel with an untrusted
// certificate is refused.
func TestRedisSentinelTLS(t *testing.T) {
	caFile, certFile, keyFile := writeTestPKI(t)
	files := testproc.TLSFiles{Cert: certFile, Key: keyFile, CA: caFile}
	primary := testproc.StartRedisTLSPrimary(t, files)
	testproc.StartRedisTLSReplica(t, files, primary.Addr)
	sentinels := testproc.StartSentinelsTLS(t, 3, "tlsmaster", primary.Addr, files)
	be := newTestRedis(t, "", func(r *RedisBackend) {
		r.Addresses = sentinels.Addrs
		r.Sentinel = "tlsmaster"
		r.KeyPrefix = "stls:"
		r.TLS = &RedisTLS{CAFile: caFile}
	})
	waitFor(t, 10*time.Second, "connected through TLS Sentinels", func() bool { return be.Mode() == redisSentinel })
	ctx := context.Background()
	if err := be.Put(ctx, "k", bindingFor("10.0.0.1:80", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, err := be.Get(ctx, "k"); err != nil || b.Upstream != "10.0.0.1:80" {
		t.Fatalf("Get over TLS: %+v %v", b, err)
	}

	// Without the private CA the certificates do not verify: nothing connects.
	untrusted := newTestRedis(t, "", func(r *RedisBackend) {
		r.Addresses = sentinels.Addrs
		r.Sentinel = "tlsmaster"
		r.KeyPrefix = "stls2:"
		r.TLS = &RedisTLS{}
	})
	time.Sleep(2 * refillCheckInterval)
	if untrusted.Mode() != "" {
		t.Fatal("connected to Sentinels whose certificate the system roots do not trust")
	}
}
