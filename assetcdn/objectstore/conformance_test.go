package objectstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddylb/caddylb/internal/testproc"
)

// The conformance suite: every Store backend must pass every case. The
// S3 backend runs against a real versitygw.

// storeFixture is one fresh, empty store for one case.
type storeFixture struct {
	store Store
	// incompleteUploads lists unfinished multipart uploads under the
	// store's prefix; nil for backends without multipart uploads.
	incompleteUploads func(t *testing.T) []string
	// presigns is true for backends that implement PresignGet/PresignPost.
	presigns bool
	// client fetches presigned URLs (trusting a TLS store's certificate).
	client *http.Client
}

// storeBackend makes fresh fixtures of one backend.
type storeBackend struct {
	name string
	open func(t *testing.T) storeFixture
}

// conformancePublicURL is every fixture's public_url.
const conformancePublicURL = "https://cdn.example.com/base"

func conformanceBackends(t *testing.T) []storeBackend {
	srv := testproc.StartVersityGW(t)
	bucket := srv.CreateBucket(t, "conformance")
	// https, as production endpoints are: unsigned payloads, ca_file.
	tlsSrv := testproc.StartVersityGWTLS(t)
	tlsBucket := tlsSrv.CreateBucket(t, "conformance")
	var seq atomic.Int64
	s3Backend := func(srv *testproc.S3Server, bucket string) func(t *testing.T) storeFixture {
		return func(t *testing.T) storeFixture {
			prefix := fmt.Sprintf("case%d/", seq.Add(1))
			s := newTestS3Store(t, srv, bucket, prefix)
			return storeFixture{
				store:             s,
				incompleteUploads: func(t *testing.T) []string { return incompleteUploads(t, srv, bucket, prefix) },
				presigns:          true,
				client:            srv.HTTPClient(),
			}
		}
	}
	return []storeBackend{
		{name: "file", open: func(t *testing.T) storeFixture {
			f := &FileStore{Root: t.TempDir(), PublicBaseURL: conformancePublicURL}
			if err := f.Provision(caddyContext(t)); err != nil {
				t.Fatalf("provisioning file store: %v", err)
			}
			return storeFixture{store: f}
		}},
		{name: "s3", open: s3Backend(srv, bucket)},
		{name: "s3-tls", open: s3Backend(tlsSrv, tlsBucket)},
	}
}

// newTestS3Store provisions an S3Store on srv with 5 MiB parts.
func newTestS3Store(t testing.TB, srv *testproc.S3Server, bucket, prefix string) *S3Store {
	t.Helper()
	s := &S3Store{
		Bucket:        bucket,
		Endpoint:      srv.Endpoint,
		Region:        srv.Region,
		AccessKey:     srv.AccessKey,
		SecretKey:     srv.SecretKey,
		PathStyle:     true,
		Prefix:        prefix,
		PublicBaseURL: conformancePublicURL,
		PartSize:      minS3PartSize,
		CAFile:        srv.CAFile,
	}
	if err := s.Provision(caddyContext(t)); err != nil {
		t.Fatalf("provisioning s3 store: %v", err)
	}
	s.SetName("conformance")
	t.Cleanup(func() { _ = s.Cleanup() })
	return s
}

// incompleteUploads lists the keys of unfinished multipart uploads.
func incompleteUploads(t *testing.T, srv *testproc.S3Server, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for u := range srv.Client(t).ListIncompleteUploads(t.Context(), bucket, prefix, true) {
		if u.Err != nil {
			t.Fatalf("listing incomplete uploads: %v", u.Err)
		}
		keys = append(keys, u.Key)
	}
	return keys
}

func TestStoreConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, fx storeFixture)
	}{
		{"PutStatOpenSeek", testPutStatOpenSeek},
		{"GetRanges", testGetRanges},
		{"MetadataRoundTrip", testMetadataRoundTrip},
		{"Overwrite", testOverwrite},
		{"NoOverwrite", testNoOverwrite},
		{"NoOverwriteMultipart", testNoOverwriteMultipart},
		{"NotFound", testNotFound},
		{"InvalidKeys", testInvalidKeys},
		{"List", testList},
		{"Delete", testDelete},
		{"UnknownSizeStreaming", testUnknownSizeStreaming},
		{"SizeMismatch", testSizeMismatch},
		{"ReaderErrorLeavesNothing", testReaderErrorLeavesNothing},
		{"CancelLeavesNothing", testCancelLeavesNothing},
		{"PublicURL", testPublicURL},
		{"PresignGet", testPresignGet},
		{"PresignPost", testPresignPost},
		{"Copy", testCopy},
	}
	for _, b := range conformanceBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b.open(t)) })
			}
		})
	}
}

// testGetRanges: Get reads the whole object or exactly a range, in one
// request, with the whole object's metadata; a range past the end and a
// changed ETag are errors of their own.
func testGetRanges(t *testing.T, fx storeFixture) {
	s, key := fx.store, "ranges/f.bin"
	body := []byte("0123456789abcdefghij")
	info := put(t, s, key, body, PutOptions{ContentType: "application/octet-stream", CacheControl: "max-age=60"})
	for _, tc := range []struct {
		rng      *ByteRange
		off, n   int64
		wantBody string
	}{
		{nil, 0, 20, string(body)},
		{&ByteRange{0, 9}, 0, 10, "0123456789"},
		{&ByteRange{5, 5}, 5, 1, "5"},
		{&ByteRange{15, -1}, 15, 5, "fghij"},
		{&ByteRange{15, 100}, 15, 5, "fghij"},
		{&ByteRange{-1, 3}, 17, 3, "hij"},
		{&ByteRange{-1, 50}, 0, 20, string(body)},
		{&ByteRange{0, -1}, 0, 20, string(body)},
	} {
		part, err := s.Get(t.Context(), key, tc.rng, "")
		if err != nil {
			t.Fatalf("Get %v: %v", tc.rng, err)
		}
		got, err := io.ReadAll(part)
		part.Close()
		if err != nil || string(got) != tc.wantBody || part.Offset != tc.off || part.Length != tc.n {
			t.Errorf("Get %v: %q at %d+%d (%v), want %q at %d+%d", tc.rng, got, part.Offset, part.Length, err, tc.wantBody, tc.off, tc.n)
		}
		if part.Info.Size != 20 || part.Info.ETag != info.ETag || part.Info.CacheControl != "max-age=60" || part.Info.LastModified.IsZero() {
			t.Errorf("Get %v: info %+v, want the whole object's metadata", tc.rng, part.Info)
		}
	}
	if _, err := s.Get(t.Context(), key, &ByteRange{20, -1}, ""); !errors.Is(err, ErrRangeNotSatisfiable) {
		t.Errorf("Get from the end: %v, want ErrRangeNotSatisfiable", err)
	}
	if _, err := s.Get(t.Context(), key, nil, `"not-the-etag"`); !errors.Is(err, ErrChanged) {
		t.Errorf("Get with another ETag: %v, want ErrChanged", err)
	}
	part, err := s.Get(t.Context(), key, &ByteRange{1, 2}, info.ETag)
	if err != nil {
		t.Fatalf("Get with the object's ETag: %v", err)
	}
	part.Close()
	if _, err := s.Get(t.Context(), "ranges/missing", nil, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing key: %v, want ErrNotFound", err)
	}
	// An empty object has no byte to range over (versitygw answers a
	// ranged GET of one with the whole, empty, object and no Content-Range).
	put(t, s, "ranges/empty", nil, PutOptions{})
	for _, rng := range []*ByteRange{{0, -1}, {-1, 5}, {0, 0}} {
		if part, err := s.Get(t.Context(), "ranges/empty", rng, ""); !errors.Is(err, ErrRangeNotSatisfiable) {
			t.Errorf("Get %v of an empty object: %+v %v, want ErrRangeNotSatisfiable", rng, part, err)
		}
	}
	part, err = s.Get(t.Context(), "ranges/empty", nil, "")
	if err != nil || part.Length != 0 || part.Info.Size != 0 {
		t.Fatalf("Get of an empty object: %+v %v", part, err)
	}
	part.Close()
}

