package objectstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// objectName validates key and prepends the store's prefix.
func (s *S3Store) objectName(op, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", &s3Error{store: s.name, op: op, key: key, class: ErrInvalidKey, err: err}
	}
	return s.prefix + key, nil
}

// fail wraps a failed S3 call with the store, operation and key, and
// classifies it (ErrNotFound, ErrExists, ErrUnavailable).
func (s *S3Store) fail(op, key string, err error) error {
	return &s3Error{store: s.name, op: op, key: key, class: classifyS3Error(err), err: err}
}

// Stat describes key with a HEAD request.
func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	name, err := s.objectName("HEAD", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	oi, err := s.client.api.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.fail("HEAD", key, err)
	}
	return s.objectInfo(oi), nil
}

// Open starts a GET of key and waits for the response headers, so a
// missing key or an unreachable store is reported here rather than on the
// first Read. Seeking is lazy: a Read after Seek issues a ranged GET.
func (s *S3Store) Open(ctx context.Context, key string) (Object, error) {
	name, err := s.objectName("GET", key)
	if err != nil {
		return nil, err
	}
	obj, err := s.client.api.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.fail("GET", key, err)
	}
	oi, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, s.fail("GET", key, err)
	}
	return &s3Object{Object: obj, info: s.objectInfo(oi)}, nil
}

// Get reads key, or rng of it, with one GET: the answer's headers carry
// the metadata a HEAD would (the whole object's size in Content-Range).
// With ifMatch the GET is conditional on the ETag, so the bytes match
// headers already sent (a replaced object gives ErrChanged, never a mix).
func (s *S3Store) Get(ctx context.Context, key string, rng *ByteRange, ifMatch string) (*Part, error) {
	name, err := s.objectName("GET", key)
	if err != nil {
		return nil, err
	}
	var opts minio.GetObjectOptions
	if etag := strings.Trim(strings.TrimPrefix(ifMatch, "W/"), `"`); etag != "" {
		if err := opts.SetMatchETag(etag); err != nil {
			return nil, s.fail("GET", key, err)
		}
	}
	if err := setRange(&opts, rng); err != nil {
		return nil, &s3Error{store: s.name, op: "GET", key: key, class: ErrRangeNotSatisfiable, err: err}
	}
	body, oi, header, err := s.client.core.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) {
			switch resp.StatusCode {
			case http.StatusRequestedRangeNotSatisfiable:
				return nil, &s3Error{store: s.name, op: "GET", key: key, class: ErrRangeNotSatisfiable, err: err}
			case http.StatusPreconditionFailed:
				return nil, &s3Error{store: s.name, op: "GET", key: key, class: ErrChanged, err: err}
			}
		}
		return nil, s.fail("GET", key, err)
	}
	info := s.objectInfo(oi)
	part := &Part{ReadCloser: body, Info: info, Length: info.Size}
	if cr := header.Get("Content-Range"); cr != "" {
		first, last, size, ok := parseContentRange(cr)
		if !ok {
			body.Close()
			return nil, &s3Error{store: s.name, op: "GET", key: key, err: fmt.Errorf("unreadable Content-Range %q", cr)}
		}
		part.Offset, part.Length, part.Info.Size = first, last-first+1, size
		return part, nil
	}
	// The store sent the whole object (versitygw does for an empty one):
	// apply the range here, so that the part is what was asked for.
	off, n, ok := rng.Resolve(info.Size)
	if !ok {
		body.Close()
		return nil, &s3Error{store: s.name, op: "GET", key: key, class: ErrRangeNotSatisfiable,
			err: fmt.Errorf("range %+v of %d bytes", *rng, info.Size)}
	}
	if off > 0 {
		if _, err := io.CopyN(io.Discard, body, off); err != nil {
			body.Close()
			return nil, s.fail("GET", key, err)
		}
	}
	part.Offset, part.Length = off, n
	part.ReadCloser = limitedReadCloser{io.LimitReader(body, n), body}
	return part, nil
}

// setRange puts rng on a GET as minio-go spells it.
func setRange(opts *minio.GetObjectOptions, rng *ByteRange) error {
	switch {
	case rng == nil, rng.First == 0 && rng.Last < 0:
		return nil // the whole object
	case rng.First < 0:
		if rng.Last <= 0 {
			return errors.New("a suffix range of 0 bytes")
		}
		return opts.SetRange(0, -rng.Last)
	case rng.Last < 0:
		return opts.SetRange(rng.First, 0)
	}
	return opts.SetRange(rng.First, rng.Last)
}

