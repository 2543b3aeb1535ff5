package objectstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/internal/testproc"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap/zapcore"
)

func TestS3StoreUnmarshalCaddyfile(t *testing.T) {
	for _, c := range []struct {
		name    string
		input   string
		want    S3Store
		wantErr string
	}{
		{
			name: "every option",
			input: `s3 {
				bucket media
				endpoint http://127.0.0.1:7070
				region eu-west-1
				access_key {env.S3_KEY}
				secret_key {env.S3_SECRET}
				path_style
				prefix uploads
				public_url https://cdn.example.com/uploads
				part_size 16MiB
				ca_file /etc/ssl/private-ca.pem
			}`,
			want: S3Store{
				Bucket: "media", Endpoint: "http://127.0.0.1:7070", Region: "eu-west-1",
				AccessKey: "{env.S3_KEY}", SecretKey: "{env.S3_SECRET}", PathStyle: true,
				Prefix: "uploads", PublicBaseURL: "https://cdn.example.com/uploads",
				PartSize: 16 << 20, CAFile: "/etc/ssl/private-ca.pem",
			},
		},
		{name: "bucket only", input: "s3 {\n bucket b\n}", want: S3Store{Bucket: "b"}},
		{name: "inline argument", input: "s3 b", wantErr: "unexpected argument"},
		{name: "unknown option", input: "s3 {\n bucket b\n acl public\n}", wantErr: `unknown option "acl"`},
		{name: "missing value", input: "s3 {\n bucket\n}", wantErr: "wrong argument count"},
		{name: "two values", input: "s3 {\n region a b\n}", wantErr: "wrong argument count"},
		{name: "path_style with argument", input: "s3 {\n path_style true\n}", wantErr: "takes no arguments"},
		{name: "bad part_size", input: "s3 {\n part_size lots\n}", wantErr: "part_size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got S3Store
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestS3StoreProvisionRefusesBadSettings(t *testing.T) {
	for _, c := range []struct {
		name    string
		store   S3Store
		wantErr string
	}{
		{"no bucket", S3Store{}, "bucket is required"},
		{"bucket from an unset env var", S3Store{Bucket: "{env.CADDYLB_TEST_UNSET_BUCKET}"}, "bucket is required"},
		{"small parts", S3Store{Bucket: "b", PartSize: 1 << 20}, "part_size"},
		{"access key alone", S3Store{Bucket: "b", AccessKey: "id"}, "go together"},
		{"endpoint without scheme", S3Store{Bucket: "b", Endpoint: "127.0.0.1:7070"}, "endpoint"},
		{"endpoint with path", S3Store{Bucket: "b", Endpoint: "http://h/bucket"}, "must not have a path"},
		{"prefix escaping", S3Store{Bucket: "b", Prefix: "../other"}, "prefix"},
		{"missing ca file", S3Store{Bucket: "b", CAFile: "/nonexistent/ca.pem"}, "ca_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.store
			err := s.Provision(caddyContext(t))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Provision: %v, want an error containing %q", err, c.wantErr)
			}
			if err := s.Cleanup(); err != nil {
				t.Fatalf("Cleanup after a failed Provision: %v", err)
			}
		})
	}
}

func TestS3StoreSharesClientAcrossReloads(t *testing.T) {
	srv := testproc.StartVersityGW(t)
	bucket := srv.CreateBucket(t, "shared")
	first := newTestS3Store(t, srv, bucket, "a/")
	second := newTestS3Store(t, srv, bucket, "b/") // a prefix does not shape the client
	if first.client != second.client {
		t.Fatal("stores with the same connection settings got different clients")
	}
	if refs, _ := s3Clients.References(first.poolKey); refs != 2 {
		t.Fatalf("pool references = %d, want 2", refs)
	}
	other := &S3Store{Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: "another-secret"}
	if err := other.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	defer other.Cleanup()
	if other.client == first.client || strings.Contains(other.poolKey, "another-secret") {
		t.Fatalf("a different secret shared the client, or the pool key %q shows it", other.poolKey)
	}

	// The old config is cleaned up after the new one is running.
	if err := first.Cleanup(); err != nil {
		t.Fatal(err)
	}
	put(t, second, "still-works.txt", []byte("ok"), PutOptions{})
	if refs, ok := s3Clients.References(second.poolKey); !ok || refs != 1 {
		t.Fatalf("after one Cleanup: references %d (present %v), want 1", refs, ok)
	}
}

func TestS3StoreCredentialsFromEnvironment(t *testing.T) {
	srv := testproc.StartVersityGW(t)
	bucket := srv.CreateBucket(t, "creds")
	t.Run("placeholders", func(t *testing.T) {
		t.Setenv("CADDYLB_TEST_S3_KEY", srv.AccessKey)
		t.Setenv("CADDYLB_TEST_S3_SECRET", srv.SecretKey)
		s := &S3Store{Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
			AccessKey: "{env.CADDYLB_TEST_S3_KEY}", SecretKey: "{env.CADDYLB_TEST_S3_SECRET}"}
		provisionAndPut(t, s)
	})
	t.Run("no region", func(t *testing.T) { // minio-go asks the bucket's location
		s := &S3Store{Bucket: bucket, Endpoint: srv.Endpoint, PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
		provisionAndPut(t, s)
	})
	t.Run("AWS chain", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		s := &S3Store{Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true}
		provisionAndPut(t, s)
	})
}

func provisionAndPut(t *testing.T, s *S3Store) {
	t.Helper()
	if err := s.Provision(caddyContext(t)); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	defer s.Cleanup()
	put(t, s, "creds.txt", []byte("signed"), PutOptions{})
}

func TestS3StoreLogsNoSecrets(t *testing.T) {
	const secret = "do-not-log-this-secret"
	s := &S3Store{Bucket: "b", Endpoint: "http://127.0.0.1:1", AccessKey: "AKIDEXAMPLE", SecretKey: secret}
	if err := s.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	enc := zapcore.NewMapObjectEncoder()
	if err := s.MarshalLogObject(enc); err != nil {
		t.Fatal(err)
	}
	logged := fmt.Sprint(enc.Fields) + s.String()
	if strings.Contains(logged, secret) {
		t.Fatalf("log output contains the secret: %s", logged)
	}
	if !strings.Contains(logged, "AKIDEXAMPLE") || !strings.Contains(logged, "127.0.0.1:1") {
		t.Fatalf("log output lacks the access key ID or endpoint: %s", logged)
	}
}

func TestS3StoreErrorsNameStoreOperationAndKey(t *testing.T) {
	srv := testproc.StartVersityGW(t)
	s := newTestS3Store(t, srv, srv.CreateBucket(t, "errors"), "")
	s.SetName("media")
	_, err := s.Stat(t.Context(), "uploads/x.png")
	want := `asset store "media": s3 HEAD "uploads/x.png": object not found`
	if !errors.Is(err, ErrNotFound) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Stat error %q, want ErrNotFound starting %q", err, want)
	}
	_, err = s.Put(t.Context(), "../x", strings.NewReader("x"), 1, PutOptions{})
	if !errors.Is(err, ErrInvalidKey) || !strings.HasPrefix(err.Error(), `asset store "media": s3 PUT "../x": `) {
		t.Fatalf("Put error %q", err)
	}
}

