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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// Regression tests, through the built binary, for upload and asset
// defects found by attacking caddy-lb from outside.

// rawExchange sends raw bytes to addr, as an attacker would, and reads
// the whole answer.
func rawExchange(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	return rawExchangeFrom(t, "127.0.0.1", addr, raw)
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
		part_hold_time 20s
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

// trickle sends a 10 MiB upload's headers and 128 KiB, then 2 KiB a
// second (twice min_rate), and returns the status the server answered
// with (0 for none).
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
			if _, err := conn.Write(bytes.Repeat([]byte{7}, 2<<10)); err != nil {
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
// KiB and then a trickle once held every part buffer for as long as they
// trickled, and every other upload waited 10 s and got 503. Trickling at
// twice min_rate, they are cut off all the same while they hold a part
// buffer (which wants part_size per part_hold_time), with 408, their
// partial uploads aborted, and a normal upload started meanwhile gets the
// memory they held.
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
		{"three far-apart ranges", "GET", []string{"Range", "bytes=0-9,5000000-5000009,10000000-10000009"}, 206,
			[]string{"HEAD", "GET bytes=0-9", "GET bytes=5000000-5000009", "GET bytes=10000000-10000009"}, 30, -1},
		{"If-Range of another version", "GET", []string{"Range", "bytes=0-9", "If-Range", `"stale"`}, 200, []string{"HEAD", "GET"}, size, size},
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

	// An empty object has no byte to range over: sent as it is, 200 and
	// no Content-Range (versitygw answers the ranged GET with the whole,
	// empty, object; it was once relayed as "206 bytes 0--1/0").
	if _, err := s3.Client(t).PutObject(t.Context(), bucket, "empty.bin", bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, c.URL("/media/empty.bin"), nil)
	req.Header.Set("Range", "bytes=0-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Range") != "" {
		t.Fatalf("bytes=0- of an empty object: %d, Content-Range %q; want 200 and none", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
}

// TestAPacedMultiFileUploadIsNotCutOff: two 300 KB files in one body at
// about 100 KB/s (a hundred times min_rate). What the first file fell
// behind the raised rate while it held a part buffer once carried over
// and cut the second at the lower rate (408 after 3 s).
func TestAPacedMultiFileUploadIsNotCutOff(t *testing.T) {
	s3 := testproc.StartVersityGW(t)
	t.Setenv("UPLOAD_SIGNING_SECRET", uploadSecret)
	t.Setenv("TEST_S3_SECRET", s3.SecretKey)
	c := harness.StartCaddyWith(t, slowUploadsCaddyfile, map[string]any{
		"bucket": s3.CreateBucket(t, "media"), "endpoint": s3.Endpoint, "access": s3.AccessKey,
	})
	const boundary = "b0undary"
	var body bytes.Buffer
	for _, name := range []string{"a", "b"} {
		body.WriteString("--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"; filename=\"" + name + ".png\"\r\n\r\n")
		body.Write(pngLike(300 << 10))
		body.WriteString("\r\n")
	}
	body.WriteString("--" + boundary + "--\r\n")
	pr, pw := io.Pipe()
	go func() {
		data := body.Bytes()
		for len(data) > 0 { // 10 KB every 100 ms; bounded by the body
			n := min(10<<10, len(data))
			if _, err := pw.Write(data[:n]); err != nil {
				return
			}
			data = data[n:]
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, c.URL("/upload"), pr)
	req.ContentLength = int64(body.Len())
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("a two-file upload at 100 KB/s: %d %s", resp.StatusCode, answer)
	}
}
