package objectstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"go.uber.org/zap"
)

// abortTimeout bounds the AbortMultipartUpload sent after a failed upload.
// It runs on a context detached from the request's, which may be the
// reason the upload failed.
const abortTimeout = 10 * time.Second

// Put streams body to key.
//
// The body is read one part (part_size bytes) at a time. The first 64
// KiB go to a small buffer: a body that ends there is sent as one PUT
// and takes no part buffer, so small uploads cost little memory. Larger
// bodies take part buffers from the store's upload_memory budget: one
// while the part is read and sent, and a second, when the budget has
// room, so the next part is read from the client while the previous one
// uploads. N concurrent uploads thus hold at most min(2 × N × part_size,
// upload_memory). A body that fits in one part is sent as one PUT;
// anything larger becomes a multipart upload, which is aborted on any
// failure (the body's reader failing, ctx ending, the store refusing a
// part), so no parts are left behind to be billed. With NoOverwrite the
// write carries `If-None-Match: *` (on the PUT, or on
// CompleteMultipartUpload), so the store itself refuses to replace an
// existing key, atomically, with 412 (ErrExists).
func (s *S3Store) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	name, err := s.objectName("PUT", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if size > s.PartSize*maxS3Parts {
		return ObjectInfo{}, &s3Error{store: s.name, op: "PUT", key: key,
			err: fmt.Errorf("%d bytes is more than %d parts of part_size %d allow", size, maxS3Parts, s.PartSize)}
	}
	var small [smallPutBytes]byte
	n, last, err := readPart(ctx, body, small[:])
	if err != nil {
		return ObjectInfo{}, &s3Error{store: s.name, op: "PUT", key: key, err: fmt.Errorf("reading body: %w", err)}
	}
	if last {
		return s.putSingle(ctx, key, name, small[:n], size, opts)
	}

	release, err := s.takePartBuffer(ctx, key)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer release()
	// Holding upload_memory, the upload must fill its part in
	// part_hold_time (see uploadrate.go).
	defer RaiseMinRate(ctx, float64(s.PartSize)/time.Duration(s.PartHoldTime).Seconds())()
	bufp := s.parts.Get().(*[]byte)
	defer s.parts.Put(bufp)
	buf := *bufp
	copy(buf, small[:n])
	m, last, err := readPart(ctx, body, buf[n:])
	if err != nil {
		return ObjectInfo{}, &s3Error{store: s.name, op: "PUT", key: key, err: fmt.Errorf("reading body: %w", err)}
	}
	if last {
		return s.putSingle(ctx, key, name, buf[:n+m], size, opts)
	}
	up, err := s.putMultipart(ctx, key, name, body, buf, size, opts)
	if err != nil {
		return ObjectInfo{}, err
	}
	return uploadedInfo(key, up, opts), nil
}

// smallPutBytes is the size under which a body is sent without taking a
// part buffer.
const smallPutBytes = 64 << 10

// partBufferWait is how long an upload waits for room in upload_memory
// before it is refused with ErrBusy.
const partBufferWait = 10 * time.Second

// takePartBuffer reserves one part buffer in the upload_memory budget,
// waiting up to partBufferWait; the returned function gives it back.
func (s *S3Store) takePartBuffer(ctx context.Context, key string) (func(), error) {
	wctx, cancel := context.WithTimeout(ctx, s.partWait)
	defer cancel()
	if err := s.client.partMemory.Acquire(wctx, s.PartSize); err != nil {
		if ctx.Err() != nil {
			return nil, &s3Error{store: s.name, op: "PUT", key: key, err: ctx.Err()}
		}
		s.logger.Warn("upload memory exhausted; upload refused", zap.String("store", s.name),
			zap.Int64("upload_memory", s.UploadMemory), zap.Int64("part_size", s.PartSize))
		return nil, &s3Error{store: s.name, op: "PUT", key: key, class: ErrBusy,
			err: fmt.Errorf("every part buffer of upload_memory (%d bytes) is in use for %v", s.UploadMemory, s.partWait)}
	}
	return func() { s.client.partMemory.Release(s.PartSize) }, nil
}

// putSingle sends a body that fits in one part with one PUT.
func (s *S3Store) putSingle(ctx context.Context, key, name string, data []byte, size int64, opts PutOptions) (ObjectInfo, error) {
	if err := checkSize(int64(len(data)), size); err != nil {
		return ObjectInfo{}, &s3Error{store: s.name, op: "PUT", key: key, err: err}
	}
	popts := putObjectOptions(opts, opts.NoOverwrite)
	up, err := s.client.core.PutObject(ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)), "", s.payloadHash(data), popts)
	if err != nil {
		return ObjectInfo{}, s.fail("PUT", key, err)
	}
	up.Size = int64(len(data))
	return uploadedInfo(key, up, opts), nil
}

