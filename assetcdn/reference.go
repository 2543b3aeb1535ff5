package assetcdn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// FileReference is what the application receives instead of an uploaded
// file's bytes. Each field reaches the backend as a form field named
// "<field>[<name>]", e.g. "avatar[key]", which PHP, Rails, Express (qs)
// and Django-style parsers group into one object.
type FileReference struct {
	// The form field the file was sent in ("avatar", or "photos[0]" for
	// the first file of "photos[]").
	Field string `json:"field"`
	// The object key in the store.
	Key string `json:"key"`
	// The public (CDN) URL, or "" when the store has no public_url.
	URL string `json:"url"`
	// Size in bytes.
	Size int64 `json:"size"`
	// Hex SHA-256 of the content.
	SHA256 string `json:"sha256"`
	// The sniffed Content-Type the object is stored with.
	ContentType string `json:"content_type"`
	// The sanitized original filename.
	Filename string `json:"filename"`
	// Unix seconds of the upload; applications reject old references.
	UploadedAt int64 `json:"uploaded_at"`
	// HMAC-SHA256 of the fields above, base64url without padding.
	Signature string `json:"signature,omitempty"`
}

// referenceSignatureVersion starts the signed string so that a future
// format can never verify as this one.
const referenceSignatureVersion = "caddylb-upload-v1"

// signingString is what the signature covers: every field, one per line,
// in a fixed order. Newlines cannot occur inside the fields (the filename
// is sanitized of control characters, the others are generated).
func (f FileReference) signingString() string {
	return strings.Join([]string{
		referenceSignatureVersion,
		f.Field,
		f.Key,
		f.URL,
		strconv.FormatInt(f.Size, 10),
		f.SHA256,
		f.ContentType,
		f.Filename,
		strconv.FormatInt(f.UploadedAt, 10),
	}, "\n")
}

// Sign sets Signature with secret.
func (f *FileReference) Sign(secret []byte) {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(f.signingString()))
	f.Signature = base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Verify reports whether Signature was made with one of secrets. This is
// what an application written in Go does; docs/assets.md shows the same
// check in other languages.
func (f FileReference) Verify(secrets ...[]byte) bool {
	got, err := base64.RawURLEncoding.DecodeString(f.Signature)
	if err != nil {
		return false
	}
	for _, secret := range secrets {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(f.signingString()))
		if hmac.Equal(got, mac.Sum(nil)) {
			return true
		}
	}
	return false
}

// formFields lists the reference as form fields in a fixed order.
func (f FileReference) formFields() [][2]string {
	name := func(sub string) string { return f.Field + "[" + sub + "]" }
	fields := [][2]string{
		{name("key"), f.Key},
		{name("url"), f.URL},
		{name("size"), strconv.FormatInt(f.Size, 10)},
		{name("sha256"), f.SHA256},
		{name("content_type"), f.ContentType},
		{name("filename"), f.Filename},
		{name("uploaded_at"), strconv.FormatInt(f.UploadedAt, 10)},
	}
	if f.Signature != "" {
		fields = append(fields, [2]string{name("signature"), f.Signature})
	}
	return fields
}

// ReferenceFromForm reads the reference of field from form values, for
// applications written in Go and for tests.
func ReferenceFromForm(field string, get func(string) string) FileReference {
	n := func(sub string) string { return get(field + "[" + sub + "]") }
	size, _ := strconv.ParseInt(n("size"), 10, 64)
	at, _ := strconv.ParseInt(n("uploaded_at"), 10, 64)
	return FileReference{
		Field: field, Key: n("key"), URL: n("url"), Size: size, SHA256: n("sha256"),
		ContentType: n("content_type"), Filename: n("filename"), UploadedAt: at,
		Signature: n("signature"),
	}
}