// put stores body under key or fails the test.
func put(t *testing.T, s Store, key string, body []byte, opts PutOptions) ObjectInfo {
	t.Helper()
	info, err := s.Put(t.Context(), key, bytes.NewReader(body), int64(len(body)), opts)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return info
}

// readObject opens key and reads it whole.
func readObject(t *testing.T, s Store, key string) []byte {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return b
}

// expectGone checks that key does not exist.
func expectGone(t *testing.T, s Store, key string) {
	t.Helper()
	if info, err := s.Stat(t.Context(), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat(%q) = %+v, %v; want ErrNotFound", key, info, err)
	}
}

// expectNoIncompleteUploads checks that no multipart upload was left.
func expectNoIncompleteUploads(t *testing.T, fx storeFixture) {
	t.Helper()
	if fx.incompleteUploads == nil {
		return
	}
	if left := fx.incompleteUploads(t); len(left) > 0 {
		t.Fatalf("multipart uploads left behind: %q", left)
	}
}

func testPutStatOpenSeek(t *testing.T, fx storeFixture) {
	s, key := fx.store, "a/b/hello.txt"
	body := []byte("hello, world")
	before := time.Now().Add(-2 * time.Second)
	info := put(t, s, key, body, PutOptions{ContentType: "text/plain; charset=utf-8"})
	if info.Key != key || info.Size != int64(len(body)) {
		t.Fatalf("Put returned key %q size %d, want %q %d", info.Key, info.Size, key, len(body))
	}
	st, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if st.Size != int64(len(body)) || st.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("Stat size %d type %q, want %d text/plain; charset=utf-8", st.Size, st.ContentType, len(body))
	}
	if !strings.HasPrefix(st.ETag, `"`) || len(st.ETag) < 3 || st.ETag != info.ETag {
		t.Errorf("Stat ETag %q, Put ETag %q: want the same quoted ETag", st.ETag, info.ETag)
	}
	if st.LastModified.Before(before) || st.LastModified.After(time.Now().Add(2*time.Second)) {
		t.Errorf("LastModified %v is not about now", st.LastModified)
	}

	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()
	if got := obj.Info(); got.Size != st.Size || got.ETag != st.ETag || got.ContentType != st.ContentType {
		t.Errorf("Open Info %+v differs from Stat %+v", got, st)
	}
	seekRead := func(offset int64, whence int, n int, want string) {
		t.Helper()
		if _, err := obj.Seek(offset, whence); err != nil {
			t.Fatalf("Seek(%d, %d): %v", offset, whence, err)
		}
		got := make([]byte, n)
		if _, err := io.ReadFull(obj, got); err != nil || string(got) != want {
			t.Fatalf("after Seek(%d, %d) read %q, %v; want %q", offset, whence, got, err, want)
		}
	}
	seekRead(7, io.SeekStart, 5, "world")
	seekRead(-5, io.SeekEnd, 5, "world")
	seekRead(0, io.SeekStart, 5, "hello")
	seekRead(2, io.SeekCurrent, 5, "world")
	if end, err := obj.Seek(0, io.SeekEnd); err != nil || end != int64(len(body)) {
		t.Fatalf("Seek to end = %d, %v; want %d", end, err, len(body))
	}
}

