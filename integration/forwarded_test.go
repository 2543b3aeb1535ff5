package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// echoHeaders asks the demo backend, through node, which forwarding
// headers it received, sending the given request headers.
func echoHeaders(t *testing.T, url string, client *http.Client, send map[string][]string) (map[string]string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range send {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	got := map[string]string{}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return got, resp
}

// spoofed is what a hostile client sends straight to the edge.
var spoofed = map[string][]string{
	"X-Forwarded-For":    {"6.6.6.6"},
	"X-Forwarded-Proto":  {"https"},
	"X-Forwarded-Host":   {"evil.example"},
	"X-Forwarded-Port":   {"1234"},
	"X-Forwarded-Prefix": {"/evil"},
	"X-Forwarded-Scheme": {"https"},
	"X-Forwarded-Ssl":    {"on"},
	"X-Real-IP":          {"6.6.6.6"},
	"True-Client-IP":     {"6.6.6.6"},
	"Forwarded":          {"for=6.6.6.6;proto=https;host=evil.example"},
	"X_Forwarded_For":    {"6.6.6.6"},
	"Connection":         {"X-Forwarded-For, X-Forwarded-Proto"},
}

func TestForwardedAtTheEdgeStripsSpoofedHeaders(t *testing.T) {
	backends := harness.StartBackends(t, 1)
	node := harness.StartCaddyWith(t, `{
	{{.Global}}
}
:{{.HTTPPort}} {
	forwarded {
		emit x_forwarded forwarded
	}
	reverse_proxy {{.X.upstreams}} {
		header_down X-Client-IP {http.forwarded.client_ip}
	}
}
`, map[string]any{"upstreams": harness.Upstreams(backends)})

	got, resp := echoHeaders(t, node.URL("/headers"), http.DefaultClient, spoofed)
	port := strconv.Itoa(node.HTTPPort)
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "127.0.0.1:" + port,
		"X-Forwarded-Port":  port,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("backend got %s %q, want %q", k, got[k], v)
		}
	}
	fwd := got["Forwarded"]
	if !strings.Contains(fwd, "for=127.0.0.1") || !strings.Contains(fwd, "proto=http") || strings.Contains(fwd, "6.6.6.6") || strings.Contains(fwd, "evil") {
		t.Errorf("backend got Forwarded %q", fwd)
	}
	for name, v := range got {
		if strings.Contains(v, "6.6.6.6") || strings.Contains(v, "evil") || strings.Contains(v, "1234") {
			t.Errorf("spoofed %s %q reached the backend", name, v)
		}
		switch strings.ReplaceAll(strings.ToLower(name), "_", "-") {
		case "x-real-ip", "true-client-ip", "x-forwarded-prefix", "x-forwarded-scheme", "x-forwarded-ssl":
			t.Errorf("%s reached the backend: %q", name, v)
		}
		if strings.Contains(name, "_") {
			t.Errorf("underscore spelling %s reached the backend", name)
		}
	}
	if ip := resp.Header.Get("X-Client-IP"); ip != "127.0.0.1" {
		t.Errorf("{http.forwarded.client_ip} = %q, want 127.0.0.1", ip)
	}

	// The port is the one the client connected to, whatever its Host says.
	req, _ := http.NewRequest(http.MethodGet, node.URL("/headers"), nil)
	req.Host = "example.com:1"
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var echoed map[string]string
	_ = json.NewDecoder(hresp.Body).Decode(&echoed)
	hresp.Body.Close()
	if echoed["X-Forwarded-Port"] != port {
		t.Errorf("Host example.com:1 gave X-Forwarded-Port %q, want the listener's %s", echoed["X-Forwarded-Port"], port)
	}
}

