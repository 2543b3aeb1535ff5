package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// lbCert runs `caddy lb-cert` against node's storage and returns the
// output directory holding key.pem, cert.pem, chain.pem and ca.pem.
func lbCert(t *testing.T, node *harness.Caddy, sans ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tls")
	args := []string{"lb-cert", "--storage-dir", filepath.Join(node.Dir, "storage"), "--out", out}
	for _, san := range sans {
		args = append(args, "--san", san)
	}
	cmd := exec.Command(harness.CaddyBinary(t), args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if outText, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, outText)
	}
	return out
}

// tlsBackend serves HTTPS on addr with cfg, answering 200 with the
// subject and serial of the client certificate, if any. With
// closeEach, every response closes its connection, so each request
// makes a new handshake (and shows the client certificate of now).
func tlsBackend(t *testing.T, addr string, cfg *tls.Config, closeEach bool) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("backend listen %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if closeEach {
			w.Header().Set("Connection", "close")
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			c := r.TLS.PeerCertificates[0]
			w.Header().Set("X-Client-CN", c.Subject.CommonName)
			w.Header().Set("X-Client-Serial", c.SerialNumber.Text(16))
		}
		w.Header().Set("X-Backend-Proto", r.Proto)
		fmt.Fprintf(w, "tls backend %s", addr)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = cfg
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
}

func loadPair(t *testing.T, dir string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatalf("lb-cert output is not a key pair: %v", err)
	}
	return pair
}

func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	pemData, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("ca.pem holds no certificate")
	}
	return pool
}

// selfSignedPair is a self-signed server certificate for 127.0.0.1 valid
// from notBefore to notAfter, and its pin.
func selfSignedPair(t *testing.T, notBefore, notAfter time.Time) (tls.Certificate, *x509.Certificate, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "self-signed backend"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, cert, base64.StdEncoding.EncodeToString(sum[:])
}

