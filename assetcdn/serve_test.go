package assetcdn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// putTestObject stores content under key with the given options.
func putTestObject(t testing.TB, s objectstore.Store, key string, content []byte, opts objectstore.PutOptions) objectstore.ObjectInfo {
	t.Helper()
	info, err := s.Put(context.Background(), key, bytes.NewReader(content), int64(len(content)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func newTestServe(t testing.TB, store objectstore.Store, configure func(*Serve)) *Serve {
	t.Helper()
	s := new(Serve)
	if configure != nil {
		configure(s)
	}
	if err := s.prepare(store); err != nil {
		t.Fatal(err)
	}
	return s
}

// serveAsset runs the handler and renders a returned error the way
// Caddy does: its status, no body.
func serveAsset(t testing.TB, s *Serve, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := s.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("asset_serve called the next handler")
		return nil
	})); err != nil {
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("error without a status: %v", err)
		}
		rec.WriteHeader(he.StatusCode)
		rec.Body.WriteString(err.Error())
	}
	return rec
}

func TestServeProxy(t *testing.T) {
	store := newTestStore(t)
	png := pngBytes(2000)
	info := putTestObject(t, store, "uploads/a.png", png, objectstore.PutOptions{ContentType: "image/png", ContentDisposition: `inline; filename="Me.png"`})
	putTestObject(t, store, "uploads/page.html", []byte("<script>alert(1)</script>"), objectstore.PutOptions{ContentType: "text/html"})
	putTestObject(t, store, "assets/app.0123456789ab.js", []byte("console.log(1)"), objectstore.PutOptions{ContentType: "text/javascript", CacheControl: "public, max-age=31536000, immutable"})
	s := newTestServe(t, store, func(s *Serve) { p := "/media"; s.StripPrefix = &p })

	rec := serveAsset(t, s, httptest.NewRequest(http.MethodGet, "/media/uploads/a.png", nil))
	h := rec.Header()
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), png) {
		t.Fatalf("GET: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	for name, want := range map[string]string{
		"Content-Type":            "image/png",
		"Etag":                    info.ETag,
		"Cache-Control":           defaultServeCacheControl,
		"Content-Disposition":     `inline; filename="Me.png"`,
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if h.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}

	rec = serveAsset(t, s, httptest.NewRequest(http.MethodGet, "/media/uploads/page.html", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("HTML served with CSP %q, want a sandbox", csp)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html" {
		t.Errorf("HTML Content-Type %q", ct)
	}

	rec = serveAsset(t, s, httptest.NewRequest(http.MethodGet, "/media/assets/app.0123456789ab.js", nil))
	if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("object's own Cache-Control not kept: %q", cc)
	}
}

