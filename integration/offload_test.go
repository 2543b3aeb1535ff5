package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// uploadSecret is what caddy-lb signs references with and the demo
// backend verifies them with (UPLOAD_SIGNING_SECRET in both processes).
const uploadSecret = "integration-upload-secret-0123456789"

// offloadCaddyfile puts asset_offload in front of the demo backend with
// a versitygw bucket as the store.
const offloadCaddyfile = `{
	{{.Global}}
	asset_store media s3 {
		bucket {{.X.bucket}}
		endpoint {{.X.endpoint}}
		region us-east-1
		access_key {{.X.access}}
		secret_key {env.TEST_S3_SECRET}
		path_style
		public_url https://cdn.example.test/media
		{{if .X.ca}}ca_file {{.X.ca}}{{end}}
	}
}
(uploads) {
	asset_offload /upload* {
		store media
		max_size {{.X.max_size}}
		allow_types image/* application/pdf
		sign_secret {env.UPLOAD_SIGNING_SECRET}
	}
	reverse_proxy {{.X.upstream}}
}
:{{.HTTPPort}} {
	import uploads
}
https://localhost:{{.HTTPSPort}} {
	tls internal
	import uploads
}
`

// assetStack is caddy-lb with asset_offload, a demo backend and versitygw.
type assetStack struct {
	caddy   *harness.Caddy
	s3      *testproc.S3Server
	bucket  string
	client  *minio.Client
	backend *harness.Backend
}

func startAssetStack(t testing.TB, maxSize string) *assetStack {
	t.Helper()
	return startAssetStackOn(t, testproc.StartVersityGW(t), maxSize)
}

// startAssetStackOn is startAssetStack with a given versitygw (plain or
// TLS).
func startAssetStackOn(t testing.TB, s3 *testproc.S3Server, maxSize string) *assetStack {
	t.Helper()
	t.Setenv("UPLOAD_SIGNING_SECRET", uploadSecret)
	t.Setenv("TEST_S3_SECRET", s3.SecretKey)
	st := &assetStack{s3: s3, bucket: s3.CreateBucket(t, "media"), client: s3.Client(t)}
	st.backend = harness.StartBackends(t, 1)[0]
	st.caddy = harness.StartCaddyWith(t, offloadCaddyfile, map[string]any{
		"bucket": st.bucket, "endpoint": s3.Endpoint, "access": s3.AccessKey,
		"max_size": maxSize, "upstream": st.backend.Addr, "ca": s3.CAFile,
	})
	return st
}

// objects lists the bucket's keys.
func (st *assetStack) objects(t *testing.T) []string {
	t.Helper()
	var keys []string
	for oi := range st.client.ListObjects(context.Background(), st.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatalf("listing bucket: %v", oi.Err)
		}
		keys = append(keys, oi.Key)
	}
	return keys
}

// incompleteUploads counts multipart uploads that were neither completed
// nor aborted.
func (st *assetStack) incompleteUploads(t *testing.T) int {
	t.Helper()
	n := 0
	for u := range st.client.ListIncompleteUploads(context.Background(), st.bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("listing multipart uploads: %v", u.Err)
		}
		n++
	}
	return n
}

