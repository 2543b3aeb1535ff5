package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// assetSite is one site for both environments: only the asset_store
// declaration differs ({{.X.store}}), as docs/assets.md promises. The page
// and the headers render asset URLs; /cdn/* is the "CDN" (asset_serve
// proxying from the store), /go/* redirects to public URLs, /private/*
// to presigned ones.
const assetSite = `{
	{{.Global}}
	{{.X.store}}
}
:{{.HTTPPort}} {
	asset_urls assets {
		prefix static/
		fallback local
		local_url /static
	}
	header /urls X-Logo {assets.url.img/logo.png}
	header /urls X-Asset-Base {assets.base_url}
	header /urls X-Escape "[{assets.url.../../etc/passwd}]"
	respond /urls 204

	asset_serve /cdn/* {
		store assets
	}
	asset_serve /static/* {
		store assets
		strip_prefix /static
	}
	asset_serve /go/* {
		store assets
		mode redirect
		strip_prefix /go
	}
	{{if .X.s3}}asset_serve /private/* {
		store assets
		mode redirect
		private
		strip_prefix /private
	}{{end}}

	root * {{.X.site}}
	templates {
		extensions {
			assets assets {
				prefix static/
				fallback local
				local_url /static
			}
		}
	}
	file_server
}
`

// pageHTML is the page rendered with templates.
const pageHTML = `<img src="{{asset_url "img/logo.png"}}"><script src="{{asset_url "src/main.ts"}}"></script><link href="{{asset_url "css/site.css"}}">`

// buildDir writes a front-end build: plain files, and a Vite output whose
// manifest names the fingerprinted bundle.
func buildDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"img/logo.png":        "\x89PNG\r\n\x1a\n" + strings.Repeat("logo", 500),
		"css/site.css":        "body { color: #333 }",
		"assets/main-4f3a.js": "console.log('hello')",
		".vite/manifest.json": `{"src/main.ts": {"file": "assets/main-4f3a.js", "isEntry": true}}`,
	}
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// siteDir holds the page templates render.
func siteDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte(pageHTML), 0o640); err != nil {
		t.Fatal(err)
	}
	return dir
}

// assetsSync runs `caddy assets sync` with caddy-lb's own config and
// returns what it printed.
func assetsSync(t *testing.T, c *harness.Caddy, dir string) string {
	t.Helper()
	cmd := exec.Command(harness.CaddyBinary(t), "assets", "sync", "--config", filepath.Join(c.Dir, "Caddyfile"),
		"--store", "assets", "--prefix", "static/", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy assets sync: %v\n%s", err, out)
	}
	return string(out)
}

// objectStamps is each object's ETag and modification time.
func objectStamps(t *testing.T, client *minio.Client, bucket string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for oi := range client.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		out[oi.Key] = oi.ETag + " " + oi.LastModified.String()
	}
	return out
}

