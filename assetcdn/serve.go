package assetcdn

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
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
	caddy.RegisterModule(Serve{})
}

// Serve answers GET and HEAD requests for stored files. The URL path,
// minus strip_prefix, is the object key. In redirect mode the client is
// sent to the file's public (CDN) URL, or to a presigned URL for private
// buckets; in proxy mode the file is streamed from the store with Range
// and conditional request support.
//
// Files a user uploaded are untrusted: proxied answers carry
// `X-Content-Type-Options: nosniff` and, for every type a browser could
// run script in (HTML, SVG, XML, plain text, unknown types), a
// `Content-Security-Policy` with `sandbox`, so a stored file can never act
// with the site's origin. Redirect targets are served by the bucket or
// CDN, which should live on a separate domain for the same reason.
type Serve struct {
	// The `asset_store` to read from. Default: the only one declared.
	Store string `json:"store,omitempty"`

	// "proxy" streams the file from the store through the load balancer;
	// "redirect" answers 307 with the file's public URL (the store's
	// public_url joined with the key) or, with `private`, a presigned
	// URL. Default "proxy", which works with every store; a redirect
	// whose target is this same path is served as proxy instead.
	Mode string `json:"mode,omitempty"`

	// The URL path prefix removed before the rest of the path becomes
	// the key, matched on a segment boundary: with "/media", the request
	// "/media/uploads/a.png" reads the key "uploads/a.png". Requests
	// outside the prefix get 404. Default: the path of the store's
	// public_url (e.g. "/media" for `public_url /media`), so the URLs the
	// store hands out map back to their keys. Alternatively wrap the
	// handler in `handle_path /media/*`, which strips the prefix first.
	StripPrefix *string `json:"strip_prefix,omitempty"`

	// The Cache-Control header of proxied files stored without one.
	// Files uploaded by `caddy assets sync` carry their own (immutable).
	// Default "public, max-age=3600".
	CacheControl string `json:"cache_control,omitempty"`

	// Redirect to presigned URLs, for buckets that are not publicly
	// readable. Only with mode redirect; the file store cannot presign.
	Private bool `json:"private,omitempty"`

	// How long a presigned redirect URL stays valid. Browsers may cache
	// the redirect for half this time. Default 15m.
	PresignExpiry caddy.Duration `json:"presign_expiry,omitempty"`

	// The most byte ranges one request may ask for. A Range header with
	// more is ignored and the whole file sent, as RFC 9110 allows, so
	// that no request costs the store more than a plain GET. Overlapping
	// and adjacent ranges are merged first. Default 16.
	MaxRanges int `json:"max_ranges,omitempty"`

	store       objectstore.Store
	stripPrefix string
	logger      *zap.Logger
}

// Modes of Serve.
const (
	modeProxy    = "proxy"
	modeRedirect = "redirect"
)

// Defaults of Serve.
const (
	defaultServeCacheControl    = "public, max-age=3600"
	defaultRedirectCacheControl = "public, max-age=300"
	defaultPresignGetExpiry     = 15 * time.Minute
)

// sandboxPolicy is the Content-Security-Policy of proxied files that a
// browser could render as a document: no script, no plugins, a unique
// opaque origin (sandbox without allow-same-origin), inline styles and
// same-origin images so that plain documents still look right.
const sandboxPolicy = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"

// CaddyModule returns the Caddy module information.
func (Serve) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.asset_serve",
		New: func() caddy.Module { return new(Serve) },
	}
}

// Provision sets defaults and finds the store.
func (s *Serve) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	store, err := objectstore.Lookup(ctx, s.Store)
	if err != nil {
		return fmt.Errorf("asset_serve: %v", err)
	}
	return s.prepare(store)
}

