package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// Regression tests, through the built binary, for what issue 10 found
// when caddy-lb was attacked and run from outside.

// twoSitesOneLearns has one site that learns app sessions and one that
// forgot to.
const twoSitesOneLearns = `{
	admin off
	skip_install_trust
}
http://learns.test {
	sticky_learn
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
http://forgot.test {
	reverse_proxy 127.0.0.1:9002 {
		lb_policy sticky {
			app_cookie PHPSESSID
			namespace forgot
		}
	}
}
`

// TestValidateRefusesTheSiteWithoutStickyLearnEveryTime: `caddy validate`
// once accepted this config in 14-17 runs of 20, depending on which server
// Caddy provisioned first; the second site's users were then logged out
// right after logging in.
func TestValidateRefusesTheSiteWithoutStickyLearnEveryTime(t *testing.T) {
	bin := harness.CaddyBinary(t)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(twoSitesOneLearns), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		cmd := exec.Command(bin, "validate", "--config", path, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("run %d: caddy validate accepted a site with app_cookie and no sticky_learn", i+1)
		}
		if !strings.Contains(string(out), "in site forgot.test") || !strings.Contains(string(out), "sticky_learn") {
			t.Fatalf("run %d: the error does not name the site and the fix:\n%s", i+1, out)
		}
	}
}

// learnAroundHandle learns app sessions from a proxy inside a handle
// block: sticky_learn is ordered before handle, so a site-level line
// covers it (ordered after handle, it never ran for those requests).
const learnAroundHandle = `{
	{{.Global}}
}
:{{.HTTPPort}} {
	sticky_learn
	handle /static/* {
		respond "static"
	}
	handle {
		reverse_proxy {{.X.upstreams}} {
			lb_policy sticky {
				app_cookie PHPSESSID
			}
		}
	}
}
`

func TestSiteLevelStickyLearnCoversAProxyInAHandleBlock(t *testing.T) {
	backends := harness.StartBackends(t, 3)
	c := harness.StartCaddyWith(t, learnAroundHandle, map[string]any{"upstreams": harness.Upstreams(backends)})
	for id := range 6 {
		u := newUser("app", id)
		login := u.mustDo(t, c, "/login")
		if login.status != 200 || login.backend == "" {
			t.Fatalf("user %d: login: %d %q", id, login.status, login.body)
		}
		for range 4 {
			a := u.mustDo(t, c, "/whoami")
			if a.backend != login.backend || !a.known {
				t.Fatalf("user %d logged in on %s, then reached %s (known %v): the session was not learned", id, login.backend, a.backend, a.known)
			}
		}
	}
}

