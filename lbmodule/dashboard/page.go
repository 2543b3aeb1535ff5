package dashboard

import (
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
)

// page is the whole dashboard: one HTML file with its style and script
// inline, nothing fetched from elsewhere, so it works offline and behind
// any authentication in front of the handler.
//
//go:embed page.html
var page string

// servePage answers the page with a fresh CSP nonce: only its own inline
// style and script run, and it may only talk to its own origin.
func servePage(w http.ResponseWriter, r *http.Request) error {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	nonce := base64.RawStdEncoding.EncodeToString(b)
	body := strings.ReplaceAll(page, "{{NONCE}}", nonce)
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+
		"'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
	return nil
}