// uploadedInfo describes a stored object from the upload's response and
// options, saving a HEAD (and never reporting a stored object as failed
// because a HEAD after it did). LastModified is the store's when it sent
// one, else the local time.
func uploadedInfo(key string, up minio.UploadInfo, opts PutOptions) ObjectInfo {
	info := ObjectInfo{
		Key:                key,
		Size:               up.Size,
		ETag:               quoteETag(up.ETag),
		ContentType:        opts.ContentType,
		ContentDisposition: opts.ContentDisposition,
		CacheControl:       opts.CacheControl,
		LastModified:       up.LastModified,
	}
	if info.ContentType == "" {
		info.ContentType = "application/octet-stream" // what minio-go sends
	}
	if info.LastModified.IsZero() {
		info.LastModified = time.Now()
	}
	if len(opts.Metadata) > 0 {
		info.Metadata = make(map[string]string, len(opts.Metadata))
		for k, v := range opts.Metadata {
			info.Metadata[strings.ToLower(k)] = v
		}
	}
	return info
}

// putObjectOptions maps PutOptions to minio-go's. The body's SHA-256 is
// passed explicitly (or not at all over https), and DisableContentSha256
// stops minio-go from switching to its aws-chunked streaming signature
// on plain http: versitygw v1.8.0 stores that `Content-Encoding:
// aws-chunked` with the object and serves it back, which breaks clients.
// No CRC checksums are added (the client has TrailingHeaders off).
// ifNoneMatch adds `If-None-Match: *`.
func putObjectOptions(opts PutOptions, ifNoneMatch bool) minio.PutObjectOptions {
	popts := minio.PutObjectOptions{
		ContentType:          opts.ContentType,
		ContentDisposition:   opts.ContentDisposition,
		CacheControl:         opts.CacheControl,
		UserMetadata:         opts.Metadata,
		DisableContentSha256: true,
	}
	if ifNoneMatch {
		popts.SetMatchETagExcept("*")
	}
	return popts
}

// payloadHash is the hex SHA-256 that signs a body over plain http, where
// nothing else protects it; over https it is "" (UNSIGNED-PAYLOAD, as
// AWS SDKs send).
func (s *S3Store) payloadHash(p []byte) string {
	if s.client.secure {
		return ""
	}
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:])
}

// putMultipart uploads a body larger than one part. buf holds the first
// part, already read; it is reused for every following part.
func (s *S3Store) putMultipart(ctx context.Context, key, name string, body io.Reader, buf []byte, size int64, opts PutOptions) (up minio.UploadInfo, err error) {
	// If-None-Match belongs on CompleteMultipartUpload: AWS and versitygw
	// ignore it on CreateMultipartUpload.
	uploadID, err := s.client.core.NewMultipartUpload(ctx, s.bucket, name, putObjectOptions(opts, false))
	if err != nil {
		return up, s.fail("CreateMultipartUpload", key, err)
	}
	defer func() {
		if err != nil {
			s.abortUpload(ctx, key, name, uploadID)
		}
	}()
	parts, total, err := s.uploadParts(ctx, key, name, uploadID, body, buf)
	if err != nil {
		return up, err
	}
	if err := checkSize(total, size); err != nil {
		return up, &s3Error{store: s.name, op: "PUT", key: key, err: err}
	}
	var complete minio.PutObjectOptions
	if opts.NoOverwrite {
		complete.SetMatchETagExcept("*")
	}
	up, err = s.client.core.CompleteMultipartUpload(ctx, s.bucket, name, uploadID, parts, complete)
	if err != nil {
		return up, s.fail("CompleteMultipartUpload", key, err)
	}
	up.Size = total
	return up, nil
}

// partResult is the outcome of one UploadPart.
type partResult struct {
	part minio.ObjectPart
	err  error
}

