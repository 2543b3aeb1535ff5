package objectstore

import (
	"testing"

	"github.com/caddylb/caddylb/internal/testproc"
)

// BenchmarkS3PutStream uploads 64 MiB of unknown size (an HTTP upload
// without Content-Length) through a real versitygw on loopback, in 8 MiB
// parts: the path asset_offload takes. B/op shows the part buffer is
// pooled, not allocated per upload.
func BenchmarkS3PutStream(b *testing.B) {
	const size = 64 << 20
	srv := testproc.StartVersityGW(b)
	s := &S3Store{
		Bucket: srv.CreateBucket(b, "bench"), Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true,
	}
	if err := s.Provision(caddyContext(b)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Cleanup() })
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Put(b.Context(), "bench/stream.bin", patternReader(size), -1, PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
