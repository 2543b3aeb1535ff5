package assetcdn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// pngBytes starts like a PNG file, so sniffing says image/png.
func pngBytes(n int) []byte {
	b := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, n)...)
	return b
}

func newTestStore(t testing.TB) *objectstore.FileStore {
	t.Helper()
	fs := &objectstore.FileStore{Root: t.TempDir(), PublicBaseURL: "https://cdn.example.com/"}
	if err := fs.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	return fs
}

func newTestOffload(t testing.TB, store objectstore.Store, configure func(*Offload)) *Offload {
	t.Helper()
	o := &Offload{SignSecret: []string{string(testSecret)}}
	if configure != nil {
		configure(o)
	}
	if err := o.prepare(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	o.store, o.logger = store, zap.NewNop()
	return o
}

// objectKeys lists what the store holds.
func objectKeys(t testing.TB, s objectstore.Store) []string {
	t.Helper()
	var keys []string
	if err := s.List(context.Background(), "", func(oi objectstore.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// formPart is one part of a test multipart body.
type formPart struct {
	name, filename, value string
	content               []byte
}

func multipartBody(t testing.TB, parts ...formPart) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		if p.filename == "" && p.content == nil {
			_ = mw.WriteField(p.name, p.value)
			continue
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, p.name, p.filename))
		h.Set("Content-Type", "text/html") // a lie the handler must ignore
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(p.content)
	}
	_ = mw.Close()
	return &buf, mw.FormDataContentType()
}

// backendSeen records what the next handler received.
type backendSeen struct {
	called bool
	form   map[string][]string
	files  map[string][]*multipart.FileHeader // file parts that got through
	query  string
}

func (b *backendSeen) handler(status int) caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		b.called = true
		b.query = r.URL.RawQuery
		if files := lenientMultipartFiles(r); len(files) > 0 {
			b.files = map[string][]*multipart.FileHeader{"(read as PHP reads it)": files}
			return fmt.Errorf("backend received file parts an application would read: %v", files)
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil && err != http.ErrNotMultipart {
			return err
		}
		if r.Form == nil {
			_ = r.ParseForm()
		}
		b.form = r.Form
		if r.MultipartForm != nil && len(r.MultipartForm.File) > 0 {
			b.files = r.MultipartForm.File
			return fmt.Errorf("backend received file parts: %v", r.MultipartForm.File)
		}
		w.WriteHeader(status)
		return nil
	})
}

// lenientMultipartFiles reads the body the way PHP, Rack and Express
// find multipart uploads: a Content-Type that starts with "multipart/"
// in any case and a boundary= anywhere in it (PHP), parsed or not by Go's
// mime package. It returns the file parts found, and leaves the body
// readable for the rest of the handler.
func lenientMultipartFiles(r *http.Request) []*multipart.FileHeader {
	ct := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type")))
	i := strings.Index(ct, "boundary=")
	if !strings.HasPrefix(ct, "multipart/") || i < 0 {
		return nil
	}
	raw := r.Header.Get("Content-Type")
	raw = strings.TrimSpace(raw)[strings.Index(strings.ToLower(strings.TrimSpace(raw)), "boundary=")+len("boundary="):]
	boundary, _, _ := strings.Cut(strings.Trim(raw, `"`), ";")
	boundary, _, _ = strings.Cut(boundary, ",")
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var files []*multipart.FileHeader
	mr := multipart.NewReader(bytes.NewReader(body), strings.Trim(boundary, `"`))
	for {
		part, err := mr.NextPart()
		if err != nil {
			return files
		}
		if part.FileName() != "" {
			files = append(files, &multipart.FileHeader{Filename: part.FileName(), Header: part.Header})
		}
	}
}

func serve(t testing.TB, o *Offload, req *http.Request, backendStatus int) (*httptest.ResponseRecorder, *backendSeen) {
	t.Helper()
	seen := &backendSeen{}
	rec := httptest.NewRecorder()
	if err := o.ServeHTTP(rec, req, seen.handler(backendStatus)); err != nil {
		t.Logf("handler error: %v", err)
	}
	return rec, seen
}