func TestServeRangeAndConditional(t *testing.T) {
	store := newTestStore(t)
	content := []byte("0123456789abcdefghij")
	info := putTestObject(t, store, "f.txt", content, objectstore.PutOptions{ContentType: "text/plain"})
	s := newTestServe(t, store, nil)

	req := httptest.NewRequest(http.MethodGet, "/f.txt", nil)
	req.Header.Set("Range", "bytes=5-9")
	rec := serveAsset(t, s, req)
	if rec.Code != http.StatusPartialContent || rec.Body.String() != "56789" || rec.Header().Get("Content-Range") != "bytes 5-9/20" {
		t.Fatalf("range: %d %q %q", rec.Code, rec.Body, rec.Header().Get("Content-Range"))
	}

	req = httptest.NewRequest(http.MethodGet, "/f.txt", nil)
	req.Header.Set("If-None-Match", info.ETag)
	if rec = serveAsset(t, s, req); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("If-None-Match: %d, %d bytes", rec.Code, rec.Body.Len())
	}

	req = httptest.NewRequest(http.MethodGet, "/f.txt", nil)
	req.Header.Set("If-Modified-Since", info.LastModified.Add(time.Hour).UTC().Format(http.TimeFormat))
	if rec = serveAsset(t, s, req); rec.Code != http.StatusNotModified {
		t.Fatalf("If-Modified-Since: %d", rec.Code)
	}

	req = httptest.NewRequest(http.MethodGet, "/f.txt", nil)
	req.Header.Set("If-None-Match", `"other"`)
	if rec = serveAsset(t, s, req); rec.Code != http.StatusOK || rec.Body.String() != string(content) {
		t.Fatalf("stale If-None-Match: %d", rec.Code)
	}

	rec = serveAsset(t, s, httptest.NewRequest(http.MethodHead, "/f.txt", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "20" {
		t.Fatalf("HEAD: %d, %d bytes, length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}

func TestServeRefusals(t *testing.T) {
	store := newTestStore(t)
	putTestObject(t, store, "media/x.png", pngBytes(10), objectstore.PutOptions{ContentType: "image/png"})
	putTestObject(t, store, ".staging/abc", pngBytes(10), objectstore.PutOptions{})
	s := newTestServe(t, store, func(s *Serve) { p := "/media"; s.StripPrefix = &p })
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/media/missing.png", http.StatusNotFound},
		{http.MethodGet, "/media/../media/x.png", http.StatusNotFound},
		{http.MethodGet, "/media/a/../../x.png", http.StatusNotFound},
		{http.MethodGet, "/media//x.png", http.StatusNotFound},
		{http.MethodGet, "/media/", http.StatusNotFound},
		{http.MethodGet, "/mediax.png", http.StatusNotFound},
		{http.MethodGet, "/other/x.png", http.StatusNotFound},
		{http.MethodGet, "/media/.caddylb-meta/x.png", http.StatusNotFound},
		{http.MethodGet, "/media/.staging/abc", http.StatusNotFound},
		{http.MethodPost, "/media/x.png", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/media/x.png", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Method, req.URL.Path = tt.method, tt.path
		rec := serveAsset(t, s, req)
		if rec.Code != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.want)
		}
		if tt.want == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: Allow %q", tt.method, rec.Header().Get("Allow"))
		}
	}
}

// failingStore answers every read with err.
type failingStore struct {
	*objectstore.FileStore
	err error
}

func (f failingStore) Open(context.Context, string) (objectstore.Object, error) { return nil, f.err }

func (f failingStore) Get(context.Context, string, *objectstore.ByteRange, string) (*objectstore.Part, error) {
	return nil, f.err
}

func TestServeStoreErrors(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{objectstore.ErrUnavailable, http.StatusServiceUnavailable},
		{io.ErrUnexpectedEOF, http.StatusBadGateway},
		{objectstore.ErrNotFound, http.StatusNotFound},
	} {
		s := newTestServe(t, failingStore{newTestStore(t), tt.err}, nil)
		rec := serveAsset(t, s, httptest.NewRequest(http.MethodGet, "/a.png", nil))
		if rec.Code != tt.want {
			t.Errorf("%v: %d, want %d", tt.err, rec.Code, tt.want)
		}
		if tt.want == http.StatusServiceUnavailable && (rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "unavailable")) {
			t.Errorf("503 without Retry-After or message: %q", rec.Body)
		}
	}
}