// versitygw v1.8.0 stores the Content-Encoding of an aws-chunked
// (streaming-signature) PUT and serves it back; the store must not send
// one, or browsers would be told the object is encoded.
func TestS3StoreServesObjectsWithoutContentEncoding(t *testing.T) {
	srv := testproc.StartVersityGW(t)
	s := newTestS3Store(t, srv, srv.CreateBucket(t, "encoding"), "")
	put(t, s, "small.txt", []byte("plain text"), PutOptions{ContentType: "text/plain"})
	if _, err := s.Put(t.Context(), "large.bin", patternReader(6<<20), -1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"small.txt", "large.bin"} {
		u, err := s.PresignGet(t.Context(), key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ce := resp.Header.Get("Content-Encoding"); resp.StatusCode != http.StatusOK || ce != "" {
			t.Errorf("GET %s: %s with Content-Encoding %q; want 200 and none", key, resp.Status, ce)
		}
	}
}

func TestS3StoreUnavailable(t *testing.T) {
	srv := testproc.StartVersityGW(t)
	s := newTestS3Store(t, srv, srv.CreateBucket(t, "down"), "")
	put(t, s, "kept.txt", []byte("before the outage"), PutOptions{})
	srv.Kill()

	ops := map[string]func() error{
		"Stat": func() error { _, err := s.Stat(t.Context(), "kept.txt"); return err },
		"Open": func() error { _, err := s.Open(t.Context(), "kept.txt"); return err },
		"Put": func() error {
			_, err := s.Put(t.Context(), "new.txt", strings.NewReader("x"), -1, PutOptions{})
			return err
		},
		"Delete": func() error { return s.Delete(t.Context(), "kept.txt") },
		"List":   func() error { return s.List(t.Context(), "", func(ObjectInfo) error { return nil }) },
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with the store down: %v; want ErrUnavailable", name, err)
		}
		// Bounded by s3Attempts and the back-off between them, not by
		// minio-go's default of 10 attempts.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %s to report the store down", name, d)
		}
	}

	// A store killed in the middle of a multipart upload.
	srv.Restart(t)
	killer := &killingReader{r: patternReader(20 << 20), after: 8 << 20, kill: srv.Kill}
	if _, err := s.Put(t.Context(), "midway.bin", killer, -1, PutOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Put with the store killed mid-upload: %v; want ErrUnavailable", err)
	}
	srv.Restart(t)
	if got := readObject(t, s, "kept.txt"); string(got) != "before the outage" {
		t.Fatalf("after restart read %q", got)
	}
	expectGone(t, s, "midway.bin")
}

