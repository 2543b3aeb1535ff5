package objectstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Store is an object store: S3-compatible storage or a local directory.
// Keys are relative to the store's prefix and are checked by ValidateKey.
// Every method is safe for concurrent use.
type Store interface {
	// Put streams body to key. size is the body length, or -1 when it is
	// not known in advance (the body is then uploaded part by part, so
	// memory stays bounded by the store's part size). When Put returns an
	// error no object and no multipart upload is left behind. With
	// opts.NoOverwrite an existing key fails with ErrExists.
	Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) (ObjectInfo, error)

	// Open returns the object for reading. Seeking is allowed, so
	// http.ServeContent can answer Range requests. A missing key gives
	// ErrNotFound.
	Open(ctx context.Context, key string) (Object, error)

	// Stat describes key without reading it. A missing key gives
	// ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// Get reads key, or only rng of it, in one request: its answer
	// carries the object's metadata, so no Stat is needed first. A range
	// that starts past the end gives ErrRangeNotSatisfiable. With ifMatch
	// set, the read fails with ErrChanged unless the object still has
	// that ETag (the later reads of a response whose headers are sent).
	Get(ctx context.Context, key string, rng *ByteRange, ifMatch string) (*Part, error)

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// List calls fn for every object whose key starts with prefix, in
	// key order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// PublicURL is the URL clients fetch key from (the store's
	// public_url joined with the key), or "" when no public_url is set.
	PublicURL(key string) string

	// PresignGet returns a time-limited URL that allows a GET of key,
	// for private buckets. Stores that cannot presign give
	// ErrUnsupported.
	PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error)

	// PresignPost returns a browser-form upload (S3 POST policy) that
	// lets a client upload one object directly to the store, bypassing
	// the load balancer. Stores that cannot presign give ErrUnsupported.
	PresignPost(ctx context.Context, policy PostPolicy) (PresignedPost, error)
}

// DirLister is a Store that can list the "directories" right under a
// prefix (an S3 listing with the delimiter "/"), so that a reader of
// keys laid out by node and date (shipped logs) finds the nodes without
// listing every object. Both built-in stores have it.
type DirLister interface {
	ListDirs(ctx context.Context, prefix string) ([]string, error)
}

// PutOptions are the object's HTTP metadata and write rules.
type PutOptions struct {
	ContentType        string
	ContentDisposition string
	CacheControl       string
	// User metadata (x-amz-meta-*), e.g. the sha256 of the content.
	Metadata map[string]string
	// Refuse to replace an existing object (ErrExists).
	NoOverwrite bool
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key                string
	Size               int64
	ETag               string
	ContentType        string
	ContentDisposition string
	CacheControl       string
	LastModified       time.Time
	Metadata           map[string]string
}

// Object is an open stored object.
type Object interface {
	io.ReadSeekCloser
	Info() ObjectInfo
}

// ByteRange is a range of an object's bytes as an HTTP client asks for
// it: First to Last inclusive, First to the end (Last < 0), or the last
// Last bytes (First < 0).
type ByteRange struct {
	First, Last int64
}

// Part is what Get read: the bytes from Offset, Length of them, and the
// whole object's metadata (Info.Size is the object's size).
type Part struct {
	io.ReadCloser
	Info           ObjectInfo
	Offset, Length int64
}

// PostPolicy is what a presigned POST upload allows.
type PostPolicy struct {
	// The exact key the client must upload to.
	Key string
	// The exact Content-Type the client must send ("" allows any).
	ContentType string
	// Allowed body sizes in bytes, inclusive.
	MinSize, MaxSize int64
	// How long the form stays valid.
	Expiry time.Duration
}

// Capabilities are what a store can do beyond what every Store does, so
// that a handler refuses at load a config the store cannot serve.
type Capabilities struct {
	// Presign: PresignGet and PresignPost make URLs the store itself
	// enforces (S3). Without it they answer ErrUnsupported.
	Presign bool
}