func testMetadataRoundTrip(t *testing.T, fx storeFixture) {
	s, key := fx.store, "docs/report.pdf"
	opts := PutOptions{
		ContentType:        "application/pdf",
		ContentDisposition: `attachment; filename="report.pdf"`,
		CacheControl:       "public, max-age=31536000, immutable",
		Metadata:           map[string]string{"sha256": "abc123", "original-name": "Report Q3.pdf"},
	}
	put(t, s, key, []byte("%PDF-1.7 ..."), opts)
	check := func(from string, got ObjectInfo) {
		t.Helper()
		if got.ContentType != opts.ContentType || got.ContentDisposition != opts.ContentDisposition || got.CacheControl != opts.CacheControl {
			t.Errorf("%s: type %q disposition %q cache %q; want %q %q %q", from,
				got.ContentType, got.ContentDisposition, got.CacheControl, opts.ContentType, opts.ContentDisposition, opts.CacheControl)
		}
		for k, v := range opts.Metadata {
			if got.Metadata[k] != v {
				t.Errorf("%s: metadata %q = %q, want %q (all: %v)", from, k, got.Metadata[k], v, got.Metadata)
			}
		}
	}
	st, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	check("Stat", st)
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()
	check("Open", obj.Info())
}

func testOverwrite(t *testing.T, fx storeFixture) {
	put(t, fx.store, "x.txt", []byte("first"), PutOptions{})
	put(t, fx.store, "x.txt", []byte("second, longer"), PutOptions{})
	if got := readObject(t, fx.store, "x.txt"); string(got) != "second, longer" {
		t.Fatalf("after overwrite read %q", got)
	}
}

func testNoOverwrite(t *testing.T, fx storeFixture) {
	s := fx.store
	put(t, s, "once.txt", []byte("original"), PutOptions{NoOverwrite: true, ContentType: "text/plain"})
	_, err := s.Put(t.Context(), "once.txt", strings.NewReader("replacement"), -1, PutOptions{NoOverwrite: true, ContentType: "text/html"})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Put with NoOverwrite: %v; want ErrExists", err)
	}
	if got := readObject(t, s, "once.txt"); string(got) != "original" {
		t.Fatalf("object changed to %q by a refused Put", got)
	}
	if st, err := s.Stat(t.Context(), "once.txt"); err != nil || st.ContentType != "text/plain" {
		t.Fatalf("after a refused Put the Content-Type is %q (%v); want the first object's text/plain", st.ContentType, err)
	}
}

func testNoOverwriteMultipart(t *testing.T, fx storeFixture) {
	s := fx.store
	// 11 MiB: three parts of 5 MiB; the condition is checked at completion.
	if _, err := s.Put(t.Context(), "big.bin", patternReader(11<<20), -1, PutOptions{NoOverwrite: true}); err != nil {
		t.Fatalf("multipart Put with NoOverwrite of a new key: %v", err)
	}
	_, err := s.Put(t.Context(), "big.bin", patternReader(12<<20), -1, PutOptions{NoOverwrite: true})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("multipart Put with NoOverwrite over an existing key: %v; want ErrExists", err)
	}
	if st, err := s.Stat(t.Context(), "big.bin"); err != nil || st.Size != 11<<20 {
		t.Fatalf("after a refused Put Stat = %+v, %v; want the first object (%d bytes)", st, err, 11<<20)
	}
	expectNoIncompleteUploads(t, fx)
}

func testNotFound(t *testing.T, fx storeFixture) {
	s := fx.store
	expectGone(t, s, "missing/key.png")
	if _, err := s.Open(t.Context(), "missing/key.png"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of a missing key: %v; want ErrNotFound", err)
	}
	if err := s.Delete(t.Context(), "missing/key.png"); err != nil {
		t.Errorf("Delete of a missing key: %v; want nil", err)
	}
}