func TestForwardedTrustedChainYieldsTheRealClient(t *testing.T) {
	backends := harness.StartBackends(t, 1)
	node := harness.StartCaddyWith(t, `{
	{{.Global}}
}
:{{.HTTPPort}} {
	forwarded {
		trusted_proxies 127.0.0.1/32 10.0.0.0/8
	}
	@client client_ip 203.0.113.7
	handle /matched {
		respond @client "client_ip matcher saw 203.0.113.7" 200
		respond "client_ip matcher saw {client_ip}" 403
	}
	reverse_proxy {{.X.upstreams}} {
		header_down X-Client-IP {http.forwarded.client_ip}
		header_down X-Client-Proto {http.forwarded.proto}
	}
}
`, map[string]any{"upstreams": harness.Upstreams(backends)})

	// A CDN (untrusted to us) and an internal proxy (trusted) are in front;
	// the left-most entry is whatever the client claimed.
	chain := map[string][]string{
		"X-Forwarded-For":   {"198.51.100.1, 203.0.113.7", "10.0.0.1"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"shop.example"},
		"X-Forwarded-Port":  {"8443"},
	}
	got, resp := echoHeaders(t, node.URL("/headers"), http.DefaultClient, chain)
	if ip := resp.Header.Get("X-Client-IP"); ip != "203.0.113.7" {
		t.Errorf("client_ip = %q, want 203.0.113.7 (the right-most untrusted hop)", ip)
	}
	if p := resp.Header.Get("X-Client-Proto"); p != "https" {
		t.Errorf("{http.forwarded.proto} = %q, want https", p)
	}
	want := map[string]string{
		// What lies left of the client is a claim nobody trusted vouches
		// for: it is dropped, so even an app that reads the left-most
		// entry gets the real client.
		"X-Forwarded-For":   "203.0.113.7, 10.0.0.1, 127.0.0.1",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "shop.example",
		"X-Forwarded-Port":  "8443",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("backend got %s %q, want %q", k, got[k], v)
		}
	}

	// Hostile input from the trusted side costs bounded time and is never
	// trusted: a thousand hops, garbage, a header past the handler's 8 KiB
	// limit (Caddy itself answers 431 past 16 KiB of headers).
	hops := make([]string, 1200)
	for i := range hops {
		hops[i] = "10.0.0." + strconv.Itoa(i%250+1)
	}
	for _, xff := range []string{strings.Join(hops, ", "), "garbage, [[::1]], 999.1.1.1:99999, _hidden, unknown", strings.Repeat("1", 12000)} {
		start := time.Now()
		got, resp := echoHeaders(t, node.URL("/headers"), http.DefaultClient, map[string][]string{"X-Forwarded-For": {xff}})
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("X-Forwarded-For of %d bytes took %v", len(xff), took)
		}
		if n := strings.Count(got["X-Forwarded-For"], ",") + 1; n > 66 {
			t.Errorf("X-Forwarded-For upstream has %d entries; the chain must be bounded", n)
		}
		if ip := resp.Header.Get("X-Client-IP"); strings.Contains(xff, "garbage") && ip != "127.0.0.1" && !strings.HasPrefix(ip, "_") && ip != "unknown" {
			t.Errorf("garbage chain gave client %q", ip)
		}
	}

	req, _ := http.NewRequest(http.MethodGet, node.URL("/matched"), nil)
	req.Header["X-Forwarded-For"] = chain["X-Forwarded-For"]
	mresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if mresp.StatusCode != http.StatusOK {
		t.Errorf("client_ip matcher: %d %s", mresp.StatusCode, body)
	}
}

// tlsClient trusts the root of the Caddy node's internal CA.
func tlsClient(t *testing.T, node *harness.Caddy) *http.Client {
	t.Helper()
	rootPath := filepath.Join(node.Dir, "storage", "pki", "authorities", "local", "root.crt")
	var pem []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if pem, err = os.ReadFile(rootPath); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no internal CA root at %s", rootPath)
	}
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// getTLS retries while `tls internal` issues the certificate (asynchronously).
func getTLS(t *testing.T, client *http.Client, url string) (*http.Response, string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp, string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const tlsEdge = `{
	{{.Global}}
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	forwarded
	reverse_proxy {{.X.upstreams}}
}
`

func TestRedirectBehindTLSTerminationKeepsSchemeAndPort(t *testing.T) {
	backends := harness.StartBackends(t, 1)
	node := harness.StartCaddyWith(t, tlsEdge, map[string]any{"upstreams": harness.Upstreams(backends)})
	client := tlsClient(t, node)
	base := "https://localhost:" + strconv.Itoa(node.HTTPSPort)
	resp, body := getTLS(t, client, base+"/redirect")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != base+"/whoami" {
		t.Fatalf("redirect behind TLS termination: %d Location %q (%s), want %s/whoami", resp.StatusCode, resp.Header.Get("Location"), body, base)
	}
}

// TestExpressBehindForwarded runs a real Express app with `trust proxy`
// behind caddy-lb terminating TLS on a non-default port.
func TestExpressBehindForwarded(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	appDir := filepath.Join(root, "integration", "express")
	if _, err := os.Stat(filepath.Join(appDir, "node_modules", "express")); err != nil {
		t.Fatalf("express is not installed in %s: run make deps (npm ci): %v", appDir, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run make deps")
	}
	port := testproc.FreePort(t)
	app := testproc.Start(t, testproc.Spec{
		Name: "express",
		Path: node,
		Args: []string{"app.js", strconv.Itoa(port), "loopback"},
		Dir:  appDir,
		Addr: "127.0.0.1:" + strconv.Itoa(port),
	})
	caddy := harness.StartCaddyWith(t, tlsEdge, map[string]any{"upstreams": app.Addr})
	client := tlsClient(t, caddy)
	base := "https://localhost:" + strconv.Itoa(caddy.HTTPSPort)

	// A hostile client claims another address and scheme: Express must
	// not believe it.
	req, _ := http.NewRequest(http.MethodGet, base+"/whoami", nil)
	for k, v := range spoofed {
		req.Header[k] = v
	}
	getTLS(t, client, base+"/whoami") // wait for the certificate
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var who struct {
		IP, Protocol, Host, ForwardedPort string
		Secure                            bool
	}
	if err := json.Unmarshal(body, &who); err != nil {
		t.Fatalf("express said %s: %v", body, err)
	}
	wantHost := "localhost:" + strconv.Itoa(caddy.HTTPSPort)
	if who.IP != "127.0.0.1" || who.Protocol != "https" || !who.Secure || who.Host != wantHost || who.ForwardedPort != strconv.Itoa(caddy.HTTPSPort) {
		t.Fatalf("express concluded %+v; want ip 127.0.0.1, https, host %s, port %d", who, wantHost, caddy.HTTPSPort)
	}
	resp, _ = getTLS(t, client, base+"/redirect")
	if loc := resp.Header.Get("Location"); loc != base+"/whoami" {
		t.Fatalf("express redirect to %q, want %s/whoami", loc, base)
	}
}