// prepare applies defaults for store and checks the options against it.
func (s *Serve) prepare(store objectstore.Store) error {
	s.store = store
	if s.Mode == "" {
		s.Mode = modeProxy
	}
	if s.CacheControl == "" {
		s.CacheControl = defaultServeCacheControl
	}
	if s.PresignExpiry == 0 {
		s.PresignExpiry = caddy.Duration(defaultPresignGetExpiry)
	}
	if s.MaxRanges == 0 {
		s.MaxRanges = defaultMaxRanges
	}
	if s.MaxRanges < 0 {
		return fmt.Errorf("asset_serve: max_ranges %d must be positive", s.MaxRanges)
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	if s.StripPrefix != nil {
		s.stripPrefix = *s.StripPrefix
	} else {
		s.stripPrefix = publicURLPath(store)
	}
	s.stripPrefix = strings.TrimRight(s.stripPrefix, "/")
	if s.stripPrefix != "" && !strings.HasPrefix(s.stripPrefix, "/") {
		return fmt.Errorf("asset_serve: strip_prefix %q must start with '/'", s.stripPrefix)
	}
	switch s.Mode {
	case modeProxy:
		if s.Private {
			return errors.New("asset_serve: private applies to mode redirect only; mode proxy reads private buckets with the store's credentials")
		}
	case modeRedirect:
		if s.Private && !objectstore.CapabilitiesOf(store).Presign {
			return errors.New("asset_serve: private needs presigned URLs, which this store cannot make (such as a file store); use mode proxy")
		}
		if !s.Private && store.PublicURL("probe") == "" {
			return errors.New("asset_serve: mode redirect needs the store's public_url, or `private` to redirect to presigned URLs")
		}
	default:
		return fmt.Errorf("asset_serve: mode %q: choose proxy or redirect", s.Mode)
	}
	if d := time.Duration(s.PresignExpiry); d < time.Second || d > 7*24*time.Hour {
		return fmt.Errorf("asset_serve: presign_expiry %s must be between 1s and 7 days", d)
	}
	return nil
}

// publicURLPath is the path of the store's public_url, "" when it has
// none or it is just "/".
func publicURLPath(store objectstore.Store) string {
	base := store.PublicURL("k")
	if base == "" {
		return ""
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/k"))
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// ServeHTTP answers with the stored file. It never calls next: a path
// under the handler's matcher that names no file is a 404.
func (s *Serve) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("asset_serve: method %s not allowed; stored files are read with GET or HEAD", r.Method))
	}
	key, ok := KeyFromPath(r.URL.Path, s.stripPrefix)
	if !ok {
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("asset_serve: path %q names no object key under %q", r.URL.Path, s.stripPrefix))
	}
	if s.Mode == modeRedirect {
		return s.redirect(w, r, key)
	}
	return s.proxy(w, r, key)
}

// KeyFromPath maps a decoded URL path to an object key: the path minus
// prefix (matched on a segment boundary) and the slash after it. It
// reports false for paths outside the prefix and for keys ValidateKey
// refuses (".." segments, empty segments, control characters), and for
// uploads still being written (".staging/"), so a path can never name
// anything outside the store's keys.
func KeyFromPath(urlPath, prefix string) (string, bool) {
	prefix = strings.TrimRight(prefix, "/")
	rest, found := strings.CutPrefix(urlPath, prefix)
	if !found || !strings.HasPrefix(rest, "/") {
		return "", false
	}
	key := rest[1:]
	if objectstore.ValidateKey(key) != nil || strings.HasPrefix(key, stagingKey("")) {
		return "", false
	}
	return key, true
}

// redirect sends the client to the file's public or presigned URL. The
// file is not looked up first: the CDN or bucket answers 404 itself.
func (s *Serve) redirect(w http.ResponseWriter, r *http.Request, key string) error {
	target, cacheControl := s.store.PublicURL(key), defaultRedirectCacheControl
	if s.Private {
		expiry := time.Duration(s.PresignExpiry)
		var err error
		if target, err = s.store.PresignGet(r.Context(), key, expiry); err != nil {
			return s.storeError(w, key, "presigning a GET", err)
		}
		// Cached no longer than half the URL's life, and only by this
		// browser: a presigned URL is a credential.
		cacheControl = "private, max-age=" + strconv.Itoa(int(expiry.Seconds()/2))
	}
	if pointsAtItself(target, r) {
		return s.proxy(w, r, key)
	}
	w.Header().Set("Cache-Control", cacheControl)
	http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	return nil
}