// rawExchange sends raw bytes to addr, as an attacker would, and reads
// the whole answer (the connection is closed by the request, or by the
// server after a refusal).
func rawExchange(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// offloadToPHP stores uploads in a file store and passes the rest to a
// real PHP application.
const offloadToPHP = `{
	{{.Global}}
	asset_store media file {{.X.root}}
}
:{{.HTTPPort}} {
	asset_offload /upload* {
		store media
		max_size 1KiB
		allow_types image/*
		sign_secret {{.X.secret}}
	}
	reverse_proxy {{.X.php}}
}
`

// phpView is what the PHP application parsed from a request.
type phpView struct {
	Method string
	Files  json.RawMessage
	Post   json.RawMessage // an object, or [] when empty (PHP's json_encode)
}

// TestUploadsCannotBypassOffloadToPHP sends uploads that PHP reads as
// multipart in spellings Go's mime package refuses, on every method, and
// with a second Content-Encoding line. PHP must never see a file (once it
// received an over-size shell.php of the wrong type, and the client's
// forged [signature] field); each is offloaded or refused with a message
// that names the problem.
func TestUploadsCannotBypassOffloadToPHP(t *testing.T) {
	php := testproc.StartPHP(t)
	c := harness.StartCaddyWith(t, offloadToPHP, map[string]any{
		"root": t.TempDir(), "php": php.Addr, "secret": uploadSecret,
	})
	const boundary = "XyZb0undary"
	body := "--" + boundary + "\r\n" +
		"Content-Disposition: form-data; name=\"avatar\"; filename=\"shell.php\"\r\n" +
		"Content-Type: image/png\r\n\r\n" +
		"<?php system($_GET['c']); ?>" + strings.Repeat("A", 2048) + "\r\n" +
		"--" + boundary + "\r\n" +
		"Content-Disposition: form-data; name=\"avatar[signature]\"\r\n\r\nforged\r\n" +
		"--" + boundary + "--\r\n"
	small := strings.Replace(body, strings.Repeat("A", 2048), "", 1)
	for _, tc := range []struct {
		name, method, headers, body string
		status                      int
		msg                         string
	}{
		{"comma, another type", "POST", "Content-Type: multipart/form-data, text/plain; boundary=" + boundary, body, 400, "does not parse"},
		{"no semicolon", "POST", "Content-Type: multipart/form-data boundary=" + boundary, body, 400, "does not parse"},
		{"comma semicolon", "POST", "Content-Type: multipart/form-data,; boundary=" + boundary, body, 400, "does not parse"},
		{"two Content-Type lines", "POST", "Content-Type: text/plain\r\nContent-Type: multipart/form-data; boundary=" + boundary, body, 400, "Content-Type lines"},
		{"identity then gzip", "POST", "Content-Type: multipart/form-data; boundary=" + boundary + "\r\nContent-Encoding: identity\r\nContent-Encoding: gzip", body, 415, "gzip"},
		{"over-size file", "POST", "Content-Type: multipart/form-data; boundary=" + boundary, strings.Replace(body, "<?php", "\x89PNG\r\n\x1a\n<?php", 1), 413, "larger than"},
		{"php code typed as an image", "POST", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
		{"DELETE with multipart", "DELETE", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
		{"OPTIONS with multipart", "OPTIONS", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
		{"lower-case post", "post", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.method + " /upload HTTP/1.1\r\nHost: app.test\r\n" + tc.headers +
				"\r\nContent-Length: " + strconv.Itoa(len(tc.body)) + "\r\nConnection: close\r\n\r\n" + tc.body
			resp := rawExchange(t, "127.0.0.1:"+strconv.Itoa(c.HTTPPort), raw)
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusOK {
				var v phpView
				_ = json.Unmarshal(got, &v)
				t.Fatalf("PHP received the request (files %s, post %s)", v.Files, v.Post)
			}
			if resp.StatusCode != tc.status || !strings.Contains(string(got), tc.msg) {
				t.Fatalf("%d %s; want %d naming %q", resp.StatusCode, got, tc.status, tc.msg)
			}
		})
	}

	// An allowed image on DELETE is offloaded: PHP gets no file, only
	// the signed reference, and never the forged signature.
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("\x07", 64)
	img := strings.Replace(small, "<?php system($_GET['c']); ?>", png, 1)
	for _, method := range []string{"POST", "DELETE"} {
		raw := method + " /upload HTTP/1.1\r\nHost: app.test\r\nContent-Type: multipart/form-data; boundary=" + boundary +
			"\r\nContent-Length: " + strconv.Itoa(len(img)) + "\r\nConnection: close\r\n\r\n" + img
		resp := rawExchange(t, "127.0.0.1:"+strconv.Itoa(c.HTTPPort), raw)
		got, _ := io.ReadAll(resp.Body)
		var v phpView
		if err := json.Unmarshal(got, &v); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, got)
		}
		if string(v.Files) != "[]" {
			t.Fatalf("%s: PHP received files %s", method, v.Files)
		}
		if method == "POST" { // PHP 8.2 parses a body into $_POST only for POST
			var post struct{ Avatar map[string]string }
			_ = json.Unmarshal(v.Post, &post)
			if post.Avatar["key"] == "" || post.Avatar["signature"] == "forged" {
				t.Fatalf("%s: PHP's $_POST %s: want the signed reference, not the forged one", method, v.Post)
			}
		}
	}
}

// slowUploadsCaddyfile offloads to versitygw with room for two part
// buffers, and a short grace so the test is quick.
const slowUploadsCaddyfile = `{
	{{.Global}}
	asset_store media s3 {
		bucket {{.X.bucket}}
		endpoint {{.X.endpoint}}
		region us-east-1
		access_key {{.X.access}}
		secret_key {env.TEST_S3_SECRET}
		path_style
		part_size 5MiB
		upload_memory 10MiB
	}
}
:{{.HTTPPort}} {
	asset_offload /upload {
		store media
		sign_secret {env.UPLOAD_SIGNING_SECRET}
		respond json
		min_rate 1KiB/s
		min_rate_grace 2s
	}
}
`

// trickle sends a 10 MiB upload's headers and 128 KiB, then a byte a
// second, and returns the status the server answered with (0 for none).
func trickle(t *testing.T, addr string) <-chan int {
	t.Helper()
	status := make(chan int, 1)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	const boundary = "trickle"
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n\x1a\n"
	req := "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Type: multipart/form-data; boundary=" + boundary +
		"\r\nContent-Length: " + strconv.Itoa(10<<20) + "\r\n\r\n" + head + strings.Repeat("\x07", 128<<10)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 30 { // bounded: at most 30 s
			time.Sleep(time.Second)
			if _, err := conn.Write([]byte{7}); err != nil {
				return
			}
		}
	}()
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(40 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	return status
}

// TestTricklingUploadsAreCutOffAndFreeTheirMemory: clients that send 128
// KiB and then a byte a second once held every part buffer for as long
// as they trickled, and every other upload waited 10 s and got 503. Now
// they are cut off with 408, their partial uploads aborted, and a normal
// upload started meanwhile gets the memory they held.
func TestTricklingUploadsAreCutOffAndFreeTheirMemory(t *testing.T) {
	s3 := testproc.StartVersityGW(t)
	t.Setenv("UPLOAD_SIGNING_SECRET", uploadSecret)
	t.Setenv("TEST_S3_SECRET", s3.SecretKey)
	st := &assetStack{s3: s3, bucket: s3.CreateBucket(t, "media"), client: s3.Client(t)}
	c := harness.StartCaddyWith(t, slowUploadsCaddyfile, map[string]any{
		"bucket": st.bucket, "endpoint": s3.Endpoint, "access": s3.AccessKey,
	})
	addr := "127.0.0.1:" + strconv.Itoa(c.HTTPPort)
	var slow []<-chan int
	for range 3 {
		slow = append(slow, trickle(t, addr))
	}
	time.Sleep(500 * time.Millisecond) // the tricklers hold the part buffers

	start := time.Now()
	body, ctype := multipartFile(t, "photo.png", pngLike(1<<20))
	resp, err := http.Post(c.URL("/upload"), ctype, body)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("a normal upload beside trickling ones: %d %s after %v", resp.StatusCode, answer, time.Since(start))
	}
	for i, ch := range slow {
		select {
		case code := <-ch:
			if code != http.StatusRequestTimeout {
				t.Errorf("trickling upload %d answered %d, want 408", i, code)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("trickling upload %d was not cut off within 30 s", i)
		}
	}
	if n := metric(t, c, `caddylb_asset_offload_requests_total{outcome="too_slow"}`); n != 3 {
		t.Errorf("too_slow counted %v times, want 3", n)
	}
	// Only the normal upload is left; nothing of the trickling ones.
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys, incomplete := st.objects(t), st.incompleteUploads(t)
		if len(keys) == 1 && incomplete == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket holds %v and %d multipart uploads; want the one normal upload", keys, incomplete)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// multipartFile is a one-file multipart body.
func multipartFile(t *testing.T, name string, content []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, err := mw.CreateFormFile("photo", name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(content)
	_ = mw.Close()
	return &buf, mw.FormDataContentType()
}

// pngLike is n bytes that sniff as image/png.
func pngLike(n int) []byte {
	return append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, n)...)
}

// s3Relay sits between caddy-lb and versitygw and counts what asset_serve
// asks of the store: each request's method and Range, and the bytes of
// the answers' bodies.
type s3Relay struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []string // "GET bytes=0-9", "HEAD", ...
	bytes int64
}

