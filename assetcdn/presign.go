package assetcdn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Presign{})
}

// Presign hands browsers a presigned S3 POST form, so large files go
// straight to the bucket instead of through the load balancer. The
// client POSTs a JSON request:
//
//	{"filename": "cat.png", "content_type": "image/png", "size": 48213}
//
// and gets 200 with
//
//	{"url": ..., "fields": {...}, "key": ..., "public_url": ..., "expires_at": ...}
//
// then POSTs multipart/form-data to url with every field and the file
// last, in a part named "file". The key is generated here from the key
// template, never taken from the client. The form only admits exactly
// that key, exactly the declared Content-Type and at most the declared
// size, until it expires.
//
// The bytes are never seen by the load balancer, so the type checked
// against allow_types is the one the client declared, not one sniffed
// from the content: a client can store other bytes under an allowed
// type. Serve such files with asset_serve (nosniff, sandbox) or from a
// separate domain. Use asset_offload where the type must be verified.
//
// The file store cannot presign: requests get 501.
type Presign struct {
	// The `asset_store` to upload to. Default: the only one declared.
	Store string `json:"store,omitempty"`

	// Largest declared size in bytes. Default 100 MiB.
	MaxSize int64 `json:"max_size,omitempty"`

	// Content types accepted, matched against the declared type:
	// "image/png", "image/*" or "*/*". Wildcards never admit HTML, SVG,
	// XML or JavaScript; list them exactly to accept them. Default: every
	// type except those.
	AllowTypes []string `json:"allow_types,omitempty"`

	// The object key template: {uuid} {ext} {yyyy} {mm} {dd} {HH}.
	// {sha256} is not available: the content is never seen. {ext} comes
	// from the declared filename, else from the declared type. Default
	// "uploads/{yyyy}/{mm}/{dd}/{uuid}{ext}".
	Key string `json:"key,omitempty"`

	// How long the form stays valid. Default 15m.
	Expiry caddy.Duration `json:"expiry,omitempty"`

	// A URL asked before the request is answered, with the original
	// method, headers and URI and no body, exactly as asset_offload's
	// authorize. A 2xx answer lets the request proceed; any other answer
	// is relayed to the client. Without it, protect the route with a
	// preceding forward_auth or similar.
	Authorize string `json:"authorize,omitempty"`

	// How long the authorization request may take. Default 10s.
	AuthorizeTimeout caddy.Duration `json:"authorize_timeout,omitempty"`

	// HMAC-SHA256 keys, as asset_offload's: with them, the answer carries
	// a signature over key, content type, size and expiry, which the
	// client hands to the application with the key after its upload, so
	// the application can tell a key the load balancer issued from one
	// the client made up. The first signs. Use {env.*} placeholders.
	// Default: no signature.
	SignSecret []string `json:"sign_secret,omitempty"`

	store   objectstore.Store
	keyTmpl *objectstore.KeyTemplate
	// gate is an Offload used for its authorization request and its JSON
	// error answers, so both behave exactly as asset_offload's.
	gate   *Offload
	logger *zap.Logger
}

// Limits of Presign.
const (
	defaultPresignPostExpiry = 15 * time.Minute
	maxPresignRequestBytes   = 8 << 10
)

// presignRequest is what the client declares about the file.
type presignRequest struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}

// presignAnswer is the form the client uploads with.
type presignAnswer struct {
	URL         string            `json:"url"`
	Fields      map[string]string `json:"fields"`
	Key         string            `json:"key"`
	PublicURL   string            `json:"public_url,omitempty"`
	ContentType string            `json:"content_type"`
	Size        int64             `json:"size"`
	ExpiresAt   time.Time         `json:"expires_at"`
	// See PresignSignature; only with sign_secret.
	Signature string `json:"signature,omitempty"`
}