func writePEM(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func getStatus(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// logHas reports whether one line of node's log has every part.
func logHas(node *harness.Caddy, parts ...string) bool {
	for _, line := range strings.Split(node.Log(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

const reencryptCaddyfile = `{
	{{.Global}}
}
:{{.HTTPPort}} {
	handle /internal {
		reverse_proxy {{.X.internal}} {
			transport reencrypt
		}
	}
	handle /named {
		reverse_proxy {{.X.internal}} {
			transport reencrypt {
				trust_internal
				verify_name {{.X.internal}} app.internal
			}
		}
	}
	handle /mismatch {
		reverse_proxy {{.X.internal}} {
			transport reencrypt {
				verify_name {{.X.internal}} db.internal
			}
		}
	}
	handle /unknown {
		reverse_proxy {{.X.unknown}} {
			transport reencrypt
		}
	}
	handle /expired {
		reverse_proxy {{.X.expired}} {
			transport reencrypt {
				tls_trust_pool file {{.X.expiredCA}}
			}
		}
	}
	handle /pinned {
		reverse_proxy {{.X.pinned}} {
			transport reencrypt {
				pin_spki {{.X.otherPin}} {{.X.pin}}
			}
		}
	}
	handle /wrongpin {
		reverse_proxy {{.X.pinned}} {
			transport reencrypt {
				pin_spki {{.X.otherPin}}
			}
		}
	}
	handle /mtls {
		reverse_proxy {{.X.mtls}} {
			transport reencrypt {
				trust_internal
				client_cert internal
			}
		}
	}
	handle /mtls-without {
		reverse_proxy {{.X.mtls}} {
			transport reencrypt
		}
	}
}
`

// TestReencryptVerifiesBackends runs one caddy-lb in front of real Go TLS
// backends: certificates from `caddy lb-cert` verify (by IP SAN or a
// verify_name), and each way a backend can be wrong gives 502, a log line
// naming the upstream and the reason, and a count on /metrics.
func TestReencryptVerifiesBackends(t *testing.T) {
	now := time.Now()
	selfPair, _, pin := selfSignedPair(t, now.Add(-time.Hour), now.Add(time.Hour))
	_, _, otherPin := selfSignedPair(t, now.Add(-time.Hour), now.Add(time.Hour))
	expiredPair, expiredCert, _ := selfSignedPair(t, now.Add(-2*time.Hour), now.Add(-time.Hour))
	addr := map[string]any{}
	for _, name := range []string{"internal", "unknown", "expired", "pinned", "mtls"} {
		addr[name] = testproc.FreeAddr(t)
	}
	addr["pin"], addr["otherPin"], addr["expiredCA"] = pin, otherPin, writePEM(t, expiredCert)
	node := harness.StartCaddyWith(t, reencryptCaddyfile, addr)

	// The backends' certificates come from the CA caddy-lb just created.
	issued := lbCert(t, node, "127.0.0.1", "app.internal")
	tlsBackend(t, addr["internal"].(string), &tls.Config{Certificates: []tls.Certificate{loadPair(t, issued)}}, false)
	tlsBackend(t, addr["unknown"].(string), &tls.Config{Certificates: []tls.Certificate{selfPair}}, false)
	tlsBackend(t, addr["expired"].(string), &tls.Config{Certificates: []tls.Certificate{expiredPair}}, false)
	tlsBackend(t, addr["pinned"].(string), &tls.Config{Certificates: []tls.Certificate{selfPair}}, false)
	tlsBackend(t, addr["mtls"].(string), &tls.Config{
		Certificates: []tls.Certificate{loadPair(t, issued)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    caPool(t, issued),
	}, false)

	for _, path := range []string{"/internal", "/named", "/pinned", "/mtls"} {
		resp, body := getStatus(t, node.URL(path))
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "tls backend") {
			t.Errorf("GET %s: %d %q, want 200 from the TLS backend", path, resp.StatusCode, body)
		}
		if proto := resp.Header.Get("X-Backend-Proto"); proto != "HTTP/2.0" {
			t.Errorf("GET %s reached the backend over %s, want HTTP/2.0 (ALPN kept)", path, proto)
		}
		if path == "/mtls" && resp.Header.Get("X-Client-CN") != "caddy-lb" {
			t.Errorf("the mTLS backend saw client %q, want caddy-lb", resp.Header.Get("X-Client-CN"))
		}
	}

	refused := []struct{ path, upstream, reason string }{
		{"/mismatch", addr["internal"].(string), "name_mismatch"},
		{"/unknown", addr["unknown"].(string), "unknown_authority"},
		{"/expired", addr["expired"].(string), "expired"},
		{"/wrongpin", addr["pinned"].(string), "pin_mismatch"},
	}
	for _, r := range refused {
		resp, body := getStatus(t, node.URL(r.path))
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("GET %s: %d %q, want 502", r.path, resp.StatusCode, body)
		}
	}
	// Without its client certificate the mTLS backend refuses caddy-lb
	// (in TLS 1.3 after the handshake, so it is a 502 without a reason).
	if resp, body := getStatus(t, node.URL("/mtls-without")); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET /mtls-without: %d %q, want 502", resp.StatusCode, body)
	}

	metrics := adminJSON(t, node, http.MethodGet, "/metrics", "", http.StatusOK)
	for _, r := range refused {
		if !logHas(node, `"upstream TLS handshake failed"`, `"upstream":"`+r.upstream+`"`, `"reason":"`+r.reason+`"`) {
			t.Errorf("no log line naming upstream %s and reason %s", r.upstream, r.reason)
		}
		series := fmt.Sprintf(`caddylb_upstream_tls_handshake_failures_total{reason=%q,upstream=%q} 1`, r.reason, r.upstream)
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	if t.Failed() {
		t.Logf("caddy log:\n%s", node.Log())
	}
}

// TestReencryptRenewsClientCertificate: with a short client_cert_lifetime
// the backend that requires mutual TLS sees a new client certificate
// (another serial) within the lifetime, and no request fails meanwhile.
func TestReencryptRenewsClientCertificate(t *testing.T) {
	backend := testproc.FreeAddr(t)
	node := harness.StartCaddyWith(t, `{
	{{.Global}}
}
:{{.HTTPPort}} {
	reverse_proxy {{.X.backend}} {
		transport reencrypt {
			client_cert internal
			client_cert_lifetime 12s
		}
	}
}
`, map[string]any{"backend": backend})
	issued := lbCert(t, node, "127.0.0.1")
	tlsBackend(t, backend, &tls.Config{
		Certificates: []tls.Certificate{loadPair(t, issued)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    caPool(t, issued),
	}, true)

	serials := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second) // renewal is due after 8s
	for len(serials) < 2 && time.Now().Before(deadline) {
		resp, body := getStatus(t, node.URL("/"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /: %d %q while the client certificate renews", resp.StatusCode, body)
		}
		serials[resp.Header.Get("X-Client-Serial")] = true
		time.Sleep(250 * time.Millisecond)
	}
	if len(serials) < 2 {
		t.Fatalf("the backend saw only client certificate %v in 20s; a 12s certificate renews after 8s", serials)
	}
	if !logHas(node, `"issued upstream client certificate"`) {
		t.Error("no log line for the issued client certificate")
	}
}

// TestReencryptRefusesPlaintextConfig: configurations that could send
// plain or unverified traffic fail to load; the running config stays.
func TestReencryptRefusesPlaintextConfig(t *testing.T) {
	node := harness.StartCaddy(t, "{\n\t{{.Global}}\n}\n:{{.HTTPPort}} {\n\trespond ok\n}\n")
	tests := []struct{ name, transport, upstream, want string }{
		{"http upstream", "transport reencrypt", "http://127.0.0.1:9", "scheme is HTTP"},
		{"skip verify", "transport reencrypt {\n\t\t\ttls_insecure_skip_verify\n\t\t}", "127.0.0.1:9", "tls_insecure_skip_verify"},
		{"except ports", "transport reencrypt {\n\t\t\ttls_except_ports 9\n\t\t}", "127.0.0.1:9", "tls_except_ports"},
		{"h2c", "transport reencrypt", "h2c://127.0.0.1:9", "h2c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caddyfile := fmt.Sprintf("{\n\tadmin %s\n\thttp_port %d\n\tskip_install_trust\n}\n:%d {\n\treverse_proxy %s {\n\t\t%s\n\t}\n}\n",
				node.AdminAddr, node.HTTPPort, node.HTTPPort, tt.upstream, tt.transport)
			resp, err := http.Post(node.AdminURL("/load"), "text/caddyfile", strings.NewReader(caddyfile))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 || !strings.Contains(string(body), tt.want) {
				t.Fatalf("POST /load: %s %s, want a refusal containing %q", resp.Status, body, tt.want)
			}
		})
	}
	if resp, body := getStatus(t, node.URL("/")); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("after the refusals: %d %q, want the old config's ok", resp.StatusCode, body)
	}
}