// pointsAtItself reports whether a redirect to target would come back to
// this handler, as with a file store whose public_url is the path
// asset_serve answers on.
func pointsAtItself(target string, r *http.Request) bool {
	u, err := url.Parse(target)
	if err != nil {
		return false
	}
	sameHost := u.Host == "" || strings.EqualFold(u.Host, r.Host)
	return sameHost && path.Clean(u.Path) == path.Clean(r.URL.Path)
}

// proxy streams the file from the store, answering Range (RFC 9110
// section 14) and conditional requests (section 13) itself, so that each
// answer costs the store what serve_range.go says: a plain or single-range
// GET is one GET.
func (s *Serve) proxy(w http.ResponseWriter, r *http.Request, key string) error {
	var ranges []objectstore.ByteRange
	kind := rangeNone
	if r.Method == http.MethodGet { // range handling is defined for GET only
		ranges, kind = parseRange(r.Header.Get("Range"), s.MaxRanges)
	}
	if r.Method == http.MethodHead || hasValidators(r.Header) || kind == rangeInvalid || (kind == rangeSome && len(ranges) > 1) {
		return s.proxyAfterStat(w, r, key, kind, ranges)
	}
	var rng *objectstore.ByteRange
	if kind == rangeSome {
		rng = &ranges[0]
	}
	part, err := s.store.Get(r.Context(), key, rng, "")
	if errors.Is(err, objectstore.ErrRangeNotSatisfiable) {
		return s.proxyAfterStat(w, r, key, kind, ranges) // for the size 416 names
	}
	if err != nil {
		return s.storeError(w, key, "reading", err)
	}
	defer part.Close()
	setObjectHeaders(w.Header(), part.Info, s.CacheControl)
	return s.copyError(key, writePart(w, r, part, rng != nil))
}

// proxyAfterStat answers what needs the object's metadata first: HEAD,
// validators, several ranges, an unsatisfiable or invalid range.
func (s *Serve) proxyAfterStat(w http.ResponseWriter, r *http.Request, key string, kind rangeKind, ranges []objectstore.ByteRange) error {
	info, err := s.store.Stat(r.Context(), key)
	if err != nil {
		return s.storeError(w, key, "looking up", err)
	}
	// The object's headers go only on answers that are the object (200,
	// 206, and 304, which must repeat its validators and caching headers,
	// RFC 9110 section 15.4.5): an error a shared cache could store under
	// them never gets them.
	switch precondition(r, info) {
	case http.StatusNotModified:
		setObjectHeaders(w.Header(), info, s.CacheControl)
		writeNotModified(w)
		return nil
	case http.StatusPreconditionFailed:
		w.WriteHeader(http.StatusPreconditionFailed)
		return nil
	}
	if kind == rangeSome && (!ifRangeHolds(r.Header, info) || info.Size == 0) {
		// A stale copy gets this version whole; an empty file has no
		// byte to range over, and is sent as it is (RFC 9110 lets a
		// server ignore Range), never as a 206 of nothing.
		kind = rangeNone
	}
	var spans []span
	switch kind {
	case rangeInvalid:
		return writeUnsatisfiable(w, info.Size)
	case rangeSome:
		if spans = resolveRanges(ranges, info.Size); len(spans) == 0 {
			return writeUnsatisfiable(w, info.Size)
		}
	}
	if r.Method == http.MethodHead {
		setObjectHeaders(w.Header(), info, s.CacheControl)
		return writePart(w, r, &objectstore.Part{Info: info, Length: info.Size}, false)
	}
	if len(spans) > 1 {
		return s.serveRanges(w, r, info, spans)
	}
	var rng *objectstore.ByteRange
	if len(spans) == 1 {
		rng = &objectstore.ByteRange{First: spans[0].off, Last: spans[0].end() - 1}
	}
	part, err := s.store.Get(r.Context(), key, rng, info.ETag)
	if err != nil {
		return s.storeError(w, key, "reading", err)
	}
	defer part.Close()
	setObjectHeaders(w.Header(), info, s.CacheControl)
	return s.copyError(key, writePart(w, r, part, rng != nil))
}

