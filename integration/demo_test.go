package integration

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// TestDemoConfigIsValid loads the `make run` config with the built
// binary (every module provisioned, nothing started), from an empty
// working directory, as on a fresh machine.
func TestDemoConfigIsValid(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(harness.CaddyBinary(t), "validate", "--config", filepath.Join(root, "integration", "demo", "Caddyfile"))
	cmd.Dir = t.TempDir()
	cmd.Env = append(cmd.Environ(), "UPLOAD_SIGNING_SECRET=demo-only-upload-secret-change-me", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("caddy validate of the demo Caddyfile: %v\n%s", err, out)
	}
}

// demoPorts are the fixed ports `make run` listens on. The demo test
// needs them free, so it cannot run beside a `make run` or another demo
// test; every other test in this suite uses free ports instead.
var demoPorts = []int{2019, 8080, 8081, 8443, 9001, 9002, 9003, 9441, 9442, 9443}

// demoStartTimeout bounds run.sh's start: it syncs assets, starts Caddy,
// issues the backend certificate, starts the backends and waits for
// Caddy's health checks, each step bounded by run.sh itself at 30 s.
const demoStartTimeout = 90 * time.Second

// demoLine is one capability line of run.sh's start message:
// "  [label]  ... <url> ...".
var demoLine = regexp.MustCompile(`^\s*\[([a-z_-]+)\]\s+(.*)$`)

var demoURL = regexp.MustCompile(`https?://\S+`)