// PresignSignature is the signature of a presigned upload: base64url,
// unpadded, of HMAC-SHA256(secret, "caddylb-presign-v1\n" + key + "\n" +
// content_type + "\n" + size + "\n" + expires_at as Unix seconds).
// Applications compute the same to check a key a client reports.
func PresignSignature(secret []byte, key, contentType string, size int64, expiresAt time.Time) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strings.Join([]string{"caddylb-presign-v1", key, contentType,
		strconv.FormatInt(size, 10), strconv.FormatInt(expiresAt.Unix(), 10)}, "\n")))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// CaddyModule returns the Caddy module information.
func (Presign) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.asset_presign",
		New: func() caddy.Module { return new(Presign) },
	}
}

// Provision sets defaults and finds the store.
func (p *Presign) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	store, err := objectstore.Lookup(ctx, p.Store)
	if err != nil {
		return fmt.Errorf("asset_presign: %v", err)
	}
	if !objectstore.CapabilitiesOf(store).Presign {
		p.logger.Warn("asset_presign with a store that cannot presign (such as a file store): presigned uploads need S3; requests will get 501", zap.String("store", p.Store))
	}
	if err := p.prepare(store); err != nil {
		return err
	}
	p.gate.publishFleet(ctx, "asset_presign", p.Store)
	return nil
}

// prepare applies defaults and parses what does not need the config.
func (p *Presign) prepare(store objectstore.Store) error {
	p.store = store
	if p.logger == nil {
		p.logger = zap.NewNop()
	}
	if p.MaxSize == 0 {
		p.MaxSize = defaultMaxSize
	}
	if p.Key == "" {
		p.Key = defaultKeyTemplate
	}
	if p.Expiry == 0 {
		p.Expiry = caddy.Duration(defaultPresignPostExpiry)
	}
	var err error
	if p.keyTmpl, err = objectstore.ParseKeyTemplate(p.Key); err != nil {
		return fmt.Errorf("asset_presign: %v", err)
	}
	if p.keyTmpl.UsesHash() {
		return fmt.Errorf("asset_presign: key %q uses {sha256}, but the content is uploaded straight to the store and never seen; use {uuid}", p.Key)
	}
	p.gate = &Offload{Authorize: p.Authorize, AuthorizeTimeout: p.AuthorizeTimeout, SignSecret: p.SignSecret}
	if err := p.gate.prepare(); err != nil {
		return fmt.Errorf("asset_presign: %v", err)
	}
	p.gate.logger = p.logger
	return nil
}

// Validate checks the options.
func (p *Presign) Validate() error {
	if p.MaxSize < 0 {
		return fmt.Errorf("asset_presign: max_size %d must be positive", p.MaxSize)
	}
	if d := time.Duration(p.Expiry); d < time.Second || d > 7*24*time.Hour {
		return fmt.Errorf("asset_presign: expiry %s must be between 1s and 7 days", d)
	}
	return checkTypePatterns("asset_presign", p.AllowTypes)
}

// ServeHTTP answers a presign request. It never calls next.
func (p *Presign) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return p.gate.fail(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; POST a JSON request", r.Method))
	}
	// Only JSON: a cross-site HTML form cannot send it without a CORS
	// preflight, so another site cannot make a logged-in browser ask.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return p.gate.fail(w, r, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send application/json", r.Header.Get("Content-Type")))
	}
	if p.gate.authClient != nil {
		if allowed, err := p.gate.authorize(w, r); err != nil || !allowed {
			return err
		}
	}
	req, err := parsePresignRequest(http.MaxBytesReader(w, r.Body, maxPresignRequestBytes))
	if err != nil {
		return p.gate.fail(w, r, http.StatusBadRequest, err.Error())
	}
	ctype, status, err := p.check(req)
	if err != nil {
		return p.gate.fail(w, r, status, err.Error())
	}
	now := time.Now()
	key := p.keyTmpl.Render(objectstore.KeyValues{UUID: objectstore.NewUUID(), Ext: keyExtension(SanitizeFilename(req.Filename), ctype), Time: now})
	expiry := time.Duration(p.Expiry)
	form, err := p.store.PresignPost(r.Context(), objectstore.PostPolicy{Key: key, ContentType: ctype, MinSize: 1, MaxSize: req.Size, Expiry: expiry})
	if err != nil {
		return p.presignError(w, r, key, err)
	}
	p.logger.Debug("presigned upload", zap.String("key", key), zap.String("content_type", ctype), zap.Int64("size", req.Size))
	answer := presignAnswer{
		URL: form.URL, Fields: form.Fields, Key: key, PublicURL: p.store.PublicURL(key),
		ContentType: ctype, Size: req.Size, ExpiresAt: now.Add(expiry).UTC().Truncate(time.Second),
	}
	if len(p.gate.secrets) > 0 {
		answer.Signature = PresignSignature(p.gate.secrets[0], key, ctype, req.Size, answer.ExpiresAt)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(answer)
}