// copyError handles a copy that failed after the headers were sent:
// there is nothing left to answer, so it is logged, not returned for
// Caddy to render; a store that sent fewer bytes than it said (EOF
// before the end) aborts the answer rather than let it pass as whole.
func (s *Serve) copyError(key string, err error) error {
	if err == nil {
		return nil
	}
	s.logger.Debug("copying a stored file to the client ended early", zap.String("key", key), zap.Error(err))
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		panic(http.ErrAbortHandler)
	}
	return nil
}

// setObjectHeaders describes the stored file. Content-Type is always set,
// so ServeContent never sniffs the bytes.
func setObjectHeaders(h http.Header, info objectstore.ObjectInfo, defaultCacheControl string) {
	ctype := info.ContentType
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	if !info.LastModified.IsZero() {
		h.Set("Last-Modified", info.LastModified.UTC().Format(http.TimeFormat))
	}
	if etag := info.ETag; etag != "" {
		if !strings.HasPrefix(etag, `"`) && !strings.HasPrefix(etag, `W/"`) {
			etag = `"` + etag + `"`
		}
		h.Set("Etag", etag)
	}
	if info.CacheControl != "" {
		h.Set("Cache-Control", info.CacheControl)
	} else {
		h.Set("Cache-Control", defaultCacheControl)
	}
	if info.ContentDisposition != "" {
		h.Set("Content-Disposition", info.ContentDisposition)
	}
	if !passiveType(ctype) {
		h.Set("Content-Security-Policy", sandboxPolicy)
	}
}

// passiveType reports whether a browser opening a file of this type
// directly cannot run script in it: raster images, audio, video, fonts,
// and stylesheets and scripts (which only run when a page of some origin
// includes them, under that page's policy). PDF is passive too: browsers
// run PDF viewers isolated from the site, and Chrome's viewer does not
// render under `sandbox`.
func passiveType(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	major, _, _ := strings.Cut(mt, "/")
	switch {
	case activeContent[mt] && mt != "text/javascript" && mt != "application/javascript":
		return false
	case major == "image", major == "audio", major == "video", major == "font":
		return true
	}
	switch mt {
	case "text/css", "text/javascript", "application/javascript", "application/pdf", "application/wasm":
		return true
	}
	return false
}

// storeError answers a failed store call: 404 for a missing or invalid
// key, 503 when the store cannot be reached, 502 for anything else.
func (s *Serve) storeError(w http.ResponseWriter, key, op string, err error) error {
	switch {
	case errors.Is(err, objectstore.ErrNotFound), errors.Is(err, objectstore.ErrInvalidKey):
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("asset_serve: %s %q: %w", op, key, err))
	case errors.Is(err, objectstore.ErrUnavailable):
		s.logger.Error("asset store unavailable", zap.String("key", key), zap.String("op", op), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("asset_serve: asset store unavailable while %s %q; try again later: %w", op, key, err))
	case errors.Is(err, objectstore.ErrUnsupported):
		return caddyhttp.Error(http.StatusNotImplemented, fmt.Errorf("asset_serve: %s %q: %w", op, key, err))
	default:
		s.logger.Error("asset store error", zap.String("key", key), zap.String("op", op), zap.Error(err))
		return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("asset_serve: %s %q: %w", op, key, err))
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Serve)(nil)
	_ caddyhttp.MiddlewareHandler = (*Serve)(nil)
	_ caddyfile.Unmarshaler       = (*Serve)(nil)
)