// parseContentRange reads "bytes first-last/size" (RFC 9110 section
// 14.4).
func parseContentRange(v string) (first, last, size int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	span, total, found2 := strings.Cut(rest, "/")
	a, b, found3 := strings.Cut(span, "-")
	if !found || !found2 || !found3 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	size, err3 = strconv.ParseInt(total, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || size <= last {
		return 0, 0, 0, false
	}
	return first, last, size, true
}

// s3Object is an open object with its metadata.
type s3Object struct {
	*minio.Object
	info ObjectInfo
}

// Info describes the object as it was when opened.
func (o *s3Object) Info() ObjectInfo { return o.info }

// Delete removes key. S3 answers a DELETE of a missing key with success.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	name, err := s.objectName("DELETE", key)
	if err != nil {
		return err
	}
	if err := s.client.api.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		if classifyS3Error(err) == ErrNotFound {
			return nil
		}
		return s.fail("DELETE", key, err)
	}
	return nil
}

// List walks every object under prefix in key order (S3 lists keys in
// UTF-8 byte order). The ObjectInfo has Key, Size, ETag and LastModified
// only: S3 listings carry no content type or metadata; Stat has them.
func (s *S3Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if prefix != "" {
		if err := ValidateKey(prefix + "x"); err != nil {
			return &s3Error{store: s.name, op: "LIST", key: prefix, class: ErrInvalidKey, err: err}
		}
	}
	// Cancelling ctx stops minio-go's listing goroutine when fn fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objects := s.client.api.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{
		Prefix:    s.prefix + prefix,
		Recursive: true,
	})
	for oi := range objects {
		if oi.Err != nil {
			return s.fail("LIST", prefix, oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") {
			continue // a "directory" marker, not an object
		}
		if err := fn(s.objectInfo(oi)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// ListDirs returns the names of the "directories" right under prefix
// (which ends with "/", or is empty): the common prefixes of a listing
// with the delimiter "/", sorted.
func (s *S3Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if prefix != "" {
		if err := ValidateKey(prefix + "x"); err != nil {
			return nil, &s3Error{store: s.name, op: "LIST", key: prefix, class: ErrInvalidKey, err: err}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []string
	for oi := range s.client.api.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix}) {
		if oi.Err != nil {
			return nil, s.fail("LIST", prefix, oi.Err)
		}
		if name, ok := strings.CutSuffix(strings.TrimPrefix(oi.Key, s.prefix+prefix), "/"); ok && name != "" {
			out = append(out, name)
		}
	}
	return out, nil
}

// objectInfo converts minio's description, stripping the prefix from the
// key and quoting the ETag as HTTP does. User metadata keys come back
// in lower case (S3 metadata names are case-insensitive).
func (s *S3Store) objectInfo(oi minio.ObjectInfo) ObjectInfo {
	info := ObjectInfo{
		Key:          strings.TrimPrefix(oi.Key, s.prefix),
		Size:         oi.Size,
		ETag:         quoteETag(oi.ETag),
		ContentType:  oi.ContentType,
		LastModified: oi.LastModified,
	}
	if oi.Metadata != nil {
		info.ContentDisposition = oi.Metadata.Get("Content-Disposition")
		info.CacheControl = oi.Metadata.Get("Cache-Control")
	}
	if len(oi.UserMetadata) > 0 {
		info.Metadata = make(map[string]string, len(oi.UserMetadata))
		for k, v := range oi.UserMetadata {
			info.Metadata[strings.ToLower(k)] = v
		}
	}
	return info
}

// quoteETag turns minio-go's bare ETag into the HTTP form, "…".
func quoteETag(etag string) string {
	if etag == "" || strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/"`) {
		return etag
	}
	return `"` + etag + `"`
}

// PublicURL joins public_url and key; the prefix is not added, since
// public_url points at the prefix folder.
func (s *S3Store) PublicURL(key string) string { return JoinURL(s.publicURL, key) }

// S3 accepts presigned URLs valid from one second to seven days.
const maxPresignExpiry = 7 * 24 * time.Hour

func checkPresignExpiry(expiry time.Duration) error {
	if expiry < time.Second || expiry > maxPresignExpiry {
		return fmt.Errorf("expiry %s: must be between 1s and 7 days", expiry)
	}
	return nil
}

// Capabilities reports what S3 can do beyond every store: presign.
func (s *S3Store) Capabilities() Capabilities { return Capabilities{Presign: true} }

// PresignGet returns a URL that allows GET of key until expiry passes.
// It is computed locally; the store is not contacted.
func (s *S3Store) PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error) {
	name, err := s.objectName("presign GET", key)
	if err != nil {
		return "", err
	}
	if err := checkPresignExpiry(expiry); err != nil {
		return "", &s3Error{store: s.name, op: "presign GET", key: key, err: err}
	}
	u, err := s.client.api.PresignedGetObject(ctx, s.bucket, name, expiry, nil)
	if err != nil {
		return "", s.fail("presign GET", key, err)
	}
	return u.String(), nil
}

// PresignPost returns an HTML-form upload for exactly policy.Key, limited
// to policy.ContentType (when set) and to sizes MinSize..MaxSize (when
// MaxSize > 0). The store enforces the policy when the form is posted.
func (s *S3Store) PresignPost(ctx context.Context, policy PostPolicy) (PresignedPost, error) {
	const op = "presign POST"
	name, err := s.objectName(op, policy.Key)
	if err != nil {
		return PresignedPost{}, err
	}
	bad := func(err error) (PresignedPost, error) {
		return PresignedPost{}, &s3Error{store: s.name, op: op, key: policy.Key, err: err}
	}
	if err := checkPresignExpiry(policy.Expiry); err != nil {
		return bad(err)
	}
	if policy.MinSize < 0 || (policy.MaxSize > 0 && policy.MinSize > policy.MaxSize) {
		return bad(fmt.Errorf("size range %d..%d is empty", policy.MinSize, policy.MaxSize))
	}
	pp := minio.NewPostPolicy()
	errs := []error{
		pp.SetBucket(s.bucket),
		pp.SetKey(name),
		pp.SetExpires(time.Now().UTC().Add(policy.Expiry)),
	}
	if policy.ContentType != "" {
		errs = append(errs, pp.SetContentType(policy.ContentType))
	}
	if policy.MaxSize > 0 {
		errs = append(errs, pp.SetContentLengthRange(policy.MinSize, policy.MaxSize))
	}
	if err := errors.Join(errs...); err != nil {
		return bad(err)
	}
	u, fields, err := s.client.api.PresignedPostPolicy(ctx, pp)
	if err != nil {
		return PresignedPost{}, s.fail(op, policy.Key, err)
	}
	return PresignedPost{URL: u.String(), Fields: fields}, nil
}

// maxS3CopyBytes is the largest object one CopyObject request copies.
const maxS3CopyBytes = 5 << 30

// Copy copies src to dst inside the bucket with CopyObject, so the bytes
// never leave the store, replacing the metadata with opts'. With
// opts.NoOverwrite an existing dst gives ErrExists; the check is a HEAD
// before the copy (S3 has no conditional copy), so two copies racing to
// one new key can both succeed: callers use it for content-addressed
// keys, where both write the same bytes. Objects over 5 GiB give
// ErrUnsupported, and Copy streams them instead.
func (s *S3Store) Copy(ctx context.Context, src, dst string, opts PutOptions) error {
	const op = "COPY"
	srcName, err := s.objectName(op, src)
	if err != nil {
		return err
	}
	dstName, err := s.objectName(op, dst)
	if err != nil {
		return err
	}
	if opts.NoOverwrite {
		_, err := s.Stat(ctx, dst)
		if err == nil {
			return &s3Error{store: s.name, op: op, key: dst, class: ErrExists, err: errors.New("destination exists")}
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	info, err := s.Stat(ctx, src)
	if err != nil {
		return err
	}
	if info.Size > maxS3CopyBytes {
		return &s3Error{store: s.name, op: op, key: src, class: ErrUnsupported,
			err: fmt.Errorf("%d bytes is more than one CopyObject copies", info.Size)}
	}
	_, err = s.client.api.CopyObject(ctx, minio.CopyDestOptions{
		Bucket: s.bucket, Object: dstName,
		ReplaceMetadata: true, UserMetadata: opts.Metadata,
		ContentType: opts.ContentType, ContentDisposition: opts.ContentDisposition, CacheControl: opts.CacheControl,
	}, minio.CopySrcOptions{Bucket: s.bucket, Object: srcName})
	if err != nil {
		return s.fail(op, dst, err)
	}
	return nil
}