func testInvalidKeys(t *testing.T, fx storeFixture) {
	s := fx.store
	for _, key := range []string{
		"", "../escape", "a/../../b", "a//b", "/abs", "a/./b", "a/", `a\b`, "a\x00b", "a\nb",
		"\xff\xfe", strings.Repeat("k", MaxKeyLength+1),
	} {
		if _, err := s.Put(t.Context(), key, strings.NewReader("x"), 1, PutOptions{}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q): %v; want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(t.Context(), key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Stat(%q): %v; want ErrInvalidKey", key, err)
		}
		if _, err := s.Open(t.Context(), key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Open(%q): %v; want ErrInvalidKey", key, err)
		}
		if err := s.Delete(t.Context(), key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q): %v; want ErrInvalidKey", key, err)
		}
	}
	var keys []string
	if err := s.List(t.Context(), "", func(oi ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(keys) != 0 {
		t.Fatalf("invalid keys stored objects: %q", keys)
	}
}

// listKeys lists prefix and returns the keys in the order List gave them.
func listKeys(t *testing.T, s Store, prefix string) []string {
	t.Helper()
	keys := []string{}
	err := s.List(t.Context(), prefix, func(oi ObjectInfo) error {
		if oi.Size <= 0 || oi.ETag == "" || oi.LastModified.IsZero() {
			t.Errorf("List gave %+v: want size, ETag and LastModified", oi)
		}
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func testList(t *testing.T, fx storeFixture) {
	s := fx.store
	all := []string{"img/b/c.png", "img/a.png", "other/x.txt", "img/ba.png", "top.txt"}
	for _, k := range all {
		put(t, s, k, []byte("content of "+k), PutOptions{})
	}
	slices.Sort(all)
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"img/", []string{"img/a.png", "img/b/c.png", "img/ba.png"}},
		{"img/b", []string{"img/b/c.png", "img/ba.png"}},
		{"none/", []string{}},
		{"img/b/", []string{"img/b/c.png"}},
		{"img/b/c", []string{"img/b/c.png"}},
		{"nodir/deeper/", []string{}},
	} {
		if got := listKeys(t, s, c.prefix); !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	// The "directories" under a prefix, as shipped-log searches list
	// nodes.
	lister, ok := s.(DirLister)
	if !ok {
		t.Fatalf("%T cannot list directories", s)
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"img", "other"}},
		{"img/", []string{"b"}},
		{"img/b/", nil},
		{"none/", nil},
	} {
		got, err := lister.ListDirs(t.Context(), c.prefix)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ListDirs(%q) = %q, %v; want %q", c.prefix, got, err, c.want)
		}
	}
	stop := errors.New("stop here")
	n := 0
	err := s.List(t.Context(), "", func(ObjectInfo) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("List with a failing callback: %v after %d calls; want the callback's error after 1", err, n)
	}
}