func startS3Relay(t *testing.T, endpoint string) *s3Relay {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rl := &s3Relay{}
	proxy := httputil.NewSingleHostReverseProxy(target) // keeps the Host the request was signed for
	proxy.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &countingBody{ReadCloser: resp.Body, relay: rl}
		return nil
	}
	rl.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && !r.URL.Query().Has("location") { // not the client's own bucket lookups
			rl.mu.Lock()
			rl.calls = append(rl.calls, strings.TrimSpace(r.Method+" "+r.Header.Get("Range")))
			rl.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(rl.srv.Close)
	return rl
}

type countingBody struct {
	io.ReadCloser
	relay *s3Relay
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.relay.mu.Lock()
	b.relay.bytes += int64(n)
	b.relay.mu.Unlock()
	return n, err
}

func (rl *s3Relay) take() ([]string, int64) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	calls, n := rl.calls, rl.bytes
	rl.calls, rl.bytes = nil, 0
	return calls, n
}

const serveThroughRelay = `{
	{{.Global}}
	asset_store media s3 {
		bucket {{.X.bucket}}
		endpoint {{.X.endpoint}}
		region us-east-1
		access_key {{.X.access}}
		secret_key {env.TEST_S3_SECRET}
		path_style
	}
}
:{{.HTTPPort}} {
	asset_serve /media/* {
		store media
		strip_prefix /media
	}
}
`