// CapabilitiesOf reports what store can do: what its Capabilities method
// says. A store without one (another module of the asset_store.backends
// namespace) is taken at its word: it implements every method, and one
// it cannot do answers ErrUnsupported when called.
func CapabilitiesOf(store Store) Capabilities {
	if c, ok := store.(interface{ Capabilities() Capabilities }); ok {
		return c.Capabilities()
	}
	return Capabilities{Presign: true}
}

// PresignedPost is an HTML-form upload: POST multipart/form-data to URL
// with Fields, then the file in a part named "file" last.
type PresignedPost struct {
	URL    string            `json:"url"`
	Fields map[string]string `json:"fields"`
}

// Errors every store returns, test with errors.Is.
var (
	ErrNotFound    = errors.New("object not found")
	ErrExists      = errors.New("object already exists")
	ErrUnsupported = errors.New("not supported by this store")
	ErrInvalidKey  = errors.New("invalid object key")
	// The store could not be reached or answered with a server error;
	// handlers answer 502/503 and never call the backend.
	ErrUnavailable = errors.New("object store unavailable")
	// Every upload buffer is in use (upload_memory); try again shortly.
	ErrBusy = errors.New("too many uploads in progress")
	// A Get's range starts past the object's end.
	ErrRangeNotSatisfiable = errors.New("range not satisfiable")
	// A Get's ifMatch ETag is not the object's any more.
	ErrChanged = errors.New("object changed")
)

// MaxKeyLength is S3's limit on key length in bytes.
const MaxKeyLength = 1024

// ValidateKey refuses keys that could escape the store's prefix or that
// S3-compatible servers treat differently (versitygw rejects ".." and
// folds "a//b" into "a/b"): empty, longer than 1024 bytes, invalid
// UTF-8, control characters, a backslash, a leading "/", an empty, "."
// or ".." segment.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLength {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyLength)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidKey, key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: %q contains a control character or backslash", ErrInvalidKey, key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "", ".", "..":
			return fmt.Errorf("%w: %q has an empty, '.' or '..' path segment", ErrInvalidKey, key)
		}
	}
	return nil
}

// JoinURL joins a public base URL and a key with exactly one slash,
// escaping each key segment.
func JoinURL(base, key string) string {
	if base == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/" + escapeKey(key)
}

// copier is implemented by stores that copy objects server-side.
type copier interface {
	// Copy copies src to dst with opts' metadata; ErrExists when
	// opts.NoOverwrite and dst exists, ErrUnsupported when the store
	// cannot copy this object itself (the caller then streams it).
	Copy(ctx context.Context, src, dst string, opts PutOptions) error
}

// Resolve turns the range into an offset and length within an object of
// size bytes (RFC 9110 section 14.1.2); a nil range is the whole object.
// ok is false when the range starts past the end, or asks for the last 0
// bytes.
func (r *ByteRange) Resolve(size int64) (off, n int64, ok bool) {
	switch {
	case r == nil:
		return 0, size, true
	case r.First < 0: // the last r.Last bytes
		if r.Last <= 0 || size == 0 {
			return 0, 0, false
		}
		n = min(r.Last, size)
		return size - n, n, true
	case r.First >= size:
		return 0, 0, false
	case r.Last < 0 || r.Last >= size:
		return r.First, size - r.First, true
	}
	return r.First, r.Last - r.First + 1, true
}

// Copy copies src to dst inside one store, server-side when the store
// can (S3 CopyObject), else by streaming the object.
func Copy(ctx context.Context, store Store, src, dst string, opts PutOptions) error {
	if c, ok := store.(copier); ok {
		if err := c.Copy(ctx, src, dst, opts); !errors.Is(err, ErrUnsupported) {
			return err
		}
	}
	obj, err := store.Open(ctx, src)
	if err != nil {
		return err
	}
	defer obj.Close()
	_, err = store.Put(ctx, dst, obj, obj.Info().Size, opts)
	return err
}