// TestDemoRun starts the demo as `make run` does (run.sh with CADDY and
// BACKEND set to the built binaries), from an empty working directory so
// that its ./var is the test's, reads the URLs its start message prints,
// and checks that each shows the capability it is printed for. Every
// capability run.sh prints must have a check here, and every check must
// find its line, so the message and the demo cannot drift apart.
func TestDemoRun(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("run.sh needs bash")
	}
	for _, port := range demoPorts {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("the demo's port %d is taken (a `make run` still running?): %v", port, err)
		}
		ln.Close()
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	proc := testproc.Start(t, testproc.Spec{
		Name: "run.sh",
		Path: filepath.Join(root, "integration", "demo", "run.sh"),
		Env: []string{
			"CADDY=" + harness.CaddyBinary(t),
			"BACKEND=" + harness.BackendBinary(t),
			"HOME=" + filepath.Join(dir, "home"),
		},
		Dir:          dir,
		Addr:         "127.0.0.1:8443",
		Ready:        func() error { return demoUpstreamsHealthy(6) },
		ReadyTimeout: demoStartTimeout,
	})

	// run.sh prints its message right after the same health check.
	var lines map[string][]string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if log := proc.Log(); strings.Contains(log, "Ctrl-C stops everything.") {
			lines = parseDemoMessage(log)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run.sh printed no start message within 10 s of being ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The HTTPS site's certificate is verified against the demo's own
	// local CA, the root in its storage: nothing skips verification.
	rootPEM, err := os.ReadFile(filepath.Join(dir, "var", "caddy", "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatalf("the demo's CA root: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("the demo's root.crt holds no certificate")
	}
	d := &demoChecks{dir: dir, root: root, log: proc.Log, transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	defer d.transport.CloseIdleConnections()

	checks := []struct {
		label string
		urls  int
		check func(t *testing.T, urls []string)
	}{
		{"https", 1, d.https},
		{"forwarded", 1, d.forwarded},
		{"sticky", 1, d.sticky},
		{"reencrypt", 1, d.reencrypt},
		{"app-cookie", 2, d.appCookie},
		{"lb-cookie", 1, d.lbCookie},
		{"upload", 1, d.upload},
		{"asset_serve", 1, d.assetServe},
		{"asset_url", 1, d.assetURL},
		{"presign", 1, d.presign},
		{"logs", 1, d.logs},
		{"lb-logs", 0, d.lbLogs},
		{"dashboard", 1, d.dashboard},
		{"admin", 1, d.admin},
	}
	known := map[string]bool{}
	for _, c := range checks {
		known[c.label] = true
		t.Run(c.label, func(t *testing.T) {
			urls := lines[c.label]
			if len(urls) != c.urls {
				t.Fatalf("the start message has %d URLs for [%s] (%q), want %d", len(urls), c.label, urls, c.urls)
			}
			c.check(t, urls)
		})
	}
	for label := range lines {
		if !known[label] {
			t.Errorf("the start message prints [%s], which this test does not check", label)
		}
	}

	// Ctrl-C: run.sh traps the signal and stops its children; once it has
	// exited, nothing listens on the demo's ports any more.
	proc.Stop()
	for _, port := range demoPorts {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if testproc.DialTCP(addr) == nil {
			t.Errorf("%s still accepts connections after run.sh stopped", addr)
		}
	}
}

// parseDemoMessage maps each [label] of the start message to the URLs on
// its lines, in order.
func parseDemoMessage(log string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(log, "\n") {
		m := demoLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		out[m[1]] = append(out[m[1]], demoURL.FindAllString(m[2], -1)...)
	}
	return out
}

// demoUpstreamsHealthy answers nil once the admin API lists n upstreams,
// all healthy: what run.sh waits for before it prints its message.
func demoUpstreamsHealthy(n int) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://localhost:2019/lb/upstreams")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ups []struct {
		Address string `json:"address"`
		Healthy bool   `json:"healthy"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ups); err != nil {
		return fmt.Errorf("GET /lb/upstreams: %v", err)
	}
	if len(ups) != n {
		return fmt.Errorf("GET /lb/upstreams: %d upstreams, want %d", len(ups), n)
	}
	for _, u := range ups {
		if !u.Healthy {
			return fmt.Errorf("upstream %s is not healthy yet", u.Address)
		}
	}
	return nil
}

// demoChecks holds what the per-capability checks share: the demo's
// working directory, the module root and a transport that trusts the
// demo's CA.
type demoChecks struct {
	dir, root string
	transport *http.Transport
	log       func() string // what run.sh printed

	// uploaded is the key and content of the upload check's file, which
	// the asset_serve check fetches back.
	uploadedKey  string
	uploadedBody string
}

// client is a new user: its own cookie jar, no redirects followed.
func (d *demoChecks) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Transport:     d.transport,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// demoDo sends req and returns the response with its body read.
func demoDo(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// demoGet is demoDo for a GET of url.
func demoGet(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return demoDo(t, c, req)
}

// whoamiBackend fetches a /whoami URL and returns the backend that
// answered and whether it holds the caller's PHPSESSID session.
func whoamiBackend(t *testing.T, c *http.Client, url string) (backend string, known bool) {
	t.Helper()
	resp, body := demoGet(t, c, url)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	var who struct {
		Backend string `json:"backend"`
		Known   bool   `json:"known"`
	}
	if err := json.Unmarshal([]byte(body), &who); err != nil {
		t.Fatalf("GET %s: %v in %q", url, err, body)
	}
	return who.Backend, who.Known
}

// https: the site answers over TLS with a certificate for localhost from
// the demo's local CA (the client verifies it against that root).
func (d *demoChecks) https(t *testing.T, urls []string) {
	if !strings.HasPrefix(urls[0], "https://localhost:8443") {
		t.Fatalf("the HTTPS URL is %s, want https://localhost:8443...", urls[0])
	}
	resp, body := demoGet(t, d.client(), urls[0])
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET %s: %s (TLS %v): %s", urls[0], resp.Status, resp.TLS != nil, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if !slices.Contains(leaf.DNSNames, "localhost") || !strings.Contains(leaf.Issuer.CommonName, "Caddy Local Authority") {
		t.Fatalf("the certificate names %v and is issued by %q; want localhost from Caddy's local CA", leaf.DNSNames, leaf.Issuer.CommonName)
	}
}

// forwarded: the backend was told the client's real address, scheme, host
// and port, and none of the forwarding headers the client made up.
func (d *demoChecks) forwarded(t *testing.T, urls []string) {
	req, err := http.NewRequest(http.MethodGet, urls[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Real-IP", "6.6.6.6")
	req.Header.Set("Forwarded", "for=6.6.6.6;proto=http")
	req.Header.Set("X-Forwarded-Port", "1")
	var clientIP string
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			clientIP, _, _ = net.SplitHostPort(info.Conn.LocalAddr().String())
		},
	}))
	resp, body := demoDo(t, d.client(), req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", urls[0], resp.Status, body)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET %s: %v in %q", urls[0], err, body)
	}
	want := map[string]string{
		"X-Forwarded-For":   clientIP,
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "localhost:8443",
		"X-Forwarded-Port":  "8443",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("the backend was told %s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if strings.Contains(body, "6.6.6.6") || got["X-Real-Ip"] != "" || got["Forwarded"] != "" {
		t.Errorf("a forwarding header the client made up reached the backend: %v", got)
	}
}

// sticky: a user with a cookie jar stays on one backend, and the LB
// cookie is what keeps it there: new users are spread over the backends.
func (d *demoChecks) sticky(t *testing.T, urls []string) {
	c := d.client()
	first, _ := whoamiBackend(t, c, urls[0])
	for range 10 {
		if b, _ := whoamiBackend(t, c, urls[0]); b != first {
			t.Fatalf("a user with the LB cookie moved from %s to %s", first, b)
		}
	}
	u, _ := neturl.Parse(urls[0])
	if !slices.ContainsFunc(c.Jar.Cookies(u), func(ck *http.Cookie) bool { return ck.Name == "lb_affinity_tls" }) {
		t.Errorf("no lb_affinity_tls cookie in the jar: %v", c.Jar.Cookies(u))
	}
	seen := map[string]bool{}
	for range 15 {
		b, _ := whoamiBackend(t, d.client(), urls[0])
		seen[b] = true
	}
	if len(seen) < 2 {
		t.Errorf("15 new users all landed on %v; stickiness would be trivial", seen)
	}
}

// reencrypt: the backend behind :8443 was reached over TLS and saw the
// client certificate caddy-lb presents (CN=caddy-lb from the local CA).
func (d *demoChecks) reencrypt(t *testing.T, urls []string) {
	resp, body := demoGet(t, d.client(), urls[0])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", urls[0], resp.Status, body)
	}
	var got struct {
		TLS               bool   `json:"tls"`
		Version           string `json:"version"`
		ClientCertSubject string `json:"client_cert_subject"`
		ClientCertIssuer  string `json:"client_cert_issuer"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET %s: %v in %q", urls[0], err, body)
	}
	if !got.TLS || !strings.HasPrefix(got.Version, "TLS 1.") || got.ClientCertSubject != "CN=caddy-lb" ||
		!strings.Contains(got.ClientCertIssuer, "Caddy Local Authority") {
		t.Fatalf("the backend saw %+v; want TLS with caddy-lb's client certificate from the local CA", got)
	}
	// The certificate the backends serve is the one `caddy lb-cert` wrote.
	if _, err := tls.LoadX509KeyPair(filepath.Join(d.dir, "var", "backend-tls", "chain.pem"), filepath.Join(d.dir, "var", "backend-tls", "key.pem")); err != nil {
		t.Errorf("lb-cert's output in ./var/backend-tls: %v", err)
	}
}

