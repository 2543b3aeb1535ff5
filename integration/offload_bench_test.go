package integration

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// BenchmarkOffload256MiB compares a 256 MiB upload through asset_offload
// (client -> caddy-lb -> versitygw, streamed) with a direct PutObject of
// the same bytes to the same versitygw, alternating in one run, over
// https (as production S3 endpoints are: both sides send unsigned
// payloads that TLS protects) and over plain http (where caddy-lb signs
// each part's SHA-256 and versitygw checks it, while the direct client is
// let off with an unsigned payload). Reported: MB/s of each and their
// median ratio. Run with -benchtime 1x.
func BenchmarkOffload256MiB(b *testing.B) {
	for _, endpoint := range []string{"https", "http"} {
		b.Run(endpoint, func(b *testing.B) {
			s3 := testproc.StartVersityGWTLS(b)
			if endpoint == "http" {
				s3 = testproc.StartVersityGW(b)
			}
			benchmarkOffload(b, startAssetStackOn(b, s3, "1GiB"))
		})
	}
}

func benchmarkOffload(b *testing.B, st *assetStack) {
	const size, rounds = 256 << 20, 5
	client := harness.NewClient()
	client.Timeout = 5 * time.Minute
	var direct, offload []float64
	for b.Loop() {
		for range rounds {
			file := newGeneratedFile(size)
			start := time.Now()
			_, err := st.client.PutObject(context.Background(), st.bucket, "direct/"+time.Now().Format("150405.000000"), file, size,
				minio.PutObjectOptions{ContentType: "image/png", PartSize: 8 << 20, DisableContentSha256: true})
			if err != nil {
				b.Fatalf("direct PutObject: %v", err)
			}
			direct = append(direct, size/time.Since(start).Seconds()/1e6)

			body, ctype := streamMultipart(nil, filePart{field: "f", filename: "big.png", body: newGeneratedFile(size)})
			start = time.Now()
			resp, out := post(b, client, st.caddy.URL("/upload"), ctype, body)
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("offload: %d %s", resp.StatusCode, out)
			}
			offload = append(offload, size/time.Since(start).Seconds()/1e6)
		}
	}
	ratios := make([]float64, len(direct))
	for i := range direct {
		ratios[i] = offload[i] / direct[i]
	}
	b.ReportMetric(median(direct), "direct-MB/s")
	b.ReportMetric(median(offload), "offload-MB/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(float64(peakRSS(b, st.caddy.Pid())>>20), "peak-RSS-MiB")
}

// BenchmarkOffloadPeakRSS measures caddy-lb's peak RSS for one 1 GiB
// upload, and for 20 concurrent 50 MiB uploads, each on a fresh process.
func BenchmarkOffloadPeakRSS(b *testing.B) {
	for b.Loop() {
		st := startAssetStack(b, "2GiB")
		base := peakRSS(b, st.caddy.Pid())
		uploadN(b, st, 1, 1<<30)
		b.ReportMetric(float64(base>>20), "idle-RSS-MiB")
		b.ReportMetric(float64(peakRSS(b, st.caddy.Pid())>>20), "1GiB-peak-RSS-MiB")

		st = startAssetStack(b, "2GiB")
		uploadN(b, st, 20, 50<<20)
		b.ReportMetric(float64(peakRSS(b, st.caddy.Pid())>>20), "20x50MiB-peak-RSS-MiB")
	}
}

// uploadN sends n concurrent uploads of size bytes and fails on any error.
func uploadN(b *testing.B, st *assetStack, n int, size int64) {
	client := harness.NewClient()
	client.Timeout = 10 * time.Minute
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Go(func() {
			body, ctype := streamMultipart(nil, filePart{field: "f", filename: "f.png", body: newGeneratedFile(size)})
			req, _ := http.NewRequest(http.MethodPost, st.caddy.URL("/upload"), body)
			req.Header.Set("Content-Type", ctype)
			resp, err := client.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- resp.Status
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		b.Fatalf("upload failed: %s", e)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
