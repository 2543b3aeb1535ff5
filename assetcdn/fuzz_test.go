package assetcdn

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

// FuzzOffloadMultipart feeds arbitrary multipart bodies to the handler:
// it must never panic, must answer with a status that names the problem,
// and must leave no object behind when it refuses.
func FuzzOffloadMultipart(f *testing.F) {
	seeds := []string{
		"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n\x1a\nxx\r\n--b--\r\n",
		"--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nv\r\n--b--\r\n",
		"--b\r\nContent-Disposition: form-data; name=\"f[]\"; filename*=UTF-8''%C3%A9.pdf\r\n\r\n%PDF-1\r\n--b--\r\n",
		"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../../x\"\r\n\r\n<html>\r\n--b--\r\n",
		"--b\r\n\r\n--b--",
	}
	for _, s := range seeds {
		f.Add(s, "multipart/form-data; boundary=b", "POST")
	}
	f.Add("--b\r\n\r\n--b--", `multipart/form-data; boundary="b"; charset=x`, "POST")
	f.Add("x", "multipart/form-data", "POST")
	f.Add("raw body", "application/octet-stream", "POST")
	// Spellings Go's mime package refuses and PHP, Rack or Express read
	// as multipart; methods other than POST.
	for _, ct := range bypassContentTypes {
		f.Add(seeds[0], ct, "POST")
	}
	for _, m := range []string{"DELETE", "GET", "OPTIONS", "PATCH", "post", "PROPFIND"} {
		f.Add(seeds[0], "multipart/form-data; boundary=b", m)
	}
	store := newTestStore(f)
	o := newTestOffload(f, store, func(o *Offload) {
		o.MaxSize = 4096
		o.MaxFiles = 3
		o.MaxFieldsSize = 1024
	})
	f.Fuzz(func(t *testing.T, body, contentType, method string) {
		if !validMethod(method) {
			return
		}
		req := httptest.NewRequest(method, "/uploads", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec, seen := serve(t, o, req, http.StatusOK)
		switch rec.Code {
		case http.StatusOK:
			if !seen.called {
				t.Fatal("200 without calling the backend")
			}
			if len(seen.files) > 0 {
				t.Fatalf("file parts reached the backend: %v", seen.files)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if seen.called {
				t.Fatalf("backend called after %d", rec.Code)
			}
			if !strings.Contains(rec.Body.String(), `"error"`) {
				t.Fatalf("%d without an error message", rec.Code)
			}
			if keys := objectKeys(t, store); len(keys) != 0 {
				t.Fatalf("refused with %d but left %v", rec.Code, keys)
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body)
		}
		// Accepted uploads are removed between runs to keep the store small.
		for _, k := range objectKeys(t, store) {
			_ = store.Delete(t.Context(), k)
		}
	})
}

// validMethod reports whether m is an HTTP method token, as a server
// would accept it.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// FuzzParseKeyTemplate: a template the parser accepts renders keys that
// ValidateKey accepts, whatever the extension and time.
func FuzzParseKeyTemplate(f *testing.F) {
	for _, seed := range []string{defaultKeyTemplate, "{sha256}{ext}", "a/{http.request.uuid}{ext}", "{yyyy}/{mm}/{dd}/{HH}/{uuid}", "../{uuid}", "a//{uuid}", "{uuid", "{nope}{uuid}", "x\x00{uuid}"} {
		f.Add(seed, ".png")
	}
	f.Fuzz(func(t *testing.T, tmpl, ext string) {
		kt, err := objectstore.ParseKeyTemplate(tmpl)
		if err != nil {
			return
		}
		key := kt.Render(objectstore.KeyValues{UUID: objectstore.NewUUID(), SHA256: strings.Repeat("ab", 32), Ext: keyExtension(SanitizeFilename("f"+ext), ""), Time: time.Now()})
		if err := objectstore.ValidateKey(key); err != nil {
			t.Fatalf("template %q accepted but renders invalid key %q: %v", tmpl, key, err)
		}
	})
}

// FuzzParseManifest: any document either fails or gives a manifest
// whose entries are relative paths (or full URLs), never absolute ones.
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		`{"img/logo.png": "img/logo.3f2a9c1b.png"}`,
		`{"src/main.ts": {"file": "assets/main-4f3a.js", "css": ["assets/main.css"]}}`,
		`{"files": {}, "assets": {"logo.png": "logo-3f2a.png"}}`,
		`{"a": "//cdn.example.com/a.js", "b": "/b.js", "c": "./c.js", "d": 1}`,
		`null`, `[]`, `{"a": {"file": ""}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		m, err := ParseManifest([]byte(doc))
		if err != nil {
			return
		}
		for logical, file := range m {
			if strings.HasPrefix(logical, "/") || (strings.HasPrefix(file, "/") && !isFullURL(file)) || file == "" {
				t.Fatalf("entry %q -> %q is not relative", logical, file)
			}
		}
	})
}