func TestServeRedirect(t *testing.T) {
	store := newTestStore(t) // public_url https://cdn.example.com/
	s := newTestServe(t, store, func(s *Serve) { s.Mode = modeRedirect })
	rec := serveAsset(t, s, httptest.NewRequest(http.MethodGet, "/img/a%20b.png", nil))
	if rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "https://cdn.example.com/img/a%20b.png" {
		t.Fatalf("redirect: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	if cc := rec.Header().Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") {
		t.Errorf("redirect Cache-Control %q", cc)
	}

	// A file store served by asset_serve itself: the redirect would loop,
	// so the file is proxied.
	local := newTestStore(t)
	local.PublicBaseURL = "/media"
	putTestObject(t, local, "x.txt", []byte("hi"), objectstore.PutOptions{ContentType: "text/plain"})
	s = newTestServe(t, local, func(s *Serve) { s.Mode = modeRedirect })
	if s.stripPrefix != "/media" {
		t.Fatalf("default strip_prefix %q, want the public_url path /media", s.stripPrefix)
	}
	rec = serveAsset(t, s, httptest.NewRequest(http.MethodGet, "/media/x.txt", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "hi" {
		t.Fatalf("self-redirect not proxied: %d %q", rec.Code, rec.Header().Get("Location"))
	}
}

func TestServeProvisionErrors(t *testing.T) {
	noURL := newTestStore(t)
	noURL.PublicBaseURL = ""
	for name, tt := range map[string]struct {
		store objectstore.Store
		cfg   func(*Serve)
		want  string
	}{
		"bad mode":              {newTestStore(t), func(s *Serve) { s.Mode = "copy" }, `mode "copy"`},
		"redirect no url":       {noURL, func(s *Serve) { s.Mode = modeRedirect }, "public_url"},
		"private file store":    {newTestStore(t), func(s *Serve) { s.Mode, s.Private = modeRedirect, true }, "cannot make"},
		"private proxy":         {newTestStore(t), func(s *Serve) { s.Private = true }, "mode redirect only"},
		"relative strip prefix": {newTestStore(t), func(s *Serve) { p := "media"; s.StripPrefix = &p }, "must start with '/'"},
	} {
		s := new(Serve)
		tt.cfg(s)
		if err := s.prepare(tt.store); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tt.want)
		}
	}
}

func TestServeUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`asset_serve {
		store media
		mode redirect
		strip_prefix /files
		cache_control public, max-age=60
		private
		presign_expiry 10m
	}`)
	var s Serve
	if err := s.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if s.Store != "media" || s.Mode != "redirect" || s.StripPrefix == nil || *s.StripPrefix != "/files" ||
		s.CacheControl != "public, max-age=60" || !s.Private || time.Duration(s.PresignExpiry) != 10*time.Minute {
		t.Fatalf("parsed %+v", s)
	}
	for _, bad := range []string{"asset_serve x", "asset_serve {\n mode\n}", "asset_serve {\n colour red\n}", "asset_serve {\n presign_expiry soon\n}"} {
		if err := new(Serve).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzKeyFromPath(f *testing.F) {
	for _, p := range []string{"/media/a.png", "/media/../x", "/media//a", "/media/.staging/x", "/mediax", "/media/a/./b", "/media/\x00", "/media/a\\..\\b"} {
		f.Add(p, "/media")
	}
	f.Fuzz(func(t *testing.T, urlPath, prefix string) {
		key, ok := KeyFromPath(urlPath, prefix)
		if !ok {
			return
		}
		if err := objectstore.ValidateKey(key); err != nil {
			t.Fatalf("%q gave invalid key %q: %v", urlPath, key, err)
		}
		if !strings.HasSuffix(urlPath, "/"+key) || !strings.HasPrefix(urlPath, strings.TrimRight(prefix, "/")+"/") {
			t.Fatalf("%q under %q gave key %q that is not its tail", urlPath, prefix, key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == ".." || seg == "." || seg == "" {
				t.Fatalf("%q gave key %q with segment %q", urlPath, key, seg)
			}
		}
	})
}

// callCounter counts the store calls asset_serve makes: what each answer
// costs an S3 store in requests.
type callCounter struct {
	objectstore.Store
	heads, gets int
	ranges      []*objectstore.ByteRange
}

func (c *callCounter) Stat(ctx context.Context, key string) (objectstore.ObjectInfo, error) {
	c.heads++
	return c.Store.Stat(ctx, key)
}

func (c *callCounter) Get(ctx context.Context, key string, rng *objectstore.ByteRange, ifMatch string) (*objectstore.Part, error) {
	c.gets++
	c.ranges = append(c.ranges, rng)
	return c.Store.Get(ctx, key, rng, ifMatch)
}

// TestServeCostsTheStoreOneRequest: a plain GET is one GET and a range
// one GET of exactly that range (once a HEAD and a GET, or a GET of
// everything from the range's start); a HEAD or a revalidation is one HEAD;
// several ranges cost a HEAD and one GET per group of close ranges, and
// too many ranges one GET of the whole file.
func TestServeCostsTheStoreOneRequest(t *testing.T) {
	store := &callCounter{Store: newTestStore(t)}
	content := bytes.Repeat([]byte("0123456789"), 20_000) // 200 kB
	info := putTestObject(t, store, "f.bin", content, objectstore.PutOptions{ContentType: "application/octet-stream"})
	s := newTestServe(t, store, nil)
	many := make([]string, 17)
	for i := range many {
		many[i] = strconv.Itoa(i*100) + "-" + strconv.Itoa(i*100)
	}
	for _, tc := range []struct {
		method, header, value string
		status, heads, gets   int
		ranges                []*objectstore.ByteRange // what the GETs asked for
		body                  string                   // "" means the whole file
	}{
		{http.MethodGet, "", "", 200, 0, 1, []*objectstore.ByteRange{nil}, ""},
		{http.MethodHead, "", "", 200, 1, 0, nil, "-"},
		{http.MethodGet, "If-None-Match", info.ETag, 304, 1, 0, nil, "-"},
		{http.MethodGet, "If-None-Match", `"other"`, 200, 1, 1, []*objectstore.ByteRange{nil}, ""},
		{http.MethodGet, "Range", "bytes=0-9", 206, 0, 1, []*objectstore.ByteRange{{First: 0, Last: 9}}, "0123456789"},
		{http.MethodGet, "Range", "bytes=1000-1009", 206, 0, 1, []*objectstore.ByteRange{{First: 1000, Last: 1009}}, "0123456789"},
		{http.MethodGet, "Range", "bytes=-5", 206, 0, 1, []*objectstore.ByteRange{{First: -1, Last: 5}}, "56789"},
		{http.MethodGet, "Range", "bytes=300000-", 416, 1, 1, []*objectstore.ByteRange{{First: 300000, Last: -1}}, "-"},
		{http.MethodGet, "Range", "bytes=0-0,100-100,150000-150000", 206, 1, 2, []*objectstore.ByteRange{{First: 0, Last: 100}, {First: 150000, Last: 150000}}, "-"},
		{http.MethodGet, "Range", "bytes=0-9,5-19", 206, 1, 1, []*objectstore.ByteRange{{First: 0, Last: 19}}, "01234567890123456789"},
		{http.MethodGet, "Range", "bytes=" + strings.Join(many, ","), 200, 0, 1, []*objectstore.ByteRange{nil}, ""},
		{http.MethodGet, "Range", "bytes=5-1", 416, 1, 0, nil, "-"},
		{http.MethodGet, "Range", "items=0-9", 200, 0, 1, []*objectstore.ByteRange{nil}, ""},
		{http.MethodGet, "Range", "bytes=0-0,100000-100000,199000-199000", 206, 1, 3, []*objectstore.ByteRange{{First: 0, Last: 0}, {First: 100000, Last: 100000}, {First: 199000, Last: 199000}}, "-"},
		{http.MethodGet, "Range", "bytes=0-99999999999999999999", 206, 0, 1, []*objectstore.ByteRange{{First: 0, Last: math.MaxInt64}}, ""},
	} {
		store.heads, store.gets, store.ranges = 0, 0, nil
		req := httptest.NewRequest(tc.method, "/f.bin", nil)
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		rec := serveAsset(t, s, req)
		name := tc.method + " " + tc.header + ": " + tc.value
		if rec.Code != tc.status || store.heads != tc.heads || store.gets != tc.gets {
			t.Errorf("%s: %d with %d HEAD and %d GET, want %d with %d and %d", name, rec.Code, store.heads, store.gets, tc.status, tc.heads, tc.gets)
			continue
		}
		for i, want := range tc.ranges {
			if got := store.ranges[i]; (got == nil) != (want == nil) || got != nil && *got != *want {
				t.Errorf("%s: GET %d asked for %v, want %v", name, i, got, want)
			}
		}
		switch tc.body {
		case "":
			if !bytes.Equal(rec.Body.Bytes(), content) {
				t.Errorf("%s: %d bytes, want the whole file", name, rec.Body.Len())
			}
		case "-":
		default:
			if rec.Body.String() != tc.body {
				t.Errorf("%s: body %q, want %q", name, rec.Body, tc.body)
			}
		}
	}
}

func TestServeSeveralRanges(t *testing.T) {
	store := newTestStore(t)
	content := []byte(strings.Repeat("a", 100) + "01" + strings.Repeat("b", 200) + "56" + strings.Repeat("c", 100))
	putTestObject(t, store, "f.txt", content, objectstore.PutOptions{ContentType: "text/plain"})
	s := newTestServe(t, store, nil)
	req := httptest.NewRequest(http.MethodGet, "/f.txt", nil)
	req.Header.Set("Range", "bytes=302-303,100-101")
	rec := serveAsset(t, s, req)
	body := rec.Body.String()
	ctype := rec.Header().Get("Content-Type")
	if rec.Code != http.StatusPartialContent || !strings.HasPrefix(ctype, "multipart/byteranges") ||
		rec.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("two ranges: %d %q, Content-Length %s for %d bytes: %q", rec.Code, ctype, rec.Header().Get("Content-Length"), len(body), body)
	}
	// A standard multipart reader finds both parts, in ascending order.
	_, params, _ := mime.ParseMediaType(ctype)
	mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
	for _, want := range []struct{ crange, data string }{{"bytes 100-101/404", "01"}, {"bytes 302-303/404", "56"}} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %s: %v in %q", want.crange, err, body)
		}
		data, _ := io.ReadAll(p)
		if p.Header.Get("Content-Range") != want.crange || string(data) != want.data || p.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("part %v %q, want %s %q", p.Header, data, want.crange, want.data)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("after two parts: %v", err)
	}
}

