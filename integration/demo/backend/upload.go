package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// uploadSecretEnv names the variable holding the asset_offload
// sign_secret, the same value the load balancer signs with.
const uploadSecretEnv = "UPLOAD_SIGNING_SECRET"

// maxReferenceAge is how long after the upload a reference is accepted.
const maxReferenceAge = 10 * time.Minute

// referenceFields are the sub-fields of a file reference, in the order
// the signature covers them after the field name.
var referenceFields = []string{"key", "url", "size", "sha256", "content_type", "filename", "uploaded_at"}

// uploadedFile is one verified reference as /upload reports it.
type uploadedFile struct {
	Field    string            `json:"field"`
	Verified bool              `json:"verified"`
	Values   map[string]string `json:"values"`
}

// upload is what an application does with a request that went through
// asset_offload: it finds every file reference ("<field>[signature]"),
// verifies the HMAC the load balancer made over the reference, and only
// then trusts the key. It answers 403 when any reference fails, 500 when
// asked to (?fail=1, to show clean-up), else the references as JSON.
//
// The check is written out here, without importing caddy-lb, to show what
// an application in any language does:
//
//	signature = base64url(HMAC-SHA256(secret, "caddylb-upload-v1\n" +
//	    field + "\n" + key + "\n" + url + "\n" + size + "\n" + sha256 +
//	    "\n" + content_type + "\n" + filename + "\n" + uploaded_at))
func (a *app) upload(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(1 << 20); err != nil && err != http.ErrNotMultipart {
		http.Error(w, "parsing form: "+err.Error(), http.StatusBadRequest)
		return
	}
	if r.MultipartForm != nil && len(r.MultipartForm.File) > 0 {
		http.Error(w, "file bytes reached the application; asset_offload should have replaced them", http.StatusBadRequest)
		return
	}
	secret := []byte(os.Getenv(uploadSecretEnv))
	var files []uploadedFile
	allOK := true
	// References come from the body only (PostForm, PHP's $_POST), never
	// the query string, and only while fresh: a replayed old reference
	// is refused even though its signature is good.
	for name := range r.PostForm {
		field, ok := strings.CutSuffix(name, "[signature]")
		if !ok {
			continue
		}
		f := uploadedFile{Field: field, Values: map[string]string{}}
		parts := []string{"caddylb-upload-v1", field}
		for _, sub := range referenceFields {
			v := r.PostForm.Get(field + "[" + sub + "]")
			f.Values[sub] = v
			parts = append(parts, v)
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(strings.Join(parts, "\n")))
		got, err := base64.RawURLEncoding.DecodeString(r.PostForm.Get(name))
		at, _ := strconv.ParseInt(f.Values["uploaded_at"], 10, 64)
		fresh := time.Since(time.Unix(at, 0)) < maxReferenceAge
		f.Verified = err == nil && len(secret) > 0 && hmac.Equal(got, mac.Sum(nil)) && fresh
		allOK = allOK && f.Verified
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Field < files[j].Field })
	w.Header().Set("Content-Type", "application/json")
	switch {
	case !allOK:
		w.WriteHeader(http.StatusForbidden)
	case r.URL.Query().Get("fail") == "1":
		w.WriteHeader(http.StatusInternalServerError)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"backend": a.name, "files": files, "fields": plainFields(r)})
}

// plainFields are the form fields that are not part of a reference.
func plainFields(r *http.Request) map[string]string {
	out := map[string]string{}
	for name, vs := range r.PostForm {
		if strings.HasSuffix(name, "]") && strings.Contains(name, "[") {
			continue
		}
		out[name] = strings.Join(vs, ",")
	}
	return out
}