// appCookie: after /login, /whoami reaches the backend that issued the
// PHPSESSID session ("known": true), every time.
func (d *demoChecks) appCookie(t *testing.T, urls []string) {
	login, whoami := urls[0], urls[1]
	if !strings.HasSuffix(login, "/login") || !strings.HasSuffix(whoami, "/whoami") {
		t.Fatalf("[app-cookie] URLs are %q, want .../login then .../whoami", urls)
	}
	c := d.client()
	resp, body := demoGet(t, c, login)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", login, resp.Status, body)
	}
	issuer := resp.Header.Get("X-Backend")
	for range 5 {
		b, known := whoamiBackend(t, c, whoami)
		if b != issuer || !known {
			t.Fatalf("after logging in on %s, /whoami answered from %s with known=%v", issuer, b, known)
		}
	}
}

// lbCookie: :8081 keeps a user on one backend with its signed LB cookie.
func (d *demoChecks) lbCookie(t *testing.T, urls []string) {
	c := d.client()
	first, _ := whoamiBackend(t, c, urls[0])
	for range 5 {
		if b, _ := whoamiBackend(t, c, urls[0]); b != first {
			t.Fatalf("a user with the LB cookie moved from %s to %s", first, b)
		}
	}
	u, _ := neturl.Parse(urls[0])
	if !slices.ContainsFunc(c.Jar.Cookies(u), func(ck *http.Cookie) bool { return ck.Name == "lb_affinity" }) {
		t.Errorf("no lb_affinity cookie in the jar: %v", c.Jar.Cookies(u))
	}
}