// waitClean waits (bounded) until the bucket holds no objects and no
// multipart uploads, and fails with what is left.
func (st *assetStack) waitClean(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		keys, incomplete := st.objects(t), st.incompleteUploads(t)
		if len(keys) == 0 && incomplete == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the bucket still holds objects %v and %d multipart uploads", within, keys, incomplete)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// generatedFile is a deterministic PNG-looking file of a given size,
// generated while it is sent, so a test never holds it in memory.
type generatedFile struct {
	size, sent int64
	block      []byte
	sum        hash.Hash
	// pause, when set, is called before each 1 MiB (to stall an upload).
	pause func(sent int64)
}

func newGeneratedFile(size int64) *generatedFile {
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	copy(block, "\x89PNG\r\n\x1a\n")
	return &generatedFile{size: size, block: block, sum: sha256.New()}
}

func (g *generatedFile) Read(p []byte) (int, error) {
	if g.sent >= g.size {
		return 0, io.EOF
	}
	off := g.sent % int64(len(g.block))
	if off == 0 && g.pause != nil {
		g.pause(g.sent)
	}
	n := copy(p, g.block[off:min(int64(len(g.block)), off+g.size-g.sent)])
	g.sum.Write(p[:n])
	g.sent += int64(n)
	return n, nil
}

func (g *generatedFile) sha256() string { return hex.EncodeToString(g.sum.Sum(nil)) }

// filePart is one file of a streamed multipart upload.
type filePart struct {
	field, filename string
	disposition     string // raw Content-Disposition, overriding field/filename
	body            io.Reader
}

// streamMultipart is a chunked multipart body written as it is read.
func streamMultipart(fields map[string]string, files ...filePart) (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for k, v := range fields {
			if err := mw.WriteField(k, v); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		for _, f := range files {
			h := textproto.MIMEHeader{}
			disp := f.disposition
			if disp == "" {
				disp = fmt.Sprintf(`form-data; name=%q; filename=%q`, f.field, f.filename)
			}
			h.Set("Content-Disposition", disp)
			h.Set("Content-Type", "application/octet-stream")
			w, err := mw.CreatePart(h)
			if err == nil {
				_, err = io.Copy(w, f.body)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	return pr, mw.FormDataContentType()
}

// uploadAnswer is the demo backend's /upload answer.
type uploadAnswer struct {
	Backend string `json:"backend"`
	Files   []struct {
		Field    string            `json:"field"`
		Verified bool              `json:"verified"`
		Values   map[string]string `json:"values"`
	} `json:"files"`
	Fields map[string]string `json:"fields"`
}

func post(t testing.TB, client *http.Client, url, ctype string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func decodeUpload(t *testing.T, status int, body []byte) uploadAnswer {
	t.Helper()
	var a uploadAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("status %d, body %s: %v", status, body, err)
	}
	return a
}

func TestOffloadMultipartPutChunkedAndHTTP2(t *testing.T) {
	st := startAssetStack(t, "20MiB")
	file := newGeneratedFile(3<<20 + 12345)
	body, ctype := streamMultipart(map[string]string{"title": "holiday", "avatar[key]": "forged"},
		filePart{field: "avatar", filename: `C:\fakepath\Holiday.PNG`, body: file})
	resp, out := post(t, harness.NewClient(), st.caddy.URL("/upload"), ctype, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chunked multipart upload: %d %s", resp.StatusCode, out)
	}
	a := decodeUpload(t, resp.StatusCode, out)
	if len(a.Files) != 1 || !a.Files[0].Verified || a.Fields["title"] != "holiday" {
		t.Fatalf("backend saw %s", out)
	}
	ref := a.Files[0].Values
	if ref["sha256"] != file.sha256() || ref["size"] != strconv.FormatInt(file.size, 10) || ref["filename"] != "Holiday.PNG" || ref["key"] == "forged" {
		t.Fatalf("reference %v, want sha256 %s", ref, file.sha256())
	}
	if ref["url"] != "https://cdn.example.test/media/"+ref["key"] {
		t.Fatalf("url %q for key %q", ref["url"], ref["key"])
	}
	info, err := st.client.StatObject(context.Background(), st.bucket, ref["key"], minio.StatObjectOptions{})
	if err != nil || info.Size != file.size || info.ContentType != "image/png" || !strings.Contains(info.Metadata.Get("Content-Disposition"), "Holiday.PNG") {
		t.Fatalf("object %q: %+v %v", ref["key"], info, err)
	}

	// A raw PUT body over HTTP/2 with a known length.
	h2 := tlsClient(t, st.caddy)
	h2.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	pdf := []byte("%PDF-1.7\n" + strings.Repeat("report ", 1000))
	var hresp *http.Response
	deadline := time.Now().Add(15 * time.Second) // tls internal issues the certificate asynchronously
	for {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("https://localhost:%d/upload", st.caddy.HTTPSPort), bytes.NewReader(pdf))
		req.Header.Set("Content-Type", "application/pdf")
		req.Header.Set("Content-Disposition", `attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`)
		var err error
		if hresp, err = h2.Do(req); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT over HTTP/2: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ = io.ReadAll(hresp.Body)
	hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK || hresp.ProtoMajor != 2 {
		t.Fatalf("PUT over HTTP/2: %s %d %s", hresp.Proto, hresp.StatusCode, out)
	}
	a = decodeUpload(t, hresp.StatusCode, out)
	if len(a.Files) != 1 || !a.Files[0].Verified || a.Files[0].Field != "file" || a.Files[0].Values["filename"] != "résumé.pdf" {
		t.Fatalf("backend saw %s", out)
	}
}

func TestOffloadRefusesAndLeavesNothing(t *testing.T) {
	st := startAssetStack(t, "2MiB")
	client := harness.NewClient()

	body, ctype := streamMultipart(nil, filePart{field: "f", filename: "big.png", body: newGeneratedFile(12 << 20)})
	resp, out := post(t, client, st.caddy.URL("/upload"), ctype, body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "2097152 bytes") {
		t.Fatalf("12 MiB file against max_size 2MiB: %d %s", resp.StatusCode, out)
	}

	body, ctype = streamMultipart(nil, filePart{field: "f", filename: "x.png", body: strings.NewReader("<html><script>alert(1)</script></html>")})
	resp, out = post(t, client, st.caddy.URL("/upload"), ctype, body)
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(out), "text/html") {
		t.Fatalf("HTML named .png: %d %s", resp.StatusCode, out)
	}

	// A forged (or replayed) reference without a file never reaches the
	// application: the load balancer drops every field of a group whose
	// signature the client sent.
	body, ctype = streamMultipart(map[string]string{
		"avatar[key]": "uploads/someone-else.png", "avatar[size]": "1", "avatar[signature]": "AAAA", "title": "kept",
	})
	resp, out = post(t, client, st.caddy.URL("/upload"), ctype, body)
	if a := decodeUpload(t, resp.StatusCode, out); resp.StatusCode != http.StatusOK || len(a.Files) != 0 || a.Fields["title"] != "kept" || len(a.Fields) != 1 {
		t.Fatalf("forged reference: %d %s, want the reference fields dropped", resp.StatusCode, out)
	}

	// The application fails: the stored file is removed.
	body, ctype = streamMultipart(nil, filePart{field: "f", filename: "ok.png", body: newGeneratedFile(100 << 10)})
	resp, out = post(t, client, st.caddy.URL("/upload?fail=1"), ctype, body)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("backend failure: %d %s", resp.StatusCode, out)
	}
	st.waitClean(t, 10*time.Second)
}

func TestOffloadHostileFilenames(t *testing.T) {
	st := startAssetStack(t, "1MiB")
	long := strings.Repeat("a", 10<<10) + ".png"
	cases := []struct{ disposition, want string }{
		{`form-data; name="f"; filename="../../../etc/passwd.png"`, "passwd.png"},
		{`form-data; name="f"; filename="C:\\fakepath\\photo.png"`, "photo.png"},
		{`form-data; name="f"; filename*=UTF-8''%E2%80%AEgnp.exe`, "gnp.exe"},
		{"form-data; name=\"f\"; filename=\"nul\x00byte.png\"", ""},
		{`form-data; name="f"; filename="` + long + `"`, strings.Repeat("a", 251) + ".png"},
	}
	for _, tc := range cases {
		body, ctype := streamMultipart(nil, filePart{disposition: tc.disposition, body: newGeneratedFile(1000)})
		resp, out := post(t, harness.NewClient(), st.caddy.URL("/upload"), ctype, body)
		if tc.want == "" {
			// Go's MIME parser refuses a NUL in a header: a clear 400.
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%q: %d %s", tc.disposition, resp.StatusCode, out)
			}
			if resp.StatusCode == http.StatusOK {
				if name := decodeUpload(t, resp.StatusCode, out).Files[0].Values["filename"]; strings.ContainsRune(name, 0) {
					t.Fatalf("NUL kept in %q", name)
				}
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%.80q: %d %s", tc.disposition, resp.StatusCode, out)
		}
		ref := decodeUpload(t, resp.StatusCode, out).Files[0].Values
		if ref["filename"] != tc.want || strings.Contains(ref["key"], "passwd") || strings.Contains(ref["key"], "..") {
			t.Fatalf("%.80q: filename %q key %q, want filename %q", tc.disposition, ref["filename"], ref["key"], tc.want)
		}
	}
}

func TestOffloadClientDisconnectAndStoreKilled(t *testing.T) {
	st := startAssetStack(t, "512MiB")

	// The client goes away after 20 MiB of a 200 MiB upload.
	ctx, cancel := context.WithCancel(context.Background())
	file := newGeneratedFile(200 << 20)
	file.pause = func(sent int64) {
		if sent >= 20<<20 {
			cancel()
			time.Sleep(100 * time.Millisecond)
		}
	}
	body, ctype := streamMultipart(nil, filePart{field: "f", filename: "gone.png", body: file})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.caddy.URL("/upload"), body)
	req.Header.Set("Content-Type", ctype)
	if resp, err := harness.NewClient().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the cancelled upload got %d", resp.StatusCode)
	}
	st.waitClean(t, 15*time.Second)

	// The store dies after 30 MiB; it comes back a little later.
	file = newGeneratedFile(200 << 20)
	killed := false
	file.pause = func(sent int64) {
		if sent >= 30<<20 && !killed {
			killed = true
			st.s3.Kill()
		}
	}
	body, ctype = streamMultipart(nil, filePart{field: "f", filename: "doomed.png", body: file})
	resp, out := post(t, harness.NewClient(), st.caddy.URL("/upload"), ctype, body)
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("upload while the store died: %d %s", resp.StatusCode, out)
	}
	if !strings.Contains(string(out), "store") {
		t.Fatalf("the error does not name the store: %s", out)
	}
	st.s3.Restart(t)
	st.waitClean(t, 60*time.Second)
	if log := st.backend.Log(); strings.Contains(log, "/upload") {
		t.Fatalf("the backend was called for a failed upload: %s", log)
	}
}

