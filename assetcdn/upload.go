package assetcdn

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"

	"go.uber.org/zap"
)

// upload is one request's files and fields as they stream past.
type upload struct {
	o       *Offload
	r       *http.Request
	started time.Time

	// items keep the original order of fields and files.
	items  []formItem
	refs   []*FileReference
	stored []string // keys to remove if the upload is not accepted
}

// formItem is a plain field (ref == nil) or a stored file.
type formItem struct {
	name, value string
	ref         *FileReference
}

// uploadError is a refusal with the status and message the client gets.
type uploadError struct {
	status  int
	outcome string
	msg     string
}

func (e *uploadError) Error() string { return e.msg }

func refuse(status int, outcome, format string, args ...any) error {
	return &uploadError{status: status, outcome: outcome, msg: fmt.Sprintf(format, args...)}
}

// readMultipart walks the parts, storing files and keeping fields.
func (u *upload) readMultipart() error {
	_, params, err := mime.ParseMediaType(u.r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return refuse(http.StatusBadRequest, outcomeBadRequest, "multipart/form-data without a valid boundary")
	}
	mr := multipart.NewReader(u.r.Body, params["boundary"])
	fieldBytes := int64(0)
	arrayIndex := map[string]int{}
	seenFile := map[string]bool{}
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return u.readError(err, "malformed multipart body")
		}
		if parts >= maxFormParts {
			return refuse(http.StatusRequestEntityTooLarge, outcomeTooLarge, "more than %d form parts", maxFormParts)
		}
		name, filename, isFile := partNames(part)
		if err := checkFieldName(name, parts+1); err != nil {
			return err
		}
		if !isFile {
			value, err := u.readField(part, u.o.MaxFieldsSize-fieldBytes)
			if err != nil {
				return err
			}
			fieldBytes += int64(len(name) + len(value))
			u.items = append(u.items, formItem{name: name, value: value})
			continue
		}
		field, err := fileFieldName(name, arrayIndex, seenFile)
		if err != nil {
			return err
		}
		ref, err := u.storeFile(part, field, filename)
		if err != nil {
			return err
		}
		if ref != nil {
			u.items = append(u.items, formItem{ref: ref})
		}
	}
}

// partNames reads a part's form name and filename from its
// Content-Disposition. The filename comes raw (RFC 2231/5987 decoded by
// mime.ParseMediaType) so that SanitizeFilename sees Windows paths too.
func partNames(part *multipart.Part) (name, filename string, isFile bool) {
	_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return "", "", false
	}
	filename, isFile = params["filename"]
	return params["name"], filename, isFile
}

// maxFieldNameBytes bounds a form field's name; real forms use a few
// dozen bytes.
const maxFieldNameBytes = 256

// checkFieldName refuses names that are empty, too long, or that hold
// control characters: a newline in a name (possible with RFC 2231
// encoding of the name parameter, a%0Ab) could shift the lines of a reference's
// signed string.
func checkFieldName(name string, partNo int) error {
	switch {
	case name == "":
		return refuse(http.StatusBadRequest, outcomeBadRequest, "form part #%d has no name", partNo)
	case len(name) > maxFieldNameBytes:
		return refuse(http.StatusBadRequest, outcomeBadRequest, "form part #%d has a name of %d bytes; at most %d are allowed", partNo, len(name), maxFieldNameBytes)
	case strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return refuse(http.StatusBadRequest, outcomeBadRequest, "form part #%d has a control character in its name %q", partNo, name)
	}
	return nil
}

// fileFieldName names a file's reference: "avatar", or "photos[0]",
// "photos[1]" for the files of "photos[]".
func fileFieldName(name string, arrayIndex map[string]int, seen map[string]bool) (string, error) {
	if base, ok := strings.CutSuffix(name, "[]"); ok {
		i := arrayIndex[base]
		arrayIndex[base] = i + 1
		return base + "[" + strconv.Itoa(i) + "]", nil
	}
	if seen[name] {
		return "", refuse(http.StatusBadRequest, outcomeBadRequest, "file field %q sent twice; name it %q to send several files", name, name+"[]")
	}
	seen[name] = true
	return name, nil
}

// readField reads a plain field within the remaining budget.
func (u *upload) readField(part io.Reader, budget int64) (string, error) {
	if budget < 0 {
		budget = 0
	}
	value, err := io.ReadAll(io.LimitReader(part, budget+1))
	if err != nil {
		return "", u.readError(err, "reading a form field")
	}
	if int64(len(value)) > budget {
		return "", refuse(http.StatusRequestEntityTooLarge, outcomeTooLarge, "form fields are larger than the %d bytes allowed", budget)
	}
	return string(value), nil
}