func testDelete(t *testing.T, fx storeFixture) {
	s := fx.store
	put(t, s, "d/gone.txt", []byte("bye"), PutOptions{})
	put(t, s, "d/kept.txt", []byte("stay"), PutOptions{})
	if err := s.Delete(t.Context(), "d/gone.txt"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	expectGone(t, s, "d/gone.txt")
	if got := listKeys(t, s, "d/"); !slices.Equal(got, []string{"d/kept.txt"}) {
		t.Fatalf("after Delete List = %q", got)
	}
}

// patternReader yields n pseudo-random bytes, the same for the same n,
// through a plain io.Reader (no Seek, no WriterTo), as an HTTP body does.
func patternReader(n int64) io.Reader {
	return struct{ io.Reader }{io.LimitReader(rand.NewChaCha8([32]byte{byte(n)}), n)}
}

func testUnknownSizeStreaming(t *testing.T, fx storeFixture) {
	const size = 20<<20 + 12345 // five parts of 5 MiB, the last short
	s := fx.store
	want := sha256.New()
	if _, err := io.Copy(want, patternReader(size)); err != nil {
		t.Fatal(err)
	}
	info, err := s.Put(t.Context(), "stream/big.bin", patternReader(size), -1, PutOptions{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatalf("Put of %d bytes of unknown size: %v", size, err)
	}
	if st, err := s.Stat(t.Context(), "stream/big.bin"); err != nil || info.Size != size || st.Size != size || st.ETag != info.ETag {
		t.Fatalf("Put gave size %d ETag %s; Stat gives %+v, %v; want size %d and the same ETag", info.Size, info.ETag, st, err, size)
	}
	obj, err := s.Open(t.Context(), "stream/big.bin")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer obj.Close()
	got := sha256.New()
	if n, err := io.Copy(got, obj); err != nil || n != size {
		t.Fatalf("read back %d bytes, %v; want %d", n, err, size)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("content read back differs from what was written")
	}
	expectNoIncompleteUploads(t, fx)
}

func testSizeMismatch(t *testing.T, fx storeFixture) {
	s := fx.store
	if _, err := s.Put(t.Context(), "short.txt", strings.NewReader("12345"), 10, PutOptions{}); err == nil {
		t.Error("Put of 5 bytes announced as 10 succeeded")
	}
	expectGone(t, s, "short.txt")
	if _, err := s.Put(t.Context(), "long.bin", patternReader(6<<20), 5<<20+1, PutOptions{}); err == nil {
		t.Error("Put of 6 MiB announced as 5 MiB + 1 succeeded")
	}
	expectGone(t, s, "long.bin")
	expectNoIncompleteUploads(t, fx)
}

// failingReader yields n bytes, then fails with err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

func testReaderErrorLeavesNothing(t *testing.T, fx storeFixture) {
	s := fx.store
	tooLarge := errors.New("http: request body too large")
	for _, n := range []int64{1000, 12 << 20} { // within the first part; after two parts
		body := &failingReader{r: patternReader(n), err: tooLarge}
		_, err := s.Put(t.Context(), "fail/upload.bin", body, -1, PutOptions{})
		if !errors.Is(err, tooLarge) {
			t.Fatalf("Put whose body fails after %d bytes: %v; want the body's error", n, err)
		}
		expectGone(t, s, "fail/upload.bin")
	}
	expectNoIncompleteUploads(t, fx)
}

// cancellingReader cancels its context after n bytes and keeps yielding.
type cancellingReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	m, err := c.r.Read(p)
	if c.n -= int64(m); c.n <= 0 {
		c.cancel()
	}
	return m, err
}

func testCancelLeavesNothing(t *testing.T, fx storeFixture) {
	s := fx.store
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	body := &cancellingReader{r: patternReader(30 << 20), n: 7 << 20, cancel: cancel}
	_, err := s.Put(ctx, "cancel/upload.bin", body, -1, PutOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled mid-body: %v; want context.Canceled", err)
	}
	expectGone(t, s, "cancel/upload.bin")
	expectNoIncompleteUploads(t, fx)
}

func testPublicURL(t *testing.T, fx storeFixture) {
	want := conformancePublicURL + "/img/a%20b/c%3F.png"
	if got := fx.store.PublicURL("img/a b/c?.png"); got != want {
		t.Fatalf("PublicURL = %q, want %q", got, want)
	}
}

// testCopy: Copy (server-side where the store can) copies bytes and
// replaces metadata, and refuses an existing destination with
// NoOverwrite.
func testCopy(t *testing.T, fx storeFixture) {
	s := fx.store
	put(t, s, "staging/a", []byte("content"), PutOptions{ContentType: "application/octet-stream"})
	opts := PutOptions{ContentType: "image/png", ContentDisposition: "inline; filename=a.png", NoOverwrite: true}
	if err := Copy(t.Context(), s, "staging/a", "final/a.png", opts); err != nil {
		t.Fatalf("copy: %v", err)
	}
	if got := readObject(t, s, "final/a.png"); string(got) != "content" {
		t.Fatalf("copied content %q", got)
	}
	st, err := s.Stat(t.Context(), "final/a.png")
	if err != nil || st.ContentType != "image/png" || st.ContentDisposition != "inline; filename=a.png" {
		t.Fatalf("copied metadata %+v, %v", st, err)
	}
	if err := Copy(t.Context(), s, "staging/a", "final/a.png", opts); !errors.Is(err, ErrExists) {
		t.Fatalf("copy over an existing key with NoOverwrite: %v; want ErrExists", err)
	}
}
