package assetcdn

import (
	"context"
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
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/fleetinfo"
)

func init() {
	caddy.RegisterModule(Offload{})
}

// Offload streams uploaded files to an object store as they arrive and
// passes the request on with each file replaced by a signed reference
// (key, URL, size, sha256, type, name), so every web server behind the
// load balancer sees the same files. multipart/form-data is read part by
// part, never spooled to disk; a PUT (or POST of a non-form type) body is
// stored as one file.
type Offload struct {
	// The `asset_store` to write to. Default: the only one declared.
	Store string `json:"store,omitempty"`

	// Largest file in bytes. A bigger file is refused with 413 as soon
	// as it passes the limit; its partial object is removed. Default
	// 100 MiB.
	MaxSize int64 `json:"max_size,omitempty"`

	// Most files in one request. Default 10.
	MaxFiles int `json:"max_files,omitempty"`

	// Largest total size of the plain (non-file) form fields, which are
	// held in memory. Default 1 MiB.
	MaxFieldsSize int64 `json:"max_fields_size,omitempty"`

	// Content types accepted, matched against the type sniffed from the
	// bytes (never the one the client declared): "image/png", "image/*"
	// or "*/*". Wildcards never admit HTML, SVG, XML or JavaScript;
	// list them exactly to accept them. Default: every type except those.
	AllowTypes []string `json:"allow_types,omitempty"`

	// The object key template: {uuid} {sha256} {ext} {yyyy} {mm} {dd}
	// {HH}. The client's path never becomes part of the key. Default
	// "uploads/{yyyy}/{mm}/{dd}/{uuid}{ext}".
	Key string `json:"key,omitempty"`

	// HMAC-SHA256 keys that sign each file reference, so the backend can
	// trust it came from the load balancer. The first signs; list the
	// old ones after it while the backend rotates. Use {env.*}
	// placeholders. Required.
	SignSecret []string `json:"sign_secret,omitempty"`

	// "json" answers the client directly with 201 and the references as
	// JSON instead of calling the next handler. Default: pass the
	// request on.
	Respond string `json:"respond,omitempty"`

	// A URL asked before any byte is stored, with the original method,
	// headers and URI (X-Forwarded-Method, X-Forwarded-Uri) and no body,
	// like forward_auth. A 2xx answer lets the upload proceed; any other
	// answer is relayed to the client.
	Authorize string `json:"authorize,omitempty"`

	// How long the authorization request may take. Default 10s.
	AuthorizeTimeout caddy.Duration `json:"authorize_timeout,omitempty"`

	// Backend response statuses after which the stored files are
	// deleted, because the application did not accept them: codes like
	// "422" or classes like "4xx". Default "5xx". A backend that cannot
	// be reached always triggers clean-up.
	CleanupOn []string `json:"cleanup_on,omitempty"`

	// The form field name used for a raw (non-multipart) body. Default
	// "file".
	RawField string `json:"raw_field,omitempty"`

	// The slowest an upload body may arrive, in bytes per second, counted
	// only while the handler waits for the client: an upload that falls
	// one grace period's worth (min_rate × min_rate_grace) behind is cut
	// off with 408, its partial objects removed and its memory returned,
	// so that trickling clients cannot hold upload_memory. Sending fast
	// first buys at most one grace period of trickling later. While an S3
	// store holds a part buffer for the upload, the rate rises to the
	// store's part_size per part_hold_time. -1 turns the check off.
	// Default 1024 (1 KiB/s).
	MinRate int64 `json:"min_rate,omitempty"`

	// How long an upload may send nothing before it is cut off, and the
	// window the rate is averaged over. Default 10s.
	MinRateGrace caddy.Duration `json:"min_rate_grace,omitempty"`

	store      objectstore.Store
	keyTmpl    *objectstore.KeyTemplate
	secrets    [][]byte
	authClient *http.Client
	logger     *zap.Logger
}