// readRaw stores a PUT/POST body as the single file of raw_field.
func (u *upload) readRaw() error {
	filename := ""
	if _, params, err := mime.ParseMediaType(u.r.Header.Get("Content-Disposition")); err == nil {
		filename = params["filename"]
	}
	ref, err := u.storeFile(u.r.Body, u.o.RawField, filename)
	if err != nil {
		return err
	}
	if ref != nil {
		u.items = append(u.items, formItem{ref: ref})
	}
	return nil
}

// readError tells a client that went away from a malformed body.
func (u *upload) readError(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || errors.Is(err, errUploadTooSlow) || u.r.Context().Err() != nil {
		return err
	}
	return refuse(http.StatusBadRequest, outcomeBadRequest, "%s: %v", what, err)
}

// storeFile streams one file to the store. An empty file input (no file
// chosen: empty name and body) yields no reference.
func (u *upload) storeFile(body io.Reader, field, rawName string) (*FileReference, error) {
	if len(u.refs) >= u.o.MaxFiles {
		return nil, refuse(http.StatusRequestEntityTooLarge, outcomeTooLarge, "more than %d files in one request", u.o.MaxFiles)
	}
	br := bufio.NewReaderSize(body, 4096)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, u.readError(err, "reading the upload")
	}
	if len(head) == 0 && rawName == "" {
		return nil, nil
	}
	filename := SanitizeFilename(rawName)
	ctype := DetectContentType(head, filename)
	if !TypeAllowed(ctype, u.o.AllowTypes) {
		return nil, refuse(http.StatusUnsupportedMediaType, outcomeTypeRefused, "file %q in field %q is %s, which is not allowed here", filename, field, ctype)
	}
	now := time.Now()
	kv := objectstore.KeyValues{UUID: objectstore.NewUUID(), Ext: keyExtension(filename, ctype), Time: now}
	key := u.o.keyTmpl.Render(kv)
	if u.o.keyTmpl.UsesHash() {
		key = stagingKey(kv.UUID)
	}
	lr := &limitedHashReader{r: br, limit: u.o.MaxSize, h: sha256.New()}
	opts := objectstore.PutOptions{ContentType: ctype, ContentDisposition: contentDisposition(ctype, filename), NoOverwrite: true}
	info, err := u.o.store.Put(u.r.Context(), key, lr, -1, opts)
	if lr.exceeded {
		return nil, refuse(http.StatusRequestEntityTooLarge, outcomeTooLarge, "file %q in field %q is larger than the %d bytes allowed", filename, field, u.o.MaxSize)
	}
	if err != nil {
		if rerr := u.readError(lr.readErr, "reading the upload"); lr.readErr != nil {
			return nil, rerr
		}
		return nil, err
	}
	kv.SHA256 = hex.EncodeToString(lr.h.Sum(nil))
	existed := false
	if u.o.keyTmpl.UsesHash() {
		if key, existed, err = u.promote(key, u.o.keyTmpl.Render(kv), opts); err != nil {
			return nil, err
		}
	}
	if !existed {
		// An object another upload stored first (same content) is not
		// this request's to remove.
		u.stored = append(u.stored, key)
	}
	ref := &FileReference{
		Field: field, Key: key, URL: u.o.store.PublicURL(key), Size: info.Size, SHA256: kv.SHA256,
		ContentType: ctype, Filename: filename, UploadedAt: now.Unix(),
	}
	if info.Size == 0 {
		ref.Size = lr.n
	}
	ref.Sign(u.o.secrets[0])
	u.refs = append(u.refs, ref)
	uploadedBytes.Add(float64(ref.Size))
	u.o.logger.Debug("upload stored", zap.String("key", key), zap.String("field", field), zap.Int64("size", ref.Size), zap.String("content_type", ctype))
	return ref, nil
}

// stagingKey holds a content-addressed upload until its digest is known.
func stagingKey(uuid string) string { return ".staging/" + uuid }

// promote moves a staged object to its content-addressed key. The same
// content already stored under that key is success (uploads dedupe),
// reported as existed.
func (u *upload) promote(staged, final string, opts objectstore.PutOptions) (key string, existed bool, err error) {
	ctx := u.r.Context()
	defer func() {
		cctx, cancel := cleanupContext()
		defer cancel()
		_ = u.o.store.Delete(cctx, staged)
	}()
	err = objectstore.Copy(ctx, u.o.store, staged, final, opts)
	if errors.Is(err, objectstore.ErrExists) {
		return final, true, nil
	}
	return final, false, err
}

// limitedHashReader hashes what it reads and stops past limit.
type limitedHashReader struct {
	r        io.Reader
	limit, n int64
	h        hash.Hash
	exceeded bool
	readErr  error
}

// errTooLarge ends a store write whose body passed max_size.
var errTooLarge = errors.New("upload larger than max_size")

func (l *limitedHashReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.limit {
		l.exceeded = true
		return 0, errTooLarge
	}
	l.h.Write(p[:n])
	if err != nil && err != io.EOF {
		l.readErr = err
	}
	return n, err
}