// upload: the file is stored under ./var/assets and the backend gets a
// reference it verifies, never the bytes.
func (d *demoChecks) upload(t *testing.T, urls []string) {
	content := "hello from the demo test\n"
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("photo", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte(content))
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, urls[0], &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, body := demoDo(t, d.client(), req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", urls[0], resp.Status, body)
	}
	var got struct {
		Files []struct {
			Field    string            `json:"field"`
			Verified bool              `json:"verified"`
			Values   map[string]string `json:"values"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("POST %s: %v in %q", urls[0], err, body)
	}
	if len(got.Files) != 1 || !got.Files[0].Verified || got.Files[0].Field != "photo" {
		t.Fatalf("the backend got %s; want one verified reference for photo", body)
	}
	key := got.Files[0].Values["key"]
	stored, err := os.ReadFile(filepath.Join(d.dir, "var", "assets", filepath.FromSlash(key)))
	if err != nil || string(stored) != content {
		t.Fatalf("./var/assets/%s: %q, %v; want the uploaded bytes", key, stored, err)
	}
	d.uploadedKey, d.uploadedBody = key, content
}

// assetServe: the uploaded file is served back from the store.
func (d *demoChecks) assetServe(t *testing.T, urls []string) {
	if d.uploadedKey == "" {
		t.Skip("the upload check stored nothing to serve")
	}
	if !strings.Contains(urls[0], "<key>") {
		t.Fatalf("the asset_serve URL %s has no <key> to fill in", urls[0])
	}
	url := strings.Replace(urls[0], "<key>", d.uploadedKey, 1)
	resp, body := demoGet(t, d.client(), url)
	if resp.StatusCode != http.StatusOK || body != d.uploadedBody {
		t.Fatalf("GET %s: %s: %q; want the uploaded file", url, resp.Status, body)
	}
}

// assetURL: the template page names the fingerprinted files that
// `caddy assets sync` uploaded, and those URLs serve them.
func (d *demoChecks) assetURL(t *testing.T, urls []string) {
	c := d.client()
	resp, body := demoGet(t, c, urls[0])
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET %s: %s %s: %s", urls[0], resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if strings.Contains(body, "{{") {
		t.Fatalf("the page was not rendered as a template:\n%s", body)
	}
	css := regexp.MustCompile(`href="(/media/static/style\.[0-9a-f]{12}\.css)"`).FindStringSubmatch(body)
	if css == nil {
		t.Fatalf("the page names no fingerprinted style sheet from asset_url:\n%s", body)
	}
	base, _ := neturl.Parse(urls[0])
	ref, _ := base.Parse(css[1])
	resp, got := demoGet(t, c, ref.String())
	want, err := os.ReadFile(filepath.Join(d.root, "integration", "demo", "static", "style.css"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || got != string(want) {
		t.Fatalf("GET %s: %s: %q; want integration/demo/static/style.css", ref, resp.Status, got)
	}
}

// presign: with the demo's file store, asset_presign answers 501 and says
// that presigned uploads need S3, as the start message says.
func (d *demoChecks) presign(t *testing.T, urls []string) {
	req, err := http.NewRequest(http.MethodPost, urls[0], strings.NewReader(`{"filename":"cat.png","content_type":"image/png","size":1000}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, body := demoDo(t, d.client(), req)
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(body, "cannot presign") {
		t.Fatalf("POST %s: %s: %s; want 501 saying a file store cannot presign", urls[0], resp.Status, body)
	}
}

// lbLogs runs the lb-logs command the message prints, from the demo's
// directory: within a roll interval or two it prints the :8080 access
// log's /login request and the backends' start lines that ship_logs
// shipped, in time order, as text.
func (d *demoChecks) lbLogs(t *testing.T, _ []string) {
	var command string
	for _, line := range strings.Split(d.log(), "\n") {
		if m := demoLine.FindStringSubmatch(line); m != nil && m[1] == "lb-logs" {
			command, _, _ = strings.Cut(m[2], "   ")
		}
	}
	args := strings.Fields(command)
	if len(args) < 3 || args[1] != "lb-logs" {
		t.Fatalf("the [lb-logs] line holds no lb-logs command: %q", command)
	}
	deadline := time.Now().Add(30 * time.Second) // roll_interval is 10 s
	for {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = d.dir
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", command, err, stderr.String())
		}
		text := string(out)
		backendLine := regexp.MustCompile(`(?m)^\S+Z \S+ \S*var/backends/b1\.log: .*msg=listening`)
		login := strings.Index(text, " localhost:8080/login")
		if login >= 0 && backendLine.MatchString(text) {
			if start := backendLine.FindStringIndex(text)[0]; start > login {
				t.Fatalf("the backend's start line comes after the /login request: not in time order:\n%s", text)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no /login request and no backend start line after 30 s:\n%s", command, text)
		}
		time.Sleep(time.Second)
	}
}

// logs: within a roll interval or two, a gzipped access log of :8080
// appears under ./var/logs/demo, holds the requests made above, and the
// printed URL lists and serves it.
func (d *demoChecks) logs(t *testing.T, urls []string) {
	logDir := filepath.Join(d.dir, "var", "logs", "demo")
	var shipped []string
	deadline := time.Now().Add(30 * time.Second) // roll_interval is 10 s
	for {
		shipped = nil
		filepath.WalkDir(logDir, func(path string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && strings.HasSuffix(path, ".log.gz") {
				shipped = append(shipped, path)
			}
			return nil
		})
		if len(shipped) > 0 && demoLogsHold(shipped, `"uri":"/login"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no shipped log under ./var/logs/demo holds the /login request after 30 s (files: %v)", shipped)
		}
		time.Sleep(500 * time.Millisecond)
	}
	rel, err := filepath.Rel(logDir, shipped[0])
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	c := d.client()
	resp, body := demoGet(t, c, urls[0])
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, host+"/") {
		t.Fatalf("GET %s: %s; want a listing naming %s/:\n%s", urls[0], resp.Status, host, body)
	}
	resp, body = demoGet(t, c, strings.TrimSuffix(urls[0], "/")+"/"+filepath.ToSlash(rel))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the shipped file %s through %s: %s", rel, urls[0], resp.Status)
	}
	if zr, err := gzip.NewReader(strings.NewReader(body)); err != nil {
		t.Fatalf("the shipped file served is not gzip: %v", err)
	} else if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatalf("the shipped file served is not gzip: %v", err)
	}
}

// demoLogsHold reports whether any of the gzipped log files contains s.
func demoLogsHold(files []string, s string) bool {
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		text, _ := io.ReadAll(zr)
		if strings.Contains(string(text), s) {
			return true
		}
	}
	return false
}

// admin: the admin API lists all six upstreams, healthy.
// dashboard: the page, and its data with the actions on and a row for
// each of the demo's six upstreams (three over HTTP, three over HTTPS).
func (d *demoChecks) dashboard(t *testing.T, urls []string) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: d.transport}
	resp, body := harness.Get(t, c, urls[0])
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<title>caddy-lb status</title>") {
		t.Fatalf("GET %s: %s\n%.300s", urls[0], resp.Status, body)
	}
	resp, body = harness.Get(t, c, urls[0]+"data")
	var v struct {
		Actions   bool `json:"actions"`
		Upstreams []struct {
			Address string `json:"address"`
			Healthy bool   `json:"healthy"`
		} `json:"upstreams"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("GET %sdata: %s\n%.300s", urls[0], resp.Status, body)
	}
	if !v.Actions || len(v.Upstreams) != 6 {
		t.Fatalf("the demo's dashboard: actions=%v, %d upstreams, want actions and 6", v.Actions, len(v.Upstreams))
	}
}

func (d *demoChecks) admin(t *testing.T, urls []string) {
	if !strings.HasSuffix(urls[0], "/lb/upstreams") {
		t.Fatalf("the admin URL is %s, want .../lb/upstreams", urls[0])
	}
	if err := demoUpstreamsHealthy(6); err != nil {
		t.Fatal(err)
	}
}