// parsePresignRequest reads the client's JSON declaration strictly: one
// object, known fields only.
func parsePresignRequest(body io.Reader) (presignRequest, error) {
	var req presignRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, fmt.Errorf("request body is larger than %d bytes", mbe.Limit)
		}
		return req, fmt.Errorf(`request body is not {"filename": ..., "content_type": ..., "size": ...}: %v`, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("request body has data after the JSON object")
	}
	return req, nil
}

// check validates the declaration and returns the normalized type, or
// the status and reason of the refusal.
func (p *Presign) check(req presignRequest) (string, int, error) {
	if req.ContentType == "" {
		return "", http.StatusBadRequest, errors.New("content_type is required")
	}
	// Parameters are dropped: the form must carry exactly the type
	// stored, and S3 compares it as a string.
	mt, _, err := mime.ParseMediaType(req.ContentType)
	if err != nil || !strings.Contains(mt, "/") || len(req.ContentType) > 255 {
		return "", http.StatusBadRequest, fmt.Errorf("content_type %q is not a media type like image/png", req.ContentType)
	}
	// A pattern would become the object's type and let the client send
	// any file under it: the declaration names the one type it uploads.
	if major, minor, _ := strings.Cut(mt, "/"); major == "" || minor == "" || strings.Contains(mt, "*") {
		return "", http.StatusBadRequest, fmt.Errorf("content_type %q is a pattern, not a type; declare the file's one type, like image/png", req.ContentType)
	}
	if !TypeAllowed(mt, p.AllowTypes) {
		return "", http.StatusUnsupportedMediaType, fmt.Errorf("content_type %s is not allowed here", mt)
	}
	if req.Size < 1 {
		return "", http.StatusBadRequest, fmt.Errorf("size %d: declare the file's size in bytes, at least 1", req.Size)
	}
	if req.Size > p.MaxSize {
		return "", http.StatusRequestEntityTooLarge, fmt.Errorf("size %d is larger than the %d bytes allowed", req.Size, p.MaxSize)
	}
	return mt, 0, nil
}

// presignError answers a failed PresignPost.
func (p *Presign) presignError(w http.ResponseWriter, r *http.Request, key string, err error) error {
	switch {
	case errors.Is(err, objectstore.ErrUnsupported):
		return p.gate.fail(w, r, http.StatusNotImplemented, "this asset store cannot presign uploads (a file store cannot; use S3, or asset_offload to upload through the load balancer)")
	case errors.Is(err, objectstore.ErrUnavailable):
		p.logger.Error("asset store unavailable", zap.String("key", key), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return p.gate.fail(w, r, http.StatusServiceUnavailable, "asset store unavailable; try again later")
	default:
		p.logger.Error("presigning upload failed", zap.String("key", key), zap.Error(err))
		return p.gate.fail(w, r, http.StatusBadGateway, "presigning the upload failed: "+err.Error())
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Presign)(nil)
	_ caddy.Validator             = (*Presign)(nil)
	_ caddyhttp.MiddlewareHandler = (*Presign)(nil)
	_ caddyfile.Unmarshaler       = (*Presign)(nil)
)