// cleanup deletes every object this request stored.
func (u *upload) cleanup(why string) {
	if len(u.stored) == 0 {
		return
	}
	ctx, cancel := cleanupContext()
	defer cancel()
	for _, key := range u.stored {
		if err := u.o.store.Delete(ctx, key); err != nil {
			u.o.logger.Error("removing an upload that was not accepted failed; the object is orphaned", zap.String("key", key), zap.String("reason", why), zap.Error(err))
			continue
		}
		cleanedUp.Inc()
	}
	u.o.logger.Info("removed uploads that were not accepted", zap.Strings("keys", u.stored), zap.String("reason", why))
	u.stored = nil
}

// rewriteRequest replaces the body with the fields and references, and
// drops what the client sent that could pass for a reference (see
// referenceGroups), so forged or replayed references never reach the
// backend.
func (u *upload) rewriteRequest() error {
	var names []string
	for _, it := range u.items {
		if it.ref == nil {
			names = append(names, it.name)
		}
	}
	groups := u.referenceGroups(names)
	u.dropQueryReferences()
	var buf bytes.Buffer
	ctype := "application/x-www-form-urlencoded"
	if mt, _, _ := mime.ParseMediaType(u.r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		mw := multipart.NewWriter(&buf)
		for _, it := range u.items {
			for _, kv := range it.fields(groups) {
				if err := mw.WriteField(kv[0], kv[1]); err != nil {
					return err
				}
			}
		}
		if err := mw.Close(); err != nil {
			return err
		}
		ctype = mw.FormDataContentType()
	} else {
		form := url.Values{}
		for _, it := range u.items {
			for _, kv := range it.fields(groups) {
				form.Add(kv[0], kv[1])
			}
		}
		buf.WriteString(form.Encode())
	}
	body := buf.Bytes()
	u.r.Body = io.NopCloser(bytes.NewReader(body))
	u.r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	u.r.ContentLength = int64(len(body))
	u.r.TransferEncoding = nil
	u.r.Header.Set("Content-Type", ctype)
	u.r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	u.r.Header.Del("Transfer-Encoding")
	u.r.Header.Del("Expect")
	u.r.Header.Del("Content-Disposition")
	return nil
}

// referenceGroups are the field names whose sub-fields the client may not
// send: the field of every stored file ("avatar": its "avatar[key]" and
// the rest come from the load balancer only), and every group whose
// signature the client sent itself ("photos[5]" of "photos[5][signature]"):
// only the load balancer makes signatures, so such a group is a forgery
// or a replay of an earlier reference.
func (u *upload) referenceGroups(clientNames []string) map[string]bool {
	groups := map[string]bool{}
	for _, ref := range u.refs {
		groups[ref.Field] = true
	}
	for _, n := range clientNames {
		// Anywhere in the name, not only at its end: PHP reads
		// "a[signature]x" as a[signature].
		if i := strings.Index(n, "[signature]"); i > 0 {
			groups[n[:i]] = true
		}
	}
	return groups
}

// inReferenceGroup reports whether name is a group or one of its
// sub-fields: "avatar", "avatar[key]", "avatar[key][x]" for "avatar";
// not "avatar_url" or "user[name]".
func inReferenceGroup(name string, groups map[string]bool) bool {
	if groups[name] {
		return true
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '[' && groups[name[:i]] {
			return true
		}
	}
	return false
}

// dropQueryReferences removes reference groups from the query string too,
// for applications that read fields from both (PHP's $_REQUEST, Go's
// r.Form).
func (u *upload) dropQueryReferences() {
	if u.r.URL.RawQuery == "" {
		return
	}
	// Pairs Go cannot parse (a ';', bad escapes) are dropped: an
	// application's own parser might read them.
	q, err := url.ParseQuery(u.r.URL.RawQuery)
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	groups := u.referenceGroups(names)
	changed := err != nil
	for n := range q {
		if inReferenceGroup(n, groups) {
			q.Del(n)
			changed = true
		}
	}
	if changed {
		u.r.URL.RawQuery = q.Encode()
		u.r.RequestURI = u.r.URL.RequestURI()
	}
}

// fields lists what an item contributes to the rewritten form.
func (it formItem) fields(groups map[string]bool) [][2]string {
	if it.ref != nil {
		return it.ref.formFields()
	}
	if inReferenceGroup(it.name, groups) {
		return nil
	}
	return [][2]string{{it.name, it.value}}
}

// respondJSON answers the client with the references: the upload is
// complete and the client posts the references to the application.
func (u *upload) respondJSON(w http.ResponseWriter) error {
	fields := map[string]string{}
	for _, it := range u.items {
		if it.ref == nil {
			fields[it.name] = it.value
		}
	}
	files := u.refs
	if files == nil {
		files = []*FileReference{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	return json.NewEncoder(w).Encode(map[string]any{"files": files, "fields": fields})
}