func TestOffloadMultipartReplacesFilesWithSignedReferences(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, nil)
	avatar := pngBytes(3000)
	doc := []byte("%PDF-1.4\n" + strings.Repeat("x", 100))
	body, ctype := multipartBody(t,
		formPart{name: "title", value: "hello"},
		formPart{name: "avatar", filename: `C:\fakepath\Me.PNG`, content: avatar},
		formPart{name: "avatar[key]", value: "forged/key"},
		formPart{name: "photos[]", filename: "a.pdf", content: doc},
		formPart{name: "photos[]", filename: "b.pdf", content: doc},
	)
	req := httptest.NewRequest(http.MethodPost, "/uploads", body)
	req.Header.Set("Content-Type", ctype)
	rec, seen := serve(t, o, req, http.StatusOK)
	if rec.Code != http.StatusOK || !seen.called {
		t.Fatalf("status %d, backend called %v: %s", rec.Code, seen.called, rec.Body)
	}
	get := func(k string) string {
		if v := seen.form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if got := seen.form["avatar[key]"]; len(got) != 1 || got[0] == "forged/key" {
		t.Fatalf("avatar[key] = %q; the forged field must be dropped and replaced", got)
	}
	if get("title") != "hello" {
		t.Fatalf("plain field lost: %v", seen.form)
	}
	ref := ReferenceFromForm("avatar", get)
	if !ref.Verify(testSecret) {
		t.Fatalf("reference signature does not verify: %+v", ref)
	}
	sum := sha256.Sum256(avatar)
	if ref.SHA256 != hex.EncodeToString(sum[:]) || ref.Size != int64(len(avatar)) || ref.ContentType != "image/png" || ref.Filename != "Me.PNG" {
		t.Fatalf("reference = %+v", ref)
	}
	if !strings.HasSuffix(ref.Key, ".png") || !strings.HasPrefix(ref.Key, "uploads/") || ref.URL != "https://cdn.example.com/"+ref.Key {
		t.Fatalf("key %q url %q", ref.Key, ref.URL)
	}
	tampered := ref
	tampered.Key = "uploads/other.png"
	if tampered.Verify(testSecret) {
		t.Fatal("a changed key still verifies")
	}
	for _, f := range []string{"photos[0]", "photos[1]"} {
		if r := ReferenceFromForm(f, get); !r.Verify(testSecret) || r.ContentType != "application/pdf" {
			t.Fatalf("%s = %+v", f, r)
		}
	}
	obj, err := store.Open(context.Background(), ref.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	stored, _ := io.ReadAll(obj)
	if !bytes.Equal(stored, avatar) || obj.Info().ContentType != "image/png" || !strings.Contains(obj.Info().ContentDisposition, `filename=Me.PNG`) {
		t.Fatalf("stored object: %d bytes, info %+v", len(stored), obj.Info())
	}
}

func TestOffloadRefusals(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*Offload)
		parts     []formPart
		want      int
		wantMsg   string
	}{
		{"file over max_size", func(o *Offload) { o.MaxSize = 1000 },
			[]formPart{{name: "f", filename: "a.png", content: pngBytes(500)}, {name: "g", filename: "b.png", content: pngBytes(5000)}},
			http.StatusRequestEntityTooLarge, "larger than the 1000 bytes"},
		{"type not allowed", func(o *Offload) { o.AllowTypes = []string{"image/*"} },
			[]formPart{{name: "f", filename: "a.pdf", content: []byte("%PDF-1.4 hello")}},
			http.StatusUnsupportedMediaType, "application/pdf"},
		{"html never passes a wildcard", func(o *Offload) { o.AllowTypes = []string{"*/*"} },
			[]formPart{{name: "f", filename: "a.png", content: []byte("<html><script>alert(1)</script>")}},
			http.StatusUnsupportedMediaType, "text/html"},
		{"too many files", func(o *Offload) { o.MaxFiles = 1 },
			[]formPart{{name: "f", filename: "a.png", content: pngBytes(10)}, {name: "g", filename: "b.png", content: pngBytes(10)}},
			http.StatusRequestEntityTooLarge, "more than 1 files"},
		{"fields too large", func(o *Offload) { o.MaxFieldsSize = 100 },
			[]formPart{{name: "f", filename: "a.png", content: pngBytes(10)}, {name: "x", value: strings.Repeat("y", 200)}},
			http.StatusRequestEntityTooLarge, "form fields are larger"},
		{"same file field twice", nil,
			[]formPart{{name: "f", filename: "a.png", content: pngBytes(10)}, {name: "f", filename: "b.png", content: pngBytes(10)}},
			http.StatusBadRequest, `sent twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newTestStore(t)
			o := newTestOffload(t, store, tt.configure)
			body, ctype := multipartBody(t, tt.parts...)
			req := httptest.NewRequest(http.MethodPost, "/uploads", body)
			req.Header.Set("Content-Type", ctype)
			req.ContentLength = -1 // chunked: no early refusal
			rec, seen := serve(t, o, req, http.StatusOK)
			if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.wantMsg) {
				t.Fatalf("got %d %s, want %d containing %q", rec.Code, rec.Body, tt.want, tt.wantMsg)
			}
			if seen.called {
				t.Fatal("the backend was called for a refused upload")
			}
			if keys := objectKeys(t, store); len(keys) != 0 {
				t.Fatalf("objects left behind: %v", keys)
			}
		})
	}
}

func TestOffloadEarlyRefusalFromContentLength(t *testing.T) {
	o := newTestOffload(t, newTestStore(t), func(o *Offload) { o.MaxSize = 1000 })
	req := httptest.NewRequest(http.MethodPut, "/uploads/x", strings.NewReader("small"))
	req.ContentLength = 5000
	rec, seen := serve(t, o, req, http.StatusOK)
	if rec.Code != http.StatusRequestEntityTooLarge || seen.called {
		t.Fatalf("got %d (backend called %v)", rec.Code, seen.called)
	}
}

func TestOffloadMalformedMultipart(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, nil)
	for _, tc := range []struct{ ctype, body string }{
		{"multipart/form-data", "--x\r\n"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n\x1a\nabc"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--x--\r\n"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/uploads", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		rec, seen := serve(t, o, req, http.StatusOK)
		if rec.Code != http.StatusBadRequest || seen.called {
			t.Fatalf("%q: got %d %s", tc.body, rec.Code, rec.Body)
		}
	}
	if keys := objectKeys(t, store); len(keys) != 0 {
		t.Fatalf("objects left behind: %v", keys)
	}
}

func TestOffloadCleanupOnBackendStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		kept   bool
	}{{200, true}, {201, true}, {422, true}, {500, false}, {503, false}} {
		store := newTestStore(t)
		o := newTestOffload(t, store, nil)
		body, ctype := multipartBody(t, formPart{name: "f", filename: "a.png", content: pngBytes(100)})
		req := httptest.NewRequest(http.MethodPost, "/uploads", body)
		req.Header.Set("Content-Type", ctype)
		rec, seen := serve(t, o, req, tc.status)
		if rec.Code != tc.status || !seen.called {
			t.Fatalf("backend status %d: client got %d", tc.status, rec.Code)
		}
		if kept := len(objectKeys(t, store)) == 1; kept != tc.kept {
			t.Fatalf("backend status %d: object kept = %v, want %v", tc.status, kept, tc.kept)
		}
	}
}

func TestOffloadRawPut(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, func(o *Offload) { o.RawField = "document" })
	content := []byte("%PDF-1.7\nbody")
	req := httptest.NewRequest(http.MethodPut, "/uploads/report", bytes.NewReader(content))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Disposition", `attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf`)
	rec, seen := serve(t, o, req, http.StatusNoContent)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	ref := ReferenceFromForm("document", func(k string) string {
		if v := seen.form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	})
	if !ref.Verify(testSecret) || ref.Filename != "résumé.pdf" || ref.Size != int64(len(content)) {
		t.Fatalf("reference %+v", ref)
	}
}

func TestOffloadRespondJSON(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, func(o *Offload) { o.Respond = "json" })
	body, ctype := multipartBody(t, formPart{name: "f", filename: "a.png", content: pngBytes(10)}, formPart{name: "note", value: "n"})
	req := httptest.NewRequest(http.MethodPost, "/uploads", body)
	req.Header.Set("Content-Type", ctype)
	rec, seen := serve(t, o, req, http.StatusOK)
	if rec.Code != http.StatusCreated || seen.called {
		t.Fatalf("status %d, backend called %v", rec.Code, seen.called)
	}
	var got struct {
		Files  []FileReference   `json:"files"`
		Fields map[string]string `json:"fields"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != 1 || !got.Files[0].Verify(testSecret) || got.Fields["note"] != "n" {
		t.Fatalf("answer %s", rec.Body)
	}
}

func TestOffloadContentAddressedKeysDedupe(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, func(o *Offload) { o.Key = "cas/{sha256}{ext}" })
	content := pngBytes(2048)
	sum := sha256.Sum256(content)
	for i := 0; i < 2; i++ {
		body, ctype := multipartBody(t, formPart{name: "f", filename: "a.png", content: content})
		req := httptest.NewRequest(http.MethodPost, "/uploads", body)
		req.Header.Set("Content-Type", ctype)
		if rec, _ := serve(t, o, req, http.StatusOK); rec.Code != http.StatusOK {
			t.Fatalf("upload %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	want := "cas/" + hex.EncodeToString(sum[:]) + ".png"
	if keys := objectKeys(t, store); len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys %v, want only %s", keys, want)
	}
}

func TestOffloadAuthorizeBeforeStoring(t *testing.T) {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// httptest.NewRequest's client is 192.0.2.1; the spoofed
		// forwarding headers the client added never reach the endpoint.
		trusted := r.Header.Get("X-Forwarded-For") == "192.0.2.1" && r.Header.Get("X-Real-Ip") == "" &&
			r.Header.Get("X-Forwarded-Host") == "example.com" && r.Header.Get("X-Forwarded-Proto") == "http"
		if trusted && r.Header.Get("Cookie") == "session=ok" && r.Header.Get("X-Forwarded-Uri") == "/uploads" && r.ContentLength <= 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="uploads"`)
		http.Error(w, "log in first", http.StatusUnauthorized)
	}))
	defer auth.Close()
	store := newTestStore(t)
	o := newTestOffload(t, store, func(o *Offload) { o.Authorize = auth.URL + "/authorize" })
	for _, cookie := range []string{"session=bad", "session=ok"} {
		body, ctype := multipartBody(t, formPart{name: "f", filename: "a.png", content: pngBytes(10)})
		req := httptest.NewRequest(http.MethodPost, "/uploads", body)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Cookie", cookie)
		req.Header.Set("X-Forwarded-For", "10.9.9.9")
		req.Header.Set("X-Real-IP", "10.9.9.9")
		rec, seen := serve(t, o, req, http.StatusOK)
		n := len(objectKeys(t, store))
		switch cookie {
		case "session=bad":
			if rec.Code != http.StatusUnauthorized || seen.called || n != 0 || rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatalf("refused upload: %d, backend %v, %d objects", rec.Code, seen.called, n)
			}
		default:
			if rec.Code != http.StatusOK || n != 1 {
				t.Fatalf("authorized upload: %d, %d objects", rec.Code, n)
			}
		}
	}
}

func TestOffloadPassesThroughNonUploads(t *testing.T) {
	o := newTestOffload(t, newTestStore(t), nil)
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/uploads", nil),
		httptest.NewRequest(http.MethodPost, "/uploads", strings.NewReader("a=b")),
	} {
		if req.Method == http.MethodPost {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		rec, seen := serve(t, o, req, http.StatusOK)
		if !seen.called || rec.Code != http.StatusOK {
			t.Fatalf("%s: not passed through", req.Method)
		}
	}
}

func TestOffloadRequiresSecret(t *testing.T) {
	o := &Offload{}
	if err := o.prepare(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "sign_secret is required") {
		t.Fatalf("Validate() = %v", err)
	}
	short := &Offload{SignSecret: []string{"short"}}
	if err := short.prepare(); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}

func TestFileStoreLeavesNoTempFiles(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, func(o *Offload) { o.MaxSize = 100 })
	body, ctype := multipartBody(t, formPart{name: "f", filename: "a.png", content: pngBytes(1000)})
	req := httptest.NewRequest(http.MethodPost, "/uploads", body)
	req.Header.Set("Content-Type", ctype)
	serve(t, o, req, http.StatusOK)
	entries, _ := os.ReadDir(filepath.Join(store.Root, ".caddylb-tmp")) // the file store's in-progress writes
	if len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestOffloadDropsForgedAndReplayedReferencesOnly(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, nil)
	body, ctype := multipartBody(t,
		formPart{name: "user[name]", value: "Ada"},
		formPart{name: "user[avatar]", filename: "me.png", content: pngBytes(100)},
		formPart{name: "user[avatar][key]", value: "forged.png"},
		// A replayed reference for a field without a file this time.
		formPart{name: "doc[key]", value: "uploads/someone-elses.pdf"},
		formPart{name: "doc[signature]", value: "AAAA"},
		formPart{name: "doc_title", value: "kept"},
		// PHP reads this as pic[signature]: the pic group goes too.
		formPart{name: "pic[key]", value: "uploads/x.png"},
		formPart{name: "pic[signature]x", value: "AAAA"},
		formPart{name: "link[url]", value: "https://example.com"},
	)
	req := httptest.NewRequest(http.MethodPost, "/uploads?doc[key]=q.pdf&doc[signature]=BBBB&page=2&x[signature]y=1&z[key];=2", body)
	req.Header.Set("Content-Type", ctype)
	rec, seen := serve(t, o, req, http.StatusOK)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	for _, kept := range []string{"user[name]", "doc_title", "link[url]", "page"} {
		if len(seen.form[kept]) != 1 {
			t.Errorf("plain field %q lost: %v", kept, seen.form)
		}
	}
	for _, dropped := range []string{"doc[key]", "doc[signature]", "pic[key]", "pic[signature]x", "x[signature]y"} {
		if v := seen.form[dropped]; len(v) != 0 {
			t.Errorf("client-sent %q reached the backend: %q", dropped, v)
		}
	}
	if q := seen.query; strings.Contains(q, "signature") || strings.Contains(q, ";") || !strings.Contains(q, "page=2") {
		t.Errorf("query reaching the backend: %q", q)
	}
	if v := seen.form["user[avatar][key]"]; len(v) != 1 || v[0] == "forged.png" {
		t.Errorf("user[avatar][key] = %q, want only the load balancer's", v)
	}
	if ref := ReferenceFromForm("user[avatar]", func(k string) string { return first(seen.form[k]) }); !ref.Verify(testSecret) {
		t.Errorf("user[avatar] reference does not verify: %+v", ref)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func TestOffloadRefusesControlCharactersInFieldNames(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, nil)
	for _, disp := range []string{
		"form-data; name*=utf-8''a%0Auploads%2Fvictim.png; filename=\"x.png\"",
		"form-data; name=\"" + strings.Repeat("n", 300) + "\"; filename=\"x.png\"",
	} {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", disp)
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(pngBytes(10))
		_ = mw.Close()
		req := httptest.NewRequest(http.MethodPost, "/uploads", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		rec, seen := serve(t, o, req, http.StatusOK)
		if rec.Code != http.StatusBadRequest || seen.called || !strings.Contains(rec.Body.String(), "name") {
			t.Errorf("%.60s: %d %s, backend called %v", disp, rec.Code, rec.Body, seen.called)
		}
	}
	if keys := objectKeys(t, store); len(keys) != 0 {
		t.Fatalf("refused uploads stored %v", keys)
	}
}

func TestOffloadCleanupKeepsADedupedObjectOfAnotherUpload(t *testing.T) {
	store := newTestStore(t)
	o := newTestOffload(t, store, func(o *Offload) { o.Key = "cas/{sha256}{ext}" })
	content := pngBytes(2048)
	for i, status := range []int{http.StatusOK, http.StatusInternalServerError} {
		body, ctype := multipartBody(t, formPart{name: "f", filename: "a.png", content: content})
		req := httptest.NewRequest(http.MethodPost, "/uploads", body)
		req.Header.Set("Content-Type", ctype)
		serve(t, o, req, status)
		if keys := objectKeys(t, store); len(keys) != 1 {
			t.Fatalf("after upload %d (backend %d): keys %v; the first user's accepted object must stay", i, status, keys)
		}
	}
}

// bypassContentTypes are Content-Types Go's mime.ParseMediaType refuses
// but PHP, Rack or Express read as multipart (found by attacking the
// built binary): they once went to the backend untouched, forged
// references and an over-size shell.php included.
var bypassContentTypes = []string{
	"multipart/form-data, text/plain; boundary=b",
	"multipart/form-data boundary=b",
	"multipart/form-data,; boundary=b",
	"multipart/form-data; boundary=b; boundary=c",
	"multipart/form-data;boundary=b;",
	"MULTIPART/FORM-DATA; boundary=b, text/plain",
	"multipart/form-data; boundary=b;\x00",
	"multipart/form-data; boundary=\"b",
}

// TestOffloadNeverPassesAnUploadThrough: whatever the method and the
// spelling of its Content-Type, a body that an application could read as
// a multipart upload is offloaded or refused with a message naming the
// problem; it never reaches the backend with its files.
func TestOffloadNeverPassesAnUploadThrough(t *testing.T) {
	boundary := func() string {
		_, ct := multipartBody(t)
		return strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	}
	type result struct {
		status int
		msg    string // in the error message, when refused
	}
	for _, tc := range []struct {
		name    string
		method  string
		headers [][2]string // Content-Type lines use "%s" for the boundary
		want    result
	}{
		{"comma then another type", "POST", [][2]string{{"Content-Type", "multipart/form-data, text/plain; boundary=%s"}}, result{400, "does not parse"}},
		{"no semicolon before boundary", "POST", [][2]string{{"Content-Type", "multipart/form-data boundary=%s"}}, result{400, "does not parse"}},
		{"comma semicolon", "POST", [][2]string{{"Content-Type", "multipart/form-data,; boundary=%s"}}, result{400, "does not parse"}},
		{"two boundaries", "POST", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s; boundary=x"}}, result{400, "does not parse"}},
		{"two Content-Type lines", "POST", [][2]string{{"Content-Type", "text/plain"}, {"Content-Type", "multipart/form-data; boundary=%s"}}, result{400, "2 Content-Type lines"}},
		{"multipart/mixed", "POST", [][2]string{{"Content-Type", "multipart/mixed; boundary=%s"}}, result{415, "multipart/mixed"}},
		{"upper case", "POST", [][2]string{{"Content-Type", "MULTIPART/FORM-DATA; BOUNDARY=%s"}}, result{200, ""}},
		{"DELETE", "DELETE", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s"}}, result{200, ""}},
		{"GET", "GET", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s"}}, result{200, ""}},
		{"OPTIONS", "OPTIONS", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s"}}, result{200, ""}},
		{"lower-case method", "post", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s"}}, result{200, ""}},
		{"identity then gzip", "POST", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s"}, {"Content-Encoding", "identity"}, {"Content-Encoding", "gzip"}}, result{415, "gzip"}},
		{"identity, br", "POST", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s"}, {"Content-Encoding", "identity, br"}}, result{415, "br"}},
		{"identity alone", "POST", [][2]string{{"Content-Type", "multipart/form-data; boundary=%s"}, {"Content-Encoding", "Identity"}}, result{200, ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newTestStore(t)
			o := newTestOffload(t, store, nil)
			b := boundary()
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			_ = mw.SetBoundary(b)
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="avatar"; filename="shell.php"`)
			w, _ := mw.CreatePart(h)
			_, _ = w.Write([]byte("<?php system($_GET['c']);"))
			_ = mw.WriteField("avatar[signature]", "forged")
			_ = mw.Close()
			req := httptest.NewRequest(tc.method, "/uploads", &buf)
			for _, kv := range tc.headers {
				v := kv[1]
				if strings.Contains(v, "%s") {
					v = fmt.Sprintf(v, b)
				}
				req.Header.Add(kv[0], v)
			}
			rec, seen := serve(t, o, req, http.StatusOK)
			if rec.Code != tc.want.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want.status, rec.Body)
			}
			if len(seen.files) > 0 {
				t.Fatalf("the backend received file parts: %v", seen.files)
			}
			if tc.want.status != 200 {
				if seen.called {
					t.Fatal("backend called after a refusal")
				}
				if !strings.Contains(rec.Body.String(), tc.want.msg) {
					t.Fatalf("error %s does not name %q", rec.Body, tc.want.msg)
				}
				return
			}
			if !seen.called || seen.form["avatar[key]"] == nil {
				t.Fatalf("stored file's reference did not reach the backend: %v", seen.form)
			}
			if seen.form["avatar[signature]"][0] == "forged" {
				t.Fatal("the client's forged signature reached the backend")
			}
		})
	}
}

// TestOffloadUntypedPostBodiesPassOn: a POST body without a Content-Type
// (or with an empty one) is not a file: clients send JSON untyped more
// often. A multipart body always has a type, or is refused.
func TestOffloadUntypedPostBodiesPassOn(t *testing.T) {
	o := newTestOffload(t, newTestStore(t), nil)
	for _, ct := range []string{"", " "} {
		req := httptest.NewRequest(http.MethodPost, "/uploads", strings.NewReader(`{"a":1}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec, seen := serve(t, o, req, http.StatusOK)
		if rec.Code != http.StatusOK || !seen.called || seen.form["file[key]"] != nil {
			t.Fatalf("Content-Type %q: %d, form %v", ct, rec.Code, seen.form)
		}
	}
}
