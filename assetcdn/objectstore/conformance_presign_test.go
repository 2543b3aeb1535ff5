package objectstore

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Conformance cases for presigned URLs and forms: stores that cannot
// presign say ErrUnsupported; S3 ones give URLs the store itself enforces.

func testPresignGet(t *testing.T, fx storeFixture) {
	s := fx.store
	if !fx.presigns {
		if _, err := s.PresignGet(t.Context(), "x.txt", time.Minute); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("PresignGet: %v; want ErrUnsupported", err)
		}
		return
	}
	put(t, s, "private/x.txt", []byte("secret content"), PutOptions{ContentType: "text/plain"})
	u, err := s.PresignGet(t.Context(), "private/x.txt", time.Minute)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	status, body := httpGet(t, fx.client, u)
	if status != http.StatusOK || body != "secret content" {
		t.Fatalf("GET presigned URL: %d %q", status, body)
	}
	tampered := strings.Replace(u, "x.txt", "y.txt", 1)
	if status, _ := httpGet(t, fx.client, tampered); status != http.StatusForbidden {
		t.Fatalf("GET of a presigned URL changed to another key: %d, want 403", status)
	}
	if _, err := s.PresignGet(t.Context(), "private/x.txt", 8*24*time.Hour); err == nil {
		t.Fatal("PresignGet accepted an 8-day expiry (S3 allows 7)")
	}
}

func httpGet(t *testing.T, client *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func testPresignPost(t *testing.T, fx storeFixture) {
	s := fx.store
	policy := PostPolicy{Key: "direct/photo.png", ContentType: "image/png", MinSize: 1, MaxSize: 1000, Expiry: time.Minute}
	if !fx.presigns {
		if _, err := s.PresignPost(t.Context(), policy); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("PresignPost: %v; want ErrUnsupported", err)
		}
		return
	}
	form, err := s.PresignPost(t.Context(), policy)
	if err != nil {
		t.Fatalf("PresignPost: %v", err)
	}
	for _, c := range []struct {
		name        string
		contentType string
		size        int
		wantOK      bool
	}{
		{"too large", "image/png", 1001, false},
		{"wrong type", "text/html", 10, false},
		{"allowed", "image/png", 1000, true},
	} {
		status, body := postForm(t, fx.client, form, c.contentType, bytes.Repeat([]byte{'p'}, c.size))
		if ok := status >= 200 && status < 300; ok != c.wantOK {
			t.Fatalf("%s: POST answered %d %s; want success %v", c.name, status, body, c.wantOK)
		}
		st, err := s.Stat(t.Context(), policy.Key)
		switch {
		case !c.wantOK && !errors.Is(err, ErrNotFound):
			t.Fatalf("%s: refused POST left an object: %+v, %v", c.name, st, err)
		case c.wantOK && (err != nil || st.Size != int64(c.size) || st.ContentType != "image/png"):
			t.Fatalf("%s: after POST Stat = %+v, %v", c.name, st, err)
		}
	}
	if _, err := s.PresignPost(t.Context(), PostPolicy{Key: "../x", Expiry: time.Minute}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("PresignPost of an invalid key: %v; want ErrInvalidKey", err)
	}
}

// postForm uploads file through a presigned POST form, as a browser
// would: the policy's fields, the Content-Type field, then the file last.
func postForm(t *testing.T, client *http.Client, form PresignedPost, contentType string, file []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range form.Fields {
		if k != "Content-Type" {
			mw.WriteField(k, v)
		}
	}
	mw.WriteField("Content-Type", contentType)
	fw, err := mw.CreateFormFile("file", "photo.png")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	mw.Close()
	resp, err := client.Post(form.URL, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatalf("POST %s: %v", form.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
