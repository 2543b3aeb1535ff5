package testproc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// StartNginxTLS starts nginx (Debian's) as a backend that terminates TLS
// itself with a self-signed certificate for name, and reads PROXY
// protocol (v1 or v2) on its listener: it answers every request with
// "backend=<name> client=<PROXY source address>:<port> peer=<TCP peer>"
// and the header X-Backend: <name>.
func StartNginxTLS(t testing.TB, name string) *Proc {
	t.Helper()
	p, _ := StartNginxTLSCert(t, name)
	return p
}

// StartNginxTLSCert is StartNginxTLS that also answers the path of the
// backend's self-signed certificate (PEM), for a client to trust.
func StartNginxTLSCert(t testing.TB, name string) (*Proc, string) {
	t.Helper()
	bin := lookPath(t, "nginx")
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir, name)
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s ssl proxy_protocol;
		ssl_certificate %[3]s;
		ssl_certificate_key %[4]s;
		keepalive_requests 100000;
		location / {
			add_header X-Backend %[5]s always;
			return 200 "backend=%[5]s client=$proxy_protocol_addr:$proxy_protocol_port peer=$remote_addr\n";
		}
	}
}
`, dir, addr, cert, key, name)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return Start(t, Spec{
		Name: "nginx-" + name,
		Path: bin,
		Args: []string{"-p", dir, "-c", confPath, "-e", "stderr"},
		Addr: addr,
	}), cert
}

// writeSelfSigned writes a self-signed ECDSA certificate for name (and
// 127.0.0.1) and its key into dir.
func writeSelfSigned(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