// TestServeCostsTheStoreWhatItSays measures, with a counting relay in
// front of versitygw and a 20 MB object, the requests and bytes each
// answer costs the store. A plain GET once cost a HEAD and a GET,
// Range: bytes=0-9 a HEAD and a GET of the whole object (0.3-3.9 MB read
// for 10 bytes), and 1000 ranges 1001 GETs.
func TestServeCostsTheStoreWhatItSays(t *testing.T) {
	s3 := testproc.StartVersityGW(t)
	t.Setenv("TEST_S3_SECRET", s3.SecretKey)
	bucket := s3.CreateBucket(t, "media")
	const size = 20 << 20
	content := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	if _, err := s3.Client(t).PutObject(t.Context(), bucket, "big.bin", bytes.NewReader(content), size,
		minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		t.Fatal(err)
	}
	relay := startS3Relay(t, s3.Endpoint)
	c := harness.StartCaddyWith(t, serveThroughRelay, map[string]any{
		"bucket": bucket, "endpoint": relay.srv.URL, "access": s3.AccessKey,
	})
	get := func(method string, header ...string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, c.URL("/media/big.bin"), nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, body
	}
	// Warm up the client's connection and bucket lookup.
	get(http.MethodHead)
	relay.take()

	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("%d-%d", i*100, i*100)
	}
	etag := func() string { r, _ := get(http.MethodHead); relay.take(); return r.Header.Get("Etag") }()
	for _, tc := range []struct {
		name      string
		method    string
		header    []string
		status    int
		calls     []string
		maxBytes  int64
		wantBytes int // body bytes the client gets
	}{
		{"plain GET", "GET", nil, 200, []string{"GET"}, size, size},
		{"first 10 bytes", "GET", []string{"Range", "bytes=0-9"}, 206, []string{"GET bytes=0-9"}, 10, 10},
		{"10 bytes inside", "GET", []string{"Range", "bytes=1000-1009"}, 206, []string{"GET bytes=1000-1009"}, 10, 10},
		{"last 10 bytes", "GET", []string{"Range", "bytes=-10"}, 206, []string{"GET bytes=-10"}, 10, 10},
		{"HEAD", "HEAD", nil, 200, []string{"HEAD"}, 0, 0},
		{"revalidation", "GET", []string{"If-None-Match", etag}, 304, []string{"HEAD"}, 0, 0},
		{"two close ranges", "GET", []string{"Range", "bytes=0-9,1000-1009"}, 206, []string{"HEAD", "GET bytes=0-1009"}, 1010, -1},
		{"1000 ranges", "GET", []string{"Range", "bytes=" + strings.Join(many, ",")}, 200, []string{"GET"}, size, size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(tc.method, tc.header...)
			calls, n := relay.take()
			if resp.StatusCode != tc.status {
				t.Fatalf("%d, want %d", resp.StatusCode, tc.status)
			}
			if strings.Join(calls, "; ") != strings.Join(tc.calls, "; ") {
				t.Fatalf("the store was asked %q, want %q", calls, tc.calls)
			}
			if n > tc.maxBytes {
				t.Fatalf("read %d bytes from the store, want at most %d", n, tc.maxBytes)
			}
			if tc.wantBytes >= 0 && len(body) != tc.wantBytes {
				t.Fatalf("client got %d bytes, want %d", len(body), tc.wantBytes)
			}
			if tc.status == 206 && tc.wantBytes == 10 {
				cr := resp.Header.Get("Content-Range")
				var first int
				if _, err := fmt.Sscanf(cr, "bytes %d-", &first); err != nil || !bytes.Equal(body, content[first:first+10]) {
					t.Fatalf("Content-Range %q with body %q", cr, body)
				}
			}
		})
	}
}

// redisMonitor records the commands clients send to a Redis server
// (MONITOR), not those its scripts run.
type redisMonitor struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func monitorRedis(t *testing.T, addr string) *redisMonitor {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	m := &redisMonitor{cmd: exec.Command("redis-cli", "-h", host, "-p", port, "MONITOR"), out: new(bytes.Buffer)}
	m.cmd.Stdout = m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("redis-cli MONITOR: %v", err)
	}
	t.Cleanup(func() { _ = m.cmd.Process.Kill(); _ = m.cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.out.String(), "OK") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return m
}