// TestServeIfRangeCostsAHeadAndOneGet: If-Range is checked against a
// HEAD, so a stale copy costs one GET of the whole file (checking it on a
// ranged GET's answer cost two GETs, the first one's bytes thrown away).
func TestServeIfRangeCostsAHeadAndOneGet(t *testing.T) {
	store := &callCounter{Store: newTestStore(t)}
	info := putTestObject(t, store, "f.txt", []byte("0123456789"), objectstore.PutOptions{ContentType: "text/plain"})
	s := newTestServe(t, store, nil)
	for _, ifRange := range []string{info.ETag, `"stale"`} {
		store.heads, store.gets, store.ranges = 0, 0, nil
		req := httptest.NewRequest(http.MethodGet, "/f.txt", nil)
		req.Header.Set("Range", "bytes=2-3")
		req.Header.Set("If-Range", ifRange)
		serveAsset(t, s, req)
		if store.heads != 1 || store.gets != 1 {
			t.Errorf("If-Range %s: %d HEAD and %d GET, want 1 and 1", ifRange, store.heads, store.gets)
		}
	}
}

// getAfterHeadFails is a store whose Stat answers and whose Get fails.
type getAfterHeadFails struct{ objectstore.Store }

func (getAfterHeadFails) Get(context.Context, string, *objectstore.ByteRange, string) (*objectstore.Part, error) {
	return nil, objectstore.ErrUnavailable
}