// uploadParts uploads the body part by part, buf holding the first part.
// With a second buffer from upload_memory, reading the next part from
// the client overlaps with uploading the previous one to the store, so
// neither side waits for the other; without one (the budget is full) the
// parts are read and sent in turn through buf alone.
func (s *S3Store) uploadParts(ctx context.Context, key, name, uploadID string, body io.Reader, buf []byte) ([]minio.CompletePart, int64, error) {
	var spare []byte
	if s.client.partMemory.TryAcquire(s.PartSize) {
		defer s.client.partMemory.Release(s.PartSize)
		sparep := s.parts.Get().(*[]byte)
		defer s.parts.Put(sparep)
		spare = *sparep
	}
	cur := buf
	var parts []minio.CompletePart
	var total int64
	n, last := len(cur), false
	for partNumber := 1; ; partNumber++ {
		if partNumber > maxS3Parts {
			return nil, 0, &s3Error{store: s.name, op: "PUT", key: key,
				err: fmt.Errorf("body exceeds %d parts of part_size %d", maxS3Parts, s.PartSize)}
		}
		done := make(chan partResult, 1)
		go func(num int, data []byte) {
			part, err := s.client.core.PutObjectPart(ctx, s.bucket, name, uploadID, num,
				bytes.NewReader(data), int64(len(data)), minio.PutObjectPartOptions{Sha256Hex: s.payloadHash(data), DisableContentSha256: true})
			done <- partResult{part, err}
		}(partNumber, cur[:n])
		var nextN int
		var nextLast bool
		var readErr error
		if !last && spare != nil {
			nextN, nextLast, readErr = readPart(ctx, body, spare)
		}
		res := <-done // the part's buffer is free only once its upload ends
		if res.err != nil {
			return nil, 0, s.fail(fmt.Sprintf("UploadPart %d", partNumber), key, res.err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: partNumber, ETag: res.part.ETag})
		total += int64(n)
		if !last && spare == nil {
			nextN, nextLast, readErr = readPart(ctx, body, cur)
		}
		if readErr != nil {
			return nil, 0, &s3Error{store: s.name, op: "PUT", key: key, err: fmt.Errorf("reading body after %d bytes: %w", total, readErr)}
		}
		if last || (nextN == 0 && nextLast) {
			return parts, total, nil
		}
		if spare != nil {
			cur, spare = spare, cur
		}
		n, last = nextN, nextLast
	}
}

// abortUpload discards a failed multipart upload and its parts. When the
// store cannot be reached (the usual reason an upload failed), it keeps
// trying in the background with backoff for abortRetryFor, so parts do
// not linger once the store is back; a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) is the backstop for a process that
// stops before then.
func (s *S3Store) abortUpload(ctx context.Context, key, name, uploadID string) {
	ctx = context.WithoutCancel(ctx)
	if s.tryAbort(ctx, name, uploadID) == nil {
		return
	}
	go func() {
		deadline := time.Now().Add(abortRetryFor)
		for wait := time.Second; time.Now().Before(deadline); wait = min(2*wait, 30*time.Second) {
			time.Sleep(wait)
			err := s.tryAbort(ctx, name, uploadID)
			if err == nil {
				s.logger.Info("aborted a failed multipart upload once the store was back",
					zap.String("store", s.name), zap.String("key", key), zap.String("upload_id", uploadID))
				return
			}
			if !errors.Is(s.fail("AbortMultipartUpload", key, err), ErrUnavailable) {
				break // the store answers and refuses: retrying will not help
			}
		}
		s.logger.Error("giving up aborting a failed multipart upload; its parts stay until a lifecycle rule removes them",
			zap.String("store", s.name), zap.String("key", key), zap.String("upload_id", uploadID))
	}()
}

// abortRetryFor is how long a failed abort is retried.
const abortRetryFor = 15 * time.Minute

// tryAbort sends one AbortMultipartUpload. An upload the store no longer
// knows is gone already.
func (s *S3Store) tryAbort(ctx context.Context, name, uploadID string) error {
	ctx, cancel := context.WithTimeout(ctx, abortTimeout)
	defer cancel()
	err := s.client.core.AbortMultipartUpload(ctx, s.bucket, name, uploadID)
	if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
		return nil
	}
	if err != nil {
		s.logger.Warn("aborting failed multipart upload",
			zap.String("store", s.name), zap.String("upload_id", uploadID), zap.Error(err))
	}
	return err
}

// readPart fills buf from r. last reports that r is exhausted (n may
// then be anything from 0 to len(buf)). It stops early when ctx ends.
func readPart(ctx context.Context, r io.Reader, buf []byte) (n int, last bool, err error) {
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return n, false, err
		}
		m, err := r.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// checkSize compares what was read with the size the caller announced.
func checkSize(got, want int64) error {
	if want >= 0 && got != want {
		return fmt.Errorf("body was %d bytes, expected %d", got, want)
	}
	return nil
}