func getWith(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := harness.NewClient().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var srcAttr = regexp.MustCompile(`(?:src|href)="([^"]*)"`)

// pageURLs renders page.html and returns its three asset URLs.
func pageURLs(t *testing.T, c *harness.Caddy) []string {
	t.Helper()
	resp, body := getWith(t, c.URL("/page.html"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page.html: %d %s", resp.StatusCode, body)
	}
	var urls []string
	for _, m := range srcAttr.FindAllStringSubmatch(body, -1) {
		urls = append(urls, m[1])
	}
	if len(urls) != 3 {
		t.Fatalf("page.html rendered %q, want three asset URLs", body)
	}
	return urls
}

func TestAssetsProductionSyncTemplatesAndServe(t *testing.T) {
	s3 := testproc.StartVersityGW(t)
	t.Setenv("TEST_S3_SECRET", s3.SecretKey)
	bucket := s3.CreateBucket(t, "assets")
	client := s3.Client(t)
	store := fmt.Sprintf(`asset_store assets s3 {
		bucket %s
		endpoint %s
		region %s
		access_key %s
		secret_key {env.TEST_S3_SECRET}
		path_style
		public_url http://127.0.0.1:{{.HTTPPort}}/cdn
	}`, bucket, s3.Endpoint, s3.Region, s3.AccessKey)
	site := strings.Replace(assetSite, "{{.X.store}}", store, 1)
	data := map[string]any{"site": siteDir(t), "s3": true}
	c := harness.StartCaddyWith(t, site, data)
	port := c.HTTPPort

	// Before the first sync there is no manifest: local URLs.
	if urls := pageURLs(t, c); urls[0] != "/static/img/logo.png" {
		t.Fatalf("before any sync: %v, want local URLs", urls)
	}

	build := buildDir(t)
	out := assetsSync(t, c, build)
	if !strings.Contains(out, "uploaded 3 files") || !strings.Contains(out, "manifest static/manifest.json: 3 entries, uploaded") {
		t.Fatalf("first sync printed %q", out)
	}
	before := objectStamps(t, client, bucket)
	out = assetsSync(t, c, build)
	if !strings.Contains(out, "uploaded 0 files") || !strings.Contains(out, "skipped 3 unchanged") || !strings.Contains(out, "3 entries, unchanged") {
		t.Fatalf("second sync printed %q, want nothing uploaded", out)
	}
	if after := objectStamps(t, client, bucket); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("second sync rewrote objects:\nbefore %v\nafter  %v", before, after)
	}

	// The deploy reloads caddy-lb, which reads the new manifest.
	c.ReloadWith(t, site, data)
	urls := pageURLs(t, c)
	cdn := fmt.Sprintf("http://127.0.0.1:%d/cdn/static/", port)
	logo := regexp.MustCompile(`^` + regexp.QuoteMeta(cdn) + `img/logo\.[0-9a-f]{12}\.png$`)
	if !logo.MatchString(urls[0]) || urls[1] != cdn+"assets/main-4f3a.js" || !strings.HasPrefix(urls[2], cdn+"css/site.") {
		t.Fatalf("production URLs %v, want fingerprinted CDN URLs under %s", urls, cdn)
	}

	// The same URLs as placeholders; a path escaping the prefix gives
	// nothing.
	resp, _ := getWith(t, c.URL("/urls"), nil)
	if resp.Header.Get("X-Logo") != urls[0] || resp.Header.Get("X-Asset-Base") != cdn || resp.Header.Get("X-Escape") != "[]" {
		t.Fatalf("placeholders: X-Logo %q X-Asset-Base %q X-Escape %q", resp.Header.Get("X-Logo"), resp.Header.Get("X-Asset-Base"), resp.Header.Get("X-Escape"))
	}

	// The CDN URL is served from the bucket: type, immutable caching,
	// Range, conditional requests and 404.
	resp, body := getWith(t, urls[0], nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || len(body) != 2008 || resp.Header.Get("Etag") == "" {
		t.Fatalf("GET %s: %d %v, %d bytes", urls[0], resp.StatusCode, resp.Header, len(body))
	}
	etag := resp.Header.Get("Etag")
	resp, body = getWith(t, urls[0], map[string]string{"Range": "bytes=0-3"})
	if resp.StatusCode != http.StatusPartialContent || body != "\x89PNG" || resp.Header.Get("Content-Range") != "bytes 0-3/2008" {
		t.Fatalf("Range bytes=0-3: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	resp, body = getWith(t, urls[0], map[string]string{"Range": "bytes=2000-"})
	if resp.StatusCode != http.StatusPartialContent || body != "logologo" {
		t.Fatalf("Range bytes=2000-: %d %q", resp.StatusCode, body)
	}
	resp, _ = getWith(t, urls[0], map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match %s: %d, want 304", etag, resp.StatusCode)
	}
	resp, _ = getWith(t, urls[0], map[string]string{"If-Modified-Since": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-Modified-Since: %d, want 304", resp.StatusCode)
	}
	for _, path := range []string{"/cdn/static/img/missing.png", "/cdn/static/../../etc/passwd", "/cdn/static//img/logo.png"} {
		if resp, body := getWith(t, c.URL(path), nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d %s, want 404", path, resp.StatusCode, body)
		}
	}
	if resp, body := getWith(t, cdn+"assets/main-4f3a.js", nil); resp.StatusCode != http.StatusOK ||
		resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || body != "console.log('hello')" {
		t.Fatalf("bundle: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// Redirect mode sends the client to the public URL; private mode to a
	// presigned URL that versitygw honours, for this key only.
	resp, _ = getWith(t, c.URL("/go/static/assets/main-4f3a.js"), nil)
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != cdn+"assets/main-4f3a.js" {
		t.Fatalf("redirect mode: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = getWith(t, c.URL("/private/static/assets/main-4f3a.js"), nil)
	signed := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(signed, s3.Endpoint+"/"+bucket+"/static/assets/main-4f3a.js?") ||
		!strings.HasPrefix(resp.Header.Get("Cache-Control"), "private") {
		t.Fatalf("private redirect: %d Location %q Cache-Control %q", resp.StatusCode, signed, resp.Header.Get("Cache-Control"))
	}
	if resp, body := getWith(t, signed, nil); resp.StatusCode != http.StatusOK || body != "console.log('hello')" {
		t.Fatalf("presigned URL: %d %q", resp.StatusCode, body)
	}
	if resp, _ := getWith(t, strings.Replace(signed, "main-4f3a.js", "other.js", 1), nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("presigned URL for another key: %d, want 403", resp.StatusCode)
	}
}

func TestAssetsDevelopmentFileStore(t *testing.T) {
	// The developer's public directory, as a file store; no manifest.
	public := t.TempDir()
	if err := os.MkdirAll(filepath.Join(public, "img"), 0o750); err != nil {
		t.Fatal(err)
	}
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("dev", 100)
	if err := os.WriteFile(filepath.Join(public, "img", "logo.png"), []byte(png), 0o640); err != nil {
		t.Fatal(err)
	}
	store := fmt.Sprintf("asset_store assets file %s {\n\t\tpublic_url /static\n\t}", public)
	c := harness.StartCaddyWith(t, assetSite, map[string]any{"store": store, "site": siteDir(t), "s3": false})

	urls := pageURLs(t, c)
	if urls[0] != "/static/img/logo.png" || urls[1] != "/static/src/main.ts" || urls[2] != "/static/css/site.css" {
		t.Fatalf("development URLs %v, want unfingerprinted local URLs", urls)
	}
	resp, _ := getWith(t, c.URL("/urls"), nil)
	if resp.Header.Get("X-Logo") != "/static/img/logo.png" || resp.Header.Get("X-Asset-Base") != "/static/" {
		t.Fatalf("placeholders: X-Logo %q X-Asset-Base %q", resp.Header.Get("X-Logo"), resp.Header.Get("X-Asset-Base"))
	}
	resp, body := getWith(t, c.URL(urls[0]), nil)
	if resp.StatusCode != http.StatusOK || body != png || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("GET %s: %d %q, %d bytes", urls[0], resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	etag := resp.Header.Get("Etag")
	resp, body = getWith(t, c.URL(urls[0]), map[string]string{"Range": "bytes=4-7"})
	if resp.StatusCode != http.StatusPartialContent || body != "\r\n\x1a\n" {
		t.Fatalf("Range: %d %q", resp.StatusCode, body)
	}
	if resp, _ := getWith(t, c.URL(urls[0]), map[string]string{"If-None-Match": etag}); etag == "" || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match %q: %d, want 304", etag, resp.StatusCode)
	}
	if resp, _ := getWith(t, c.URL("/static/img/none.png"), nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing file: %d, want 404", resp.StatusCode)
	}
	// Redirect mode points at the store's public_url, which asset_serve
	// answers on the same site.
	if resp, _ := getWith(t, c.URL("/go/img/logo.png"), nil); resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "/static/img/logo.png" {
		t.Fatalf("redirect mode: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// presignSite hands out presigned POST forms for PNG files up to 64 KiB.
const presignSite = `{
	{{.Global}}
	asset_store media s3 {
		bucket {{.X.bucket}}
		endpoint {{.X.endpoint}}
		region us-east-1
		access_key {{.X.access}}
		secret_key {env.TEST_S3_SECRET}
		path_style
		public_url https://cdn.example.test/media
	}
}
:{{.HTTPPort}} {
	asset_presign /uploads/presign {
		store media
		max_size 64KiB
		allow_types image/png image/jpeg
		key direct/{uuid}{ext}
	}
}
`

// presigned is asset_presign's answer.
type presigned struct {
	URL       string            `json:"url"`
	Fields    map[string]string `json:"fields"`
	Key       string            `json:"key"`
	PublicURL string            `json:"public_url"`
}

func askPresign(t *testing.T, c *harness.Caddy, body string) (int, presigned, string) {
	t.Helper()
	resp, err := harness.NewClient().Post(c.URL("/uploads/presign"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var p presigned
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("presign answer %s: %v", raw, err)
		}
	}
	return resp.StatusCode, p, string(raw)
}

// postForm uploads content straight to the store with the presigned
// form, overriding fields with change.
func postForm(t *testing.T, p presigned, change map[string]string, content []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range p.Fields {
		if nv, ok := change[k]; ok {
			v = nv
		}
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	fw, _ := mw.CreateFormFile("file", "cat.png")
	fw.Write(content)
	mw.Close()
	resp, err := http.Post(p.URL, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatalf("POST %s: %v", p.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestPresignedDirectUploadToVersityGW(t *testing.T) {
	s3 := testproc.StartVersityGW(t)
	t.Setenv("TEST_S3_SECRET", s3.SecretKey)
	bucket := s3.CreateBucket(t, "media")
	client := s3.Client(t)
	c := harness.StartCaddyWith(t, presignSite, map[string]any{"bucket": bucket, "endpoint": s3.Endpoint, "access": s3.AccessKey})

	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("cat"), 300)...)
	status, p, raw := askPresign(t, c, fmt.Sprintf(`{"filename": "../../Cat.PNG", "content_type": "image/png", "size": %d}`, len(png)))
	if status != http.StatusOK || !strings.HasPrefix(p.Key, "direct/") || !strings.HasSuffix(p.Key, ".png") || p.PublicURL != "https://cdn.example.test/media/"+p.Key {
		t.Fatalf("presign: %d %s", status, raw)
	}

	// The form admits exactly that key, that type and at most that size.
	if status, body := postForm(t, p, map[string]string{"key": "direct/chosen-by-client.png"}, png); status != http.StatusForbidden {
		t.Fatalf("another key: %d %s, want 403", status, body)
	}
	if status, body := postForm(t, p, map[string]string{"Content-Type": "text/html"}, png); status != http.StatusForbidden {
		t.Fatalf("another Content-Type: %d %s, want 403", status, body)
	}
	if status, body := postForm(t, p, nil, append(png, 'x')); status < 400 {
		t.Fatalf("a byte more than declared: %d %s, want a refusal", status, body)
	}
	if keys := objectStamps(t, client, bucket); len(keys) != 0 {
		t.Fatalf("refused uploads left objects: %v", keys)
	}
	if status, body := postForm(t, p, nil, png); status < 200 || status > 299 {
		t.Fatalf("the declared upload: %d %s", status, body)
	}
	info, err := client.StatObject(context.Background(), bucket, p.Key, minio.StatObjectOptions{})
	if err != nil || info.Size != int64(len(png)) || info.ContentType != "image/png" {
		t.Fatalf("stored object %q: %+v %v", p.Key, info, err)
	}

	// Declarations the policy refuses never reach the store.
	for _, c2 := range []struct {
		body   string
		status int
	}{
		{`{"filename": "x.html", "content_type": "text/html", "size": 10}`, http.StatusUnsupportedMediaType},
		{`{"filename": "big.png", "content_type": "image/png", "size": 70000}`, http.StatusRequestEntityTooLarge},
		{`{"filename": "x.png", "content_type": "image/png"}`, http.StatusBadRequest},
		{`{"filename": "x.png", "content_type": "image/*", "size": 10}`, http.StatusBadRequest},
		{`{"filename": "x.png", "content_type": "image/png", "size": 10, "key": "mine.png"}`, http.StatusBadRequest},
		{`not json`, http.StatusBadRequest},
	} {
		if status, _, raw := askPresign(t, c, c2.body); status != c2.status || !strings.Contains(raw, `"error"`) {
			t.Fatalf("presign %s: %d %s, want %d with an error message", c2.body, status, raw, c2.status)
		}
	}
}