// TestServeErrorsCarryNoObjectHeaders: a 416, a 412 or a store error is
// not the object: no ETag, Last-Modified or Cache-Control a shared cache
// could store it under.
func TestServeErrorsCarryNoObjectHeaders(t *testing.T) {
	store := newTestStore(t)
	putTestObject(t, store, "f.txt", []byte("0123456789"), objectstore.PutOptions{ContentType: "text/plain", CacheControl: "public, max-age=31536000, immutable"})
	s := newTestServe(t, store, nil)
	failing := newTestServe(t, getAfterHeadFails{store}, nil)
	for _, tc := range []struct {
		serve   *Serve
		headers []string
		status  int
	}{
		{s, []string{"Range", "bytes=100-"}, http.StatusRequestedRangeNotSatisfiable},
		{s, []string{"Range", "bytes=5-1"}, http.StatusRequestedRangeNotSatisfiable},
		{s, []string{"If-Match", `"other"`}, http.StatusPreconditionFailed},
		{failing, []string{"If-None-Match", `"other"`}, http.StatusServiceUnavailable},
		{failing, []string{"Range", "bytes=0-0,5-5"}, http.StatusServiceUnavailable},
	} {
		req := httptest.NewRequest(http.MethodGet, "/f.txt", nil)
		req.Header.Set(tc.headers[0], tc.headers[1])
		rec := serveAsset(t, tc.serve, req)
		if rec.Code != tc.status {
			t.Fatalf("%v: %d, want %d", tc.headers, rec.Code, tc.status)
		}
		if tc.status == http.StatusRequestedRangeNotSatisfiable && rec.Header().Get("Content-Range") != "bytes */10" {
			t.Errorf("%v: Content-Range %q", tc.headers, rec.Header().Get("Content-Range"))
		}
		for _, name := range []string{"Etag", "Last-Modified", "Cache-Control", "Content-Disposition", "Content-Length"} {
			if v := rec.Header().Get(name); v != "" {
				t.Errorf("%v: %d with %s: %s", tc.headers, tc.status, name, v)
			}
		}
	}
}

// TestServeEmptyFileIgnoresRange: an empty file has no byte to range
// over; any Range gets the file as it is (200, empty), never a 206 of
// nothing.
func TestServeEmptyFileIgnoresRange(t *testing.T) {
	store := newTestStore(t)
	putTestObject(t, store, "empty.txt", nil, objectstore.PutOptions{ContentType: "text/plain"})
	s := newTestServe(t, store, nil)
	for _, rng := range []string{"bytes=0-", "bytes=-5", "bytes=0-0,2-3"} {
		req := httptest.NewRequest(http.MethodGet, "/empty.txt", nil)
		req.Header.Set("Range", rng)
		rec := serveAsset(t, s, req)
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Range") != "" || rec.Header().Get("Content-Length") != "0" {
			t.Errorf("%s on an empty file: %d, %d bytes, Content-Range %q", rng, rec.Code, rec.Body.Len(), rec.Header().Get("Content-Range"))
		}
	}
}