func TestOffloadLargeUploadMemoryBounded(t *testing.T) {
	st := startAssetStack(t, "1GiB")
	// A small upload first, so that the S3 client and the handler are
	// warm and the baseline is the process at work, not at rest.
	body, ctype := streamMultipart(nil, filePart{field: "f", filename: "warm.png", body: newGeneratedFile(1 << 20)})
	if resp, out := post(t, harness.NewClient(), st.caddy.URL("/upload"), ctype, body); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up upload: %d %s", resp.StatusCode, out)
	}
	base := peakRSS(t, st.caddy.Pid())

	file := newGeneratedFile(256 << 20)
	body, ctype = streamMultipart(nil, filePart{field: "f", filename: "big.png", body: file})
	start := time.Now()
	resp, out := post(t, harness.NewClient(), st.caddy.URL("/upload"), ctype, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("256 MiB upload: %d %s", resp.StatusCode, out)
	}
	a := decodeUpload(t, resp.StatusCode, out)
	if a.Files[0].Values["sha256"] != file.sha256() {
		t.Fatalf("sha256 %s, sent %s", a.Files[0].Values["sha256"], file.sha256())
	}
	peak := peakRSS(t, st.caddy.Pid())
	t.Logf("256 MiB upload in %v; caddy peak RSS %d MiB, %d MiB over the warm baseline", time.Since(start).Round(time.Millisecond), peak>>20, (peak-base)>>20)
	// The bound: one upload holds at most two 8 MiB part buffers (one
	// being sent, the next being read). Go's collector lets the heap grow
	// to about twice what is live before it runs, so 2 x 16 MiB, plus
	// connection buffers. A process that buffered the file would grow by
	// 256 MiB.
	if growth := peak - base; growth > 48<<20 {
		t.Fatalf("caddy grew by %d MiB for a 256 MiB upload: more than two parts in flight", growth>>20)
	}
}

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("reading memory use: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