// killingReader calls kill once after yielding `after` bytes.
type killingReader struct {
	r     io.Reader
	after int64
	kill  func()
}

func (k *killingReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if k.after -= int64(n); k.after <= 0 && k.kill != nil {
		k.kill()
		k.kill = nil
	}
	return n, err
}

// TestS3StoreUploadMemoryBoundsBuffers: with room for one part buffer,
// a stalled upload holds it; another large upload is refused with
// ErrBusy after the wait, a small one still goes through without a
// buffer, and the stalled one completes through its single buffer.
func TestS3StoreUploadMemoryBoundsBuffers(t *testing.T) {
	srv := testproc.StartVersityGW(t)
	bucket := srv.CreateBucket(t, "budget")
	s := &S3Store{Bucket: bucket, Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		PathStyle: true, PartSize: minS3PartSize, UploadMemory: minS3PartSize}
	if err := s.Provision(caddyContext(t)); err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	s.partWait = 300 * time.Millisecond

	const size = 6<<20 + 99 // two parts through one buffer
	pr, pw := io.Pipe()
	want := sha256.New()
	body := io.TeeReader(patternReader(size), want)
	stalled := make(chan error, 1)
	go func() {
		_, err := s.Put(t.Context(), "stalled.bin", pr, -1, PutOptions{})
		stalled <- err
	}()
	if _, err := io.CopyN(pw, body, 1<<20); err != nil { // past the small-body path: it holds the buffer
		t.Fatal(err)
	}

	_, err := s.Put(t.Context(), "refused.bin", patternReader(1<<20), -1, PutOptions{})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("a second large upload while the only buffer is held: %v; want ErrBusy", err)
	}
	put(t, s, "small.txt", []byte("fits in the small buffer"), PutOptions{})

	if _, err := io.Copy(pw, body); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-stalled; err != nil {
		t.Fatalf("the stalled upload: %v", err)
	}
	got := sha256.Sum256(readObject(t, s, "stalled.bin"))
	if !bytes.Equal(got[:], want.Sum(nil)) {
		t.Fatal("the upload sent through one buffer was corrupted")
	}
	put(t, s, "after.bin", bytes.Repeat([]byte("x"), 1<<20), PutOptions{})
}
