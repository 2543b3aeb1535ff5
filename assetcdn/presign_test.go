package assetcdn

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// presigningStore records the policy it was asked to sign.
type presigningStore struct {
	*objectstore.FileStore
	policy objectstore.PostPolicy
	err    error
}

func (s *presigningStore) PresignPost(_ context.Context, p objectstore.PostPolicy) (objectstore.PresignedPost, error) {
	s.policy = p
	if s.err != nil {
		return objectstore.PresignedPost{}, s.err
	}
	return objectstore.PresignedPost{URL: "https://bucket.example.com/", Fields: map[string]string{"key": p.Key, "Content-Type": p.ContentType, "policy": "x"}}, nil
}

func newTestPresign(t testing.TB, store objectstore.Store, configure func(*Presign)) *Presign {
	t.Helper()
	p := new(Presign)
	if configure != nil {
		configure(p)
	}
	if err := p.prepare(store); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func presignRequestOf(body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/uploads/presign", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

func servePresign(t testing.TB, p *Presign, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := p.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("asset_presign called the next handler")
		return nil
	})); err != nil {
		t.Fatalf("handler error: %v", err)
	}
	return rec
}

func TestPresignAnswersForm(t *testing.T) {
	store := &presigningStore{FileStore: newTestStore(t)}
	p := newTestPresign(t, store, func(p *Presign) {
		p.AllowTypes = []string{"image/*"}
		p.MaxSize = 1 << 20
		p.Key = "direct/{uuid}{ext}"
	})
	rec := servePresign(t, p, presignRequestOf(`{"filename": "C:\\fakepath\\Cat.PNG", "content_type": "image/png; charset=x", "size": 48213}`))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var ans presignAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^direct/[0-9a-f-]{36}\.png$`).MatchString(ans.Key) {
		t.Errorf("key %q", ans.Key)
	}
	want := objectstore.PostPolicy{Key: ans.Key, ContentType: "image/png", MinSize: 1, MaxSize: 48213, Expiry: defaultPresignPostExpiry}
	if store.policy != want {
		t.Errorf("policy %+v, want %+v", store.policy, want)
	}
	if ans.URL != "https://bucket.example.com/" || ans.Fields["key"] != ans.Key || ans.PublicURL != "https://cdn.example.com/"+ans.Key {
		t.Errorf("answer %+v", ans)
	}
	if d := time.Until(ans.ExpiresAt); d < 14*time.Minute || d > 15*time.Minute {
		t.Errorf("expires_at %s is %s away", ans.ExpiresAt, d)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
}

func TestPresignRefusals(t *testing.T) {
	store := &presigningStore{FileStore: newTestStore(t)}
	p := newTestPresign(t, store, func(p *Presign) { p.AllowTypes = []string{"image/*"}; p.MaxSize = 1000 })
	tests := []struct {
		name, body string
		want       int
	}{
		{"too large", `{"content_type": "image/png", "size": 1001}`, http.StatusRequestEntityTooLarge},
		{"empty", `{"content_type": "image/png", "size": 0}`, http.StatusBadRequest},
		{"negative", `{"content_type": "image/png", "size": -5}`, http.StatusBadRequest},
		{"no type", `{"size": 5}`, http.StatusBadRequest},
		{"bad type", `{"content_type": "png", "size": 5}`, http.StatusBadRequest},
		{"pattern image/*", `{"content_type": "image/*", "size": 5}`, http.StatusBadRequest},
		{"pattern */*", `{"content_type": "*/*", "size": 5}`, http.StatusBadRequest},
		{"pattern in the subtype", `{"content_type": "image/pn*", "size": 5}`, http.StatusBadRequest},
		{"no subtype", `{"content_type": "image/", "size": 5}`, http.StatusBadRequest},
		{"type not allowed", `{"content_type": "application/pdf", "size": 5}`, http.StatusUnsupportedMediaType},
		{"svg not admitted by image/*", `{"content_type": "image/svg+xml", "size": 5}`, http.StatusUnsupportedMediaType},
		{"unknown field", `{"content_type": "image/png", "size": 5, "key": "mine.png"}`, http.StatusBadRequest},
		{"not json", `content_type=image/png`, http.StatusBadRequest},
		{"trailing data", `{"content_type": "image/png", "size": 5} {}`, http.StatusBadRequest},
		{"huge body", `{"filename": "` + strings.Repeat("a", 9000) + `", "content_type": "image/png", "size": 5}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		rec := servePresign(t, p, presignRequestOf(tt.body))
		if rec.Code != tt.want || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.want)
		}
	}
	req := presignRequestOf(`{"content_type": "image/png", "size": 5}`)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := servePresign(t, p, req); rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("form-encoded request: %d", rec.Code)
	}
	req = httptest.NewRequest(http.MethodGet, "/uploads/presign", nil)
	if rec := servePresign(t, p, req); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestPresignStoreErrors(t *testing.T) {
	p := newTestPresign(t, newTestStore(t), nil)
	rec := servePresign(t, p, presignRequestOf(`{"content_type": "image/png", "size": 5}`))
	if rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "cannot presign") {
		t.Errorf("file store: %d %s", rec.Code, rec.Body)
	}
	store := &presigningStore{FileStore: newTestStore(t), err: objectstore.ErrUnavailable}
	p = newTestPresign(t, store, nil)
	if rec = servePresign(t, p, presignRequestOf(`{"content_type": "image/png", "size": 5}`)); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("unavailable: %d", rec.Code)
	}
}