// stop ends the monitor and returns the clients' commands.
func (m *redisMonitor) stop() []string {
	time.Sleep(100 * time.Millisecond) // the last commands reach the monitor
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	var cmds []string
	for line := range strings.SplitSeq(m.out.String(), "\n") {
		// 1796162769.555 [0 127.0.0.1:53328] "EVALSHA" ...; scripts' own are [0 lua]
		if _, rest, ok := strings.Cut(line, " ["); ok && !strings.HasPrefix(rest, "0 lua]") {
			if _, cmd, ok := strings.Cut(rest, "] "); ok {
				cmds = append(cmds, cmd)
			}
		}
	}
	return cmds
}

// cookieValue returns the value of the first Set-Cookie for name.
func cookieValue(resp *http.Response, name string) string {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// doWithCookies sends GET path through node with exactly these Cookie
// header lines, as a client without a cookie jar does.
func doWithCookies(t *testing.T, node *harness.Caddy, path string, cookies ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, node.URL(path), nil)
	req.Host = "cookie.test"
	for _, c := range cookies {
		req.Header.Add("Cookie", c)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestReplayedLBCookieCostsRedisAlmostNothing: a client without a cookie
// jar replays the first LB cookie it got, 200 times through two nodes on
// one Redis. That once cost 1,800 Redis commands and a new Set-Cookie on
// every request.
func TestReplayedLBCookieCostsRedisAlmostNothing(t *testing.T) {
	redis := testproc.StartRedis(t)
	c := startCluster(t, "redis {\n\t\taddress "+redis.Addr+"\n\t}", 2, "rebind")
	first := doWithCookies(t, c.nodes[0], "/whoami")
	cookie := "lb_affinity=" + cookieValue(first, "lb_affinity")
	backend := first.Header.Get("X-Backend")
	time.Sleep(300 * time.Millisecond) // let the clients' background commands settle
	mon := monitorRedis(t, redis.Addr)
	reissued := 0
	for i := range 200 {
		resp := doWithCookies(t, c.nodes[i%2], "/whoami", cookie)
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != backend {
			t.Fatalf("replay %d: %d from %s, want %s", i, resp.StatusCode, resp.Header.Get("X-Backend"), backend)
		}
		if cookieValue(resp, "lb_affinity") != "" {
			reissued++
		}
	}
	cmds := mon.stop()
	used := len(cmds)
	if reissued != 1 {
		t.Errorf("%d of 200 replays got a new cookie, want 1", reissued)
	}
	if used > 4 { // one per node, and a script load
		t.Errorf("200 replays cost %d Redis commands, want a few; the first: %q", used, cmds[:min(3, len(cmds))])
	}
	t.Logf("200 replays through two nodes: %d Redis commands, %d re-issues", used, reissued)
}

// TestDuplicateLBCookieFromASiblingIsSkipped: a cookie planted by a
// sibling subdomain comes first; the one that verifies is used, and the
// session is not restarted.
func TestDuplicateLBCookieFromASiblingIsSkipped(t *testing.T) {
	c := startCluster(t, "memory", 1, "rebind")
	first := doWithCookies(t, c.nodes[0], "/whoami")
	bound := first.Header.Get("X-Backend")
	// Its first return records the session and re-issues the cookie.
	mine := cookieValue(doWithCookies(t, c.nodes[0], "/whoami", "lb_affinity="+cookieValue(first, "lb_affinity")), "lb_affinity")
	if mine == "" {
		t.Fatal("the first return got no recorded cookie")
	}
	for _, planted := range []string{"lb_affinity=forged", "lb_affinity=" + strings.Repeat("A", len(mine))} {
		resp := doWithCookies(t, c.nodes[0], "/whoami", planted+"; lb_affinity="+mine)
		if resp.Header.Get("X-Backend") != bound || cookieValue(resp, "lb_affinity") != "" {
			t.Fatalf("with %q first: %s and Set-Cookie %q, want %s and none", planted, resp.Header.Get("X-Backend"), cookieValue(resp, "lb_affinity"), bound)
		}
	}
}

// TestRemovedUpstreamMovesOnceAcrossNodes: sessions of an upstream that
// a reload removed, replayed in parallel through two nodes sharing Redis,
// all land on one upstream per session.
func TestRemovedUpstreamMovesOnceAcrossNodes(t *testing.T) {
	redis := testproc.StartRedis(t)
	c := startCluster(t, "redis {\n\t\taddress "+redis.Addr+"\n\t}", 2, "rebind")
	removed := c.backends[0]
	var cookies []string
	for len(cookies) < 3 {
		resp := doWithCookies(t, c.nodes[0], "/whoami")
		if resp.Header.Get("X-Backend") == removed.Name {
			cookies = append(cookies, "lb_affinity="+cookieValue(resp, "lb_affinity"))
		}
	}
	data := copyData(c.data)
	data["upstreams"] = harness.Upstreams(c.backends[1:])
	for _, n := range c.nodes {
		n.ReloadWith(t, stickySites, data)
	}
	for _, cookie := range cookies {
		var mu sync.Mutex
		landed := map[string]int{}
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp := doWithCookies(t, c.nodes[i%2], "/whoami", cookie)
				mu.Lock()
				landed[resp.Header.Get("X-Backend")]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(landed) != 1 || landed[removed.Name] > 0 {
			t.Fatalf("one session of the removed upstream landed on %v, want one upstream", landed)
		}
	}
}

// lruSites keeps app sessions in a small named memory store.
const lruSites = `{
	{{.Global}}
	session_store small memory {
		max_bindings 200
	}
}
:{{.HTTPPort}} {
	sticky_learn
	reverse_proxy {{.X.upstreams}} {
		lb_policy sticky {
			app_cookie PHPSESSID
			store small
		}
	}
}
`

// TestAnonymousSessionsDoNotLogUsersOut: 300 clients that start a session
// and never return, on max_bindings 200, once made the store refuse the
// logins after them (14 of 20 lost their backend). The least recently
// used bindings now make room.
func TestAnonymousSessionsDoNotLogUsersOut(t *testing.T) {
	backends := harness.StartBackends(t, 3)
	c := harness.StartCaddyWith(t, lruSites, map[string]any{"upstreams": harness.Upstreams(backends)})
	for i := range 300 {
		resp, err := harness.NewClient().Get(c.URL("/login"))
		if err != nil {
			t.Fatalf("anonymous %d: %v", i, err)
		}
		resp.Body.Close()
	}
	lost := 0
	for id := range 20 {
		u := newUser("app", id)
		login := u.mustDo(t, c, "/login")
		for range 3 {
			if a := u.mustDo(t, c, "/whoami"); a.backend != login.backend || !a.known {
				lost++
				break
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of 20 users lost their backend after 300 anonymous sessions", lost)
	}
	if n := metric(t, c, `caddylb_session_store_evictions_total{store="small"}`); n < 100 {
		t.Fatalf("evictions counted: %v, want at least 100", n)
	}
}

// shortTokenSite keeps LB cookies honoured for 2 s (ttl 2s).
const shortTokenSite = `{
	{{.Global}}
}
:{{.HTTPPort}} {
	reverse_proxy {{.X.upstreams}} {
		lb_policy sticky {
			secret {{.X.secret}}
			ttl 2s
		}
		header_down X-Sticky-Outcome {http.sticky.outcome}
	}
}
`

// TestLBCookieExpiresOnTheServer: an LB cookie older than token_max_age
// (by default the ttl) starts a new session, whatever the client kept; a
// cookie copied from a log once worked forever.
func TestLBCookieExpiresOnTheServer(t *testing.T) {
	backends := harness.StartBackends(t, 2)
	c := harness.StartCaddyWith(t, shortTokenSite, map[string]any{"upstreams": harness.Upstreams(backends), "secret": testSecret})
	first := doWithCookies(t, c, "/whoami")
	recorded := doWithCookies(t, c, "/whoami", "lb_affinity="+cookieValue(first, "lb_affinity"))
	cookie := "lb_affinity=" + cookieValue(recorded, "lb_affinity")
	if got := doWithCookies(t, c, "/whoami", cookie).Header.Get("X-Sticky-Outcome"); got != "hit" {
		t.Fatalf("a fresh cookie: outcome %q, want hit", got)
	}
	time.Sleep(2500 * time.Millisecond)
	old := doWithCookies(t, c, "/whoami", cookie)
	if got := old.Header.Get("X-Sticky-Outcome"); got != "new" || cookieValue(old, "lb_affinity") == "" {
		t.Fatalf("a cookie older than the ttl: outcome %q, Set-Cookie %q; want a new session", got, cookieValue(old, "lb_affinity"))
	}
}