// Defaults of Offload.
const (
	defaultMaxSize       = 100 << 20
	defaultMaxFiles      = 10
	defaultMaxFieldsSize = 1 << 20
	defaultKeyTemplate   = "uploads/{yyyy}/{mm}/{dd}/{uuid}{ext}"
	maxFormParts         = 1000
)

// CaddyModule returns the Caddy module information.
func (Offload) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.asset_offload",
		New: func() caddy.Module { return new(Offload) },
	}
}

// Provision sets defaults, resolves secrets and finds the store.
func (o *Offload) Provision(ctx caddy.Context) error {
	o.logger = ctx.Logger()
	if err := o.prepare(); err != nil {
		return err
	}
	o.publishFleet(ctx, "asset_offload", o.Store)
	if err := registerOffloadMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering asset_offload metrics: %v", err)
	}
	var err error
	if o.store, err = objectstore.Lookup(ctx, o.Store); err != nil {
		return fmt.Errorf("asset_offload: %v", err)
	}
	return nil
}

// prepare applies defaults and parses what does not need the config.
func (o *Offload) prepare() error {
	if o.MaxSize == 0 {
		o.MaxSize = defaultMaxSize
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = defaultMaxFiles
	}
	if o.MaxFieldsSize == 0 {
		o.MaxFieldsSize = defaultMaxFieldsSize
	}
	if o.Key == "" {
		o.Key = defaultKeyTemplate
	}
	if o.RawField == "" {
		o.RawField = "file"
	}
	if o.MinRate == 0 {
		o.MinRate = defaultMinRate
	}
	if o.MinRateGrace == 0 {
		o.MinRateGrace = caddy.Duration(defaultMinRateGrace)
	}
	if len(o.CleanupOn) == 0 {
		o.CleanupOn = []string{"5xx"}
	}
	if o.AuthorizeTimeout == 0 {
		o.AuthorizeTimeout = caddy.Duration(10 * time.Second)
	}
	var err error
	if o.keyTmpl, err = objectstore.ParseKeyTemplate(o.Key); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	o.secrets = nil
	for i, s := range o.SignSecret {
		// ReplaceKnown: a random secret may contain braces that are not
		// placeholders; ReplaceAll would silently drop them.
		v := repl.ReplaceKnown(s, "")
		if len(v) < 16 {
			return fmt.Errorf("asset_offload: sign_secret #%d is %d bytes after placeholders; use at least 16 random bytes", i+1, len(v))
		}
		o.secrets = append(o.secrets, []byte(v))
	}
	if o.Authorize != "" {
		o.authClient = &http.Client{
			Timeout: time.Duration(o.AuthorizeTimeout),
			// A redirect (to a login page) is the answer, not something to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return nil
}

// publishFleet tells the fleet registry which secrets sign this
// handler's references (as a digest): a backend verifying with one node's
// secrets refuses the uploads another node signed.
func (o *Offload) publishFleet(ctx context.Context, handler, store string) {
	secrets := make([]string, len(o.secrets))
	for i, s := range o.secrets {
		secrets[i] = string(s)
	}
	fleetinfo.Publish(ctx, "assets.sign_secret", handler+", store "+store, fleetinfo.SecretDigest(secrets...))
}

// Validate checks the options.
func (o *Offload) Validate() error {
	if len(o.secrets) == 0 {
		return errors.New("asset_offload: sign_secret is required, so the backend can tell references from the load balancer from forged form fields; use e.g. sign_secret {env.UPLOAD_SIGNING_SECRET}")
	}
	if o.MaxSize < 0 || o.MaxFiles < 0 || o.MaxFieldsSize < 0 {
		return errors.New("asset_offload: max_size, max_files and max_fields_size must be positive")
	}
	if o.MinRate < -1 || time.Duration(o.MinRateGrace) < time.Second {
		return fmt.Errorf("asset_offload: min_rate must be a positive rate (or off) and min_rate_grace at least 1s, got %d and %v", o.MinRate, time.Duration(o.MinRateGrace))
	}
	if o.Respond != "" && o.Respond != "json" {
		return fmt.Errorf("asset_offload: respond %q: the only choice is json", o.Respond)
	}
	for _, c := range o.CleanupOn {
		if _, _, err := parseStatusPattern(c); err != nil {
			return fmt.Errorf("asset_offload: cleanup_on: %v", err)
		}
	}
	return checkTypePatterns("asset_offload", o.AllowTypes)
}

// checkTypePatterns refuses allow_types entries that are not media type
// patterns.
func checkTypePatterns(handler string, patterns []string) error {
	for _, t := range patterns {
		if !strings.Contains(t, "/") && t != "*" {
			return fmt.Errorf("%s: allow_types %q is not a media type pattern like image/png or image/*", handler, t)
		}
	}
	return nil
}

// ServeHTTP stores the files of an upload, then runs next with the
// references in their place.
func (o *Offload) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	kind, refusal := o.bodyKind(r)
	if kind == bodyNone && refusal == nil {
		return next.ServeHTTP(w, r)
	}
	clientBody := r.Body // read past the limit only to linger after a refusal
	if refusal == nil {
		refusal = checkContentEncoding(r.Header)
	}
	if refusal != nil {
		countUpload(refusal.outcome)
		return o.refuse(w, r, clientBody, refusal.status, refusal.msg)
	}
	if limit := o.requestLimit(kind); r.ContentLength > limit {
		countUpload(outcomeTooLarge)
		return o.refuse(w, r, clientBody, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes is larger than the %d bytes allowed", r.ContentLength, limit))
	}
	if o.authClient != nil {
		if allowed, err := o.authorize(w, r); err != nil || !allowed {
			countUpload(outcomeUnauthorized)
			return err
		}
	}
	if o.MinRate > 0 {
		var guard *rateGuard
		guard, r = guardRate(w, r, o.MinRate, time.Duration(o.MinRateGrace))
		defer guard.stop()
	}
	r.Body = http.MaxBytesReader(w, r.Body, o.requestLimit(kind))
	up := &upload{o: o, r: r, started: time.Now()}
	var err error
	if kind == bodyMultipart {
		err = up.readMultipart()
	} else {
		err = up.readRaw()
	}
	if err != nil {
		up.cleanup("request failed")
		return o.failUpload(w, r, clientBody, err)
	}
	countUpload(outcomeStored)
	if o.Respond == "json" {
		return up.respondJSON(w)
	}
	if err := up.rewriteRequest(); err != nil {
		up.cleanup("rewriting the request failed")
		return o.fail(w, r, http.StatusInternalServerError, err.Error())
	}
	rec := caddyhttp.NewResponseRecorder(w, nil, nil)
	err = next.ServeHTTP(rec, r)
	status := rec.Status()
	if err != nil {
		var he caddyhttp.HandlerError
		if errors.As(err, &he) {
			status = he.StatusCode
		} else {
			status = http.StatusBadGateway
		}
	}
	// 499 is reverse_proxy's "client went away": the backend may have
	// saved the references already, so the files stay (an orphan costs
	// storage; a deleted file the application refers to loses data).
	if err != nil || (status != 499 && o.cleanupAfter(status)) {
		up.cleanup("backend answered " + strconv.Itoa(status))
	}
	return err
}

// bodyKinds are how a request carries files.
type bodyKind int

const (
	bodyNone bodyKind = iota
	bodyMultipart
	bodyRaw
)

// bodyKind decides whether the request is an upload: multipart/form-data
// of any method (Go's FormFile parses a multipart DELETE; PHP 8.4's
// request_parse_body any method's), or the body of a PUT, or of a POST
// typed as anything but an ordinary form or JSON document. A body that an
// application might read as multipart although Go cannot is refused
// rather than passed on untouched: a Content-Type that does not parse
// (PHP, Rack and Express find "multipart/form-data, text/plain;
// boundary=X" or "multipart/form-data boundary=X" by prefix), several
// Content-Type lines, or a multipart type other than form-data.
func (o *Offload) bodyKind(r *http.Request) (bodyKind, *uploadError) {
	if r.ContentLength == 0 {
		return bodyNone, nil // no body (chunked and HTTP/2 bodies of unknown length are -1)
	}
	var mt string
	switch ctypes := r.Header.Values("Content-Type"); len(ctypes) {
	case 0:
	case 1:
		if strings.TrimSpace(ctypes[0]) == "" {
			break // an empty line says no more than none
		}
		var err error
		if mt, _, err = mime.ParseMediaType(ctypes[0]); err != nil {
			return bodyNone, badContentType(ctypes[0], err)
		}
	default:
		return bodyNone, &uploadError{status: http.StatusBadRequest, outcome: outcomeBadRequest,
			msg: fmt.Sprintf("%d Content-Type lines; send exactly one", len(ctypes))}
	}
	switch {
	case mt == "multipart/form-data":
		return bodyMultipart, nil
	case strings.HasPrefix(mt, "multipart/"):
		return bodyNone, &uploadError{status: http.StatusUnsupportedMediaType, outcome: outcomeBadRequest,
			msg: fmt.Sprintf("a %s body is not accepted; send uploads as multipart/form-data", mt)}
	case strings.EqualFold(r.Method, http.MethodPut):
		return bodyRaw, nil
	case !strings.EqualFold(r.Method, http.MethodPost):
		return bodyNone, nil
	case mt == "application/x-www-form-urlencoded", mt == "application/json", strings.HasSuffix(mt, "+json"), mt == "":
		// An untyped POST body is passed on: clients send JSON untyped
		// (Python's requests.post(data=...)) more often than files.
		return bodyNone, nil
	}
	return bodyRaw, nil
}

// badContentType is the refusal of a request body whose Content-Type
// Go cannot parse.
func badContentType(value string, err error) *uploadError {
	return &uploadError{status: http.StatusBadRequest, outcome: outcomeBadRequest,
		msg: fmt.Sprintf("Content-Type %q does not parse (%v); send one media type, e.g. multipart/form-data; boundary=...", value, err)}
}

// checkContentEncoding refuses a body with any content coding, on any of
// its Content-Encoding lines: files are stored as the bytes sent, so a
// coded body would be stored coded and typed as what it decodes to.
func checkContentEncoding(h http.Header) *uploadError {
	for _, line := range h.Values("Content-Encoding") {
		for coding := range strings.SplitSeq(line, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return &uploadError{status: http.StatusUnsupportedMediaType, outcome: outcomeBadRequest,
					msg: fmt.Sprintf("uploads with Content-Encoding %q are not accepted; send the file as it is", c)}
			}
		}
	}
	return nil
}

// requestLimit is the most a request body may carry: every file at its
// limit, the fields, and generous room for multipart framing.
func (o *Offload) requestLimit(kind bodyKind) int64 {
	if kind == bodyRaw {
		return o.MaxSize
	}
	const framing = 16 << 10
	return int64(o.MaxFiles)*(o.MaxSize+framing) + o.MaxFieldsSize + maxFormParts*framing
}

// cleanupAfter reports whether a backend status means the files were not
// accepted.
func (o *Offload) cleanupAfter(status int) bool {
	for _, p := range o.CleanupOn {
		lo, hi, _ := parseStatusPattern(p)
		if status >= lo && status <= hi {
			return true
		}
	}
	return false
}

// parseStatusPattern reads "502" or "5xx" into an inclusive range.
func parseStatusPattern(p string) (lo, hi int, err error) {
	if len(p) == 3 && strings.HasSuffix(p, "xx") && p[0] >= '1' && p[0] <= '5' {
		c := int(p[0]-'0') * 100
		return c, c + 99, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 100 || n > 599 {
		return 0, 0, fmt.Errorf("%q is not a status code (e.g. 422) or class (e.g. 5xx)", p)
	}
	return n, n, nil
}

// failUpload maps an upload error to the status the client gets.
func (o *Offload) failUpload(w http.ResponseWriter, r *http.Request, clientBody io.Reader, err error) error {
	var ue *uploadError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errUploadTooSlow):
		// No lingering: the client is the one that is too slow.
		countUpload(outcomeTooSlow)
		o.logger.Info("upload cut off: slower than min_rate; stored parts removed",
			zap.Int64("min_rate", o.MinRate), zap.Duration("min_rate_grace", time.Duration(o.MinRateGrace)))
		return o.fail(w, r, http.StatusRequestTimeout, fmt.Sprintf("the upload fell %v behind its minimum rate (%d bytes/s, more while it held upload memory) and was cut off; nothing was stored", time.Duration(o.MinRateGrace), o.MinRate))
	case errors.As(err, &ue):
		countUpload(ue.outcome)
		return o.refuse(w, r, clientBody, ue.status, ue.msg)
	case errors.As(err, &mbe):
		countUpload(outcomeTooLarge)
		return o.refuse(w, r, clientBody, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the %d bytes allowed", mbe.Limit))
	case r.Context().Err() != nil:
		countUpload(outcomeClientGone)
		o.logger.Info("client went away during upload; stored parts removed", zap.Error(err))
		return nil
	case errors.Is(err, objectstore.ErrBusy):
		countUpload(outcomeStoreError)
		w.Header().Set("Retry-After", "5")
		return o.refuse(w, r, clientBody, http.StatusServiceUnavailable, "too many uploads in progress; the upload was not stored, try again shortly")
	case errors.Is(err, objectstore.ErrUnavailable):
		countUpload(outcomeStoreError)
		o.logger.Error("asset store unavailable", zap.Error(err))
		return o.refuse(w, r, clientBody, http.StatusServiceUnavailable, "asset store unavailable; the upload was not stored, try again later")
	default:
		countUpload(outcomeStoreError)
		o.logger.Error("storing upload failed", zap.Error(err))
		return o.refuse(w, r, clientBody, http.StatusBadGateway, "storing the upload failed: "+err.Error())
	}
}

// fail answers with a JSON error. The backend is never called. On
// HTTP/1.x the connection closes after the answer, since the rest of the
// body may not have been read; an HTTP/2 stream ends on its own, and
// "Connection: close" there would end the client's other streams too.
func (o *Offload) fail(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	w.Header().Set("Content-Type", "application/json")
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Lingering after a refusal, as nginx's lingering_close: an upload
// refused while its body is still arriving (413, 415) is answered at
// once, but a client that is still sending reads that answer only once
// it is done writing. Closing the connection with unread data makes the
// kernel send a reset, which destroys the answer in the client's buffer:
// the user sees "connection reset" instead of "file too large". So the
// rest of the body is read and discarded, up to lingerBytes for at most
// lingerTime, before the connection closes. HTTP/2 needs none of this:
// the stream is reset on its own, the connection stays.
const (
	lingerBytes = 64 << 20
	lingerTime  = 5 * time.Second
)

// refuse answers an upload that is not taken and lingers (see
// lingerBytes) on HTTP/1.x.
func (o *Offload) refuse(w http.ResponseWriter, r *http.Request, clientBody io.Reader, status int, msg string) error {
	rc := http.NewResponseController(w)
	// Full duplex keeps the body readable once the answer is written.
	linger := r.ProtoMajor == 1 && rc.EnableFullDuplex() == nil
	err := o.fail(w, r, status, msg)
	if linger && err == nil && rc.Flush() == nil {
		_ = rc.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, clientBody, lingerBytes)
	}
	return err
}

// cleanupContext outlives the request, so that a client that went away
// still has its objects removed.
func cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Offload)(nil)
	_ caddy.Validator             = (*Offload)(nil)
	_ caddyhttp.MiddlewareHandler = (*Offload)(nil)
)