func TestPresignAuthorize(t *testing.T) {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" || r.Header.Get("X-Forwarded-Uri") != "/uploads/presign" {
			w.Header().Set("WWW-Authenticate", "Bearer")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}))
	defer auth.Close()
	store := &presigningStore{FileStore: newTestStore(t)}
	p := newTestPresign(t, store, func(p *Presign) { p.Authorize = auth.URL })
	req := presignRequestOf(`{"content_type": "image/png", "size": 5}`)
	if rec := servePresign(t, p, req); rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") != "Bearer" || store.policy.Key != "" {
		t.Fatalf("unauthorized: %d, presigned %q", rec.Code, store.policy.Key)
	}
	req = presignRequestOf(`{"content_type": "image/png", "size": 5}`)
	req.Header.Set("Authorization", "Bearer good")
	if rec := servePresign(t, p, req); rec.Code != http.StatusOK {
		t.Fatalf("authorized: %d %s", rec.Code, rec.Body)
	}
}

func TestPresignProvisionErrors(t *testing.T) {
	for name, cfg := range map[string]func(*Presign){
		"sha256 key":     func(p *Presign) { p.Key = "{sha256}{ext}" },
		"no unique part": func(p *Presign) { p.Key = "a{ext}" },
	} {
		p := new(Presign)
		cfg(p)
		if err := p.prepare(newTestStore(t)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	p := &Presign{Expiry: 1}
	if err := p.prepare(newTestStore(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "expiry") {
		t.Errorf("1ns expiry: %v", err)
	}
}

func TestPresignUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`asset_presign {
		store media
		max_size 20MiB
		allow_types image/* application/pdf
		key direct/{uuid}{ext}
		expiry 5m
		authorize http://127.0.0.1:9000/auth
		authorize_timeout 3s
	}`)
	var p Presign
	if err := p.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if p.Store != "media" || p.MaxSize != 20<<20 || len(p.AllowTypes) != 2 || p.Key != "direct/{uuid}{ext}" ||
		time.Duration(p.Expiry) != 5*time.Minute || p.Authorize == "" || time.Duration(p.AuthorizeTimeout) != 3*time.Second {
		t.Fatalf("parsed %+v", p)
	}
	if err := new(Presign).UnmarshalCaddyfile(caddyfile.NewTestDispenser("asset_presign {\n expiry\n}")); err == nil {
		t.Error("expiry without value accepted")
	}
}

func FuzzPresignRequest(f *testing.F) {
	for _, s := range []string{
		`{"filename": "a.png", "content_type": "image/png", "size": 5}`,
		`{"content_type": "image/svg+xml", "size": 1}`,
		`{"filename": "../../x\u0000.png", "content_type": "image/png;a=b", "size": 9007199254740993}`,
		`{"size": 1e3}`, `[]`, `null`, `{"content_type": "*/*", "size": 1}`,
		`{"content_type": "image/*", "size": 1}`, `{"content_type": "IMAGE/*; q=1", "size": 1}`,
	} {
		f.Add(s)
	}
	p := newTestPresign(f, &presigningStore{FileStore: newTestStore(f)}, func(p *Presign) { p.AllowTypes = []string{"image/*"} })
	f.Fuzz(func(t *testing.T, body string) {
		req, err := parsePresignRequest(strings.NewReader(body))
		if err != nil {
			return
		}
		ctype, status, err := p.check(req)
		if err != nil {
			if status < 400 || status > 499 {
				t.Fatalf("%q refused with status %d", body, status)
			}
			return
		}
		if req.Size < 1 || req.Size > p.MaxSize || !TypeAllowed(ctype, p.AllowTypes) || activeContent[ctype] || strings.Contains(ctype, "*") {
			t.Fatalf("%q accepted: type %q size %d", body, ctype, req.Size)
		}
		key := p.keyTmpl.Render(objectstore.KeyValues{UUID: objectstore.NewUUID(), Ext: keyExtension(SanitizeFilename(req.Filename), ctype), Time: time.Now()})
		if err := objectstore.ValidateKey(key); err != nil {
			t.Fatalf("%q gave key %q: %v", body, key, err)
		}
	})
}

func TestPresignSignsTheIssuedKey(t *testing.T) {
	store := &presigningStore{FileStore: newTestStore(t)}
	for _, secret := range []string{"", string(testSecret)} {
		p := newTestPresign(t, store, func(p *Presign) {
			if secret != "" {
				p.SignSecret = []string{secret}
			}
		})
		rec := servePresign(t, p, presignRequestOf(`{"filename": "a.png", "content_type": "image/png", "size": 100}`))
		var ans presignAnswer
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		switch {
		case secret == "" && ans.Signature != "":
			t.Errorf("signature %q without sign_secret", ans.Signature)
		case secret != "" && ans.Signature != PresignSignature(testSecret, ans.Key, "image/png", 100, ans.ExpiresAt):
			t.Errorf("signature %q does not verify for %+v", ans.Signature, ans)
		case secret != "" && ans.Signature == PresignSignature(testSecret, "direct/other.png", "image/png", 100, ans.ExpiresAt):
			t.Error("the signature does not depend on the key")
		}
	}
}
