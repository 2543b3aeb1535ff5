package objectstore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(FileStore{})
}

// FileStore keeps objects as files under a local directory: the
// development stand-in for S3. Switching to S3 changes only the
// `asset_store` block. Every LB node must see the same directory (one
// node, or a shared mount) for uploads to be visible everywhere.
type FileStore struct {
	// The directory that holds the objects. Relative paths are relative
	// to Caddy's working directory. Created if missing.
	Root string `json:"root,omitempty"`

	// The base URL that clients fetch objects from, e.g.
	// "https://static.example.com" or "/media" when `asset_serve`
	// serves the directory. Empty means objects have no public URL.
	PublicBaseURL string `json:"public_url,omitempty"`

	root string
}

// Hidden directories under Root: object metadata sidecars and
// in-progress writes. Keys may not start with them.
const (
	fileMetaDir = ".caddylb-meta"
	fileTmpDir  = ".caddylb-tmp"
)

// fileMeta is the sidecar that keeps an object's HTTP metadata.
type fileMeta struct {
	ContentType        string            `json:"content_type,omitempty"`
	ContentDisposition string            `json:"content_disposition,omitempty"`
	CacheControl       string            `json:"cache_control,omitempty"`
	ETag               string            `json:"etag,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (FileStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "asset_store.backends.file",
		New: func() caddy.Module { return new(FileStore) },
	}
}

// Provision resolves and creates the directory.
func (f *FileStore) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	root := repl.ReplaceAll(f.Root, "")
	if root == "" {
		return errors.New("file asset store: a directory is required")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("file asset store %q: %v", root, err)
	}
	for _, dir := range []string{abs, filepath.Join(abs, fileMetaDir), filepath.Join(abs, fileTmpDir)} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("file asset store: creating %s: %v", dir, err)
		}
	}
	f.root = abs
	f.PublicBaseURL = repl.ReplaceAll(f.PublicBaseURL, "")
	return nil
}

// path maps a key to its file, refusing keys that are not valid or that
// name the hidden directories.
func (f *FileStore) path(dir, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(key, "/")
	if first == fileMetaDir || first == fileTmpDir {
		return "", fmt.Errorf("%w: %q is reserved by the file store", ErrInvalidKey, first)
	}
	return filepath.Join(f.root, dir, filepath.FromSlash(key)), nil
}

// Put writes body to a temporary file beside the store, then links it
// into place, so a reader never sees a half-written object.
func (f *FileStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	dst, err := f.path("", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return ObjectInfo{}, fmt.Errorf("file asset store: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(f.root, fileTmpDir), "put-*")
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("file asset store: %v", err)
	}
	defer os.Remove(tmp.Name())
	sum := md5.New()
	n, err := io.Copy(io.MultiWriter(tmp, sum), ctxReader{ctx, body})
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("body was %d bytes, expected %d", n, size)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("file asset store: writing %q: %w", key, err)
	}
	// The data is placed first: a refused NoOverwrite must not touch the
	// existing object's metadata.
	if opts.NoOverwrite {
		err = os.Link(tmp.Name(), dst)
		if errors.Is(err, fs.ErrExist) {
			return ObjectInfo{}, fmt.Errorf("file asset store: %q: %w", key, ErrExists)
		}
	} else {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("file asset store: placing %q: %v", key, err)
	}
	meta := fileMeta{
		ContentType:        opts.ContentType,
		ContentDisposition: opts.ContentDisposition,
		CacheControl:       opts.CacheControl,
		ETag:               `"` + hex.EncodeToString(sum.Sum(nil)) + `"`,
		Metadata:           opts.Metadata,
	}
	if err := f.writeMeta(key, meta); err != nil {
		_ = os.Remove(dst) // no object without its metadata
		return ObjectInfo{}, err
	}
	return f.Stat(ctx, key)
}

func (f *FileStore) writeMeta(key string, meta fileMeta) error {
	p, _ := f.path(fileMetaDir, key)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("file asset store: %v", err)
	}
	buf, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	// A temporary file of its own: concurrent writes of one key must not
	// interleave in a shared one.
	tmp, err := os.CreateTemp(filepath.Join(f.root, fileTmpDir), "meta-*")
	if err != nil {
		return fmt.Errorf("file asset store: metadata of %q: %v", key, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(buf)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("file asset store: metadata of %q: %v", key, err)
	}
	return nil
}

func (f *FileStore) readMeta(key string) fileMeta {
	var meta fileMeta
	p, err := f.path(fileMetaDir, key)
	if err != nil {
		return meta
	}
	if buf, err := os.ReadFile(p); err == nil {
		_ = json.Unmarshal(buf, &meta)
	}
	return meta
}

// info builds ObjectInfo from the file and its sidecar. Files placed in
// the directory by hand get a type from their extension and an ETag
// from size and modification time.
func (f *FileStore) info(key string, fi fs.FileInfo) ObjectInfo {
	meta := f.readMeta(key)
	oi := ObjectInfo{
		Key:                key,
		Size:               fi.Size(),
		ETag:               meta.ETag,
		ContentType:        meta.ContentType,
		ContentDisposition: meta.ContentDisposition,
		CacheControl:       meta.CacheControl,
		LastModified:       fi.ModTime(),
		Metadata:           meta.Metadata,
	}
	if oi.ContentType == "" {
		oi.ContentType = mime.TypeByExtension(path.Ext(key))
	}
	if oi.ETag == "" {
		oi.ETag = `"` + strconv.FormatInt(fi.Size(), 36) + "-" + strconv.FormatInt(fi.ModTime().UnixNano(), 36) + `"`
	}
	return oi
}

// Stat describes key.
func (f *FileStore) Stat(_ context.Context, key string) (ObjectInfo, error) {
	p, err := f.path("", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.IsDir()) {
		return ObjectInfo{}, fmt.Errorf("file asset store: %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("file asset store: %v", err)
	}
	return f.info(key, fi), nil
}

// Open opens key for reading.
func (f *FileStore) Open(ctx context.Context, key string) (Object, error) {
	oi, err := f.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	p, _ := f.path("", key)
	file, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("file asset store: %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("file asset store: %v", err)
	}
	return fileObject{File: file, info: oi}, nil
}

// Get opens key and positions it at rng.
func (f *FileStore) Get(ctx context.Context, key string, rng *ByteRange, ifMatch string) (*Part, error) {
	obj, err := f.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	info := obj.Info()
	if ifMatch != "" && info.ETag != ifMatch {
		obj.Close()
		return nil, fmt.Errorf("file asset store: %q: %w", key, ErrChanged)
	}
	off, n, ok := rng.Resolve(info.Size)
	if !ok {
		obj.Close()
		return nil, fmt.Errorf("file asset store: %q: %w", key, ErrRangeNotSatisfiable)
	}
	if _, err := obj.Seek(off, io.SeekStart); err != nil {
		obj.Close()
		return nil, fmt.Errorf("file asset store: %v", err)
	}
	return &Part{ReadCloser: limitedReadCloser{io.LimitReader(ctxReader{ctx, obj}, n), obj}, Info: info, Offset: off, Length: n}, nil
}

// limitedReadCloser reads a part of an open file and closes the file.
type limitedReadCloser struct {
	io.Reader
	io.Closer
}

// Delete removes key and its metadata.
func (f *FileStore) Delete(_ context.Context, key string) error {
	p, err := f.path("", key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file asset store: deleting %q: %v", key, err)
	}
	if mp, err := f.path(fileMetaDir, key); err == nil {
		_ = os.Remove(mp)
	}
	return nil
}

// List walks the directory in key order, from the deepest directory
// the prefix names, so that listing one hour of a log bucket does not
// walk the whole store.
func (f *FileStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var keys []string
	start := f.root
	if dir, _, ok := cutLast(prefix, "/"); ok {
		p, err := f.path("", dir)
		if err != nil {
			return fmt.Errorf("file asset store: listing %q: %v", prefix, err)
		}
		start = p
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == start {
			return filepath.SkipAll // nothing under the prefix
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if key == fileMetaDir || key == fileTmpDir {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(key, prefix) && d.Type().IsRegular() {
			keys = append(keys, key)
		}
		return ctx.Err()
	})
	if err != nil {
		return fmt.Errorf("file asset store: listing %q: %v", prefix, err)
	}
	sort.Strings(keys)
	for _, key := range keys {
		oi, err := f.Stat(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue // deleted while listing
		}
		if err != nil {
			return err
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

// ListDirs returns the names of the directories right under prefix
// (which ends with "/", or is empty for the top), sorted: the "common
// prefixes" of an S3 listing with the delimiter "/".
func (f *FileStore) ListDirs(_ context.Context, prefix string) ([]string, error) {
	dir := f.root
	if prefix != "" {
		p, err := f.path("", strings.TrimSuffix(prefix, "/"))
		if err != nil {
			return nil, fmt.Errorf("file asset store: listing %q: %v", prefix, err)
		}
		dir = p
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file asset store: listing %q: %v", prefix, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && (prefix != "" || e.Name() != fileMetaDir && e.Name() != fileTmpDir) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, ok bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// PublicURL joins public_url and key.
func (f *FileStore) PublicURL(key string) string { return JoinURL(f.PublicBaseURL, key) }

// Capabilities reports that a directory cannot presign.
func (f *FileStore) Capabilities() Capabilities { return Capabilities{} }

// PresignGet is not possible for a local directory.
func (f *FileStore) PresignGet(context.Context, string, time.Duration) (string, error) {
	return "", fmt.Errorf("file asset store: presigned GET: %w", ErrUnsupported)
}

// PresignPost is not possible for a local directory.
func (f *FileStore) PresignPost(context.Context, PostPolicy) (PresignedPost, error) {
	return PresignedPost{}, fmt.Errorf("file asset store: presigned POST: %w", ErrUnsupported)
}

// fileObject is an open file with its metadata.
type fileObject struct {
	*os.File
	info ObjectInfo
}

func (o fileObject) Info() ObjectInfo { return o.info }

// ctxReader stops a copy when the context ends (client gone, shutdown).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Interface guards
var (
	_ Store                 = (*FileStore)(nil)
	_ caddy.Provisioner     = (*FileStore)(nil)
	_ caddyfile.Unmarshaler = (*FileStore)(nil)
)
